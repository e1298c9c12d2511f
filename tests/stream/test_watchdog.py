"""The watchdog's policy: exit when the broker lost the input topics, when nothing moves while
records wait, or when the worker never gets ready; stay when things are merely slow or idle."""

from __future__ import annotations

from stream.core.watchdog import Observation, Watchdog, WatchdogPolicy

POLICY = WatchdogPolicy(topics_missing_s=15, stalled_s=60, not_ready_s=120)


def seen(t: float, *, exist=True, ready=True, admitted=0, lag=0) -> Observation:
    return Observation(t, exist, ready, admitted, lag)


def test_topics_gone_for_long_enough_means_exit() -> None:
    dog = Watchdog(POLICY, started_s=0)
    assert dog.observe(seen(5, exist=False)) is None
    assert dog.observe(seen(15, exist=False)) is None
    assert "missing from the broker" in dog.observe(seen(20, exist=False))


def test_an_unreachable_broker_is_no_verdict_and_a_blip_resets() -> None:
    dog = Watchdog(POLICY, started_s=0)
    assert dog.observe(seen(5, exist=False)) is None
    assert dog.observe(seen(10, exist=None)) is None  # no answer: not evidence either way
    assert dog.observe(seen(12, exist=True)) is None
    assert dog.observe(seen(25, exist=False)) is None  # the clock started again


def test_stalled_with_records_waiting_means_exit_idle_does_not() -> None:
    dog = Watchdog(POLICY, started_s=0)
    for t in range(0, 300, 5):  # idle: nothing waiting
        assert dog.observe(seen(t, admitted=10, lag=0)) is None
    assert dog.observe(seen(300, admitted=10, lag=5)) is None
    assert dog.observe(seen(330, admitted=10, lag=5)) is None
    assert "no record admitted for 65 s" in dog.observe(seen(360, admitted=10, lag=5))


def test_progress_keeps_it_alive() -> None:
    dog = Watchdog(POLICY, started_s=0)
    for i, t in enumerate(range(0, 600, 5)):
        assert dog.observe(seen(t, admitted=i, lag=100)) is None


def test_never_ready_means_exit() -> None:
    dog = Watchdog(POLICY, started_s=0)
    assert dog.observe(seen(100, ready=False)) is None
    assert "not ready for 120 s" in dog.observe(seen(120, ready=False))


def test_a_stall_is_resynced_once_before_the_exit() -> None:
    dog = Watchdog(WatchdogPolicy(stalled_s=60, resync_after_s=20), started_s=0)
    verdicts = []
    for t in range(0, 70, 5):
        obs = seen(t, admitted=10, lag=5)
        verdicts.append((t, dog.observe(obs), dog.resync_due(obs)))
    resyncs = [t for t, _, why in verdicts if why]
    assert resyncs == [20], verdicts  # once per stall, not every observation
    assert "no record admitted" in verdicts[-1][1]
    obs = seen(70, admitted=11, lag=5)  # progress: a later stall may resync again
    assert dog.observe(obs) is None and dog.resync_due(obs) is None
    later = [dog.resync_due(o) for o in (seen(t, admitted=11, lag=5) for t in (75, 95))]
    assert later[0] is None and "no record admitted for 25 s" in later[1]


def test_partitions_unknown_to_the_ledger_are_resynced_when_seen_twice_while_ready() -> None:
    dog = Watchdog(POLICY, started_s=0)
    unknown = Observation(5, True, True, 0, 0, unknown_partitions=3)
    assert dog.resync_due(unknown) is None  # once may be an assignment being set up
    assert "3 assigned partitions unknown" in dog.resync_due(unknown)
    busy = Observation(10, True, False, 0, 0, unknown_partitions=3)
    assert dog.resync_due(busy) is None  # not while rebalancing
