"""Property-based tests of the pure path: decode -> member step (fraud) -> surge -> encode.

Whatever bytes arrive, each record is either dead-lettered with a reason (a dead letter that is
schema-valid and fits the producer's request limit) or yields outputs valid under ``schemas/``.
Seeded with the six records that each crash-looped the worker before (``tests/poison.py``)."""

from __future__ import annotations

import functools
import string
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import orjson
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from models.serving.fraud import VECTOR_NAMES, FraudModel, model_inputs, vectors_of
from stream.core.codec import encode, parse_event_time, validate
from stream.core.member import member_step
from stream.core.rules import AlertThresholds
from stream.core.steps import (
    EdgeLimits,
    InvalidEvent,
    RawRecord,
    ValidEvent,
    dead_letter,
    member_event,
    text_to_score,
)
from stream.core.surge import flush_pending, hold_mention
from tests.poison import six_records

T = AlertThresholds()
LIMITS = EdgeLimits()
NOW_MS = parse_event_time("2026-11-30T12:00:00Z")
PRODUCER_LIMIT = 1_048_576

ids = st.text(string.ascii_letters + string.digits + "._:@-", min_size=1, max_size=24)
texts = st.one_of(
    st.text(min_size=1, max_size=300),
    st.sampled_from(
        [
            "质量很差，用了两天就坏了，要求退货！电话13800138000联系我",  # noqa: RUF001
            "mail me at jane.doe@example.com or +33 1 42 68 53 00",
            "card 4111 1111 1111 1111 please",
            "order ord-0500123 cost 1234567.5",
        ]
    ),
)


@st.composite
def event_times(draw) -> str:
    moment = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
    minutes = draw(st.integers(-23 * 60, 23 * 60))
    zone = timezone(timedelta(minutes=minutes))
    text = moment.replace(tzinfo=zone).isoformat()
    return draw(st.sampled_from([text, text.replace("+00:00", "Z"), text.lower(), text + "x"]))


