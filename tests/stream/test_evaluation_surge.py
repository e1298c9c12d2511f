"""The surge evaluation's own machinery on a made-up corpus: traffic, matching, the cost of
the warm-up, and the tuning rule (the real figures come from ``riskstream eval surge``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from stream.backtest.evaluation import ScoredCorpus, cold_start, match_alerts, simulate_surges
from stream.core import surge

HOUR = 3_600_000


def corpus(share: float = 0.3, size: int = 2_000) -> ScoredCorpus:
    """Labels with the given negative share; the "model" agrees with them 90 % of the time."""
    rng = np.random.default_rng(1)
    labels = rng.random(size) < share
    agree = rng.random(size) < 0.9
    p_negative = np.where(labels == agree, 0.9, 0.1)
    return ScoredCorpus("made-up", labels, p_negative, "test")


def test_matching_counts_detections_delays_and_false_alerts() -> None:
    truth = [{"burst": 0, "product": 3, "start_ms": 10 * HOUR + 50 * 60_000}]
    alerts = [
        ("product", 3, 11 * HOUR + 5 * 60_000),  # next window, 15 min after the start
        ("product", 3, 30 * HOUR),  # too late: false
        ("product", 4, 11 * HOUR),  # another product: false
        ("brand", 3, 11 * HOUR),  # product 3 is in brand 3 of 8
    ]
    result = match_alerts(alerts, truth, window_ms=HOUR, hop_ms=HOUR // 4, span_ms=48 * HOUR)
    product, brand = result["product"], result["brand"]
    assert (product["detected"], product["false_alerts"], brand["detected"]) == (1, 2, 1)
    assert product["max_delay_windows"] == 1 and product["median_delay_minutes"] == 15.0
    assert product["windows"] == 40 * 48 * 4 and brand["false_alerts"] == 0


def test_large_bursts_are_found_and_a_quiet_month_raises_nothing_false() -> None:
    made_up = corpus()
    result = simulate_surges(made_up, surge.DEFAULT, days=10, products=10, brands=2, seed=3)
    assert result["product"]["recall"] >= 0.5
    assert result["product"]["false_alerts"] == 0
    rerun = simulate_surges(made_up, surge.DEFAULT, days=10, products=10, brands=2, seed=3)
    assert rerun == result  # the same seed replays the same traffic and alerts


def test_the_counting_threshold_decides_which_texts_are_negative() -> None:
    made_up = corpus()  # the model's scores are 0.9 or 0.1
    counted = simulate_surges(made_up, surge.DEFAULT, days=10, products=10, brands=2, seed=3)
    above_every_score = simulate_surges(
        made_up, surge.DEFAULT, days=10, products=10, brands=2, seed=3, negative_threshold=0.95
    )
    assert counted["product"]["detected"] > 0
    assert above_every_score["product"]["detected"] == 0  # no text counts, nothing can surge
    assert above_every_score["product"]["false_alerts"] == 0


def test_the_warm_up_is_what_a_burst_on_a_new_product_costs() -> None:
    made_up = corpus()
    cost = cold_start(made_up, surge.DEFAULT, ages_h=(1, 12), trials=20, quiet_products=20)
    assert cost["recall_by_age_h"]["1"] == 0.0  # inside the 4-hour warm-up
    assert cost["recall_by_age_h"]["12"] > 0.5
    assert cost["new_products_alerting_without_burst_day1"] == 0.0


def test_the_tuning_rule_takes_the_best_recall_within_the_false_alert_bound() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from tune_surge import choose

    def point(warmup: int, tail: float, recall: float, worst: float) -> dict:
        return {"warmup_windows": warmup, "max_tail_p": tail, "recall": recall,
                "worst_false_per_10k": worst}  # fmt: skip

    points = [
        point(16, 1e-3, 0.9, 3.0),  # too many false alerts
        point(16, 1e-5, 0.6, 0.05),
        point(32, 1e-5, 0.6, 0.0),  # same recall, longer warm-up
        point(16, 1e-6, 0.4, 0.0),
    ]
    assert choose(points) == points[1]
    assert choose([point(16, 1e-3, 0.9, 3.0), point(16, 1e-4, 0.8, 0.5)])["max_tail_p"] == 1e-4
