"""The watchdog's policy: exit when the broker lost the input topics, when nothing moves while
records wait, or when the worker never gets ready; stay when things are merely slow or idle."""

from __future__ import annotations

import asyncio

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


def test_a_hole_no_seek_fills_is_resynced_every_so_often_while_it_stays_open() -> None:
    """The ledger never skips a hole on time alone; a hole its own seeks do not fill (the
    partition paused, say) gets a resync of every partition after 10 s, not the 30 s stall."""
    dog = Watchdog(WatchdogPolicy(hole_resync_after_s=10), started_s=0)
    whys = {}
    for t in range(0, 40, 2):
        hole = ("chats[2] at 57", float(t - 4)) if t >= 4 else None
        obs = Observation(t, True, True, t, 100, oldest_hole=hole)  # other partitions move
        assert dog.observe(obs) is None
        whys[t] = dog.resync_due(obs)
    assert [t for t, why in whys.items() if why] == [14, 24, 34]
    assert whys[14] == "the records of chats[2] at 57 not re-read after 10 s"


def lost(t: float, *signs: str, ready=False) -> Observation:
    return Observation(t, True, ready, 0, 0, data_lost=signs)


def test_signs_of_lost_broker_data_mean_exit_naming_them_and_readyz_says_why_meanwhile() -> None:
    dog = Watchdog(WatchdogPolicy(data_loss_s=10), started_s=0)
    sign = "missing topics: x.labels"
    assert dog.observe(lost(5, sign)) is None
    assert "x.labels" in dog.finding and "for 0 s" in dog.finding
    relaid = "x.riskstream-member-to-profile-changelog has 4 partitions, not 2"
    assert dog.observe(lost(10, sign, relaid)) is None  # what it finds may grow
    reason = dog.observe(lost(15, sign, relaid))
    assert reason.startswith("the broker lost data this worker knew (missing topics: x.labels; ")
    assert relaid in reason and "reads the inputs from their earliest offsets" in reason


def test_lost_data_signs_that_clear_reset_the_clock_and_the_finding() -> None:
    dog = Watchdog(WatchdogPolicy(data_loss_s=10), started_s=0)
    assert dog.observe(lost(5, "offsets out of range: x.reviews[0] fetched at 512")) is None
    assert dog.observe(seen(10)) is None and dog.finding is None  # no answer / gone: no verdict
    assert dog.observe(lost(15, "missing topics: x.labels")) is None
    assert dog.observe(lost(20, "missing topics: x.labels")) is None
    assert "broker lost data" in dog.observe(lost(25, "missing topics: x.labels"))


def test_lost_data_is_a_verdict_even_while_ready() -> None:
    dog = Watchdog(WatchdogPolicy(data_loss_s=10), started_s=0)
    sign = "offsets out of range: x.chats[1] at 300, its log ends at 12"
    assert dog.observe(lost(0, sign, ready=True)) is None
    assert "x.chats[1] at 300" in dog.observe(lost(10, sign, ready=True))


def recovering(t: float, read: int) -> Observation:
    return Observation(t, True, False, 0, 0, recovering=True, recovery_read=read)


def test_table_recovery_reading_nothing_means_exit_reading_keeps_it_alive() -> None:
    dog = Watchdog(WatchdogPolicy(recovery_stalled_s=60, not_ready_s=3600), started_s=0)
    for t in range(0, 600, 5):  # slow but moving: never a verdict
        assert dog.observe(recovering(t, t * 10)) is None
    assert dog.observe(recovering(600, 42)) is None
    assert dog.observe(recovering(650, 42)) is None
    assert "table recovery has read nothing for 50 s" in dog.finding
    reason = dog.observe(recovering(660, 42))
    assert reason == (
        "table recovery made no progress for 60 s (changelog positions at 42, summed): exiting"
    )


def test_recovery_that_ends_resets_and_no_bound_means_none() -> None:
    dog = Watchdog(WatchdogPolicy(recovery_stalled_s=60, not_ready_s=3600), started_s=0)
    assert dog.observe(recovering(0, 7)) is None
    assert dog.observe(seen(50)) is None  # recovery done
    assert dog.observe(recovering(100, 7)) is None  # a later rebalance: a new clock
    assert dog.observe(recovering(155, 7)) is None
    unbounded = Watchdog(WatchdogPolicy(recovery_stalled_s=None, not_ready_s=3600), started_s=0)
    assert all(unbounded.observe(recovering(t, 7)) is None for t in range(0, 3000, 5))
    assert unbounded.finding is None


