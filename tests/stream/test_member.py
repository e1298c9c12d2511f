"""The member stage as a pure function: outputs per event, and a redelivered event (the state
already holds it) re-publishes exactly what its first delivery published."""

from __future__ import annotations

import orjson

from stream.core.codec import validate
from stream.core.member import FRAUD_FIELDS, RECENT_OUTPUTS, member_step
from stream.core.rules import AlertThresholds

T = AlertThresholds(negative_review=0.85, scam_chat=0.9, fraud_risk=0.15)
BASE_MS = 1_764_000_000_000


def txn(i: int, *, merchant: str = "mer-1", amount: float = 20.0) -> dict:
    return {
        "event_type": "transaction",
        "event": {
            "event_id": f"tx-{i}",
            "member_id": "m1",
            "event_time": "2025-11-24T16:00:00Z",
            "amount": amount,
            "currency": "EUR",
            "merchant_id": merchant,
            "channel": "web",
            "device_id": "d1",
            "country": "DE",
        },
        "event_time_ms": BASE_MS + i * 60_000,
        "scores": {},
        "model_version": None,
        "source": {"topic": "transactions", "partition": 0, "offset": i},
    }


def review(i: int, negative: float, scores_jitter: float = 0.0) -> dict:
    return {
        "event_type": "review",
        "event": {
            "event_id": f"r-{i}",
            "member_id": "m1",
            "event_time": "2025-11-24T16:00:00Z",
            "product_id": "p1",
            "brand": "b1",
            "text": "bad",
        },
        "event_time_ms": BASE_MS + i * 60_000,
        "scores": {
            "sentiment_negative": negative + scores_jitter,
            "sentiment_polarity": 1 - 2 * negative,
            "scam_risk": 0.01,
        },
        "model_version": "v1",
        "source": {"topic": "reviews", "partition": 0, "offset": i},
    }


def step(state, evt):
    return member_step(
        state, evt, thresholds=T, profile_throttle_ms=0, fraud_scorer=lambda _txn: None
    )


def by_topic(outcome) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for output in outcome.outputs:
        found.setdefault(output.topic, []).append(orjson.loads(output.value))
    return found


def test_outputs_are_schema_valid() -> None:
    outcome = step(None, review(1, 0.95))
    outputs = by_topic(outcome)
    validate("scored-events", outputs["scored-events"][0])
    validate("member-profiles", outputs["member-profiles"][0])
    for alert in outputs["alerts"]:
        validate("alerts", alert)
    assert [m["kind"] for m in outputs["riskstream-subject-events"]] == ["product", "brand"]


def test_a_redelivered_transaction_is_scored_against_the_state_before_it() -> None:
    """After a crash the state already holds the event: scoring it again would see its own
    merchant as known and its own time in the velocity window (measured: 494 of 5,000
    redeliveries differed)."""
    state = None
    for i in range(4):
        state = step(state, txn(i)).state
    first = step(state, txn(4, merchant="mer-new"))
    again = step(first.state, txn(4, merchant="mer-new"))
    assert again.redelivered and again.state is None
    first_scored = [o for o in first.outputs if o.topic == "scored-events"]
    again_scored = [o for o in again.outputs if o.topic == "scored-events"]
    assert first_scored == again_scored
    assert [o for o in first.outputs if o.topic == "alerts"] == [
        o for o in again.outputs if o.topic == "alerts"
    ]


def test_a_redelivered_text_keeps_its_first_scores() -> None:
    """The edge may score a re-read text in another batch: the first scores are published."""
    first = step(None, review(1, 0.95))
    again = step(first.state, review(1, 0.95, scores_jitter=-1e-7))
    assert [o for o in first.outputs if o.topic != "member-profiles"] == [
        o for o in again.outputs if o.topic != "member-profiles"
    ]


def test_every_event_the_state_knows_is_republished_exactly() -> None:
    """Crashes in a row before a commit redeliver a long run of a member's events: every one
    the state counts as applied is re-published as first scored. (CI once saw 2 events 17-64
    back re-scored, without "first purchase at this merchant", when ids were kept for 64
    events but outputs for 16.)"""
    state, firsts = None, []
    for i in range(RECENT_OUTPUTS):
        outcome = step(state, txn(i, merchant=f"mer-{i % 7}", amount=20.0 + i % 5))
        state = outcome.state
        firsts.append([o for o in outcome.outputs if o.topic != "member-profiles"])
    assert any("first purchase" in o.value.decode() for first in firsts for o in first)
    for i, first in enumerate(firsts):
        again = step(state, txn(i, merchant=f"mer-{i % 7}", amount=20.0 + i % 5))
        assert again.redelivered and again.state is None
        assert [o for o in again.outputs if o.topic != "member-profiles"] == first


def test_an_event_beyond_the_horizon_is_applied_again() -> None:
    """The documented limit: the state forgets an event after ``RECENT_OUTPUTS`` newer ones."""
    state = None
    for i in range(RECENT_OUTPUTS + 5):
        state = step(state, txn(i)).state
    assert len(state["recent_outputs"]) == RECENT_OUTPUTS
    assert "tx-0" not in state["recent_outputs"]
    old = step(state, txn(0))
    assert not old.redelivered
    assert old.state["counts"]["transaction"] == RECENT_OUTPUTS + 6


def test_a_state_written_before_the_compact_form_still_replays_exactly() -> None:
    """States in a changelog written by the previous release: ids listed separately, outputs
    as ``{"f": block}`` / ``{"s": [...], "v": ..}``."""
    tx = step(None, txn(1, merchant="mer-new"))
    rv = step(tx.state, review(2, 0.95))
    entries = rv.state["recent_outputs"]
    legacy = {
        **rv.state,
        "recent_event_ids": ["tx-0", "tx-1", "r-2"],
        "recent_outputs": {
            "tx-1": {"f": dict(zip(FRAUD_FIELDS, entries["tx-1"][1:6], strict=True))},
            "r-2": {"s": entries["r-2"][1:4], "v": entries["r-2"][4]},
        },
    }
    for first, evt in ((tx, txn(1, merchant="mer-new")), (rv, review(2, 0.95))):
        again = step(legacy, evt)
        assert again.redelivered and again.state is None
        scored = [o for o in again.outputs if o.topic == "scored-events"]
        assert scored == [o for o in first.outputs if o.topic == "scored-events"]
    listed_only = step(legacy, txn(0))  # id listed, output not kept: counted once, re-scored
    assert listed_only.redelivered and listed_only.state is None
    new = step(legacy, txn(3)).state
    assert "recent_event_ids" not in new and new["counts"]["transaction"] == 2
