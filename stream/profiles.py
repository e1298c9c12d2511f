"""Member state: a pure update function over plain dicts, stored in the ``member_to_profile`` table.

The table value is the *state* (profile plus a short list of recently applied event ids); the
published profile is derived from it. Remembering recent ids makes the update idempotent under
at-least-once redelivery: replaying an event the state already holds changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stream.steps import rfc3339_from_ms

#: How many applied event ids a member's state remembers for de-duplication.
RECENT_EVENT_IDS = 64
#: Weight of the newest text in the rolling sentiment (EWMA).
SENTIMENT_ALPHA = 0.2


def empty_state(member_id: str) -> dict[str, Any]:
    return {
        "member_id": member_id,
        "counts": {"review": 0, "chat": 0, "transaction": 0},
        "sentiment_ewma": None,
        "negative_reviews": 0,
        "scam_risk_max": None,
        "first_seen_ms": None,
        "last_seen_ms": None,
        "last_event_id": None,
        "model_version": None,
        "recent_event_ids": [],
    }


def is_member_authored_text(member_evt: Mapping[str, Any]) -> bool:
    """Only the member's own words move the member's sentiment (not a merchant's chat lines)."""
    kind = member_evt["event_type"]
    return kind == "review" or (kind == "chat" and member_evt["event"]["sender_role"] == "member")


def ewma(previous: float | None, value: float, alpha: float = SENTIMENT_ALPHA) -> float:
    return value if previous is None else (1.0 - alpha) * previous + alpha * value


def apply_member_event(
    state: Mapping[str, Any] | None,
    member_evt: Mapping[str, Any],
    *,
    negative_threshold: float,
) -> tuple[dict[str, Any], bool]:
    """Fold one scored event into the member's state -> (new state, whether it changed)."""
    data = member_evt["event"]
    current = dict(state) if state is not None else empty_state(data["member_id"])
    if data["event_id"] in current["recent_event_ids"]:
        return current, False

    kind = member_evt["event_type"]
    scores = member_evt["scores"]
    event_ms = member_evt["event_time_ms"]
    counts = dict(current["counts"])
    counts[kind] = counts.get(kind, 0) + 1
    updated = {
        **current,
        "counts": counts,
        "first_seen_ms": min(filter(None, (current["first_seen_ms"], event_ms))),
        "last_seen_ms": max(current["last_seen_ms"] or event_ms, event_ms),
        "last_event_id": data["event_id"],
        "recent_event_ids": [*current["recent_event_ids"], data["event_id"]][-RECENT_EVENT_IDS:],
    }
    if scores and is_member_authored_text(member_evt):
        updated["sentiment_ewma"] = round(
            ewma(current["sentiment_ewma"], scores["sentiment_polarity"]), 6
        )
        updated["model_version"] = member_evt["model_version"]
    if kind == "review" and scores and scores["sentiment_negative"] >= negative_threshold:
        updated["negative_reviews"] = current["negative_reviews"] + 1
    if kind == "chat" and scores:
        previous_max = current["scam_risk_max"] or 0.0
        updated["scam_risk_max"] = max(previous_max, scores["scam_risk"])
    return updated, True


def public_profile(state: Mapping[str, Any]) -> dict[str, Any]:
    """The member-profiles record: the state without bookkeeping, times as RFC 3339."""
    return {
        "member_id": state["member_id"],
        "counts": dict(state["counts"]),
        "sentiment_ewma": state["sentiment_ewma"],
        "negative_reviews": state["negative_reviews"],
        "scam_risk_max": state["scam_risk_max"],
        "first_seen": rfc3339_from_ms(state["first_seen_ms"]),
        "last_seen": rfc3339_from_ms(state["last_seen_ms"]),
        "last_event_id": state["last_event_id"],
        "model_version": state["model_version"],
    }
