"""The surge detector as a pure state machine: hops, baseline, warm-up, trigger, support,
cooldown, idempotence."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from stream.core.surge import (
    BRAND,
    DEFAULT,
    ReorderPolicy,
    apply_subject_event,
    flush_due,
    flush_pending,
    hold_mention,
    hop_start,
    observe,
    poisson_tail,
    subject_events,
    subject_key,
)

HOUR = 3_600_000
CFG = DEFAULT
#: Event time by which a subject first seen at 0 is past its warm-up (plus a margin).
WARM = (CFG.warmup_windows + 8) * CFG.hop_ms


def feed(events, cfg=CFG, state=None):
    alerts = []
    for n, (t, negative) in enumerate(events):
        state, alert = observe(state, "product", "p1", t, negative, f"e{n}", cfg)
        if alert:
            alerts.append(alert)
    return state, alerts


def test_hops_tile_event_time() -> None:
    assert hop_start(0, CFG.hop_ms) == 0
    assert hop_start(CFG.hop_ms - 1, CFG.hop_ms) == 0
    assert hop_start(CFG.hop_ms + 5, CFG.hop_ms) == CFG.hop_ms


def test_quiet_hours_feed_zeros_into_the_baseline() -> None:
    state, _ = feed([(0, True), (30 * HOUR, False)])
    hops = 30 * HOUR // CFG.hop_ms
    assert state["windows"] == hops
    # the 3 windows that began before the subject's first hop are left out; the first full
    # window holds the negative, then zeros: a running mean until 1/alpha windows, then EWMA
    expected = 0.0
    for full in range(1, hops - CFG.hops_per_window + 2):
        value = 1.0 if full == 1 else 0.0
        expected += max(CFG.alpha, 1 / full) * (value - expected)
    assert state["mean"] == pytest.approx(expected)
    assert hops - CFG.hops_per_window + 1 > 1 / CFG.alpha  # the EWMA part is exercised too


def test_a_young_baseline_is_not_pulled_towards_zero() -> None:
    """Two negatives in every hour from the start: the baseline is 2 at once, not 2 x (1 -
    0.98^n) as an EWMA from zero would have it after n windows."""
    events = [(h * HOUR + m * 60_000, True) for h in range(8) for m in (10, 40)]
    state, alerts = feed(events)
    assert alerts == []
    assert state["mean"] == pytest.approx(2.0)
    assert state["var"] == pytest.approx(0.0)


def test_a_burst_over_a_quiet_baseline_alerts_once_with_support() -> None:
    background = [(h * HOUR + 60_000, h % 3 == 0) for h in range(48)]  # ~1 negative / 3 h
    burst = [(50 * HOUR + i * 300_000, True) for i in range(9)]  # 9 negatives in 45 min
    _, alerts = feed(background + burst)
    assert len(alerts) == 1  # cooldown: the rest of the burst stays quiet
    alert = alerts[0]
    assert alert["alert_type"] == "opinion_surge"
    assert alert["subject"] == {"kind": "product", "id": "p1"}
    assert alert["window"]["negatives"] == CFG.min_negatives
    assert alert["score"] >= CFG.z_threshold
    assert len(alert["event_ids"]) <= CFG.sample_ids
    assert alert["window"]["end_ms"] - alert["window"]["start_ms"] == CFG.window_ms
    assert any("baseline" in reason for reason in alert["reasons"])


def test_no_alert_below_the_minimum_support_even_with_zero_baseline() -> None:
    warm = [(0, False)]
    _, alerts = feed(warm + [(WARM + i * 60_000, True) for i in range(CFG.min_negatives - 1)])
    assert alerts == []


def test_cooldown_expires_and_a_later_surge_alerts_again() -> None:
    first = [(WARM + i * 60_000, True) for i in range(8)]
    later = [(WARM + (CFG.cooldown_windows + 2) * HOUR + i * 60_000, True) for i in range(12)]
    _, alerts = feed([(0, False), *first, *later])
    assert len(alerts) == 2
    assert alerts[0]["alert_id"] != alerts[1]["alert_id"]


def steady(hours: int, per_hour: float, share: float, seed: int, start_ms: int = 0) -> list:
    """Poisson arrivals at ``per_hour``, each negative with probability ``share``."""
    rng = random.Random(seed)
    events, t = [], float(start_ms)
    while t < start_ms + hours * HOUR:
        t += rng.expovariate(per_hour / HOUR)
        events.append((int(t), rng.random() < share))
    return events


@pytest.mark.parametrize("per_hour", [2, 10, 40])
@pytest.mark.parametrize("share", [0.3, 0.51])
def test_a_steady_stream_with_no_surge_raises_no_alert(per_hour: int, share: float) -> None:
    """A week at a constant rate from a cold start, five subjects, product and brand settings.
    The previous detector (baseline from zero, "6 negatives" trigger) raised 49 alerts on
    these 30 streams (11 at 10 texts an hour, 38 at 40), 40 of them in the first 6.3 hours."""
    for seed in range(5):
        events = steady(7 * 24, per_hour, share, seed=1000 * per_hour + seed)
        for cfg in (CFG, BRAND):
            state, alerts = feed(events, cfg)
            assert alerts == [], (seed, cfg, [a["reasons"] for a in alerts])
        assert state["mean"] == pytest.approx(per_hour * share, rel=0.5)


def test_a_busy_new_subject_raises_none_while_its_baseline_warms_up() -> None:
    """60 texts an hour from its first minute, half of them negative, and a burst of 40
    more negatives in its second hour: nothing to compare against yet, so no alert."""
    events = steady(CFG.warmup_windows * CFG.hop_ms // HOUR - 1, 60, 0.5, seed=7)
    events += [(HOUR + i * 60_000, True) for i in range(40)]
    state, alerts = feed(sorted(events))
    assert alerts == []
    assert state["windows"] < CFG.warmup_windows


def test_a_genuine_burst_after_the_warm_up_still_alerts() -> None:
    """A subject at 10 texts an hour, half negative: after its warm-up, 25 extra negatives in
    30 minutes is a surge; one alert, with the baseline's chance of it among the reasons."""
    background = steady(48, 10, 0.5, seed=3)
    burst = [(40 * HOUR + i * 72_000, True) for i in range(25)]
    _, alerts = feed(sorted(background + burst))
    assert len(alerts) == 1
    (alert,) = alerts
    assert 40 * HOUR <= alert["window"]["end_ms"] <= 42 * HOUR
    assert alert["window"]["baseline_mean"] == pytest.approx(5.0, rel=0.3)
    assert any(r.startswith("chance of") for r in alert["reasons"])


