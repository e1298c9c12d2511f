from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.codec import validate
from stream.core.profiles import (
    PRICE_WORDS,
    QUALITY_WORDS,
    apply_member_event,
    ewma,
    public_profile,
)


def mevt(
    event_id: str,
    kind: str = "review",
    t: int = 1_000,
    neg: float = 0.1,
    role: str = "member",
    scam: float = 0.0,
) -> dict:
    event = {"event_id": event_id, "member_id": "m1", "event_time": "x"}
    if kind == "chat":
        event["sender_role"] = role
    if kind == "transaction":
        event.update(
            amount=20.0, currency="EUR", device_id="d1", country="DE", merchant_id="shop-1"
        )
    scores = (
        {}
        if kind == "transaction"
        else {"sentiment_negative": neg, "sentiment_polarity": 1 - 2 * neg, "scam_risk": scam}
    )
    return {
        "event_type": kind,
        "event": event,
        "event_time_ms": t,
        "scores": scores,
        "model_version": "v1" if scores else None,
        "source": {},
    }


def fold(*events: dict) -> dict:
    state = None
    for e in events:
        state = apply_member_event(state, e, negative_threshold=0.9)
    return state


def test_counts_and_event_time_bounds() -> None:
    state = fold(mevt("a", t=5_000), mevt("b", "chat", t=1_000), mevt("c", "transaction", t=9_000))
    assert state["counts"] == {"review": 1, "chat": 1, "transaction": 1}
    assert (state["first_seen_ms"], state["last_seen_ms"]) == (1_000, 9_000)
    assert state["last_event_id"] == "c"


def test_rolling_sentiment_is_an_ewma_of_member_texts_only() -> None:
    state = fold(
        mevt("a", neg=0.0), mevt("b", neg=1.0), mevt("c", "chat", neg=1.0, role="merchant")
    )
    assert state["sentiment_ewma"] == pytest.approx(ewma(ewma(None, 1.0), -1.0))
    assert state["sentiment_ewma"] == pytest.approx(0.6)


def test_scam_risk_max_tracks_chats() -> None:
    state = fold(
        mevt("a", "chat", scam=0.3), mevt("b", "chat", scam=0.8), mevt("c", "chat", scam=0.1)
    )
    assert state["scam_risk_max"] == 0.8


def test_input_state_is_not_mutated() -> None:
    first = fold(mevt("a"))
    snapshot = {
        k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
        for k, v in first.items()
    }
    apply_member_event(first, mevt("b", "chat"), negative_threshold=0.9)
    assert first == snapshot


def test_public_profile_is_schema_valid_and_has_no_bookkeeping() -> None:
    profile = public_profile(fold(mevt("a"), mevt("b", "transaction")))
    validate("member-profiles", profile)
    bookkeeping = {"recent_outputs", "alert_log", "merchants", "devices", "txn_times_ms"}
    assert not bookkeeping & set(profile)


# --------------------------------------------------------------------------- issue 4 state


def txn_evt(event_id: str, t: int, amount: float, device: str = "d1", fraud: float = 0.01):
    event = mevt(event_id, "transaction", t=t)
    event["event"].update(amount=amount, device_id=device)
    event["scores"] = {"fraud_risk": fraud}
    return event


def test_spend_velocity_and_known_values_are_tracked_without_listing_them() -> None:
    hour = 3_600_000
    events = [txn_evt(f"t{i}", i * hour, 10.0 * (i + 1), device=f"d{i % 2}") for i in range(4)]
    state = fold(*events)
    assert state["spend"]["EUR"]["n"] == 4
    assert state["spend"]["EUR"]["mean"] == pytest.approx(25.0)
    profile = public_profile(state)
    assert profile["spend"]["EUR"] == {
        "count": 4,
        "mean": 25.0,
        "std": pytest.approx(12.9099, 1e-4),
    }
    assert profile["transactions_last_24h"] == 4 and profile["transactions_last_1h"] == 1
    assert profile["known_devices"] == 2
    assert "d0" not in str(profile) and "devices" not in profile  # counted, never listed


