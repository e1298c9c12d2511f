"""JSON codec for every topic, validated against the JSON Schemas in ``schemas/`` (Draft 2020-12).

One codec shape and one error type: ``decode``/``encode``/``validate`` raise
:class:`ValidationError`, whose ``reason`` is what the dead-letter record carries.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import jsonschema
import orjson

#: Why an input record went to the dead-letter topic (the enum in dead-letter.v1).
DeadLetterReason = Literal[
    "oversized_event",
    "oversized_key",
    "invalid_utf8",
    "invalid_json",
    "schema_violation",
    "nesting_too_deep",
    "invalid_event_time",
    "processing_error",
]

#: Topics with a schema (un-prefixed names); the last two are internal.
TOPICS = (
    "reviews",
    "chats",
    "transactions",
    "scored-events",
    "alerts",
    "member-profiles",
    "dead-letter",
    "shadow-scores",
    "labels",
    "model-registry",
    "riskstream-member-events",
    "riskstream-subject-events",
)


class ValidationError(ValueError):
    """An input that cannot be processed; routed to the dead-letter topic, never retried."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: DeadLetterReason = reason
        self.detail = detail


def schema_dir() -> Path:
    """``schemas/`` of a source checkout, or the copy packed into the wheel."""
    package = Path(__file__).resolve().parents[1]  # stream/
    for candidate in (package.parent / "schemas", package / "_schemas"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("schemas/ directory not found next to the stream package")


@functools.cache
def load_schema(topic: str) -> dict[str, Any]:
    return orjson.loads((schema_dir() / f"{topic}.v1.schema.json").read_bytes())


def ecma_regex(pattern: str) -> re.Pattern[str]:
    """A JSON Schema ``pattern`` (ECMA-262) as a Python regex that means the same thing.

    In ECMA-262 ``$`` (no multiline flag) matches only at the end of the input; in Python it also
    matches before a final newline, so ``"m-1\\n"`` passed ``^[A-Za-z0-9._:@-]+$`` and was
    republished with its newline. Each ``$`` outside a character class becomes ``\\Z``, and
    ``\\d``/``\\w`` are ASCII (``re.ASCII``) as in ECMA-262, not any Unicode digit or letter."""
    out, in_class, i = [], False, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        out.append("\\Z" if char == "$" and not in_class else char)
        i += 1
    return re.compile("".join(out), re.ASCII)


_ecma_regex = functools.cache(ecma_regex)


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Any
) -> Iterator[jsonschema.ValidationError]:
    """The ``pattern`` keyword with ECMA-262 semantics (jsonschema runs Python's ``re.search``);
    the message is jsonschema's own."""
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


#: Draft 2020-12 with patterns read as the specification says (ECMA-262), see ``ecma_regex``.
SchemaValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"pattern": _pattern}
)


@functools.cache
def _validator(topic: str) -> jsonschema.protocols.Validator:
    schema = load_schema(topic)
    SchemaValidator.check_schema(schema)
    return SchemaValidator(schema)


def validate(topic: str, data: Any) -> None:
    """Raise ``ValidationError`` naming the first offending field, if ``data`` breaks the schema."""
    error = jsonschema.exceptions.best_match(_validator(topic).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        raise ValidationError("schema_violation", f"{where}: {error.message}"[:2000])


#: RFC 3339 ``date-time``: upper- or lower-case ``T``/``Z``, an offset required (no naive times),
#: hours and minutes in the offset; nothing before or after it. Digits are ASCII ``[0-9]`` only:
#: Python's ``\d`` matches any Unicode decimal digit, so Arabic-Indic digits (U+0660..U+0669) were
#: accepted, parsed by ``int`` and republished as-is in scored events and alerts.
RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
#: Event times outside 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59.999Z (UTC) are refused.
MIN_EVENT_TIME_MS = 0
MAX_EVENT_TIME_MS = 253_402_300_799_999


def parse_event_time(value: str) -> int:
    """Strict RFC 3339 timestamp -> epoch milliseconds, in UTC.

    Integer arithmetic, so times that leave the calendar once converted to UTC (year 1 with a
    positive offset, year 9999 with a negative one) are a ``ValidationError``, not a crash."""
    match = RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValidationError("invalid_event_time", f"event_time {value!r} is not RFC 3339")
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError as exc:
        raise ValidationError("invalid_event_time", f"event_time {value!r}: {exc}") from None
    millis = int((match.group(7) or "0")[:3].ljust(3, "0"))
    offset_min = 0
    if match.group(9):
        off_h, off_m = int(match.group(10)), int(match.group(11))
        if off_h > 23 or off_m > 59:
            raise ValidationError("invalid_event_time", f"event_time {value!r}: bad UTC offset")
        offset_min = (off_h * 60 + off_m) * (1 if match.group(9) == "+" else -1)
    days = date(year, month, day).toordinal() - _EPOCH_ORDINAL
    ms = (((days * 24 + hour) * 60 + minute - offset_min) * 60 + second) * 1000 + millis
    if not MIN_EVENT_TIME_MS <= ms <= MAX_EVENT_TIME_MS:
        raise ValidationError(
            "invalid_event_time", f"event_time {value!r} is outside 1970..9999 in UTC"
        )
    return ms


def check_event_time_window(
    event_ms: int, now_ms: int, *, max_future_ms: int | None, max_past_ms: int | None
) -> None:
    """Refuse an event time too far from the wall clock: one far-future event would otherwise
    move its member's and its subjects' event-time clocks for good."""
    if max_future_ms is not None and event_ms - now_ms > max_future_ms:
        raise ValidationError(
            "invalid_event_time",
            f"event time is {(event_ms - now_ms) / 1000:.0f} s ahead of the wall clock "
            f"(limit {max_future_ms / 1000:.0f} s)",
        )
    if max_past_ms is not None and now_ms - event_ms > max_past_ms:
        raise ValidationError(
            "invalid_event_time",
            f"event time is {(now_ms - event_ms) / 1000:.0f} s behind the wall clock "
            f"(limit {max_past_ms / 1000:.0f} s)",
        )


def nesting_depth(value: Any) -> int:
    """Depth of nested arrays and objects (a scalar is 0)."""
    depth, level = 0, [value]
    while level:
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            break
        depth += 1
        level = [child for c in containers for child in (c.values() if isinstance(c, dict) else c)]
    return depth


def decode(
    raw: bytes | None,
    topic: str,
    *,
    max_bytes: int = 65536,
    max_depth: int = 16,
    check: bool = True,
) -> dict:
    """Bytes from Kafka -> a validated event dict. Every failure is a ``ValidationError``.

    Depth is bounded because orjson reads 1,024 levels but writes only 254: a valid review with
    one field nested 300 levels deep crashed the publisher (a crash loop) before."""
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
    # fewer brackets than the limit cannot nest deeper than it: the walk is rarely needed
    if raw.count(b"{") + raw.count(b"[") > max_depth and nesting_depth(data) > max_depth:
        raise ValidationError("nesting_too_deep", f"nested deeper than {max_depth} levels")
    if check:
        validate(topic, data)
    return data


def encode(data: Mapping[str, Any], topic: str, *, check: bool = False) -> bytes:
    """Event dict -> JSON bytes; ``check=True`` validates outputs too (tests, examples)."""
    if check:
        validate(topic, data)
    return orjson.dumps(data)
