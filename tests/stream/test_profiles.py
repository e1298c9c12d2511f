from __future__ import annotations

import pytest

from stream.codec import validate
from stream.profiles import RECENT_EVENT_IDS, apply_member_event, ewma, public_profile


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
        state, _ = apply_member_event(state, e, negative_threshold=0.9)
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


def test_redelivered_event_changes_nothing() -> None:
    once = fold(mevt("a"), mevt("b", neg=0.95))
    state, changed = apply_member_event(once, mevt("b", neg=0.95), negative_threshold=0.9)
    assert not changed
    assert state == once
    assert state["negative_reviews"] == 1


def test_recent_ids_are_bounded() -> None:
    state = fold(*(mevt(f"e{i}", "transaction") for i in range(RECENT_EVENT_IDS + 10)))
    assert len(state["recent_event_ids"]) == RECENT_EVENT_IDS
    assert state["counts"]["transaction"] == RECENT_EVENT_IDS + 10


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
    assert "recent_event_ids" not in profile
