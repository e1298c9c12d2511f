"""Pure fraud logic: Welford, behaviour features, rules, the score and its reasons."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream.core.fraud import (
    DAY_MS,
    HOUR_MS,
    RULES,
    amount_z,
    assess,
    assess_transaction_event,
    behaviour_features,
    rule_hits,
    welford_std,
    welford_update,
)

NOON = 1_763_899_200_000  # 2025-11-23T12:00:00Z


def txn(amount: float = 20.0, device: str = "d1", country: str = "DE", merchant: str = "s1"):
    return {"amount": amount, "currency": "EUR", "device_id": device, "country": country,
            "merchant_id": merchant}  # fmt: skip


def history(n: int = 10, amount: float = 20.0, **extra):
    stats = None
    for i in range(n):
        stats = welford_update(stats, amount + (i % 3))
    return {
        "counts": {"transaction": n},
        "spend": {"EUR": stats},
        "txn_times_ms": [],
        "devices": ["d1"],
        "countries": ["DE"],
        "merchants": ["s1"],
        **extra,
    }


def test_welford_matches_numpy() -> None:
    values = np.random.default_rng(3).lognormal(3, 1, 500)
    stats = None
    for value in values:
        stats = welford_update(stats, float(value))
    assert stats["n"] == 500
    assert stats["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert welford_std(stats) == pytest.approx(values.std(ddof=1), rel=1e-10)


def test_amount_z_needs_history_and_floors_the_spread() -> None:
    assert amount_z(None, 50.0) is None
    assert amount_z(history(3)["spend"]["EUR"], 50.0) is None
    flat = {"n": 10, "mean": 20.0, "m2": 0.0}
    assert amount_z(flat, 25.0) == 5.0  # std floored at 1 currency unit


def test_behaviour_features_read_history_before_the_transaction() -> None:
    past = history(txn_times_ms=[NOON - 10 * 60_000 * i for i in range(1, 7)])
    features = behaviour_features(past, txn(500.0, "d9", "BR", "s7"), NOON)
    assert features["amount_z"] > 100
    assert features["txns_last_1h"] == 5 and features["txns_last_24h"] == 6
    assert features["new_device"] and features["new_country"] and features["new_merchant"]
    assert not features["night"]
    assert behaviour_features(past, txn(), NOON - 12 * HOUR_MS)["night"]


def test_first_transaction_is_not_new_anything() -> None:
    features = behaviour_features({}, txn(), NOON)
    assert not (features["new_device"] or features["new_country"] or features["new_merchant"])
    assert features["amount_z"] is None and features["txns_last_1h"] == 0


def test_recent_scam_chat_counts_for_a_day_only() -> None:
    past = history(scam_signal={"risk": 0.97, "at_ms": NOON - 2 * HOUR_MS})
    assert behaviour_features(past, txn(), NOON)["recent_chat_scam_risk"] == 0.97
    assert behaviour_features(past, txn(), NOON + DAY_MS)["recent_chat_scam_risk"] == 0.0


def test_rules_fire_with_reasons_strongest_first() -> None:
    past = history(
        txn_times_ms=[NOON - 5 * 60_000 * i for i in range(1, 7)],
        scam_signal={"risk": 0.95, "at_ms": NOON - HOUR_MS},
    )
    hits = rule_hits(behaviour_features(past, txn(900.0, "d2", "NG"), NOON))
    ratios = [ratio for ratio, _ in hits]
    assert ratios == sorted(ratios, reverse=True)
    text = " ".join(reason for _, reason in hits)
    for phrase in ("scam-like chat", "new device in a new country", "transactions in 1 h", "std"):
        assert phrase in text
    assert rule_hits(behaviour_features(history(), txn(), NOON)) == []


def test_score_multiplies_the_model_odds_by_the_rule_ratios() -> None:
    features = behaviour_features(history(), txn(device="d2"), NOON)  # new device only
    result = assess(features, 0.2, [("V14", -9.9, 2.5)])
    odds = 0.2 / 0.8 * RULES.new_device_ratio
    assert result["score"] == pytest.approx(odds / (1 + odds), abs=1e-6)
    assert result["reasons"][0].startswith("model: V14")  # 2.5 log-odds beats log(1.5)
    assert result["rules_fired"] == ["new device"]
    quiet = assess(behaviour_features(history(), txn(), NOON), None)
    assert quiet["score"] == pytest.approx(RULES.prior, rel=1e-4)
    assert quiet["reasons"] == ["no risk signal"]


def test_rules_never_lower_a_score_and_ranking_by_model_survives() -> None:
    plain = behaviour_features(history(), txn(), NOON)
    low, high = assess(plain, 0.01)["score"], assess(plain, 0.02)["score"]
    night = behaviour_features(history(), txn(), NOON - 12 * HOUR_MS)
    assert assess(night, 0.01)["score"] > low
    assert high > low


def test_assess_transaction_event_adds_score_and_fraud_block() -> None:
    event = {"event_type": "transaction", "event": txn(), "event_time_ms": NOON, "scores": {}}
    out = assess_transaction_event(history(), event, (0.9, [("V4", 3.0, 1.2)], "ulb-lgbm-x"))
    assert out["scores"]["fraud_risk"] == out["fraud"]["score"]
    assert out["fraud"]["model_version"] == "ulb-lgbm-x"
    assert math.isclose(out["fraud"]["model_probability"], 0.9)
    rules_only = assess_transaction_event(None, event, None)
    assert rules_only["fraud"]["model_version"] == "rules-only"
    assert "fraud" not in event  # input untouched
