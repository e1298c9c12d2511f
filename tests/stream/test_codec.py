from __future__ import annotations

import orjson
import pytest

from stream.codec import ValidationError, decode, encode, parse_event_time

REVIEW = {
    "event_id": "r1",
    "member_id": "m1",
    "event_time": "2026-11-23T10:00:00Z",
    "product_id": "p1",
    "text": "fine",
}


def raw(data: object) -> bytes:
    return orjson.dumps(data)


def reason_of(value: bytes | None, topic: str = "reviews", **kw: int) -> str:
    with pytest.raises(ValidationError) as info:
        decode(value, topic, **kw)
    return info.value.reason


def test_valid_review_decodes() -> None:
    assert decode(raw(REVIEW), "reviews") == REVIEW


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"event_id": "r1",', "invalid_json"),
        (b"\xff\xfe{}", "invalid_utf8"),
        (None, "invalid_json"),
        (raw({**REVIEW, "rating": "five"}), "schema_violation"),
        (raw({k: v for k, v in REVIEW.items() if k != "product_id"}), "schema_violation"),
        (raw({**REVIEW, "text": "x" * 20_001}), "schema_violation"),
        (raw({**REVIEW, "member_id": "has space"}), "schema_violation"),
        (raw({**REVIEW, "event_time": "2026-11-23T10:00:00.000"}), "invalid_event_time"),
        (raw({**REVIEW, "event_time": "the day after tomorrow"}), "invalid_event_time"),
        (raw([1, 2, 3]), "schema_violation"),
    ],
)
def test_bad_input_gets_a_reason(value: bytes | None, reason: str) -> None:
    assert reason_of(value) == reason


def test_oversized_record_is_rejected_before_parsing() -> None:
    assert reason_of(raw(REVIEW), max_bytes=50) == "oversized_event"


def test_schema_violation_names_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        decode(raw({**REVIEW, "rating": 9}), "reviews")
    assert info.value.detail.startswith("rating:")


def test_transaction_rules() -> None:
    tx = {
        "event_id": "t1",
        "member_id": "m1",
        "event_time": "2026-11-23T10:00:00+02:00",
        "amount": 10.5,
        "currency": "EUR",
        "merchant_id": "x",
        "channel": "web",
        "device_id": "d",
        "country": "DE",
    }
    assert decode(raw(tx), "transactions") == tx
    assert reason_of(raw({**tx, "amount": -1}), "transactions") == "schema_violation"
    assert reason_of(raw({**tx, "currency": "euro"}), "transactions") == "schema_violation"
    assert reason_of(raw({**tx, "channel": "fax"}), "transactions") == "schema_violation"


def test_event_time_parses_offsets() -> None:
    assert parse_event_time("2026-11-23T10:00:00Z") == parse_event_time("2026-11-23T12:00:00+02:00")


def test_encode_checks_outputs_when_asked() -> None:
    with pytest.raises(ValidationError):
        encode({"member_id": "m1"}, "member-profiles", check=True)
