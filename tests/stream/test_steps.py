from __future__ import annotations

import base64

import orjson

from stream.core.codec import validate
from stream.core.steps import (
    EdgeLimits,
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
    event = decode_record(record(orjson.dumps(CHAT)), limits=EdgeLimits(max_event_bytes=10_000))
    assert isinstance(event, ValidEvent)
    assert event.event_type == "chat"
    assert event.member_id == "m1"
    assert text_to_score(event) == "hello"
    assert event.event_time_ms == 1_795_428_000_000


def test_invalid_record_keeps_original_bytes_in_dead_letter() -> None:
    original = b"\x00not json\xff"
    invalid = decode_record(record(original), limits=EdgeLimits(max_event_bytes=10_000))
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
    event = decode_record(
        record(orjson.dumps(tx), topic="transactions"), limits=EdgeLimits(max_event_bytes=10_000)
    )
    assert isinstance(event, ValidEvent)
    assert text_to_score(event) is None


def test_scored_event_is_schema_valid_and_carries_model_version() -> None:
    event = decode_record(record(orjson.dumps(CHAT)), limits=EdgeLimits(max_event_bytes=10_000))
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


def test_oversized_originals_keep_a_prefix_their_size_and_hash() -> None:
    """An 800 kB value gave a 1.07 MB dead letter that the producer refused (a crash loop)."""
    import hashlib

    original = b"\x01" * 800_000
    invalid = decode_record(record(original), limits=EdgeLimits(max_event_bytes=65536))
    body = dead_letter(invalid, failed_at="2026-11-23T10:00:01Z", max_original_bytes=4096)
    validate("dead-letter", body)
    assert body["reason"] == "oversized_event"
    assert base64.b64decode(body["original_value_b64"]) == original[:4096]
    assert body["original_value_truncated"] == {
        "bytes": 800_000,
        "sha256": hashlib.sha256(original).hexdigest(),
    }
    assert "original_key_truncated" not in body


def test_oversized_key_is_dead_lettered() -> None:
    long_key = RawRecord("chats", 0, 1, b"k" * 2000, orjson.dumps(CHAT))
    invalid = decode_record(long_key, limits=EdgeLimits(max_key_bytes=1024))
    assert isinstance(invalid, InvalidEvent) and invalid.error.reason == "oversized_key"


def test_only_schema_fields_pass_the_edge() -> None:
    """Unknown extras and backtest labels are not carried to internal topics."""
    event = decode_record(
        record(orjson.dumps({**CHAT, "extra": {"a": [1]}, "label": {"scam": True}}))
    )
    assert isinstance(event, ValidEvent)
    assert "extra" not in event.data and "label" not in event.data


def test_far_future_event_time_is_dead_lettered() -> None:
    now = 1_795_428_000_000  # CHAT's own event time
    ahead = decode_record(
        record(orjson.dumps({**CHAT, "event_time": "2026-11-23T12:00:01Z"})), now_ms=now
    )
    assert isinstance(ahead, InvalidEvent) and ahead.error.reason == "invalid_event_time"
    assert isinstance(decode_record(record(orjson.dumps(CHAT)), now_ms=now), ValidEvent)


def test_processing_error_dead_letter_names_stage_and_exception() -> None:
    from stream.core.steps import processing_error

    letter = dead_letter(
        processing_error(record(b"{}"), "member", KeyError("member_id")),
        failed_at="2026-11-23T10:00:01Z",
    )
    validate("dead-letter", letter)
    assert letter["reason"] == "processing_error" and letter["stage"] == "member"
    assert letter["detail"] == "member: KeyError: 'member_id'"


def test_a_sealed_dead_letter_keeps_no_readable_original() -> None:
    from stream.core.sealing import SealingKey, keyring, open_original

    key = SealingKey(b"k" * 32)
    invalid = decode_record(record(b"{not json"))
    body = dead_letter(invalid, failed_at="2026-11-23T10:00:01Z", sealing_key=key)
    validate("dead-letter", body)
    assert body["original_key_b64"] is None and body["original_value_b64"] is None
    assert body["source"] == {"topic": "chats", "partition": 2, "offset": 5}
    assert body["original_timestamp_ms"] == 1_700_000_000_000
    assert b"not json" not in orjson.dumps(body)
    opened = open_original(body, keyring([key]))
    assert (opened.key, opened.value) == (b"m1", b"{not json")
