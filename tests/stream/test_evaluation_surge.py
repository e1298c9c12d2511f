"""The surge evaluation's own machinery on a made-up corpus: traffic, matching, recorded
replays read at several tails, new products with and without a stream prior, the no-surge
streams, the tuning rule and the bound (the real figures come from ``riskstream eval surge``
and ``bench/tune_surge.py``)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from stream.backtest.evaluation import (
    ScoredCorpus,
    background_prior,
    cold_start,
    match_alerts,
    simulate_surges,
    steady_stream,
)
from stream.core import surge

HOUR = 3_600_000
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def corpus(share: float = 0.3, size: int = 2_000) -> ScoredCorpus:
    """Labels with the given negative share; the "model" agrees with them 90 % of the time,
    its scores spread over 0.6-1.0 and 0-0.4."""
    rng = np.random.default_rng(1)
    labels = rng.random(size) < share
    agree = rng.random(size) < 0.9
    p_negative = np.where(labels == agree, rng.uniform(0.6, 1.0, size), rng.uniform(0, 0.4, size))
    return ScoredCorpus("made-up", labels, p_negative, "test")


def test_matching_counts_detections_delays_and_false_alerts() -> None:
    truth = [{"burst": 0, "product": 3, "start_ms": 10 * HOUR + 50 * 60_000}]
    alerts = [
        ("product", 3, 11 * HOUR + 5 * 60_000),  # next window, 15 min after the start
        ("product", 3, 30 * HOUR),  # too late: false
        ("product", 4, 11 * HOUR),  # another product: false
        ("brand", 3, 11 * HOUR),  # product 3 is in brand 3 of 8
    ]
    result = match_alerts(alerts, truth, window_ms=HOUR, span_ms=48 * HOUR)
    product, brand = result["product"], result["brand"]
    assert (product["detected"], product["false_alerts"], brand["detected"]) == (1, 2, 1)
    assert product["max_delay_windows"] == 1 and product["median_delay_minutes"] == 15.0
    assert product["windows"] == 40 * 48 * 4 and brand["false_alerts"] == 0


def test_bursts_are_found_and_a_quiet_month_raises_nothing_false() -> None:
    made_up = corpus()
    result = simulate_surges(made_up, surge.DEFAULT, days=10, products=10, brands=2, seed=3)
    assert result["product"]["recall"] >= 0.8
    assert result["product"]["false_alerts"] == 0
    rerun = simulate_surges(made_up, surge.DEFAULT, days=10, products=10, brands=2, seed=3)
    assert rerun == result  # the same seed replays the same traffic and alerts


def test_a_recorded_replay_read_at_the_served_tail_is_close_to_the_replay() -> None:
    """Emulated alerts differ from a real replay only where an alerted window would have
    stayed out of the baseline afterwards: the real one then finds the next burst on the same
    product a little more often (30 bursts on 10 products here; the bench has 40)."""
    made_up = corpus()
    options = {"days": 10, "products": 10, "brands": 2, "seed": 4}
    real = simulate_surges(made_up, surge.DEFAULT, **options)
    read = simulate_surges(made_up, surge.DEFAULT, tails=(1e-3, surge.MAX_TAIL_P), **options)
    emulated = read[surge.MAX_TAIL_P]["product"]["detected"]
    assert emulated <= real["product"]["detected"] <= emulated + 3
    assert read[surge.MAX_TAIL_P]["product"]["false_alerts"] == real["product"]["false_alerts"]
    assert read[1e-3]["product"]["detected"] >= read[surge.MAX_TAIL_P]["product"]["detected"]


def test_the_counting_threshold_sets_the_support() -> None:
    made_up = corpus()  # the model's scores are at most 1.0
    counted = simulate_surges(made_up, surge.DEFAULT, days=10, products=10, brands=2, seed=3)
    above_every_score = simulate_surges(
        made_up, surge.DEFAULT, days=10, products=10, brands=2, seed=3, negative_threshold=1.01
    )
    assert counted["product"]["detected"] > 0
    assert above_every_score["product"]["detected"] == 0  # no text counts: no support
    assert above_every_score["product"]["false_alerts"] == 0


def test_new_products_are_caught_from_their_first_hour_with_a_stream_prior() -> None:
    made_up = corpus()
    prior = background_prior(made_up, 2.0, days=2)
    assert surge.stream_prior(prior, "product", surge.DEFAULT) is not None
    options = {"ages_h": (1, 12), "trials": 20, "quiet_products": 20}
    launched = cold_start(made_up, surge.DEFAULT, prior=prior, tails=(1e-3,), **options)
    assert launched["recall_by_age_h"]["1"] >= 0.8
    assert launched["new_products_alerting_without_burst_day1"] == 0.0
    assert launched["by_tail"]["0.001"]["recall_by_age_h"]["1"] >= 0.8
    empty = cold_start(made_up, surge.DEFAULT, **options)
    assert empty["recall_by_age_h"]["1"] <= 0.2  # nothing to compare with in its first hour
    assert empty["recall_by_age_h"]["12"] >= 0.8


def test_a_month_with_no_surge_counts_its_windows_and_raises_none() -> None:
    made_up = corpus()
    quiet = steady_stream(made_up, surge.DEFAULT, days=10, products=10, brands=2, seed=5)
    assert quiet["product"]["alerts"] == 0 and quiet["brand"]["alerts"] == 0
    assert 0 < quiet["product"]["windows"] <= 10 * 10 * 96
    read = steady_stream(made_up, surge.DEFAULT, days=10, products=10, brands=2, seed=5,
                         tails=(surge.MAX_TAIL_P,))  # fmt: skip
    assert read["by_tail"][surge.MAX_TAIL_P]["product"] == quiet["product"]


def test_the_tuning_rule_takes_the_largest_tail_within_the_bounds() -> None:
    from tune_surge import TAILS, choose

    def curves(false_at: dict[float, float], steady_at: dict[float, int]) -> dict:
        cell = {f"{t:g}": {"product": {"false_per_10k": false_at.get(t, 0.0)}} for t in TAILS}
        steady = {f"{t:g}": {"product": {"alerts": steady_at.get(t, 0)}} for t in TAILS}
        return {"bursts": {10: {"a@2": cell, "b@8": cell}}, "steady": {"a": steady}}

    loose = {1e-2: 5.0, 3e-3: 1.0, 1e-3: 0.3, 3e-4: 0.11}
    assert choose(curves(loose, {}), "product") == 1e-4
    assert choose(curves(loose, {1e-4: 1, 3e-5: 1}), "product") == 1e-5
    everything = dict.fromkeys(TAILS, 1.0)
    assert choose(curves(everything, {}), "product") == min(TAILS)


def test_the_bound_reads_labels_better_than_scores_and_quiet_products_easier() -> None:
    from tune_surge import oracle

    made_up = dataclasses.replace(corpus(), p_negative=corpus().p_negative)
    quiet = oracle(made_up, 2.0, 10, trials=2_000)
    busy = oracle(made_up, 8.0, 10, trials=2_000)
    assert quiet["labels"] >= quiet["scores"] - 0.02
    assert quiet["scores"] > busy["scores"]
    assert 0.0 <= busy["scores"] <= 1.0


def test_the_bound_finds_more_bursts_on_a_finer_grid() -> None:
    """Bursts start at any minute, as simulated: on a 15-minute grid the best window holds
    only part of an hour-long burst more often than on a 5-minute one (why the hop is 5 min),
    at the same false-alarm chance per window."""
    from tune_surge import oracle

    made_up = corpus()
    coarse = oracle(made_up, 8.0, 10, tail=1e-5, trials=3_000, hops_per_window=4)
    fine = oracle(made_up, 8.0, 10, tail=1e-5, trials=3_000, hops_per_window=12)
    assert fine["scores"] > coarse["scores"] + 0.02


def test_the_gap_bench_hands_the_detector_one_thing_at_a_time_and_puts_it_back() -> None:
    """``bench/surge_gap.py``: inside a variant the detector sees what it is handed (the true
    background shares), and after it the served functions are back."""
    from surge_gap import variant

    made_up = corpus()
    served = (surge.baseline, surge.shift_tail)
    state, _ = surge.observe(None, "product", "p", 0, False, "e0", p_negative=0.1)
    state, _ = surge.observe(state, "product", "p", 3 * 3_600_000, False, "e1", p_negative=0.1)
    with variant("known baseline", made_up) as configs:
        base = surge.baseline(state, configs["product"])
        true = np.bincount(np.minimum((made_up.p_negative * 10).astype(int), 9), minlength=10)
        assert base.shares == pytest.approx(true / true.sum())
    with variant("no clauses", made_up) as configs:
        assert configs["product"].min_negatives == 1
        assert surge.shift_tail([1] * 10, tuple([0.1] * 10))[0] == 0.0
    assert (surge.baseline, surge.shift_tail) == served
