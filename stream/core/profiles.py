"""Member state: a pure update function over plain dicts, stored in the ``member_to_profile`` table.

The table value is the *state*; the published profile is derived from it. The fold here applies
every event it is given: recognising a redelivered event (at-least-once) is the member stage's
job (``stream.core.member``), which remembers the ids and outputs of a member's recent events.

Every time in the state is an event's *counted* time (``stream.core.member.counted_time``): its
event time, or the wall clock when the member stage ran if that was earlier. ``last_seen_ms`` is
thus the member's clock, which no single event can push ahead of the wall clock, and the 1 h /
24 h velocity windows of the profile are measured back from it (a transaction 50 minutes ahead
no longer empties them for the member's next ordinary transactions); ``expired`` compares it
with the partition's clock, capped the same way (``MemberExpiry`` in ``stream/worker/stages.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from stream.core.fraud import DAY_MS, recent_scam_risk, welford_std, welford_update
from stream.core.rules import NEUTRAL_BAND, SENTIMENTS, sentiment_label
from stream.core.steps import rfc3339_from_ms

#: Weight of the newest text in the rolling sentiment (EWMA).
SENTIMENT_ALPHA = 0.2
#: Transaction times kept for velocity (only the last 24 h matter) and known values kept.
MAX_TXN_TIMES = 200
MAX_KNOWN = 32
#: Currencies a member's spend statistics keep (the most recently used): without a bound a
#: member paying in every ISO currency would hold ~1 MB of state, above the producer's limit.
MAX_CURRENCIES = 8
#: Fraud score at or above which a member's risk level is medium / high.
RISK_MEDIUM, RISK_HIGH = 0.15, 0.5
# The lookahead names each word's first letter (under the same ``re.I``): it changes no match
# and halves the scan, which tried every word at each word start (21 µs per review).
PRICE_WORDS = re.compile(
    r"\b(?=[pecvod])(price[sd]?|pricey|expensive|cheap(er)?|overpriced|value|cost|deal)\b",
    re.I,
)
QUALITY_WORDS = re.compile(
    r"\b(?=[qfsbdt])(quality|fresh|stale|broken|durable|flimsy|taste[sd]?|tasty|defective)\b",
    re.I,
)


def empty_state(member_id: str) -> dict[str, Any]:
    return {
        "member_id": member_id,
        "counts": {"review": 0, "chat": 0, "transaction": 0},
        "sentiment_ewma": None,
        #: the member's own texts per served three-way label (older states: counted from now)
        "sentiments": {},
        "negative_reviews": 0,
        "scam_risk_max": None,
        "first_seen_ms": None,
        "last_seen_ms": None,
        "last_event_id": None,
        "model_version": None,
        "spend": {},
        "txn_times_ms": [],
        "devices": [],
        "countries": [],
        "merchants": [],
        "scam_signal": None,
        "fraud_score_last": None,
        "fraud_score_max": None,
        "price_mentions": 0,
        "quality_mentions": 0,
        "last_published_ms": None,
        "published_level": None,
        "alert_log": {},
    }


_STATE_FIELDS = frozenset(empty_state("").keys())


def _remember(known: list[str], value: str) -> list[str]:
    """Most-recent-last list of distinct values, capped."""
    return [*(v for v in known if v != value), value][-MAX_KNOWN:]


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
    neutral_band: tuple[float, float] = NEUTRAL_BAND,
) -> dict[str, Any]:
    """Fold one scored event into the member's state."""
    data = member_evt["event"]
    if state is None or not state.keys() >= _STATE_FIELDS:
        state = {**empty_state(data["member_id"]), **(state or {})}  # old states gain fields
    current = state  # read only: what changes goes into ``updated``

    kind = member_evt["event_type"]
    scores = member_evt["scores"]
    event_ms = member_evt["event_time_ms"]
    counts = dict(current["counts"])
    counts[kind] = counts.get(kind, 0) + 1
    updated = {
        **current,
        "counts": counts,
        "first_seen_ms": min(t for t in (current["first_seen_ms"], event_ms) if t is not None),
        "last_seen_ms": max(t for t in (current["last_seen_ms"], event_ms) if t is not None),
        "last_event_id": data["event_id"],
    }
    if scores and is_member_authored_text(member_evt):
        updated["sentiment_ewma"] = round(
            ewma(current["sentiment_ewma"], scores["sentiment_polarity"]), 6
        )
        updated["model_version"] = member_evt["model_version"]
        label = sentiment_label(scores["sentiment_negative"], neutral_band)
        sentiments = dict(current["sentiments"])
        sentiments[label] = sentiments.get(label, 0) + 1
        updated["sentiments"] = sentiments
    if kind == "review" and scores and scores["sentiment_negative"] >= negative_threshold:
        updated["negative_reviews"] = current["negative_reviews"] + 1
    if kind == "chat" and scores:
        previous_max = current["scam_risk_max"] or 0.0
        updated["scam_risk_max"] = max(previous_max, scores["scam_risk"])
        signal = current["scam_signal"]
        if (
            signal is None
            or event_ms - signal["at_ms"] > DAY_MS
            or scores["scam_risk"] >= signal["risk"]
        ):
            updated["scam_signal"] = {"risk": scores["scam_risk"], "at_ms": event_ms}
    if kind == "review":
        text = data.get("text", "")
        updated["price_mentions"] = current["price_mentions"] + bool(PRICE_WORDS.search(text))
        updated["quality_mentions"] = current["quality_mentions"] + bool(QUALITY_WORDS.search(text))
    if kind == "transaction":
        updated.update(_fold_transaction(current, data, event_ms, scores))
    return updated