def test_the_trigger_rises_with_the_subjects_own_negative_rate() -> None:
    """The old trigger was "6 negatives in a window" wherever the baseline sat below it. Now a
    subject whose usual hour holds ~1 negative (2 texts, 51 % negative) needs more than 6."""

    def alerts_for(extra: int, share: float) -> int:
        rng = random.Random(5)
        events = [(h * HOUR + m * 60_000, rng.random() < share) for h in range(36)
                  for m in (15, 45)]  # fmt: skip
        events += [(36 * HOUR + i * 60_000, True) for i in range(extra)]
        return len(feed(events)[1])

    assert alerts_for(6, share=0.0) == 1  # a quiet subject: 6 negatives is a surge
    assert alerts_for(6, share=0.51) == 0  # one negative an hour is usual: 6 is not enough
    assert alerts_for(12, share=0.51) == 1


def test_poisson_tail() -> None:
    for mean in (0.3, 1.0, 4.0):
        assert poisson_tail(1, mean) == pytest.approx(1 - math.exp(-mean))
        assert poisson_tail(2, mean) == pytest.approx(1 - math.exp(-mean) * (1 + mean))
    assert poisson_tail(0, 2.0) == 1.0 and poisson_tail(3, 0.0) == 0.0
    assert 0 < poisson_tail(200, 100.0) < 1e-17


def test_a_state_written_before_the_warm_up_still_loads() -> None:
    """States in the surge table from the previous release have exactly these fields."""
    old = {
        "kind": "product", "id": "p1", "hop": 500 * CFG.hop_ms, "sample": [],
        "buckets": [[500 * CFG.hop_ms, 0, 1]], "mean": 0.2, "var": 0.2, "windows": 500,
        "cooldown_until": None, "late": 0, "recent_event_ids": ["old-1"], "pending": [],
    }  # fmt: skip
    burst = [
        {
            "event_id": f"b{i}",
            "event_time": "2026-11-23T10:00:00Z",
            "negative": True,
            "event_time_ms": 501 * CFG.hop_ms + i * 60_000,
            "model_version": "v",
            "kind": "product",
            "id": "p1",
        }
        for i in range(8)
    ]
    state, alerts = old, []
    for mention in burst:
        state = hold_mention(state, mention, 1.0)
    state, alerts = flush_pending(state)
    assert len(alerts) == 1 and state["windows"] == 501
    assert apply_subject_event(state, {**burst[0], "event_id": "old-1"}) == (None, None)
    young = {**old, "windows": 5, "mean": 0.0, "var": 0.0}
    state = young
    for mention in burst:
        state = hold_mention(state, mention, 1.0)
    assert flush_pending(state)[1] == []  # a subject still in its warm-up waits it out


