"""The field policy: what the edge does with every field of every input, before anything leaves.

Each string field of each input schema has exactly one class (:data:`FIELD_POLICY`; a test
fails when a schema field has none, and the README's table is generated from it):

- ``identifier``: names a person or their device (``member_id``, ``device_id``). Always
  replaced by a keyed pseudonym (:class:`Pseudonymiser`: HMAC-SHA256 under the key in
  ``RISKSTREAM_PSEUDONYM_KEY_FILE``), so the same member keeps one stable id in every topic,
  table and alert, and nobody without the key can link it back. Without a key (``none``) a
  clean id passes and one that carries PII dead-letters the event.
- ``reference``: names a thing (an event, product, merchant, conversation). Passed as sent, so
  analysts keep the ids they need, unless the masker finds PII in it (an e-mail as a merchant
  id, a phone number as an event id): then pseudonymised the same way, or the event refused
  (``RISKSTREAM_PII_IN_IDS=reject``).
- ``text``: free text; PII masked (``stream.core.pii.mask_pii``).
- ``vocabulary``: a closed set (enum, ISO code); anything else fails validation and the event
  is dead-lettered (sealed or masked, never republished).
- ``time``: RFC 3339 in ASCII, parsed once at the edge.
- ``number``: not a string; validated by range.
- ``dropped``: never carried past the edge (``label``; unknown extra fields likewise).

Pure: the key is handed in; reading it and creating a default one is the shell's job.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Literal

from stream.core.codec import ValidationError
from stream.core.pii import pii_in_id

FieldClass = Literal["identifier", "reference", "text", "vocabulary", "time", "number", "dropped"]
PiiInIds = Literal["pseudonymise", "reject"]
PII_IN_IDS: tuple[PiiInIds, ...] = ("pseudonymise", "reject")

#: What each class means at the edge: the README table's last column.
TREATMENT: dict[FieldClass, str] = {
    "identifier": "always pseudonymised (keyed HMAC)",
    "reference": "kept; pseudonymised if the masker finds PII in it",
    "text": "PII masked",
    "vocabulary": "validated; anything else is dead-lettered",
    "time": "ASCII RFC 3339, parsed once",
    "number": "validated range",
    "dropped": "not carried past the edge",
}

_COMMON: dict[str, FieldClass] = {
    "event_id": "reference",
    "member_id": "identifier",
    "event_time": "time",
    "schema_version": "vocabulary",
}

#: Input topic -> field -> class. Every property of ``schemas/<topic>.v1.schema.json`` is here
#: (``tests/stream/test_field_policy.py``); fields not in a schema are dropped at the edge.
FIELD_POLICY: dict[str, dict[str, FieldClass]] = {
    "reviews": {
        **_COMMON,
        "product_id": "reference",
        "brand": "text",
        "rating": "number",
        "text": "text",
        "label": "dropped",
    },
    "chats": {
        **_COMMON,
        "conversation_id": "reference",
        "sender_role": "vocabulary",
        "product_id": "reference",
        "brand": "text",
        "text": "text",
        "label": "dropped",
    },
    "transactions": {
        **_COMMON,
        "amount": "number",
        "currency": "vocabulary",
        "merchant_id": "reference",
        "channel": "vocabulary",
        "device_id": "identifier",
        "country": "vocabulary",
        "features": "number",
        "label": "dropped",
    },
    # The worker only checks labels (it republishes none); `labels build-set` reads them.
    "labels": {
        "event_id": "reference",
        "head": "vocabulary",
        "value": "vocabulary",
        "labeller": "reference",
        "labelled_at": "time",
        "note": "text",
        "schema_version": "vocabulary",
    },
}

#: What marks a pseudonym: ``p1-`` and 26 base32 letters and digits (130 bits of HMAC).
PSEUDONYM_PREFIX = "p1-"
_CONTEXT = b"riskstream pseudonym v1\x00"


def fields_of(topic: str, kind: FieldClass) -> tuple[str, ...]:
    return tuple(name for name, cls in FIELD_POLICY[topic].items() if cls == kind)


class Pseudonymiser:
    """Keyed, deterministic pseudonyms: the same (field, value) gives the same pseudonym under
    one key, so partitioning, joins, de-duplication and member state work on pseudonyms;
    without the key they cannot be linked back (unlike a bare hash, which anyone can compute
    over candidate phone numbers). The field name is part of the message, so a member id and a
    device id with the same value do not link. Members and devices recur, so the last 65,536
    pseudonyms are kept (halves the edge's cost of pseudonymising)."""

    def __init__(self, secret: bytes, key_id: str = "") -> None:
        self.key_id = key_id
        keyed = hmac.new(secret, _CONTEXT, hashlib.sha256)  # the key schedule, done once

        @functools.lru_cache(maxsize=65536)
        def pseudonym(field: str, value: str) -> str:
            mac = keyed.copy()
            mac.update(field.encode() + b"\x00" + value.encode())
            digest = mac.digest()[:16]
            return PSEUDONYM_PREFIX + base64.b32encode(digest).decode("ascii").rstrip("=").lower()

        self.pseudonym = pseudonym

    def __repr__(self) -> str:  # never the secret
        return f"Pseudonymiser(key_id={self.key_id!r})"


def apply_policy(
    topic: str,
    data: Mapping[str, Any],
    pseudonymiser: Pseudonymiser | None,
    pii_in_ids: PiiInIds = "pseudonymise",
) -> dict[str, Any]:
    """Identifiers and references of a decoded, validated event as the policy says (text fields
    are masked by the caller, which must stay total). Raises ``ValidationError``
    (``schema_violation``, naming the field and the kind of PII, never the value) for an id that
    carries PII where the policy refuses it."""
    if pii_in_ids not in PII_IN_IDS:  # configuration, not a bad record
        raise ValueError(f"pii_in_ids must be one of {PII_IN_IDS}, not {pii_in_ids!r}")
    out = dict(data)
    for field, cls in FIELD_POLICY[topic].items():
        value = out.get(field)
        if not isinstance(value, str) or cls not in ("identifier", "reference"):
            continue
        if cls == "identifier" and pseudonymiser is not None:
            out[field] = pseudonymiser.pseudonym(field, value)
            continue
        found = pii_in_id(value)
        if found is None:
            continue
        if pseudonymiser is None or pii_in_ids == "reject":
            why = "no pseudonymisation key" if pseudonymiser is None else "policy reject"
            raise ValidationError(
                "schema_violation", f"{field}: an id that carries PII ({found}) is refused ({why})"
            )
        out[field] = pseudonymiser.pseudonym(field, value)
    return out


def policy_markdown() -> str:
    """The README's field-policy table."""
    lines = ["| topic | field | class | at the edge |", "|---|---|---|---|"]
    for topic, fields in FIELD_POLICY.items():
        for field, cls in fields.items():
            treatment = TREATMENT[cls]
            if topic == "labels" and cls == "reference":  # read, never republished
                treatment = "kept; the label is refused if the masker finds PII in it"
            lines.append(f"| `{topic}` | `{field}` | {cls} | {treatment} |")
    lines.append("| every input | any other field | dropped | " + TREATMENT["dropped"] + " |")
    return "\n".join(lines)