def _fold_transaction(
    current: Mapping[str, Any], txn: Mapping[str, Any], event_ms: int, scores: Mapping[str, Any]
) -> dict[str, Any]:
    """Spend (Welford per currency), velocity window, known devices/countries/merchants."""
    spend = {c: stats for c, stats in current["spend"].items() if c != txn["currency"]}
    spend[txn["currency"]] = welford_update(
        current["spend"].get(txn["currency"]), float(txn["amount"])
    )  # most recently used last: the oldest currency leaves first
    spend = dict(list(spend.items())[-MAX_CURRENCIES:])
    times = [t for t in current["txn_times_ms"] if event_ms - t <= DAY_MS]
    fraud = scores.get("fraud_risk")
    return {
        "spend": spend,
        "txn_times_ms": sorted([*times, event_ms])[-MAX_TXN_TIMES:],
        "devices": _remember(current["devices"], txn["device_id"]),
        "countries": _remember(current["countries"], txn["country"]),
        "merchants": _remember(current["merchants"], txn["merchant_id"]),
        "fraud_score_last": fraud,
        "fraud_score_max": max(fraud, current["fraud_score_max"] or 0.0)
        if fraud is not None
        else current["fraud_score_max"],
    }


def risk_level(state: Mapping[str, Any]) -> str:
    """low / medium / high from the latest fraud score and a recent scam-like chat."""
    fraud = state.get("fraud_score_last") or 0.0
    scam = recent_scam_risk(state.get("scam_signal"), state["last_seen_ms"] or 0)
    if fraud >= RISK_HIGH or scam >= 0.9:
        return "high"
    return "medium" if fraud >= RISK_MEDIUM or scam >= 0.5 else "low"


def segments(state: Mapping[str, Any]) -> list[str]:
    """Behaviour and review-content tags, sorted (deterministic)."""
    tags = []
    reviews = state["counts"].get("review", 0)
    if state["negative_reviews"] >= 3 and state["negative_reviews"] * 2 >= reviews:
        tags.append("frequent_complainer")
    if state.get("price_mentions", 0) >= 2:
        tags.append("price_sensitive")
    if state.get("quality_mentions", 0) >= 2:
        tags.append("quality_focused")
    if any(s["n"] >= 3 and s["mean"] >= 200 for s in state.get("spend", {}).values()):
        tags.append("high_spender")
    first, last = state["first_seen_ms"], state["last_seen_ms"]
    if first is not None and last is not None and last - first < 7 * DAY_MS:
        tags.append("new_member")
    return sorted(tags)


def should_publish(
    state: Mapping[str, Any], event_ms: int, throttle_ms: int, alerted: bool
) -> bool:
    """Publish on change, at most once per ``throttle_ms`` of event time per member, except
    when the risk level moves or an alert fired (those go out at once).

    Event time, not the wall clock, so a replay publishes the same profiles. The price: a
    change held back by the throttle goes out with the member's next publication, and a late
    event (older than the last publication) waits for one too."""
    last = state.get("last_published_ms")
    return (
        throttle_ms <= 0
        or last is None
        or alerted
        or risk_level(state) != state.get("published_level")
        or event_ms - last >= throttle_ms
    )


def mark_published(state: Mapping[str, Any], event_ms: int) -> dict[str, Any]:
    return {**state, "last_published_ms": event_ms, "published_level": risk_level(state)}


def public_profile(state: Mapping[str, Any]) -> dict[str, Any]:
    """The member-profiles record: the state without bookkeeping, times as RFC 3339.

    No raw identifiers beyond the member id: devices, countries and merchants are counted,
    never listed; free text never enters the profile."""
    state = {**empty_state(state["member_id"]), **state}
    last = state["last_seen_ms"]
    times = state["txn_times_ms"]
    return {
        "member_id": state["member_id"],
        "counts": dict(state["counts"]),
        "sentiment_ewma": state["sentiment_ewma"],
        "sentiments": {label: state["sentiments"].get(label, 0) for label in SENTIMENTS},
        "negative_reviews": state["negative_reviews"],
        "scam_risk_max": state["scam_risk_max"],
        "first_seen": rfc3339_from_ms(state["first_seen_ms"]),
        "last_seen": rfc3339_from_ms(state["last_seen_ms"]),
        "last_event_id": state["last_event_id"],
        "model_version": state["model_version"],
        "spend": {
            currency: {
                "count": stats["n"],
                "mean": round(stats["mean"], 4),
                "std": round(welford_std(stats), 4),
            }
            for currency, stats in sorted(state["spend"].items())
        },
        "transactions_last_1h": sum(1 for t in times if last is not None and last - t < 3_600_000),
        "transactions_last_24h": sum(1 for t in times if last is not None and last - t < DAY_MS),
        "known_devices": len(state["devices"]),
        "known_countries": len(state["countries"]),
        "known_merchants": len(state["merchants"]),
        "recent_chat_scam_risk": (state["scam_signal"] or {}).get("risk"),
        "fraud_score_last": state["fraud_score_last"],
        "fraud_score_max": state["fraud_score_max"],
        "risk_level": risk_level(state),
        "segments": segments(state),
    }


def expired(state: Mapping[str, Any], now_event_ms: int, ttl_ms: int) -> bool:
    """A member inactive for ``ttl_ms`` of event time: ``now_event_ms`` is the partition's
    newest counted time (never ahead of the wall clock), ``last_seen_ms`` the member's."""
    last = state.get("last_seen_ms")
    return last is not None and now_event_ms - last > ttl_ms
