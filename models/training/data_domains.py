"""English text from domains the student never trained on, rated by people, neutral included.

The VADER authors' ground-truth sets (Hutto & Gilbert, ICWSM 2014) ship inside the
``vaderSentiment==3.3.2`` source archive (``additional_resources/hutto_ICWSM_2014.tar.gz``), which
is pinned by sha256 and read like the other pinned packages. Every snippet carries the mean of at
least 20 raters on a -4..+4 scale, so each set has a neutral class, which the training sets
(Fine Foods, Rotten Tomatoes: two classes only) do not:

- ``amazon_snippets``: 3,708 sentences from 309 Amazon reviews of 5 electronics products
  (Hu & Liu 2004): product reviews of another kind than Fine Foods;
- ``tweets``: 4,200 tweets: short, informal, chat-like;
- ``nyt_editorials``: 5,190 sentences from 500 New York Times opinion pieces: formal prose.

The fourth set, movie-review sentences from Pang & Lee (2004), is left out: it is the source of
the Rotten Tomatoes snippets the student trained on, so it is not another domain.

Kept out of ``data.LOADERS`` like the Chinese set: these sets judge generalisation (the model
card's cross-domain table, calibration and the neutral band) and never train the served student.
Splits are by review, tweet or article (never by sentence, so one review's sentences never sit
on two sides): 50 % ``train`` (fits heads), 20 % ``validation`` (chooses thresholds, calibration
and the neutral band) and 30 % ``test`` (reported only).
"""

from __future__ import annotations

import html
import io
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from models.training.data import (
    PinnedWheel,
    _collapse_space,
    _read_member,
    _resolve,
    hash_bucket,
)

AMAZON_SNIPPETS = "amazon_snippets"
TWEETS = "tweets"
NYT_EDITORIALS = "nyt_editorials"

VADER = PinnedWheel(
    "vaderSentiment",
    "3.3.2",
    "vaderSentiment-3.3.2.tar.gz",
    "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
)
_ARCHIVE_MEMBER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
_FILES = {
    AMAZON_SNIPPETS: "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
    TWEETS: "hutto_ICWSM_2014/tweets_GroundTruth.txt",
    NYT_EDITORIALS: "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt",
}
#: What each set stands for in the model card.
DESCRIPTIONS = {
    AMAZON_SNIPPETS: "Amazon electronics review sentences",
    TWEETS: "tweets (short, informal)",
    NYT_EDITORIALS: "NYT editorial sentences",
}
DOMAIN_SPLITS = ("train", "validation", "test")
DomainSplit = Literal["train", "validation", "test"]
#: Mean ratings inside (-NEUTRAL_BAND, +NEUTRAL_BAND) are neutral: the raters, on average, leaned
#: less than half a point (of 9) either way.
NEUTRAL_BAND = 0.5

Sentiment = Literal["negative", "neutral", "positive"]


@dataclass(frozen=True, slots=True)
class RatedText:
    """One snippet with its raters' mean (-4..+4) and the review/tweet/article it came from."""

    text: str
    rating: float
    group: str
    source: str

    @property
    def label(self) -> Sentiment:
        return rating_label(self.rating)


def rating_label(rating: float, band: float = NEUTRAL_BAND) -> Sentiment:
    """``negative`` at or below ``-band``, ``positive`` at or above ``band``, else ``neutral``."""
    if rating <= -band:
        return "negative"
    return "positive" if rating >= band else "neutral"


def parse_ground_truth(raw: str, source: str) -> list[RatedText]:
    """``id<TAB>mean<TAB>text`` lines; ``id`` is ``review_sentence`` or a bare tweet number.

    Texts rated differently in two places (the same sentence in two reviews) are dropped; a
    repeated text with one rating is kept once.
    """
    rows: dict[str, RatedText] = {}
    conflicting: set[str] = set()
    for line in raw.splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        ident, rating, text = parts
        text = _collapse_space(html.unescape(text))  # tweets keep &amp; and the like
        if not text:
            continue
        row = RatedText(text, float(rating), ident.split("_", 1)[0], source)
        seen = rows.get(text)
        if seen is not None and seen.rating != row.rating:
            conflicting.add(text)
        rows.setdefault(text, row)
    return [row for text, row in rows.items() if text not in conflicting]


def group_split(group: str, source: str) -> DomainSplit:
    """50/20/30 by the hash of the review/tweet/article id, so a review never straddles splits."""
    bucket = hash_bucket(f"{source}:{group}")
    if bucket < 50:
        return "train"
    return "validation" if bucket < 70 else "test"


@lru_cache(maxsize=8)
def _domain_all(source: str, cache_dir: Path) -> tuple[RatedText, ...]:
    archive = _read_member(VADER, _ARCHIVE_MEMBER, cache_dir)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as inner:
        handle = inner.extractfile(_FILES[source])
        if handle is None:
            raise KeyError(f"{_FILES[source]} is not a file in {VADER.filename}")
        raw = handle.read().decode("utf-8", errors="replace")
    return tuple(parse_ground_truth(raw, source))


def rated_texts(source: str, split: DomainSplit, cache_dir: Path | None = None) -> list[RatedText]:
    """One set's snippets in ``split``, in file order."""
    if source not in _FILES:
        raise ValueError(f"unknown domain {source!r}; expected one of {sorted(_FILES)}")
    if split not in DOMAIN_SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {DOMAIN_SPLITS}")
    rows = _domain_all(source, _resolve(cache_dir))
    return [row for row in rows if group_split(row.group, source) == split]


DOMAIN_LOADERS: dict[str, Callable[[DomainSplit, Path | None], list[RatedText]]] = {
    source: (lambda split, cache_dir=None, _s=source: rated_texts(_s, split, cache_dir))
    for source in _FILES
}


def label_counts(rows: Sequence[RatedText]) -> dict[str, int]:
    counts = {"negative": 0, "neutral": 0, "positive": 0}
    for row in rows:
        counts[row.label] += 1
    return counts
