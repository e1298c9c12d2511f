"""Operator labels and the labelled set, as pure functions over plain records.

Analysts' decisions arrive on the ``labels`` topic (``schemas/labels.v1.schema.json``), keyed
``<event_id>|<head>`` on a compacted topic: re-labelling an event replaces the earlier label,
and :func:`latest_labels` applies the same rule to a stream read before compaction ran (the
later ``labelled_at`` wins; on a tie, the later record). :func:`labelled_rows` joins the labels
with what the worker scored: the text as served (PII masked, exactly what the model read), the
event type, its language route, the scores and the build that made them. Nothing here reads
Kafka or writes files (``stream/ops/labels.py`` does).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from models.serving.router import text_route
from stream.core.codec import ValidationError, decode, parse_event_time
from stream.core.pii import mask_pii
from stream.core.policy import apply_policy

Head = Literal["sentiment", "scam", "fraud", "surge"]

#: Each head's closed vocabulary; the first value is the positive class of its binary target.
HEAD_VALUES: dict[str, tuple[str, ...]] = {
    "sentiment": ("negative", "neutral", "positive"),
    "scam": ("scam", "not_scam"),
    "fraud": ("fraud", "not_fraud"),
    "surge": ("true_alarm", "false_alarm"),
}
#: Which scored events a head's label can be joined with (surge labels name an alert).
EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "sentiment": ("review", "chat"),
    "scam": ("chat", "review"),
    "fraud": ("transaction",),
    "surge": (),
}
#: The served score each head's label judges (``scored-events`` ``scores``).
SCORE_OF_HEAD: dict[str, str] = {
    "sentiment": "sentiment_negative",
    "scam": "scam_risk",
    "fraud": "fraud_risk",
}
#: Columns of a labelled set, in file order.
COLUMNS: tuple[str, ...] = (
    "event_id",
    "head",
    "value",
    "target",
    "event_type",
    "language",
    "text",
    "score",
    "sentiment_negative",
    "scam_risk",
    "fraud_risk",
    "model_version",
    "labeller",
    "labelled_at",
)


@dataclass(frozen=True, slots=True)
class Label:
    event_id: str
    head: str
    value: str
    labeller: str
    labelled_at: str
    labelled_at_ms: int
    note: str | None = None

    @property
    def key(self) -> bytes:
        return label_key(self.event_id, self.head)

    def as_json(self) -> dict[str, Any]:
        body = {
            "event_id": self.event_id,
            "head": self.head,
            "value": self.value,
            "labeller": self.labeller,
            "labelled_at": self.labelled_at,
        }
        return body if self.note is None else {**body, "note": self.note}


def label_key(event_id: str, head: str) -> bytes:
    """The record key: one compacted slot per (event, head)."""
    return f"{event_id}|{head}".encode()


def decode_label(key: bytes | None, value: bytes | None) -> Label:
    """A ``labels`` record -> :class:`Label`, or ``ValidationError`` with the dead-letter reason:
    bad bytes or JSON, a schema violation (unknown head or value, an e-mail or any other PII in
    the labeller or event id), a
    value from another head's vocabulary, a bad ``labelled_at``, or a key that is not
    ``<event_id>|<head>`` (compaction would keep the wrong label)."""
    data = decode(value, "labels", max_bytes=4096)
    # the field policy without a key: labels are read, never republished, so an id that
    # carries PII (a phone number as labeller) is refused rather than pseudonymised
    apply_policy("labels", data, None, "reject")
    head, label_value = data["head"], data["value"]
    if label_value not in HEAD_VALUES[head]:
        raise ValidationError(
            "schema_violation",
            f"value: {label_value!r} is not a {head} label ({', '.join(HEAD_VALUES[head])})",
        )
    try:
        labelled_at_ms = parse_event_time(data["labelled_at"])
    except ValidationError as exc:
        raise ValidationError("invalid_event_time", f"labelled_at: {exc.detail}") from None
    expected = label_key(data["event_id"], head)
    if key != expected:
        shown = key.decode("utf-8", "replace")[:80] if key is not None else None
        raise ValidationError(
            "schema_violation", f"key {shown!r} must be {expected.decode()!r} (event_id|head)"
        )
    note = data.get("note")
    return Label(
        data["event_id"],
        head,
        label_value,
        data["labeller"],
        data["labelled_at"],
        labelled_at_ms,
        mask_pii(note) if note else None,
    )


def encode_label(label: Label) -> tuple[bytes, bytes]:
    """(key, value) to produce."""
    return label.key, orjson.dumps({**label.as_json(), "schema_version": 1})


def latest_labels(labels: Iterable[Label]) -> dict[tuple[str, str], Label]:
    """One label per (event, head): the latest ``labelled_at``; on a tie, the later record
    (``labels`` in topic order), as compaction keeps the last record of a key."""
    kept: dict[tuple[str, str], Label] = {}
    for label in labels:
        slot = (label.event_id, label.head)
        old = kept.get(slot)
        if old is None or label.labelled_at_ms >= old.labelled_at_ms:
            kept[slot] = label
    return kept


def target(label: Label) -> int:
    """The binary target of a label: 1 for the head's alerting class (negative, scam, fraud,
    true alarm); neutral counts as not negative, as the ``negative_review`` alert counts it."""
    return int(label.value == HEAD_VALUES[label.head][0])


def language_of(text: str | None) -> str | None:
    """``zh`` where the router sends the text to the multilingual build, else ``en``."""
    if text is None:
        return None
    return "zh" if text_route(text) == "multilingual" else "en"


@dataclass(frozen=True, slots=True)
class ScoredEvent:
    """What the worker served for one event: its masked text (None for transactions), scores
    and the build that made them."""

    event_id: str
    event_type: str
    text: str | None
    scores: Mapping[str, float]
    model_version: str | None


@dataclass(frozen=True, slots=True)
class JoinResult:
    rows: list[dict[str, Any]]
    #: Labels left out, by why: no scored event with that id, a head that does not fit the
    #: event's type (a scam label on a transaction), or a surge alert's label.
    unmatched: dict[str, int]


def labelled_rows(
    labels: Mapping[tuple[str, str], Label], scored: Mapping[str, ScoredEvent]
) -> JoinResult:
    """Join each latest label with its scored event; rows sorted by (event_id, head), so the
    same inputs give the same rows."""
    rows, unmatched = [], {"no_scored_event": 0, "head_does_not_fit": 0, "surge_alert": 0}
    for (event_id, head), label in sorted(labels.items()):
        if head == "surge":  # an alert's label: kept on the topic, no text to fit heads on
            unmatched["surge_alert"] += 1
            continue
        event = scored.get(event_id)
        if event is None:
            unmatched["no_scored_event"] += 1
            continue
        if event.event_type not in EVENT_TYPES[head]:
            unmatched["head_does_not_fit"] += 1
            continue
        scores = event.scores
        rows.append(
            {
                "event_id": event_id,
                "head": head,
                "value": label.value,
                "target": target(label),
                "event_type": event.event_type,
                "language": language_of(event.text),
                "text": event.text,
                "score": scores.get(SCORE_OF_HEAD.get(head, ""), None),
                "sentiment_negative": scores.get("sentiment_negative"),
                "scam_risk": scores.get("scam_risk"),
                "fraud_risk": scores.get("fraud_risk"),
                "model_version": event.model_version,
                "labeller": label.labeller,
                "labelled_at": label.labelled_at,
            }
        )
    return JoinResult(rows, unmatched)


def rows_digest(rows: Iterable[Mapping[str, Any]]) -> str:
    """sha256 of the rows' canonical JSON: a labelled set's name, whatever writes the file."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(orjson.dumps([row.get(c) for c in COLUMNS]) + b"\n")
    return digest.hexdigest()