def test_late_events_are_counted_in_the_open_hop_and_noted() -> None:
    state, _ = feed([(2 * HOUR, False), (HOUR, True)])
    assert state["late"] == 1
    assert state["buckets"][-1][1:] == [1, 2]


def test_replaying_the_same_events_gives_the_same_alerts() -> None:
    events = [(i * 600_000, i % 2 == 0) for i in range(100)] + [
        (70 * 600_000 + i, True) for i in range(10)
    ]
    events.sort()
    assert feed(events)[1] == feed(events)[1]
    assert feed(events, dataclasses.replace(CFG, z_threshold=99))[1] == []


def test_subject_events_cover_reviews_and_member_chats_naming_a_product() -> None:
    scores = {"sentiment_negative": 0.8, "scam_risk": 0.0}

    def evt(kind, **data):
        base = {"event_id": "e1", "event_time": "2026-11-23T10:00:00Z", "member_id": "m"}
        return {"event_type": kind, "event": {**base, **data}, "event_time_ms": 5,
                "scores": scores, "model_version": "v"}  # fmt: skip

    review = subject_events(evt("review", product_id="p1", brand="b1"), 0.5)
    assert [(m["kind"], m["id"], m["negative"]) for m in review] == [
        ("product", "p1", True),
        ("brand", "b1", True),
    ]
    assert subject_key(review[1]) == b"brand:b1"
    assert subject_events(evt("chat", sender_role="merchant", product_id="p1"), 0.5) == []
    assert len(subject_events(evt("chat", sender_role="member", product_id="p1"), 0.5)) == 1
    assert subject_events(evt("chat", sender_role="member"), 0.5) == []


def test_apply_subject_event_skips_redelivered_events() -> None:
    mention = {"event_id": "e1", "event_time": "2026-11-23T10:00:00Z", "event_time_ms": 5,
               "negative": True, "model_version": "v", "kind": "product", "id": "p1"}  # fmt: skip
    state, _ = apply_subject_event(None, mention)
    again, alert = apply_subject_event(state, mention)
    assert again is None and alert is None
    assert state["recent_event_ids"] == ["e1"]


def _mentions(count: int = 9) -> list[dict]:
    return [
        {
            "event_id": f"s{i}",
            "event_time": "2026-11-23T09:00:00Z",
            "negative": True,
            "event_time_ms": WARM + i * 5 * 60_000,
            "model_version": "v",
            "kind": "product",
            "id": "p1",
        }
        for i in range(count)
    ]


def test_held_mentions_fold_the_same_whatever_their_arrival_order() -> None:
    """Mentions come from many member partitions; sorted on flush, every order agrees."""
    results = []
    for order in (
        [0, 1, 2, 3, 4, 5, 6, 7, 8],
        [8, 3, 0, 7, 1, 6, 2, 5, 4],
        [8, 7, 6, 5, 4, 3, 2, 1, 0],
    ):
        mentions = _mentions()
        state, _ = apply_subject_event(None, {**mentions[0], "event_id": "w", "event_time_ms": 0,
                                              "negative": False})  # fmt: skip
        for arrived, i in enumerate(order):
            state = hold_mention(state, mentions[i], arrived_s=100.0 + arrived * 0.01)
        assert not flush_due(state, now_s=101.0, policy=ReorderPolicy(hold_s=2.0))
        assert flush_due(state, now_s=102.0, policy=ReorderPolicy(hold_s=2.0))
        folded, alerts = flush_pending(state)
        assert folded["pending"] == []
        results.append((folded, alerts))
    assert all(r == results[0] for r in results)
    (_, alerts) = results[0]
    assert len(alerts) == 1 and alerts[0]["event_ids"] == ["s0", "s1", "s2", "s3", "s4"]


def test_held_mentions_are_not_taken_twice_and_a_busy_subject_flushes_by_count() -> None:
    mentions = _mentions(3)
    state = hold_mention(None, mentions[0], 1.0)
    assert hold_mention(state, mentions[0], 1.5) is None  # redelivered while held
    folded, _ = flush_pending(state)
    assert hold_mention(folded, mentions[0], 2.0) is None  # redelivered after folding
    state = hold_mention(hold_mention(folded, mentions[1], 3.0), mentions[2], 3.0)
    assert flush_due(state, now_s=3.0, policy=ReorderPolicy(hold_s=60, max_pending=2))
