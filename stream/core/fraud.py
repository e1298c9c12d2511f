"""Transaction fraud risk as pure functions: behaviour features, transparent rules, and the
combination with the trained model's probability, each score with its top reasons.

Member history lives in the member state (``stream/core/profiles.py``); everything here reads plain
dicts and the transaction's event time, so a replay gives the same scores. That time is the
transaction's counted time (``stream.core.member.counted_time``: never ahead of the wall clock
when the member stage ran), so velocity is measured back from a time one early event cannot
move, and an early transaction counts in the windows from its arrival.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


# --------------------------------------------------------------------------- Welford


def welford_update(stats: Mapping[str, float] | None, value: float) -> dict[str, float]:
    """Running count/mean/M2 (Welford): numerically stable, one pass, O(1) state."""
    n, mean, m2 = (stats["n"], stats["mean"], stats["m2"]) if stats else (0, 0.0, 0.0)
    n += 1
    delta = value - mean
    mean += delta / n
    m2 += delta * (value - mean)
    return {"n": n, "mean": mean, "m2": m2}


def welford_std(stats: Mapping[str, float]) -> float:
    """Sample standard deviation (0 with fewer than two values)."""
    return math.sqrt(stats["m2"] / (stats["n"] - 1)) if stats["n"] > 1 else 0.0


def amount_z(
    stats: Mapping[str, float] | None, amount: float, min_history: int = 5
) -> float | None:
    """How unusual an amount is for this member (None until there is enough history)."""
    if not stats or stats["n"] < min_history:
        return None
    return (amount - stats["mean"]) / max(welford_std(stats), 1.0)


# --------------------------------------------------------------------------- features


#: How the recent-chat rule's reason begins (its risk follows), for readers of fraud verdicts.
SCAM_CHAT_RULE = "member was in a scam-like chat in the last 24 h"


def recent_scam_risk(signal: Mapping[str, Any] | None, now_ms: int) -> float:
    """The member's scam-chat signal if it is at most a day old at ``now_ms``, else 0."""
    return signal["risk"] if signal and now_ms - signal["at_ms"] <= DAY_MS else 0.0


def count_since(times_ms: Sequence[int], now_ms: int, window_ms: int) -> int:
    return sum(1 for t in times_ms if now_ms - window_ms < t <= now_ms)


def is_night(event_ms: int) -> bool:
    """00:00-05:59 UTC (the platform's clock; a member time zone would refine it)."""
    return datetime.fromtimestamp(event_ms / 1000, tz=UTC).hour < 6


def behaviour_features(history: Mapping[str, Any], txn: Mapping[str, Any], event_ms: int) -> dict:
    """Features of one transaction against the member's history *before* it."""
    spend = history.get("spend", {}).get(txn["currency"])
    times = history.get("txn_times_ms", [])
    seen_before = history.get("counts", {}).get("transaction", 0) > 0
    return {
        "amount": float(txn["amount"]),
        "amount_z": amount_z(spend, float(txn["amount"])),
        "txns_last_1h": count_since(times, event_ms, HOUR_MS),
        "txns_last_24h": count_since(times, event_ms, DAY_MS),
        "new_device": seen_before and txn["device_id"] not in history.get("devices", []),
        "new_country": seen_before and txn["country"] not in history.get("countries", []),
        "new_merchant": seen_before and txn["merchant_id"] not in history.get("merchants", []),
        "night": is_night(event_ms),
        "recent_chat_scam_risk": recent_scam_risk(history.get("scam_signal"), event_ms),
    }


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class FraudRules:
    """Rule thresholds and likelihood ratios (how many times likelier fraud is when a rule
    fires). Ratios multiply the odds of the model's probability, or of ``prior`` when a
    transaction carries no feature vector, so a weak signal never outranks a strong model."""

    prior: float = 0.002  # fraud share of card transactions in the ULB data (0.17 %)
    amount_z: float = 3.0
    amount_z_ratio: float = 4.0
    velocity_1h: int = 5
    velocity_ratio: float = 5.0
    new_device_and_country_ratio: float = 6.0
    new_device_ratio: float = 1.5
    new_merchant_ratio: float = 1.2
    night_ratio: float = 1.5
    chat_scam: float = 0.9
    chat_scam_ratio: float = 8.0