recent_times = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2026, 11, 30, 12, 30)
).map(lambda d: d.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"))


@st.composite
def events(draw) -> tuple[str, dict]:
    topic = draw(st.sampled_from(["reviews", "chats", "transactions"]))
    body = {
        "event_id": draw(ids),
        "member_id": draw(st.sampled_from(["m1", "m2", "m3"])),
        "event_time": draw(st.one_of(recent_times, event_times())),
    }
    if topic == "reviews":
        body |= {"product_id": draw(ids), "text": draw(texts)}
        body |= draw(
            st.fixed_dictionaries({}, optional={"brand": ids, "rating": st.integers(1, 5)})
        )
    elif topic == "chats":
        body |= {
            "conversation_id": draw(ids),
            "sender_role": draw(st.sampled_from(["member", "merchant", "agent"])),
            "text": draw(texts),
        }
        body |= draw(st.fixed_dictionaries({}, optional={"product_id": ids, "brand": ids}))
    else:
        body |= {
            "amount": draw(st.floats(0, 1e9, allow_nan=False)),
            "currency": draw(st.sampled_from(["EUR", "USD", "CNY"])),
            "merchant_id": draw(ids),
            "channel": draw(st.sampled_from(["web", "app", "pos"])),
            "device_id": draw(ids),
            "country": draw(st.sampled_from(["DE", "CN", "US"])),
        }
        if draw(st.booleans()):
            body["features"] = draw(
                st.lists(
                    st.floats(-50, 50, allow_nan=False),
                    min_size=len(VECTOR_NAMES),
                    max_size=len(VECTOR_NAMES),
                )
            )
    extras = draw(
        st.dictionaries(
            st.text(max_size=8),
            st.recursive(
                st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
                st.lists,
                max_leaves=6,
            ),
            max_size=2,
        )
    )
    return topic, {**extras, **body}


@st.composite
def records(draw) -> RawRecord:
    topic, body = draw(events())
    value = orjson.dumps(body)
    mutation = draw(st.sampled_from(["none", "none", "drop", "retype", "cut", "bytes"]))
    if mutation == "drop":
        body.pop(draw(st.sampled_from(sorted(body))))
        value = orjson.dumps(body)
    elif mutation == "retype":
        body[draw(st.sampled_from(sorted(body)))] = draw(
            st.one_of(
                st.none(), st.integers(-(2**63), 2**63 - 1), st.lists(st.booleans(), max_size=2)
            )
        )
        value = orjson.dumps(body)
    elif mutation == "cut":
        value = value[: draw(st.integers(0, len(value)))]
    elif mutation == "bytes":
        value = draw(st.binary(max_size=200))
    key = draw(st.sampled_from([None, b"m1", b"k" * 2000, b"\xff"]) | st.binary(max_size=40))
    return RawRecord(topic, 0, draw(st.integers(0, 10**9)), key, value)


@functools.cache
def fraud_model() -> FraudModel:
    return FraudModel.load()


def fraud_scorer(txn: dict):
    vector = txn.get("features")
    if not vector or len(vector) != len(VECTOR_NAMES):
        return None
    model = fraud_model()
    rows = model_inputs(vectors_of([vector]), np.array([txn["amount"]], dtype=np.float64))
    return float(model.predict(rows)[0]), model.explain(rows)[0], model.version


def check_pipeline(record: RawRecord, negative: float, scam: float) -> None:
    decoded = decode_and_check_dead_letter(record)
    if decoded is None:
        return
    event(f"valid {decoded.event_type}")
    scores = None
    if text_to_score(decoded) is not None:
        scores = {
            "sentiment_negative": negative,
            "sentiment_polarity": 1 - 2 * negative,
            "scam_risk": scam,
        }
    # the internal hop: what the edge writes, the member stage reads back
    evt = orjson.loads(orjson.dumps(member_event(decoded, scores, "v1" if scores else None)))
    state = None
    for _ in range(2):  # first delivery, then a redelivery
        outcome = member_step(
            state, evt, thresholds=T, profile_throttle_ms=0, fraud_scorer=fraud_scorer
        )
        state = outcome.state or state
        surge = None
        for output in outcome.outputs:
            body = orjson.loads(output.value)
            assert len(output.value) < PRODUCER_LIMIT
            if output.topic == "riskstream-subject-events":
                surge = hold_mention(surge, body, 0.0) or surge
            else:
                validate(output.topic, body)
        if surge is not None:
            _, alerts = flush_pending(surge)
            for alert in alerts:
                encode(alert, "alerts", check=True)


def decode_and_check_dead_letter(record: RawRecord) -> ValidEvent | None:
    decoded = _decode(record)
    if isinstance(decoded, InvalidEvent):
        body = dead_letter(decoded, failed_at="2026-11-30T12:00:00Z")
        event(f"dead letter: {decoded.error.reason}")
        assert len(encode(body, "dead-letter", check=True)) < PRODUCER_LIMIT
        return None
    return decoded


def _decode(record: RawRecord):
    from stream.core.steps import decode_record

    return decode_record(record, limits=LIMITS, now_ms=NOW_MS)


unit = st.floats(0, 1, allow_nan=False)


def _example(poison) -> RawRecord:
    return RawRecord(poison.topic, 0, 0, poison.key, poison.value)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(records(), unit, unit)
@example(_example(six_records()[0]), 0.9, 0.1)
@example(_example(six_records()[1]), 0.9, 0.1)
@example(_example(six_records()[2]), 0.9, 0.1)
@example(_example(six_records()[3]), 0.9, 0.1)
@example(_example(six_records()[4]), 0.9, 0.1)
@example(_example(six_records()[5]), 0.9, 0.1)
def test_every_record_is_dead_lettered_or_yields_valid_outputs(record, negative, scam) -> None:
    check_pipeline(record, negative, scam)


def test_the_six_crash_loop_records_are_dead_lettered_with_their_reason() -> None:
    for poison in six_records():
        decoded = _decode(_example(poison))
        assert isinstance(decoded, InvalidEvent), poison.name
        assert decoded.error.reason == poison.reason, (poison.name, decoded.error)
