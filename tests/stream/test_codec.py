from __future__ import annotations

import orjson
import pytest

from stream.core.codec import ValidationError, decode, encode, parse_event_time
from stream.core.steps import InvalidEvent, RawRecord, decode_record

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


ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x0660 + d) for d in range(10)))


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-23T10:00:00Z".translate(ARABIC_INDIC),  # every digit
        "2026-11-23T10:00:00.\u0661\u0662\u0663Z",  # the fraction only
        "2026-11-23T10:00:00+0\u0661:00",  # the offset only
        "\uff12\uff10\uff12\uff16-11-23T10:00:00Z",  # fullwidth year
        "2026-11-23T10:00:00Z\n",
    ],
)
def test_event_time_digits_are_ascii(value: str) -> None:
    """Python's ``\\d`` matches any Unicode decimal digit, and ``int`` reads them: such times
    passed and were republished as-is."""
    with pytest.raises(ValidationError) as info:
        parse_event_time(value)
    assert info.value.reason == "invalid_event_time"
    record = RawRecord("reviews", 0, 0, b"m1", raw({**REVIEW, "event_time": value}))
    dead = decode_record(record)
    assert isinstance(dead, InvalidEvent) and dead.error.reason == "invalid_event_time"


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("^[A-Za-z0-9._:@-]+$", "m-1", True),
        ("^[A-Za-z0-9._:@-]+$", "m-1\n", False),  # Python's $ matches before a final newline
        ("^[A-Z]{3}$", "EUR\n", False),
        ("^[0-9]+$", "\u0661\u0662", False),  # ECMA-262 digits are ASCII
        ("^a[$]b$", "a$b", True),  # a $ inside a class is a character
        ("^a\\$$", "a$", True),  # so is an escaped one
    ],
)
def test_schema_patterns_are_read_as_ecma_262(pattern: str, value: str, matches: bool) -> None:
    from stream.core.codec import ecma_regex

    assert bool(ecma_regex(pattern).search(value)) is matches


@pytest.mark.parametrize("field", ["event_id", "member_id", "product_id"])
@pytest.mark.parametrize("ending", ["\n", "\r", "\r\n", "\x00"])
def test_an_id_with_a_control_character_is_a_schema_violation(field: str, ending: str) -> None:
    assert reason_of(raw({**REVIEW, field: REVIEW[field] + ending})) == "schema_violation"


def test_a_label_id_with_a_trailing_newline_is_a_schema_violation() -> None:
    label = {
        "event_id": "r1\n",
        "head": "sentiment",
        "value": "negative",
        "labeller": "analyst-1",
        "labelled_at": "2026-11-23T10:00:00Z",
    }
    assert reason_of(raw(label), "labels") == "schema_violation"
    assert reason_of(raw({**label, "event_id": "r1", "labeller": "a-1\n"}), "labels") == (
        "schema_violation"
    )
