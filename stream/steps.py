"""The processing chain as small pure steps: decode -> (score) -> build outputs.

Each function does one job over plain data and imports nothing from Kafka or Faust, so the
chain is unit-tested directly; ``stream/agents.py`` wires the steps to topics.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from stream.codec import ValidationError, decode, parse_event_time
from stream.pii import TEXT_FIELDS, mask_pii, mask_pii_bytes

EventType = Literal["review", "chat", "transaction"]

#: Logical (un-prefixed) input topic -> the event type it carries.
EVENT_TYPE_OF_TOPIC: dict[str, EventType] = {
    "reviews": "review",
    "chats": "chat",
    "transactions": "transaction",
}

#: Which fields of each event type say what the event is about.
SUBJECT_FIELDS: dict[EventType, tuple[str, ...]] = {
    "review": ("product_id", "brand"),
    "chat": ("conversation_id", "sender_role", "product_id", "brand"),
    "transaction": ("merchant_id",),
}


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A consumed Kafka record as plain data: where it came from and its original bytes."""

    topic: str  # logical topic name, without the deployment prefix
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None

    def source(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(frozen=True, slots=True)
class ValidEvent:
    """A decoded, schema-valid input event."""

    record: RawRecord
    event_type: EventType
    data: dict[str, Any]
    event_time_ms: int

    @property
    def member_id(self) -> str:
        return self.data["member_id"]


@dataclass(frozen=True, slots=True)
class InvalidEvent:
    """An input that failed decoding or validation; becomes a dead letter."""

    record: RawRecord
    error: ValidationError


def decode_record(record: RawRecord, *, max_bytes: int) -> ValidEvent | InvalidEvent:
    """Step 1: bytes -> ``ValidEvent`` with PII masked, or ``InvalidEvent`` carrying the reason."""
    try:
        data = decode(record.value, record.topic, max_bytes=max_bytes)
        event_time_ms = parse_event_time(data["event_time"])
    except ValidationError as error:
        return InvalidEvent(record, error)
    event_type = EVENT_TYPE_OF_TOPIC[record.topic]
    return ValidEvent(record, event_type, mask_text_fields(event_type, data), event_time_ms)


def mask_text_fields(event_type: EventType, data: dict[str, Any]) -> dict[str, Any]:
    """Free text with card numbers, e-mails and phone numbers masked (see ``stream/pii.py``)."""
    masked = {f: mask_pii(data[f]) for f in TEXT_FIELDS[event_type] if isinstance(data.get(f), str)}
    return {**data, **masked}


def text_to_score(event: ValidEvent) -> str | None:
    """The text the model must score, or None for events without text (transactions)."""
    if event.event_type in ("review", "chat"):
        return event.data["text"]
    return None


def rfc3339_from_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def utc_now() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dead_letter(invalid: InvalidEvent, *, failed_at: str) -> dict[str, Any]:
    """Dead-letter record: reason, detail, source position and the original bytes (base64),
    with card numbers, e-mails and phone numbers masked in both."""
    record = invalid.record

    def b64(raw: bytes | None) -> str | None:
        return None if raw is None else base64.b64encode(mask_pii_bytes(raw)).decode("ascii")

    return {
        "reason": invalid.error.reason,
        "detail": mask_pii(invalid.error.detail[:2000]),
        "source": record.source(),
        "original_key_b64": b64(record.key),
        "original_value_b64": b64(record.value),
        "original_timestamp_ms": record.timestamp_ms,
        "failed_at": failed_at,
    }


def dead_letter_key(record: RawRecord) -> bytes:
    """Deterministic key: a redelivered bad record overwrites rather than duplicates."""
    return f"{record.topic}:{record.partition}:{record.offset}".encode()


def member_event(
    event: ValidEvent, scores: Mapping[str, float] | None, model_version: str | None
) -> dict[str, Any]:
    """Step 3: a valid event plus its text scores, bound for the member-partitioned stage."""
    return {
        "event_type": event.event_type,
        "event": event.data,
        "event_time_ms": event.event_time_ms,
        "scores": dict(scores) if scores is not None else {},
        "model_version": model_version,
        "source": event.record.source(),
    }


def subject_of(event_type: EventType, data: Mapping[str, Any]) -> dict[str, str]:
    return {f: str(data[f]) for f in SUBJECT_FIELDS[event_type] if f in data}


def scored_event(member_evt: Mapping[str, Any]) -> dict[str, Any]:
    """The public scored-event record (no raw text: consumers join on event_id if they need it).
    Transactions also carry their fraud assessment (score, reasons, rules fired)."""
    data = member_evt["event"]
    extra = {"fraud": member_evt["fraud"]} if member_evt.get("fraud") else {}
    return {
        **extra,
        "event_id": data["event_id"],
        "member_id": data["member_id"],
        "event_time": data["event_time"],
        "event_type": member_evt["event_type"],
        "subject": subject_of(member_evt["event_type"], data),
        "scores": member_evt["scores"],
        "model_version": member_evt["model_version"],
        "source": member_evt["source"],
    }
