"""The surge detector as a pure state machine: hops, baseline, support, cooldown, idempotence."""

from __future__ import annotations

import dataclasses

import pytest

from stream.surge import (
    DEFAULT,
    ReorderPolicy,
    apply_subject_event,
    flush_due,
    flush_pending,
    hold_mention,
    hop_start,
    observe,
    subject_events,
    subject_key,
)

HOUR = 3_600_000
CFG = DEFAULT


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
    state, _ = feed([(0, True), (10 * HOUR, False)])
    hops = 10 * HOUR // CFG.hop_ms
    assert state["windows"] == hops
    # one negative seen by the 4 windows containing its hop, then 36 zero windows
    expected = 0.0
    for k in range(hops):
        value = 1.0 if k < CFG.hops_per_window else 0.0
        expected += CFG.alpha * (value - expected)
    assert state["mean"] == pytest.approx(expected)


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
    _, alerts = feed([(i * 60_000, True) for i in range(CFG.min_negatives - 1)])
    assert alerts == []


def test_cooldown_expires_and_a_later_surge_alerts_again() -> None:
    first = [(i * 60_000, True) for i in range(8)]
    later = [((CFG.cooldown_windows + 2) * HOUR + i * 60_000, True) for i in range(12)]
    _, alerts = feed(first + later)
    assert len(alerts) == 2
    assert alerts[0]["alert_id"] != alerts[1]["alert_id"]


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
            "event_time_ms": 10 * HOUR + i * 5 * 60_000,
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
        state = None
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
