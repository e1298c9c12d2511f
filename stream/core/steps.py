"""The processing chain as small pure steps: decode -> (score) -> build outputs.

Each function does one job over plain data and imports nothing from Kafka or Faust, so the
chain is unit-tested directly; ``stream/worker/`` wires the steps to topics.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from stream.core.codec import ValidationError, check_event_time_window, parse_event_time
from stream.core.events import decode_input, edge_fields
from stream.core.pii import mask_detail, mask_id_bytes, mask_pii, mask_pii_bytes
from stream.core.policy import PII_IN_IDS, PiiInIds, Pseudonymiser, apply_policy, fields_of

if TYPE_CHECKING:
    from stream.core.sealing import SealingKey

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
    #: The member id as the producer sent it, encoded: what the member's partition is computed
    #: from (as the producer's partitioner did), so a pseudonymised member keeps the partition
    #: its input records sit on. In memory only, never published (``data`` has the pseudonym).
    partition_key: bytes = b""

    @property
    def member_id(self) -> str:
        return self.data["member_id"]


@dataclass(frozen=True, slots=True)
class InvalidEvent:
    """An input that failed decoding or validation, or an event that failed in a stage
    (``stage`` set); becomes a dead letter."""

    record: RawRecord
    error: ValidationError
    stage: str | None = None


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """What may pass the edge. Whatever passes must be processable end to end, so every bound
    is checked here and the rest is dead-lettered with a precise reason."""

    max_event_bytes: int = 65536
    max_key_bytes: int = 1024
    #: Event time may be at most this far ahead of the wall clock (None: no bound).
    max_future_ms: int | None = 3_600_000
    #: ... and at most this far behind it (None: no bound, so backtests of old data work).
    max_past_ms: int | None = None
    #: Original key/value bytes kept in a dead letter; above it, a prefix plus size and sha256.
    max_dead_letter_bytes: int = 65536


def known_fields(topic: str) -> frozenset[str]:
    """The top-level fields the worker reads (the input record's, ``stream/core/events.py``);
    ``label`` (backtests read it from the input) and unknown extras are not carried past the
    edge, so nothing unbounded (a value nested 300 levels deep) or unmasked travels on."""
    return edge_fields(topic)


def decode_record(
    record: RawRecord,
    *,
    limits: EdgeLimits = EdgeLimits(),
    now_ms: int | None = None,
    pseudonymiser: Pseudonymiser | None = None,
    pii_in_ids: PiiInIds = "pseudonymise",
) -> ValidEvent | InvalidEvent:
    """Step 1: bytes -> ``ValidEvent`` with the field policy applied (``stream.core.policy``:
    identifiers pseudonymised, references with PII pseudonymised or refused, free text
    masked, label and unknown fields dropped), or ``InvalidEvent`` carrying the reason.

    ``now_ms`` is the wall clock the event time is checked against (None: not checked).
    ``pseudonymiser`` None: no key, so identifiers pass as sent unless they carry PII (then the
    event is refused), as references do whatever ``pii_in_ids`` says."""
    if pii_in_ids not in PII_IN_IDS:  # configuration, not a bad record
        raise ValueError(f"pii_in_ids must be one of {PII_IN_IDS}, not {pii_in_ids!r}")
    try:
        if record.key is not None and len(record.key) > limits.max_key_bytes:
            raise ValidationError(
                "oversized_key", f"key of {len(record.key)} bytes > limit {limits.max_key_bytes}"
            )
        # typed and validated in one pass, only the known fields (see stream/core/events.py)
        data = decode_input(record.value, record.topic, max_bytes=limits.max_event_bytes)
        event_time_ms = parse_event_time(data["event_time"])  # the only parse: carried on
        if now_ms is not None:
            check_event_time_window(
                event_time_ms,
                now_ms,
                max_future_ms=limits.max_future_ms,
                max_past_ms=limits.max_past_ms,
            )
        event_type = EVENT_TYPE_OF_TOPIC[record.topic]
        partition_key = data["member_id"].encode()
        data = apply_policy(record.topic, data, pseudonymiser, pii_in_ids)
    except ValidationError as error:
        return InvalidEvent(record, error)
    try:
        masked = mask_text_fields(record.topic, data)
    except Exception as exc:  # the edge stays total: nothing unmasked passes, nothing crashes
        # Only the exception's type: its message may quote the very text it failed to mask.
        detail = f"edge: masking PII failed: {type(exc).__name__}"
        return InvalidEvent(record, ValidationError("processing_error", detail), "edge")
    return ValidEvent(record, event_type, masked, event_time_ms, partition_key)


def mask_text_fields(topic: str, data: dict[str, Any]) -> dict[str, Any]:
    """Every free-text field of the topic (the policy's ``text`` class: text, brand) with card
    numbers, e-mails, phone numbers, national ids and IBANs masked (``stream/core/pii.py``)."""
    text_fields = fields_of(topic, "text")
    masked = {f: mask_pii(data[f]) for f in text_fields if isinstance(data.get(f), str)}
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


def dead_letter(
    invalid: InvalidEvent,
    *,
    failed_at: str,
    max_original_bytes: int = 65536,
    raw_dead_letters: Literal["masked", "drop"] = "masked",
    sealing_key: SealingKey | None = None,
) -> dict[str, Any]:
    """Dead-letter record: reason, detail, source position and the original bytes (base64),
    with card numbers, e-mails and phone numbers masked in both (the bytes decoded in their
    own encoding first, see ``stream.core.pii.mask_pii_bytes``).

    Originals above ``max_original_bytes`` keep a prefix plus their size and sha256, so the
    dead letter stays under the producer's request limit and the record stays identifiable
    (an 800 kB value gave a 1.07 MB dead letter the producer refused: a crash loop).
    Bytes that decode to no text are masked aggressively (``raw_dead_letters="masked"``) or
    not kept (``"drop"``: ``original_*_b64`` is null, ``original_*_dropped`` gives size and
    sha256).

    With ``sealing_key`` (``RISKSTREAM_DEAD_LETTER_KEY_FILE``) the originals and the full
    detail are sealed instead (``stream.core.sealing``): ``original_*_b64`` are null,
    ``sealed_original`` holds them encrypted, and the readable detail drops the values it
    quotes; ``raw_dead_letters`` does not apply then."""
    record = invalid.record
    if sealing_key is not None:
        return _sealed_dead_letter(invalid, sealing_key, failed_at, max_original_bytes)
    body: dict[str, Any] = {
        "reason": invalid.error.reason,
        "detail": mask_detail(invalid.error.detail[:2000]),
        "source": record.source(),
    }
    for name, raw in (("key", record.key), ("value", record.value)):
        if raw is None:
            body[f"original_{name}_b64"] = None
            continue
        kept = raw[:max_original_bytes]
        masked = mask_pii_bytes(
            kept,
            undecodable="drop" if raw_dead_letters == "drop" else "mask_digits",
            truncated=len(kept) < len(raw),
        )
        if name == "key" and masked is not None:  # an id (the member's), not text
            masked = mask_id_bytes(masked)
        if masked is None:
            body[f"original_{name}_b64"] = None
            body[f"original_{name}_dropped"] = {
                "bytes": len(raw),
                "sha256": hashlib.sha256(raw).hexdigest(),
                "why": "not text in any encoding tried, so masking cannot be vouched for",
            }
            continue
        body[f"original_{name}_b64"] = base64.b64encode(masked).decode("ascii")
        if len(kept) < len(raw):
            body[f"original_{name}_truncated"] = {
                "bytes": len(raw),
                "sha256": hashlib.sha256(raw).hexdigest(),
            }
    body["original_timestamp_ms"] = record.timestamp_ms
    body["failed_at"] = failed_at
    if invalid.stage is not None:
        body["stage"] = invalid.stage
    return body


def _sealed_dead_letter(
    invalid: InvalidEvent, key: SealingKey, failed_at: str, max_original_bytes: int
) -> dict[str, Any]:
    """The dead letter with sealed originals: nothing readable carries an original value."""
    from stream.core.sealing import redact_detail, seal_original

    record = invalid.record
    detail = invalid.error.detail[:2000]
    body: dict[str, Any] = {
        "reason": invalid.error.reason,
        "detail": mask_pii(redact_detail(detail)),
        "source": record.source(),
        "original_key_b64": None,
        "original_value_b64": None,
    }
    for name, raw in (("key", record.key), ("value", record.value)):
        if raw is not None and len(raw) > max_original_bytes:
            body[f"original_{name}_truncated"] = {
                "bytes": len(raw),
                "sha256": hashlib.sha256(raw).hexdigest(),
            }
    body["sealed_original"] = seal_original(
        key,
        body["source"],
        original_key=record.key,
        original_value=record.value,
        detail=detail,
        max_original_bytes=max_original_bytes,
    )
    body["original_timestamp_ms"] = record.timestamp_ms
    body["failed_at"] = failed_at
    if invalid.stage is not None:
        body["stage"] = invalid.stage
    return body


def processing_error(record: RawRecord, stage: str, exc: BaseException) -> InvalidEvent:
    """An event that passed the edge but failed inside a stage: dead-lettered, not retried."""
    detail = f"{stage}: {type(exc).__name__}: {exc}"
    return InvalidEvent(record, ValidationError("processing_error", detail[:2000]), stage)


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
        # the input record's timestamp, for the end-to-end latency metric (not published)
        "input_timestamp_ms": event.record.timestamp_ms,
    }


def subject_of(event_type: EventType, data: Mapping[str, Any]) -> dict[str, str]:
    return {f: str(data[f]) for f in SUBJECT_FIELDS[event_type] if f in data}


def scored_event(member_evt: Mapping[str, Any], sentiment: str | None = None) -> dict[str, Any]:
    """The public scored-event record (no raw text: consumers join on event_id if they need it).
    Transactions also carry their fraud assessment (score, reasons, rules fired); texts their
    three-way ``sentiment`` label (``stream.core.rules.text_sentiment``), an addition to v1."""
    data = member_evt["event"]
    extra = {"fraud": member_evt["fraud"]} if member_evt.get("fraud") else {}
    if sentiment is not None:
        extra["sentiment"] = sentiment
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
