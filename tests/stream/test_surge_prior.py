"""The stream prior of the surge detector (pure functions, no Kafka): what a partition learns
from its subjects, how a new subject leans on it and grows out of it, and the tail it is
measured with."""

from __future__ import annotations

import math
import random

import pytest

from stream.core.surge import (
    BINS,
    BRAND,
    DEFAULT,
    PRIOR_KEY,
    Baseline,
    Prior,
    absorb,
    apply_subject_event,
    baseline,
    flush_pending,
    hold_mention,
    observe,
    prior_key,
    stream_prior,
    weighted_tail,
)

HOUR = 3_600_000


def texts(hours: float, per_hour: float, seed: int, start_ms: int = 0) -> list:
    """(event time, P(negative)) at ``per_hour``, a third of them negative-looking."""
    rng = random.Random(seed)
    out, t = [], float(start_ms)
    while True:
        t += rng.expovariate(per_hour / HOUR)
        if t >= start_ms + hours * HOUR:
            return out
        negative = rng.random() < 1 / 3
        out.append((int(t), rng.uniform(0.6, 1.0) if negative else rng.uniform(0.0, 0.4)))


def learn(rates: list[float], hours: float = 48, seed: int = 0) -> dict:
    """A partition's stream prior after ``hours`` of subjects at ``rates`` (texts an hour),
    each state folded with ``observe`` and absorbed after every text, as the stage does."""
    prior: dict = {}
    events = sorted(
        (t, n, p)
        for n, rate in enumerate(rates)
        for t, p in texts(hours, rate, seed=1000 * seed + n)
    )
    states: dict = {}
    for i, (t, n, p) in enumerate(events):
        state, _ = observe(states.get(n), "product", f"s{n}", t, p >= 0.5, f"e{i}",
                           p_negative=p, prior=prior)  # fmt: skip
        prior, states[n] = absorb(prior, state)
    return prior


def feed(events, prior=None, cfg=DEFAULT, subject="new"):
    state, alerts = None, []
    for n, (t, p) in enumerate(events):
        state, alert = observe(state, "product", subject, t, p >= 0.5, f"{subject}-{n}", cfg,
                               p_negative=p, prior=prior)  # fmt: skip
        if alert:
            alerts.append(alert)
    return state, alerts


def burst(at_ms: int, count: int = 10) -> list:
    return [(at_ms + i * 6 * 60_000, 0.95) for i in range(count)]


def test_a_new_subject_with_a_burst_in_its_first_hour_alerts() -> None:
    """Launched into a stream of products at 2 texts an hour, a product's first hour is
    measured against them: 10 complaints in its second hour alert. Without a stream prior
    the same product stays silent (nothing to compare with yet)."""
    prior = learn([2.0] * 20)
    assert stream_prior(prior, "product", DEFAULT) is not None
    found = silent = 0
    for seed in range(20):
        events = sorted([(0, 0.2), *texts(4, 2.0, seed=seed), *burst(HOUR)])
        found += bool(feed(events, prior)[1])
        silent += not feed(events)[1]
    assert found == 20
    assert silent >= 18


def test_new_subjects_with_no_burst_raise_none() -> None:
    """200 new products, their first day at the stream's rate, and 40 busier than the
    stream (4x): the prior's spread keeps them quiet."""
    for rate, fleet in ((2.0, learn([2.0] * 20)), (8.0, learn([8.0] * 10, hours=24))):
        for seed in range(100):
            assert feed(texts(24, rate, seed=seed + 1), fleet)[1] == []
    mixed = learn([0.5, 1.0, 2.0, 4.0, 8.0, 16.0] * 3)
    assert stream_prior(mixed, "product", DEFAULT).shape < DEFAULT.prior_max_shape
    for seed in range(40):
        assert feed(texts(24, 16.0, seed=seed + 500), mixed)[1] == []


def test_the_stream_prior_needs_enough_windows_and_reads_volume_and_spread() -> None:
    assert stream_prior(None, "product", DEFAULT) is None
    assert stream_prior(learn([2.0], hours=10), "product", DEFAULT) is None  # too few windows
    alike = stream_prior(learn([2.0] * 20), "product", DEFAULT)
    assert alike.per_hop == pytest.approx(2.0 * DEFAULT.hop_ms / HOUR, rel=0.15)
    assert alike.shape == DEFAULT.prior_max_shape  # no spread beyond Poisson
    assert sum(alike.shares) == pytest.approx(1.0) and len(alike.shares) == BINS
    assert sum(alike.shares[6:]) == pytest.approx(1 / 3, abs=0.05)
    unalike = stream_prior(learn([0.5, 2.0, 8.0] * 7), "product", DEFAULT)
    assert unalike.shape < 5
    assert stream_prior(learn([2.0] * 20), "brand", BRAND) is None  # kept per kind


