from __future__ import annotations

import base64

import orjson

from stream.codec import validate
from stream.steps import (
    InvalidEvent,
    RawRecord,
    ValidEvent,
    dead_letter,
    dead_letter_key,
    decode_record,
    member_event,
    scored_event,
    text_to_score,
)

CHAT = {
    "event_id": "c1",
    "member_id": "m1",
    "event_time": "2026-11-23T10:00:00Z",
    "conversation_id": "k1",
    "sender_role": "merchant",
    "text": "hello",
    "product_id": "p9",
}


def record(value: bytes | None, topic: str = "chats", offset: int = 5) -> RawRecord:
    return RawRecord(topic, 2, offset, b"m1", value, 1_700_000_000_000)


def test_valid_record_becomes_valid_event() -> None:
    event = decode_record(record(orjson.dumps(CHAT)), max_bytes=10_000)
    assert isinstance(event, ValidEvent)
    assert event.event_type == "chat"
    assert event.member_id == "m1"
    assert text_to_score(event) == "hello"
    assert event.event_time_ms == 1_795_428_000_000


def test_invalid_record_keeps_original_bytes_in_dead_letter() -> None:
    original = b"\x00not json\xff"
    invalid = decode_record(record(original), max_bytes=10_000)
    assert isinstance(invalid, InvalidEvent)
    body = dead_letter(invalid, failed_at="2026-11-23T10:00:01Z")
    validate("dead-letter", body)
    assert base64.b64decode(body["original_value_b64"]) == original
    assert base64.b64decode(body["original_key_b64"]) == b"m1"
    assert body["source"] == {"topic": "chats", "partition": 2, "offset": 5}
    assert body["reason"] == "invalid_utf8"
    assert dead_letter_key(invalid.record) == b"chats:2:5"


def test_transactions_have_no_text_to_score() -> None:
    tx = {
        "event_id": "t1",
        "member_id": "m1",
        "event_time": "2026-11-23T10:00:00Z",
        "amount": 1,
        "currency": "EUR",
        "merchant_id": "x",
        "channel": "web",
        "device_id": "d",
        "country": "DE",
    }
    event = decode_record(record(orjson.dumps(tx), topic="transactions"), max_bytes=10_000)
    assert isinstance(event, ValidEvent)
    assert text_to_score(event) is None


def test_scored_event_is_schema_valid_and_carries_model_version() -> None:
    event = decode_record(record(orjson.dumps(CHAT)), max_bytes=10_000)
    assert isinstance(event, ValidEvent)
    scores = {"sentiment_negative": 0.2, "sentiment_polarity": 0.6, "scam_risk": 0.97}
    out = scored_event(member_event(event, scores, "v7"))
    validate("scored-events", out)
    assert out["model_version"] == "v7"
    assert out["subject"] == {
        "conversation_id": "k1",
        "sender_role": "merchant",
        "product_id": "p9",
    }
    assert "text" not in out