RULES = FraudRules()


def rule_hits(features: Mapping[str, Any], rules: FraudRules = RULES) -> list[tuple[float, str]]:
    """``(likelihood ratio, reason)`` for every rule the features fire, strongest first."""
    hits: list[tuple[float, str]] = []
    z = features["amount_z"]
    if z is not None and z >= rules.amount_z:
        hits.append((rules.amount_z_ratio, f"amount {z:.1f} std above the member's usual"))
    if features["txns_last_1h"] >= rules.velocity_1h:
        hits.append((rules.velocity_ratio, f"{features['txns_last_1h']} transactions in 1 h"))
    if features["new_device"] and features["new_country"]:
        hits.append((rules.new_device_and_country_ratio, "new device in a new country"))
    elif features["new_device"]:
        hits.append((rules.new_device_ratio, "new device"))
    if features["new_merchant"]:
        hits.append((rules.new_merchant_ratio, "first purchase at this merchant"))
    if features["night"]:
        hits.append((rules.night_ratio, "night-time (00-06 UTC)"))
    risk = features["recent_chat_scam_risk"]
    if risk >= rules.chat_scam:
        reason = f"{SCAM_CHAT_RULE} (risk {risk:.2f})"
        hits.append((rules.chat_scam_ratio, reason))
    return sorted(hits, key=lambda hit: -hit[0])


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def assess(
    features: Mapping[str, Any],
    model_probability: float | None,
    model_reasons: Sequence[tuple[str, float, float]] = (),
    rules: FraudRules = RULES,
    top: int = 3,
) -> dict[str, Any]:
    """The fraud score in [0, 1] with its top reasons.

    score = sigmoid(logit(model probability, or the prior) + sum(log likelihood ratios)).
    Reasons rank the model's feature contributions (log-odds, TreeSHAP) and the fired rules'
    log ratios on one scale.
    """
    hits = rule_hits(features, rules)
    base = model_probability if model_probability is not None else rules.prior
    log_odds = _logit(base) + sum(math.log(ratio) for ratio, _ in hits)
    reasons = [(math.log(ratio), f"rule: {reason} (x{ratio:g} odds)") for ratio, reason in hits]
    reasons += [
        (contribution, f"model: {name}={value:.2f} (+{contribution:.2f} log-odds)")
        for name, value, contribution in model_reasons
    ]
    reasons.sort(key=lambda item: -item[0])
    return {
        "score": round(1.0 / (1.0 + math.exp(-log_odds)), 6),
        "model_probability": None if model_probability is None else round(model_probability, 6),
        "rules_fired": [reason for _, reason in hits],
        "reasons": [reason for _, reason in reasons[:top]] or ["no risk signal"],
    }


#: ``(probability, reasons, model version)`` from the trained model, for one transaction.
ModelOutput = tuple[float, list[tuple[str, float, float]], str]


def assess_transaction_event(
    history: Mapping[str, Any] | None,
    member_evt: Mapping[str, Any],
    model_output: ModelOutput | None,
    rules: FraudRules = RULES,
) -> dict[str, Any]:
    """The member event with ``scores.fraud_risk`` and a ``fraud`` block (score, reasons,
    model version, rules fired) added; history is the member state *before* this event."""
    features = behaviour_features(history or {}, member_evt["event"], member_evt["event_time_ms"])
    probability, reasons, version = model_output if model_output else (None, [], "rules-only")
    assessment = assess(features, probability, reasons, rules)
    return {
        **member_evt,
        "scores": {**member_evt["scores"], "fraud_risk": assessment["score"]},
        "fraud": {**assessment, "model_version": version},
    }