def test_risk_level_and_segments() -> None:
    risky = fold(txn_evt("t1", 1_000, 50.0, fraud=0.7))
    assert public_profile(risky)["risk_level"] == "high"
    medium = fold(txn_evt("t1", 1_000, 50.0, fraud=0.2))
    assert public_profile(medium)["risk_level"] == "medium"
    reviews = []
    for i, text in enumerate(["Way too expensive", "Overpriced and stale", "Poor value, broken"]):
        event = mevt(f"r{i}", neg=0.95, t=1_000 + i)
        event["event"]["text"] = text
        reviews.append(event)
    tags = public_profile(fold(*reviews))["segments"]
    assert tags == ["frequent_complainer", "new_member", "price_sensitive", "quality_focused"]


def test_profile_publication_is_throttled_on_event_time() -> None:
    from stream.core.profiles import mark_published, should_publish

    minute = 60_000
    state = fold(mevt("a", t=0))
    assert should_publish(state, 0, minute, alerted=False)  # never published yet
    state = mark_published(state, 0)
    state = fold(mevt("b", t=10_000))  # same level, 10 s later
    state = {**state, "last_published_ms": 0, "published_level": "low"}
    assert not should_publish(state, 10_000, minute, alerted=False)
    assert should_publish(state, 10_000, minute, alerted=True)  # an alert goes out at once
    assert should_publish(state, 60_000, minute, alerted=False)
    risky = apply_member_event(state, txn_evt("t", 20_000, 5.0, fraud=0.9), negative_threshold=0.9)
    assert should_publish(risky, 20_000, minute, alerted=False)  # level moved low -> high


def test_without_a_throttle_every_change_is_published_even_out_of_order() -> None:
    from stream.core.profiles import mark_published, should_publish

    state = mark_published(fold(mevt("a", t=50_000)), 50_000)
    assert should_publish(state, 10_000, 0, alerted=False)  # an older event still goes out
    assert not should_publish(state, 10_000, 60_000, alerted=False)


def test_spend_keeps_the_most_recently_used_currencies() -> None:
    from stream.core.profiles import MAX_CURRENCIES

    state = None
    currencies = [f"C{i:02d}" for i in range(MAX_CURRENCIES + 4)]
    for i, currency in enumerate(currencies):
        evt = txn_evt(f"t{i}", i * 1000, 10.0)
        evt["event"]["currency"] = currency
        state = apply_member_event(state, evt, negative_threshold=0.9)
    assert list(state["spend"]) == currencies[-MAX_CURRENCIES:]
    again = txn_evt("t-again", 99_000, 5.0)
    again["event"]["currency"] = currencies[-MAX_CURRENCIES]  # used again: now the newest
    state = apply_member_event(state, again, negative_threshold=0.9)
    assert list(state["spend"])[-1] == currencies[-MAX_CURRENCIES]
    assert state["spend"][currencies[-MAX_CURRENCIES]]["n"] == 2


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                [
                    "Price",
                    "PRICES",
                    "priced",
                    "cheaper",
                    "Value",
                    "cost",
                    "DEAL",
                    "Quality",
                    "fresh",
                    "Tasted",
                    "tasty",
                    "defective",
                    "\u017ftale",
                    "\u0130",
                    "\u0131",
                    "\u212a",
                    "costs",
                ]
            ),
            st.text("abcdeflopqrstuvy ,.!\u017f\u0131\u0130\u212a", max_size=8),
        ),
        max_size=8,
    ).map(" ".join)
)
def test_the_first_letter_lookahead_changes_no_match(text: str) -> None:
    """``PRICE_WORDS`` and ``QUALITY_WORDS`` name each word's first letter in a lookahead
    (a cheaper scan); without it they match the same texts (Unicode case folds included)."""
    for pattern in (PRICE_WORDS, QUALITY_WORDS):
        plain = re.compile(re.sub(r"\(\?=\[[a-z]+\]\)", "", pattern.pattern), pattern.flags)
        assert plain.pattern != pattern.pattern
        assert bool(pattern.search(text)) == bool(plain.search(text))
