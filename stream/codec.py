"""JSON codec for every topic, validated against the JSON Schemas in ``schemas/`` (Draft 2020-12).

One codec shape and one error type: ``decode``/``encode``/``validate`` raise
:class:`ValidationError`, whose ``reason`` is what the dead-letter record carries.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import jsonschema
import orjson

#: Why an input record went to the dead-letter topic (the enum in dead-letter.v1).
DeadLetterReason = Literal[
    "oversized_event", "invalid_utf8", "invalid_json", "schema_violation", "invalid_event_time"
]

#: Topics with a schema (un-prefixed names).
TOPICS = (
    "reviews",
    "chats",
    "transactions",
    "scored-events",
    "alerts",
    "member-profiles",
    "dead-letter",
)


class ValidationError(ValueError):
    """An input that cannot be processed; routed to the dead-letter topic, never retried."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: DeadLetterReason = reason
        self.detail = detail


def schema_dir() -> Path:
    """``schemas/`` of a source checkout, or the copy packed into the wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "schemas", here / "_schemas"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("schemas/ directory not found next to the stream package")


@functools.cache
def load_schema(topic: str) -> dict[str, Any]:
    return orjson.loads((schema_dir() / f"{topic}.v1.schema.json").read_bytes())


@functools.cache
def _validator(topic: str) -> jsonschema.protocols.Validator:
    schema = load_schema(topic)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate(topic: str, data: Any) -> None:
    """Raise ``ValidationError`` naming the first offending field, if ``data`` breaks the schema."""
    error = jsonschema.exceptions.best_match(_validator(topic).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        raise ValidationError("schema_violation", f"{where}: {error.message}"[:2000])


def parse_event_time(value: str) -> int:
    """RFC 3339 timestamp -> epoch milliseconds; an offset is required (no naive times)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValidationError("invalid_event_time", f"event_time {value!r}: {exc}") from None
    if moment.tzinfo is None:
        raise ValidationError("invalid_event_time", f"event_time {value!r} has no UTC offset")
    return int(moment.timestamp() * 1000)


def decode(raw: bytes | None, topic: str, *, max_bytes: int = 65536, check: bool = True) -> dict:
    """Bytes from Kafka -> a validated event dict. Every failure is a ``ValidationError``."""
    if raw is None:
        raise ValidationError("invalid_json", "record has no value (tombstone)")
    if len(raw) > max_bytes:
        raise ValidationError("oversized_event", f"{len(raw)} bytes > limit {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError("invalid_utf8", str(exc)) from None
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValidationError("invalid_json", str(exc)[:2000]) from None
    if check:
        validate(topic, data)
        if "event_time" in data:
            parse_event_time(data["event_time"])
    return data


def encode(data: Mapping[str, Any], topic: str, *, check: bool = False) -> bytes:
    """Event dict -> JSON bytes; ``check=True`` validates outputs too (tests, examples)."""
    if check:
        validate(topic, data)
    return orjson.dumps(data)