def test_the_shell_starts_the_watchdog_with_the_app_and_readyz_gives_its_finding(
    tmp_path,
) -> None:
    """Faust starts ``app.task`` functions only after table recovery; the watchdog (and the
    model loading) run in a dependency of the app instead, started with it, so a recovery that
    never ends is watched."""
    from faust.types import TP

    from stream.config import Settings
    from stream.worker.app import _StartsWithTheApp, build_app
    from tests.fakes import FakeModelHandler

    settings = Settings(KAFKA_BROKER="kafka://127.0.0.1:1", data_dir=tmp_path, topic_prefix="x.")
    worker = build_app(
        settings, handler_factory=lambda s: FakeModelHandler(), fraud_scorer_factory=object
    )
    assert any(isinstance(child, _StartsWithTheApp) for child in worker.app._children)
    assert not {"watch", "load_models"} & {task.__name__ for task in worker.app._app_tasks}
    assert worker.why_not_ready().startswith("not yet: model_loaded, recovery_done")
    worker.watchdog = Watchdog(started_s=0)
    worker.watchdog.observe(lost(1, "missing topics: x.labels"))
    assert worker.why_not_ready().startswith("the broker lost data this worker knew")
    assert worker.recovery_progress() == (False, 0)
    # Faust holds None for a changelog partition it has not read yet: no crash, not counted
    recovery = worker.app.tables.recovery
    tps = [TP("x.riskstream-member-to-profile-changelog", p) for p in range(3)]
    recovery.active_offsets.update({tps[0]: 41, tps[1]: None})
    recovery.standby_offsets.update({tps[2]: None})
    assert worker.recovery_progress() == (False, 41)


def test_one_stuck_partition_is_resynced_then_exits_though_others_move() -> None:
    """Seen in CI: after each resync the worker's other partitions re-admitted their
    uncommitted records, so the total kept moving while reviews[1] never did; the stall
    resynced every 35 s for minutes and never ended. Progress is per partition, and a
    partition moved back to its commit by a resync has not progressed."""
    dog = Watchdog(WatchdogPolicy(stalled_s=60, resync_after_s=20), started_s=0)
    verdicts = []
    for i, t in enumerate(range(0, 70, 5)):
        back = 100 if t < 25 else 90  # a resync at 20 s moved it back to its commit
        obs = Observation(
            t,
            True,
            True,
            admitted_total=i,
            lag_total=40,
            lagging={"reviews[1]": back, "chats[0]": 500 + i},
        )
        verdicts.append((t, dog.observe(obs), dog.resync_due(obs), dog.stalled_partition))
    resyncs = [(t, why, name) for t, _, why, name in verdicts if why]
    assert [(t, name) for t, _, name in resyncs] == [(20, "reviews[1]")], verdicts
    assert "no record of reviews[1] admitted for 20 s" in resyncs[0][1]
    exits = [(t, verdict) for t, verdict, _, _ in verdicts if verdict]
    assert exits and exits[0][0] == 60, verdicts
    assert "no record of reviews[1] admitted for 60 s" in exits[0][1]


def test_a_partition_that_moves_or_catches_up_is_not_stuck() -> None:
    dog = Watchdog(WatchdogPolicy(stalled_s=60, resync_after_s=20), started_s=0)
    for i, t in enumerate(range(0, 300, 5)):
        lagging = {"reviews[1]": 100 + i} if t < 150 else {}  # moving, then caught up
        if 200 <= t < 215:
            lagging = {"reviews[1]": 400}  # new records wait 15 s: under the resync's 20
        obs = Observation(t, True, True, i, 10, lagging=lagging)
        assert dog.observe(obs) is None, t
        assert dog.resync_due(obs) is None, t


def test_a_partition_stalled_while_not_ready_starts_its_clock_when_ready() -> None:
    dog = Watchdog(WatchdogPolicy(stalled_s=60, resync_after_s=20), started_s=0)
    for t in range(0, 100, 5):  # a long rebalance: not ready
        assert dog.observe(Observation(t, True, False, t, 10, lagging={"chats[2]": 7})) is None
    ready = [Observation(t, True, True, t, 10, lagging={"chats[2]": 7}) for t in (100, 110)]
    assert [dog.observe(obs) for obs in ready] == [None, None]
    assert dog.resync_due(ready[-1]) is None  # 15 s since it was last not ready, not 110