def test_absorb_moves_a_subjects_windows_once_and_decays_by_event_time() -> None:
    state, _ = feed(texts(6, 4.0, seed=3))
    assert state["contrib"]["windows"] > 0
    prior, emptied = absorb(None, state)
    assert emptied["contrib"]["windows"] == 0
    assert absorb(prior, emptied)[0] == prior  # nothing twice
    windows = prior["product"]["windows"]
    assert windows == state["contrib"]["windows"]
    week_later, _ = feed(texts(2, 4.0, seed=4, start_ms=7 * 24 * HOUR + state["hop"]), None)
    later, _ = absorb(prior, week_later)
    decay = (1 - 1 / DEFAULT.prior_memory_hops) ** DEFAULT.prior_memory_hops
    added = week_later["contrib"]["windows"]
    assert later["product"]["windows"] == pytest.approx(windows * decay + added, rel=0.02)


def test_the_prior_weight_falls_to_zero_as_the_subject_ages() -> None:
    """Past ``prior_hops`` a subject's baseline is its own: the same whatever the prior held
    (so its alerts replay the same whatever order other subjects were folded in)."""
    state, _ = feed(texts(30, 2.0, seed=8))
    assert state["windows"] >= DEFAULT.prior_hops
    one = Prior(per_hop=0.5, shape=20.0, shares=tuple([0.1] * BINS))
    other = Prior(per_hop=5.0, shape=1.0, shares=tuple([0.0] * 9 + [1.0]))
    assert baseline(state, DEFAULT, one) == baseline(state, DEFAULT, other)
    assert baseline(state, DEFAULT, one) == baseline(state, DEFAULT, None)
    young, _ = feed(texts(2, 2.0, seed=8))
    assert baseline(young, DEFAULT, one) != baseline(young, DEFAULT, other)


def test_replaying_with_the_same_prior_gives_the_same_alerts() -> None:
    prior = learn([2.0] * 20)
    events = sorted([(0, 0.2), *texts(4, 2.0, seed=77), *burst(HOUR)])
    first, second = feed(events, prior), feed(events, prior)
    assert first == second and len(first[1]) == 1
    mentions = [
        {"event_id": f"m{n}", "event_time": "2026-11-23T09:00:00Z", "event_time_ms": t,
         "negative": p >= 0.5, "p_negative": p, "model_version": "v", "kind": "product",
         "id": "new"}
        for n, (t, p) in enumerate(events)
    ]  # fmt: skip
    flushed = []
    for order in (mentions, mentions[::-1]):
        state = None
        for arrived, mention in enumerate(order):
            state = hold_mention(state, mention, arrived_s=float(arrived))
        flushed.append(flush_pending(state, prior=prior))
    assert flushed[0] == flushed[1]
    assert [a["window"] for a in flushed[0][1]] == [first[1][0]["window"]]
    assert apply_subject_event(None, mentions[0], prior=prior)[0]["contrib"]["windows"] == 0
    assert PRIOR_KEY.startswith("~")  # no subject key ("product:...", "brand:...") can clash
    assert prior_key(3) == f"{PRIOR_KEY}:3" != prior_key(4)


def test_weighted_tail_matches_exact_tails() -> None:
    """All weights 1: the weighted count is the window's texts, negative binomial (Poisson
    with a Gamma volume), whose tail is summed exactly. Mixed weights: the figure from a
    numerical integration (volume quadrature, exact convolution of the bins)."""
    shape, rate, hops = 12.0, 8.0, 4
    base = Baseline(shape, rate, hops, tuple([0.1] * BINS), tuple([1.0] * BINS))
    p = rate / (rate + hops)  # NB(shape, p): P(k) = C(k + shape - 1, k) p^shape (1 - p)^k

    def nb_tail(k: int) -> float:
        return sum(
            math.exp(math.lgamma(j + shape) - math.lgamma(shape) - math.lgamma(j + 1)
                     + shape * math.log(p) + j * math.log(1 - p))
            for j in range(k, k + 400)
        )  # fmt: skip

    for k in (15, 20, 25):
        assert weighted_tail(k - 0.5, base)[0] == pytest.approx(nb_tail(k), rel=0.15)
    shares = (0.5, 0.05, 0.03, 0.03, 0.04, 0.05, 0.08, 0.1, 0.1, 0.02)
    expected = hops * 3.0 * sum(s * (b + 0.5) / BINS for b, s in enumerate(shares))
    weights = tuple(math.log1p(10 * (b + 0.5) / BINS / expected) for b in range(BINS))
    mixed = Baseline(3.0, 1.0, hops, shares, weights)
    mean, var = mixed.moments()
    assert weighted_tail(mean + 4 * math.sqrt(var), mixed)[0] == pytest.approx(0.00303, rel=0.05)


def test_a_stage_that_keeps_no_prior_still_detects_on_history() -> None:
    """A stage that keeps no prior passes none: the detector is then the subject's own
    baseline alone, and the closed windows wait in the state (bounded: five sums)."""
    state, alerts = feed(sorted([*texts(30, 4.0, seed=2), *burst(26 * HOUR, 14)]))
    assert len(alerts) == 1
    assert state["contrib"]["windows"] > 0
    assert set(state["contrib"]) == {"hop", "windows", "texts", "texts_sq", "bins"}
