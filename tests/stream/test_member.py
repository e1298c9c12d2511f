"""The member stage as a pure function: outputs per event, and a redelivered event (the state
already counts it) changes nothing and publishes nothing: its outputs went out first."""

from __future__ import annotations

import base64

import orjson

from stream.core.codec import validate
from stream.core.member import (
    DIGEST_BYTES,
    FRAUD_FIELDS,
    RECENT_EVENTS,
    has_seen,
    id_digest,
    member_step,
)
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


def test_a_redelivered_event_changes_nothing_and_publishes_nothing() -> None:
    """The shell writes a state only after its events' outputs were delivered, so a state that
    counts an event proves its outputs are out: a redelivery is skipped on its id."""
    state = None
    for i in range(4):
        state = step(state, txn(i)).state
    first = step(state, txn(4, merchant="mer-new"))
    again = step(first.state, txn(4, merchant="mer-new"))
    assert again.redelivered and again.state is None and again.outputs == []
    text = step(first.state, review(5, 0.95))
    rescored = step(text.state, review(5, 0.95, scores_jitter=-1e-7))  # scored in another batch
    assert rescored.redelivered and rescored.outputs == []


def test_an_event_whose_state_was_lost_is_published_the_same_again() -> None:
    """Outputs delivered, state write lost (a crash before the changelog): the event is
    applied again to the same state before it, so its outputs are the same records."""
    state = None
    for i in range(4):
        state = step(state, txn(i, merchant=f"mer-{i % 2}")).state
    first = step(state, txn(4, merchant="mer-new"))
    again = step(state, txn(4, merchant="mer-new"))
    assert not again.redelivered and again.outputs == first.outputs
    assert again.state == first.state


def test_the_ring_remembers_the_last_events_and_forgets_older_ones() -> None:
    """The documented limit: the state forgets an event after ``RECENT_EVENTS`` newer ones."""
    state = None
    for i in range(RECENT_EVENTS + 5):
        state = step(state, txn(i)).state
    assert len(base64.b64decode(state["seen"])) == RECENT_EVENTS * DIGEST_BYTES
    assert len(orjson.dumps(state["seen"])) <= 4 * RECENT_EVENTS * DIGEST_BYTES // 3 + 2
    for i in range(5, RECENT_EVENTS + 5):
        assert step(state, txn(i)).redelivered
    old = step(state, txn(0))
    assert not old.redelivered
    assert old.state["counts"]["transaction"] == RECENT_EVENTS + 6


def test_a_state_written_by_the_previous_release_still_replays_exactly() -> None:
    """States in a changelog written before: ids listed separately, what each recent event was
    published with in ``recent_outputs`` (compact lists or ``{"f": block}`` / ``{"s": ..}``).
    An event found there is re-published as then (its outputs may not have gone out)."""
    tx = step(None, txn(1, merchant="mer-new"))
    rv = step(tx.state, review(2, 0.95))
    fraud = orjson.loads(next(o.value for o in tx.outputs if o.topic == "scored-events"))
    scores = orjson.loads(next(o.value for o in rv.outputs if o.topic == "scored-events"))
    block = {
        "score": fraud["scores"]["fraud_risk"],
        **{k: fraud["fraud"][k] for k in FRAUD_FIELDS if k != "score"},
    }
    text = [scores["scores"][k] for k in ("sentiment_negative", "sentiment_polarity", "scam_risk")]
    legacy = {k: v for k, v in rv.state.items() if k != "seen"}
    legacy |= {
        "recent_event_ids": ["tx-0", "tx-1", "r-2"],
        "recent_outputs": {
            "tx-1": {"f": block},
            "r-2": {"s": text, "v": scores["model_version"]},
        },
    }
    for first, evt in ((tx, txn(1, merchant="mer-new")), (rv, review(2, 0.95))):
        again = step(legacy, evt)
        assert again.redelivered and again.state is None
        scored = [o for o in again.outputs if o.topic == "scored-events"]
        assert scored == [o for o in first.outputs if o.topic == "scored-events"]
    listed_only = step(legacy, txn(0))  # id listed, output not kept: skipped
    assert listed_only.redelivered and listed_only.state is None
    new = step(legacy, txn(3)).state
    assert "recent_event_ids" not in new and "recent_outputs" not in new
    assert new["counts"]["transaction"] == 2
    assert all(step(new, txn(i)).redelivered for i in (0, 1, 3))


def test_a_digest_found_across_two_ring_entries_is_not_a_match() -> None:
    digest = id_digest("ev-1")
    straddling = b"\0" * 3 + digest + b"\0" * 3  # two entries, the digest split over both
    assert not has_seen({"seen": base64.b64encode(straddling).decode()}, "ev-1")
    aligned = b"\0" * DIGEST_BYTES + digest
    assert has_seen({"seen": base64.b64encode(aligned).decode()}, "ev-1")
