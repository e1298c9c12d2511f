"""Typed records for the input topics and the two internal topics (``msgspec.Struct``).

The JSON Schemas in ``schemas/`` stay the published contract; these Structs say the same thing
in code, and ``tests/schemas/test_schemas_match_types.py`` fails when the two differ (a field,
its required-ness, type, bounds, pattern or enum). The edge decodes and validates an input in
one ``msgspec`` pass (:func:`decode_input`) instead of ``orjson`` plus a JSON Schema walk
(7.6 % of the worker's time in the profile, ~50 µs per event).

Reasons stay exactly as before: anything the typed decoder refuses is decoded again by
:func:`stream.core.codec.decode`, whose ``jsonschema`` ``best_match`` words the dead-letter reason
(only on that rare path), and whose verdict wins. That also keeps the few values JSON Schema
accepts and ``msgspec`` does not (``"rating": 5.0`` is an ``integer`` in JSON Schema) valid.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from stream.core.codec import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS, decode

#: Opaque ids: event, member, product, conversation, merchant, device.
ID_PATTERN = "^[A-Za-z0-9._:@-]+$"
Id = Annotated[str, Meta(min_length=1, max_length=128, pattern=ID_PATTERN)]
#: RFC 3339 with a UTC offset; the exact grammar and range are checked by
#: ``stream.core.codec.parse_event_time`` (once, at the edge), not by the schema.
EventTime = Annotated[str, Meta(min_length=20, max_length=40)]
#: ``event_time`` in epoch milliseconds (UTC), as the edge parsed it.
EventTimeMs = Annotated[int, Meta(ge=MIN_EVENT_TIME_MS, le=MAX_EVENT_TIME_MS)]
Brand = Annotated[str, Meta(min_length=1, max_length=128)]
Rating = Annotated[int, Meta(ge=1, le=5)]
#: A free-text field after PII masking: a placeholder (``[email]``) may be longer than what it
#: replaced, so the input's upper bound no longer holds.
Masked = Annotated[str, Meta(min_length=1)]
SenderRole = Literal["member", "merchant", "support", "bot"]
Channel = Literal["web", "app", "pos", "phone"]
Amount = Annotated[float, Meta(ge=0, le=1e9)]
Currency = Annotated[str, Meta(pattern="^[A-Z]{3}$")]
Country = Annotated[str, Meta(pattern="^[A-Z]{2}$")]
Features = Annotated[list[float], Meta(max_length=64)]
NonNegative = Annotated[int, Meta(ge=0)]


class _Event(Struct, kw_only=True):
    """Fields every input event has (kw_only: required fields may follow optional ones, so the
    field order is the schema's)."""

    event_id: Id
    member_id: Id
    event_time: EventTime
    schema_version: Literal[1] | UnsetType = UNSET


# --------------------------------------------------------------------------- input topics


class ReviewLabel(Struct):
    """Backtest ground truth of a review; the worker ignores it."""

    negative: bool | UnsetType = UNSET
    surge: str | UnsetType = UNSET


class ChatLabel(Struct):
    """Backtest ground truth of a chat message; the worker ignores it."""

    scam: bool | UnsetType = UNSET
    negative: bool | UnsetType = UNSET
    surge: str | UnsetType = UNSET


class Review(_Event, kw_only=True):
    """``reviews``: a product review written by a member."""

    product_id: Id
    brand: Brand | UnsetType = UNSET
    rating: Rating | UnsetType = UNSET
    text: Annotated[str, Meta(min_length=1, max_length=20_000)]
    label: ReviewLabel | UnsetType = UNSET


class Chat(_Event, kw_only=True):
    """``chats``: one message in a conversation."""

    conversation_id: Id
    sender_role: SenderRole
    product_id: Id | UnsetType = UNSET
    brand: Brand | UnsetType = UNSET
    text: Annotated[str, Meta(min_length=1, max_length=4000)]
    label: ChatLabel | UnsetType = UNSET


class Transaction(_Event, kw_only=True):
    """``transactions``: a payment attempt. ``amount`` and ``features`` decode as floats."""

    amount: Amount
    currency: Currency
    merchant_id: Id
    channel: Channel
    device_id: Id
    country: Country
    features: Features | UnsetType = UNSET
    label: Literal[0, 1] | UnsetType = UNSET


InputEvent = Review | Chat | Transaction

#: Logical input topic -> its record type.
INPUT_EVENTS: dict[str, type[InputEvent]] = {
    "reviews": Review,
    "chats": Chat,
    "transactions": Transaction,
}


# --------------------------------------------------------------------------- internal topics


class EdgeReview(_Event, kw_only=True):
    """A review as it left the edge: no label, ``brand`` and ``text`` masked."""

    product_id: Id
    brand: Masked | UnsetType = UNSET
    rating: Rating | UnsetType = UNSET
    text: Masked


class EdgeChat(_Event, kw_only=True):
    """A chat message as it left the edge: no label, ``brand`` and ``text`` masked."""

    conversation_id: Id
    sender_role: SenderRole
    product_id: Id | UnsetType = UNSET
    brand: Masked | UnsetType = UNSET
    text: Masked


class EdgeTransaction(_Event, kw_only=True):
    """A transaction as it left the edge: no label (it has no free text)."""

    amount: Amount
    currency: Currency
    merchant_id: Id
    channel: Channel
    device_id: Id
    country: Country
    features: Features | UnsetType = UNSET


class Source(Struct):
    """Where the input record was read: logical topic, partition, offset."""

    topic: str
    partition: NonNegative
    offset: NonNegative


class _MemberEvent(Struct, kw_only=True, tag_field="event_type"):
    """``riskstream-member-events`` (keyed by member id): what ``stream.core.steps.member_event``
    writes; ``event_type`` says which edge event ``event`` is."""

    event_time_ms: EventTimeMs
    scores: dict[str, float]
    model_version: str | None
    source: Source
    #: The input record's timestamp, for the end-to-end latency metric.
    input_timestamp_ms: int | None


class ReviewMemberEvent(_MemberEvent, kw_only=True, tag="review"):
    event: EdgeReview


class ChatMemberEvent(_MemberEvent, kw_only=True, tag="chat"):
    event: EdgeChat


class TransactionMemberEvent(_MemberEvent, kw_only=True, tag="transaction"):
    event: EdgeTransaction


MemberEvent = ReviewMemberEvent | ChatMemberEvent | TransactionMemberEvent


class SubjectEvent(Struct, kw_only=True):
    """``riskstream-subject-events`` (keyed ``kind:id``): one product or brand mention of a
    scored text, what ``stream.core.surge.subject_events`` writes. Tick records (key ``__tick__``,
    value ``{}``) share the topic and are not mentions."""

    event_id: Id
    event_time: EventTime
    #: When the mention counts: ``event_time``, or the wall clock when the member stage ran if
    #: that was earlier (``stream.core.member.counted_time``).
    event_time_ms: EventTimeMs
    negative: bool
    model_version: str | None
    kind: Literal["product", "brand"]
    id: Masked
    #: The text's P(negative), 4 decimals: the surge detector weighs the mention by it
    #: against its subject's own scores. Absent on mentions written before (they count at
    #: ``stream.core.surge.LEGACY_SCORES``).
    p_negative: Annotated[float, Meta(ge=0, le=1)] | None = None


class SubjectMentions(Struct, kw_only=True):
    """``riskstream-subject-events``: the mentions of the subjects of one partition, packed per
    published batch (``stream.core.member.pack_mentions``); records written before hold one
    subject's, keyed ``kind:id``."""

    mentions: Annotated[list[SubjectEvent], Meta(min_length=1)]


#: Every topic with a record type -> that type (a union for member events). Each has a
#: ``schemas/<topic>.v1.schema.json`` that must say the same thing.
TOPIC_TYPES: dict[str, Any] = {
    **INPUT_EVENTS,
    "riskstream-member-events": MemberEvent,
    "riskstream-subject-events": SubjectMentions,
}


# --------------------------------------------------------------------------- the edge

_DECODERS = {topic: msgspec.json.Decoder(kind) for topic, kind in INPUT_EVENTS.items()}


def _patterned_fields(kind: type[Struct]) -> tuple[str, ...]:
    """Top-level string fields with a ``pattern`` (ids, currency, country)."""
    names = []
    for field in msgspec.inspect.type_info(kind).fields:
        options = getattr(field.type, "types", (field.type,))
        if any(getattr(option, "pattern", None) for option in options):
            names.append(field.name)
    return tuple(names)


#: msgspec checks a ``pattern`` with Python's ``re.search``, where ``$`` also matches before a
#: final newline (``"m-1\\n"`` passed ``^[A-Za-z0-9._:@-]+$``); such values are handed to the
#: JSON Schema path, which reads patterns as ECMA-262 does (``stream.core.codec.ecma_regex``).
_PATTERNED = {topic: _patterned_fields(kind) for topic, kind in INPUT_EVENTS.items()}


@functools.cache
def edge_fields(topic: str) -> frozenset[str]:
    """The top-level fields that pass the edge: the record's fields but ``label``."""
    return frozenset(INPUT_EVENTS[topic].__struct_fields__) - {"label"}


def decode_input(
    raw: bytes | None, topic: str, *, max_bytes: int = 65536, max_depth: int = 16
) -> dict[str, Any]:
    """Input bytes -> the event's fields as a dict (no ``label``, no unknown extras), in one
    typed ``msgspec`` pass. Every failure is a ``stream.core.codec.ValidationError`` with the same
    reason and detail :func:`stream.core.codec.decode` gives.

    Everything ``msgspec`` would not check the same way goes to ``decode`` first: a missing,
    oversized or deeply bracketed value (nesting is bounded there) and bad UTF-8 (``msgspec``
    skips unknown fields without checking their bytes). One known difference remains: a number
    too large for a double (``1e400``) inside an unknown field passes (the field is dropped),
    where ``orjson`` refused the whole record as ``invalid_json``."""
    if (
        raw is None
        or len(raw) > max_bytes
        or raw.count(b"{") + raw.count(b"[") > max_depth
        or not (raw.isascii() or _is_utf8(raw))
    ):
        return _decode_checked(raw, topic, max_bytes, max_depth)
    try:
        event = _DECODERS[topic].decode(raw)
    except msgspec.DecodeError:  # also msgspec.ValidationError, a subclass
        return _decode_checked(raw, topic, max_bytes, max_depth)
    for name in _PATTERNED[topic]:
        value = getattr(event, name)
        if isinstance(value, str) and value.endswith("\n"):  # see _PATTERNED
            return _decode_checked(raw, topic, max_bytes, max_depth)
    data = msgspec.to_builtins(event)
    data.pop("label", None)
    return data


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _decode_checked(
    raw: bytes | None, topic: str, max_bytes: int, max_depth: int
) -> dict[str, Any]:
    """The JSON Schema path: raises the dead-letter reason, or (rarely) accepts a value the
    typed decoder refused but the published schema allows."""
    data = decode(raw, topic, max_bytes=max_bytes, max_depth=max_depth)
    known = edge_fields(topic)
    return {k: v for k, v in data.items() if k in known}
