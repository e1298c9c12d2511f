from __future__ import annotations

import orjson
import pytest

from stream.core.codec import ValidationError, decode, encode, parse_event_time

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
    lower = parse_event_time("2026-11-23t10:00:00.5z")
    assert lower == parse_event_time("2026-11-23T10:00:00.500Z")
    assert parse_event_time("1970-01-01T00:00:00.123456789Z") == 123


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-23T10:00:00.000",  # no offset
        "the day after tomorrow",
        "2026-11-23T10:00:00Z\x00garbage",  # trailing bytes
        "2026-11-23T10:00:00+0100",  # offset without a colon
        "2026-W48-1T10:00:00Z",  # ISO week date
        "2026-11-23 10:00:00Z",  # space instead of T
        "2026-02-30T10:00:00Z",  # no such day
        "2026-11-23T24:00:00Z",
        "2026-11-23T10:00:00+24:00",
        "0001-01-01T00:00:00+00:01",  # year 0 once in UTC: crashed the member stage before
        "9999-12-31T23:59:59-00:01",  # year 10000 in UTC: crashed fraud scoring before
        "1969-12-31T23:59:59Z",
        17,
    ],
)
def test_event_time_must_be_strict_rfc3339_in_range(value) -> None:
    with pytest.raises(ValidationError) as info:
        parse_event_time(value)
    assert info.value.reason == "invalid_event_time"


def test_event_time_window_around_the_wall_clock() -> None:
    from stream.core.codec import check_event_time_window

    now = parse_event_time("2026-11-30T12:00:00Z")
    check_event_time_window(now + 3_599_000, now, max_future_ms=3_600_000, max_past_ms=None)
    check_event_time_window(0, now, max_future_ms=3_600_000, max_past_ms=None)
    with pytest.raises(ValidationError, match="ahead of the wall clock"):
        check_event_time_window(now + 3_601_000, now, max_future_ms=3_600_000, max_past_ms=None)
    with pytest.raises(ValidationError, match="behind the wall clock"):
        check_event_time_window(now - 86_401_000, now, max_future_ms=None, max_past_ms=86_400_000)


def test_deep_nesting_is_refused_before_it_reaches_an_encoder() -> None:
    """orjson reads 1,024 levels but writes 254: a valid review with one extra field nested
    300 deep crashed the publisher in a loop before."""
    deep = raw(REVIEW)[:-1] + b',"extra":' + b"[" * 300 + b'"x"' + b"]" * 300 + b"}"
    assert reason_of(deep) == "nesting_too_deep"
    assert decode(raw({**REVIEW, "extra": [[[1]]]}), "reviews")["extra"] == [[[1]]]


def test_encode_checks_outputs_when_asked() -> None:
    with pytest.raises(ValidationError):
        encode({"member_id": "m1"}, "member-profiles", check=True)