def test_a_stalled_partition_is_described_in_one_line() -> None:
    """What the worker logs when one partition stalls: Faust's, aiokafka's and the ledger's
    view of it, so the next stall says where its records stop."""
    from types import SimpleNamespace

    from faust.types import TP

    from stream.config import Settings
    from stream.core.delivery import DeliveryLedger, Verdict
    from stream.worker import faust_fixes
    from stream.worker.app import Worker

    settings = Settings(KAFKA_BROKER="kafka://127.0.0.1:1", topic_prefix="p.")
    tp = TP("p.reviews", 1)
    state = SimpleNamespace(paused=False, _position=140)
    kafka = SimpleNamespace(
        _subscription=SimpleNamespace(
            subscription=SimpleNamespace(assignment=SimpleNamespace(state_value={tp: state}.get))
        ),
        _fetcher=SimpleNamespace(_records={tp: object()}),
    )
    consumer = SimpleNamespace(
        _active_partitions=set(),
        _paused_partitions=set(),
        _buffered_partitions={tp},
        flow_active=True,
        _thread=SimpleNamespace(_ensure_consumer=lambda: kafka),
        highwater={tp: 173}.get,
    )
    ledger = DeliveryLedger()
    ledger.assign({("p.reviews", 1): 130})
    ledger.seen[("p.reviews", 1), Verdict.HOLE] += 1  # one record past the ledger's next
    faust_fixes.TRACE.fetched[("p.reviews", 1)] += 9
    faust_fixes.TRACE.yielded[("p.reviews", 1)] += 9
    read, ended, orphan = (SimpleNamespace(queue=asyncio.Queue()) for _ in range(3))
    orphan.queue.put_nowait("record")
    running, done = (SimpleNamespace(done=lambda d=d: d) for d in (False, True))
    actors = [
        SimpleNamespace(stream=SimpleNamespace(channel=chan), actor_task=task)
        for chan, task in ((read, running), (ended, done))
    ]
    agent = SimpleNamespace(_actors=actors)
    app = SimpleNamespace(
        consumer=consumer,
        agents={"score_reviews": agent},
        topics=SimpleNamespace(
            _tp_index={tp: [read, ended, orphan]}, _tp_to_callback={tp: object()}
        ),
        flow_control=SimpleNamespace(is_active=lambda: True),
        consumer_generation_id=4,
    )
    worker = Worker(settings, app, ledger, stages=None)
    assert worker.fetch_state("reviews[1]") == (
        "reviews[1]: faust active=False, paused=False, buffered=True, flow_active=True, "
        "aiokafka assigned=True, paused=False, position=140, holds fetched records=True, "
        "ledger next=130, committable=130, highwater=173, "
        "fetched 9, yielded 9, dropped on a suspended flow 0, "
        "streams handed the ledger process 0, repeat 0, hole 1, unassigned 0, "
        "app flow control active=True, generation 4, conductor handler=True, "
        "channels: read with 0 queued; its agent ENDED with 0 queued; NOT READ with 1 queued"
    )
    consumer._thread = SimpleNamespace(_ensure_consumer=lambda: 1 / 0)
    assert "aiokafka state unreadable (ZeroDivisionError" in worker.fetch_state("reviews[1]")


def test_stall_resyncs_come_at_most_one_per_resync_interval() -> None:
    """A resync drops every partition's in-flight work: one per stuck partition, each on the
    next observation, kept a slow worker from finishing anything (CI: one every 5 s)."""
    dog = Watchdog(WatchdogPolicy(stalled_s=600, resync_after_s=30), started_s=0)
    names = [f"reviews[{p}]" for p in range(4)]
    resyncs = []
    for i, t in enumerate(range(0, 150, 5)):
        obs = Observation(t, True, True, i, 40, lagging={name: 7 for name in names})
        assert dog.observe(obs) is None
        why = dog.resync_due(obs)
        if why:
            resyncs.append((t, why))
    assert [t for t, _ in resyncs] == [30, 60, 90, 120], resyncs
    assert "no record of" in resyncs[1][1] and dog.stalled_partition in names


async def test_a_resync_leaves_the_flow_to_a_rebalance_that_began_during_its_seek() -> None:
    """Resuming the flow mid-rebalance let records in before the rebalance's own seek told the
    ledger where its partitions start (they were skipped as unknown)."""
    from types import SimpleNamespace

    from stream.config import Settings
    from stream.core.delivery import DeliveryLedger
    from stream.worker.app import Worker

    resumed: list[str] = []
    app = SimpleNamespace(rebalancing=False)

    async def perform_seek() -> None:
        app.rebalancing = seek_starts_a_rebalance

    app.consumer = SimpleNamespace(
        assignment=lambda: set(),
        resume_partitions=lambda tps: None,
        perform_seek=perform_seek,
        resume_flow=lambda: resumed.append("consumer"),
    )
    app.flow_control = SimpleNamespace(resume=lambda: resumed.append("app"))
    settings = Settings(KAFKA_BROKER="kafka://127.0.0.1:1")
    worker = Worker(settings, app, DeliveryLedger(), stages=None)
    for seek_starts_a_rebalance in (False, True):
        resumed.clear()
        app.rebalancing = False
        await worker.resync_delivery("stalled")
        assert resumed == ([] if seek_starts_a_rebalance else ["app", "consumer"])
