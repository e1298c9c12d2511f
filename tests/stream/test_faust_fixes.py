"""The Faust fixes: uncommitted partitions are rewound (and the ledger learns where each
partition restarts), the fetch wait is set, and commit offsets come from the ledger only, so no
commit skips records that were fetched but never processed."""

from __future__ import annotations

import asyncio
import logging
import threading
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from mode.services import WaitResults
from mode.threads import QueueServiceThread

from stream.worker import faust_fixes


def tp(partition: int) -> TopicPartition:
    return TopicPartition("a", partition)


class RecordingConsumer:
    """The aiokafka calls the seek makes; every partition's log starts at offset 5."""

    def __init__(
        self,
        committed: dict[TopicPartition, int | None],
        ends: dict[TopicPartition, int] | None = None,
    ) -> None:
        self.commits = committed
        self.sought: dict[TopicPartition, int] = {}
        self.ends = ends  # listed end offsets; None: each partition ends at its commit

    @property
    def rewound(self) -> list[TopicPartition]:
        """Partitions sought to their earliest offset, in seek order."""
        return [p for p, offset in self.sought.items() if offset == 5]

    def assignment(self) -> set[TopicPartition]:
        return set(self.commits)

    async def committed(self, partition: TopicPartition) -> int | None:
        await asyncio.sleep(0)  # a broker round trip: the fetch loop runs meanwhile
        return self.commits[partition]

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        ends = self.ends if self.ends is not None else self.commits
        return {p: ends[p] or 0 for p in partitions}

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict:
        await asyncio.sleep(0)
        return {p: 5 for p in partitions}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.sought[partition] = offset


class ThreadStandIn:
    """Just the two members the fix uses; the consumer thread itself is not under test."""

    def __init__(self, consumer: RecordingConsumer) -> None:
        self.consumer = consumer

    def _ensure_consumer(self) -> RecordingConsumer:
        return self.consumer

    async def call_thread(self, fun):
        return await fun()


async def test_uncommitted_and_zero_partitions_are_rewound() -> None:
    consumer = RecordingConsumer({tp(0): None, tp(1): 0, tp(2): 17})
    result = await faust_fixes._seek_to_committed_then_rewind_uncommitted(ThreadStandIn(consumer))
    assert result == {tp(0): None, tp(1): 0, tp(2): 17}
    assert sorted(consumer.rewound) == [tp(0), tp(1)]
    assert consumer.sought[tp(2)] == 17
    # where processing must resume: the log start for the rewound ones, else the commit
    assert [faust_fixes._ledger.committable(("a", p)) for p in range(3)] == [5, 5, 17]


async def test_nothing_rewound_when_all_partitions_have_commits() -> None:
    consumer = RecordingConsumer({tp(0): 3, tp(1): 9})
    await faust_fixes._seek_to_committed_then_rewind_uncommitted(ThreadStandIn(consumer))
    assert consumer.rewound == []


async def test_commits_beyond_the_end_of_a_recreated_log_are_read_from_the_start(
    monkeypatch, caplog
) -> None:
    """Fix 6: a commit past the log's end (topic recreated, broker lost its data but not the
    group) is read from the earliest offset, in one line; one past only the *listed* end (the
    embedded broker lists the last batch's base offset) is checked by a fetch and kept."""
    fetched = {tp(1): 60, tp(2): 500}

    async def fetched_highwaters(consumer, partitions, listed):
        return {p: fetched[p] for p in partitions}

    monkeypatch.setattr(faust_fixes, "fetched_highwaters", fetched_highwaters)
    consumer = RecordingConsumer(
        {tp(0): 40, tp(1): 512, tp(2): 480}, ends={tp(0): 90, tp(1): 3, tp(2): 436}
    )
    faust_fixes.OFFSETS_LOST[("a", 1)] = "fetched at 512, out of range"
    result = await faust_fixes._seek_to_committed_then_rewind_uncommitted(ThreadStandIn(consumer))
    assert consumer.rewound == [tp(1)]
    assert consumer.sought == {tp(0): 40, tp(1): 5, tp(2): 480}
    assert result == {tp(0): 40, tp(1): 0, tp(2): 480}
    assert [faust_fixes._ledger.committable(("a", p)) for p in range(3)] == [40, 5, 480]
    (line,) = [r.getMessage() for r in caplog.records if "beyond the end" in r.getMessage()]
    assert "a[1] at 512 > end 60" in line and "reading from the earliest offset" in line
    assert ("a", 1) not in faust_fixes.OFFSETS_LOST  # sought again: the watchdog's sign clears


async def test_records_fetched_after_a_seek_meet_the_ledgers_new_start() -> None:
    """The fetch loop runs while the seek waits for the broker. Every record it fetches after
    a seek must be judged by the start that seek set: before, aiokafka sought first and the
    ledger learned the start after more broker round trips, so the records fetched between
    were skipped as unknown (or judged by the old start) and the partition sat at its log's
    end with nothing admitted (CI: 988 of 988 skipped). The stand-in fetch loop admits the
    record at each sought position on every turn of the event loop."""
    from stream.core.delivery import DeliveryLedger, Verdict

    ledger = DeliveryLedger()
    ledger.assign({("a", 0): 30})  # before the rebalance: admitted up to 30
    for offset in range(30, 40):
        ledger.admit(("a", 0), offset)
    ledger.revoke([("a", 1)])  # a partition new to this worker: unknown until the seek
    consumer = RecordingConsumer({tp(0): 30, tp(1): 12})
    verdicts: list[tuple[int, Verdict]] = []
    done = False

    async def fetch_loop() -> None:
        judged: set[tuple[TopicPartition, int]] = set()
        while not done:
            for partition, position in list(consumer.sought.items()):
                if (partition, position) not in judged:  # records from the new position
                    judged.add((partition, position))
                    decision = ledger.admit(("a", partition.partition), position)
                    verdicts.append((partition.partition, decision.verdict))
            await asyncio.sleep(0)

    loop_task = asyncio.ensure_future(fetch_loop())
    await faust_fixes.seek_and_teach_the_ledger(consumer, ledger)
    await asyncio.sleep(0)
    done = True
    await loop_task
    assert sorted(verdicts) == [(0, Verdict.PROCESS), (1, Verdict.PROCESS)]


async def test_a_partition_revoked_while_the_broker_answers_is_not_sought() -> None:
    consumer = RecordingConsumer({tp(0): 30, tp(1): 12})
    commits = consumer.commits

    async def committed(partition: TopicPartition) -> int | None:
        consumer.commits = {tp(0): 30}  # a rebalance took partition 1 meanwhile
        return commits[partition]

    consumer.committed = committed
    ledger = faust_fixes._ledger
    ledger.revoke([("a", 1)])
    await faust_fixes.seek_and_teach_the_ledger(consumer, ledger)
    assert consumer.sought == {tp(0): 30}
    assert ledger.committable(("a", 1)) is None


def test_aiokafka_out_of_range_resets_are_recorded_for_the_watchdog() -> None:
    faust_fixes.apply()
    fetcher = logging.getLogger("aiokafka.consumer.fetcher")
    fetcher.info(
        "Fetch offset %s is out of range for partition %s, resetting offset",
        812,
        TopicPartition("x.reviews", 3),
    )
    assert faust_fixes.OFFSETS_LOST.pop(("x.reviews", 3)) == "fetched at 812, out of range"


def test_building_the_app_installs_the_fix(tmp_path) -> None:
    from stream.config import Settings
    from stream.worker.app import build_app
    from tests.fakes import FakeModelHandler

    settings = Settings(KAFKA_BROKER="kafka://127.0.0.1:1", data_dir=tmp_path)
    build_app(settings, handler_factory=lambda s: FakeModelHandler())
    assert (
        AIOKafkaConsumerThread.seek_to_committed
        is faust_fixes._seek_to_committed_then_rewind_uncommitted
    )
    assert Consumer._drain_messages is faust_fixes._drain_messages_without_tasks
    assert ThreadDelegateConsumer._seek is faust_fixes._seek_on_the_consumer_thread
    assert ThreadDelegateConsumer._getmany is faust_fixes._getmany_counted


def test_worker_consumers_get_the_configured_fetch_wait(monkeypatch) -> None:
    from stream.config import Settings

    settings = Settings(KAFKA_BROKER="kafka://127.0.0.1:1")

    class Consumer:
        _fetch_max_wait_ms = 1500  # what Faust hard-codes

    monkeypatch.setattr(faust_fixes, "_original_create_worker_consumer", lambda *_: Consumer())
    try:
        faust_fixes.apply(fetch_max_wait_ms=80)
        assert AIOKafkaConsumerThread._create_worker_consumer(None, None)._fetch_max_wait_ms == 80
    finally:
        faust_fixes.apply(fetch_max_wait_ms=settings.fetch_max_wait_ms)


def test_no_commit_past_records_fetched_but_never_processed(monkeypatch) -> None:
    """Faust's ack list says 3..5 (and a "gap" 6..9) were done while 0..2 never were: the
    commit offset is the ledger's, and the ledger saw nothing processed yet."""
    from collections import defaultdict

    from faust.types import TP

    from stream.core.delivery import DeliveryLedger

    tp = TP("reviews", 0)
    ledger = DeliveryLedger()
    ledger.assign({("reviews", 0): 0})
    monkeypatch.setattr(faust_fixes, "_ledger", ledger)

    class FaustConsumer:
        _acked = defaultdict(list, {tp: [3, 4, 5]})
        _acked_index = defaultdict(set, {tp: {3, 4, 5}})
        _gap = defaultdict(list, {tp: [(6, 10)]})

    consumer = FaustConsumer()
    assert faust_fixes._new_offset_from_the_ledger(consumer, tp) == 0
    assert consumer._acked[tp] == [] and tp not in consumer._gap  # Faust's lists decide nothing
    for offset in range(3):
        decision = ledger.admit(("reviews", 0), offset)
        ledger.complete(decision.admission)
    assert faust_fixes._new_offset_from_the_ledger(consumer, tp) == 3


def test_no_commit_past_the_end_of_a_log_that_shrank(monkeypatch) -> None:
    """Fix 6: the old offsets of a recreated topic are never committed onto the new one (the
    successor would skip the new records below them)."""
    from collections import defaultdict

    from faust.types import TP

    from stream.core.delivery import DeliveryLedger

    tp = TP("reviews", 1)
    ledger = DeliveryLedger()
    ledger.assign({("reviews", 1): 500})
    monkeypatch.setattr(faust_fixes, "_ledger", ledger)

    class FaustConsumer:
        _acked = defaultdict(list)
        _acked_index = defaultdict(set)
        _gap = defaultdict(list)
        high = 800

        def highwater(self, tp):
            return self.high

    consumer = FaustConsumer()
    assert faust_fixes._new_offset_from_the_ledger(consumer, tp) == 500
    consumer.high = 12  # the topic was recreated: its log ends at 12
    assert faust_fixes._new_offset_from_the_ledger(consumer, tp) is None
    assert faust_fixes.OFFSETS_LOST[("reviews", 1)] == "at 500, its log ends at 12"
    consumer.high = 900  # the new log grew past the old offset: still nothing committed
    assert faust_fixes._new_offset_from_the_ledger(consumer, tp) is None
    faust_fixes.OFFSETS_LOST.clear()


def test_the_read_offset_filter_is_off() -> None:
    """Faust drops records below its read offset (records re-read after a seek) and commits
    jumps in it as gaps; with the fix its read offset is always unknown."""
    read = faust_fixes._NoReadOffsets()
    read["tp"] = 17
    assert read["tp"] is None and read.get("tp") is None


async def test_flush_waits_until_buffered_table_writes_are_acknowledged(monkeypatch) -> None:
    """Faust's buffer flush returns after 0.1 s without a send, with writes still buffered:
    a commit then went past table writes a crash lost. The fixed flush waits for the acks."""
    loop = asyncio.get_running_loop()

    class Buffer:
        pass

    buffer = Buffer()
    monkeypatch.setattr(faust_fixes, "_original_buffer_put", lambda self, fut: None)

    async def faust_flush(self) -> None:  # what Faust does when nothing moves for 0.1 s
        return None

    monkeypatch.setattr(faust_fixes, "_original_buffer_flush", faust_flush)
    write = loop.create_future()
    faust_fixes._put_tracked(buffer, write)
    loop.call_later(0.3, write.set_result, "acked")
    started = loop.time()
    await faust_fixes._flush_until_acknowledged(buffer)
    assert write.done() and loop.time() - started >= 0.25
    assert not buffer._unsettled

    stuck = loop.create_future()
    faust_fixes._put_tracked(buffer, stuck)
    monkeypatch.setattr(faust_fixes, "CHANGELOG_FLUSH_TIMEOUT_S", 0.05)
    with pytest.raises(RuntimeError, match="not committing past them"):
        await faust_fixes._flush_until_acknowledged(buffer)


@pytest.mark.integration
async def test_recovery_high_water_marks_come_from_a_fetch(kafka_broker, topic_prefix) -> None:
    """The embedded broker lists the base offset of the last batch as the end: recovery read
    one batch short. The fetched high-water mark is the real end."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = topic_prefix + "hw"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, linger_ms=5)
    await producer.start()
    for _ in range(3):  # three batches
        await asyncio.gather(*[await producer.send(topic, b"x", partition=0) for _ in range(50)])
    await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        listed = await consumer.end_offsets([tp])
        fetched = await faust_fixes.fetched_highwaters(consumer, [tp], listed)
    finally:
        await consumer.stop()
    assert fetched[tp] == 150
    print(f"listed end {listed[tp]}, fetched high-water mark {fetched[tp]}")


class DrainingConsumer:
    """What fix 7's fetch loop reads from Faust's consumer: records to hand over, the stream
    callback, the flags, and a ``wait_first`` that counts its calls (Faust's: the first of the
    awaitables to finish wins, the rest are cancelled)."""

    def __init__(self, records: list[tuple[int, str]], callback) -> None:
        self.records = records
        self.callback = callback
        self._stopped = asyncio.Event()
        self.suspend_flow = asyncio.Event()
        self._read_offset: dict = faust_fixes._NoReadOffsets()
        self._commit_every = None
        self._n_acked = 0
        self.should_stop = False
        self.wait_first_calls = 0
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
        self.consumer_stopped_errors = ()
        self.fetches = 0

    async def getmany(self, timeout: float):
        self.fetches += 1
        if self.fetches > 1:
            self._stopped.set()  # one fetch, then the loop ends
            return
        for offset, value in self.records:
            yield tp(0), SimpleNamespace(offset=offset, value=value, topic="a")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_first(self, *awaitables):
        self.wait_first_calls += 1
        tasks = [asyncio.ensure_future(a) for a in awaitables]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()
        won = [a for a, task in zip(awaitables, tasks, strict=True) if task in done]
        return WaitResults(won, [None] * len(won), False)


async def test_records_whose_callback_never_waits_take_no_task_and_keep_their_order() -> None:
    handed: list[str] = []

    async def callback(message) -> None:
        handed.append(message.value)

    consumer = DrainingConsumer([(n, f"r{n}") for n in range(250)], callback)
    await faust_fixes._drain_messages_without_tasks(consumer, consumer)
    assert handed == [f"r{n}" for n in range(250)]
    assert consumer.wait_first_calls == 0


async def test_a_callback_that_waits_is_resumed_where_it_stopped() -> None:
    """A full queue: the callback waits on a future; the loop takes Faust's way for that record
    and the callback finishes from where it stopped (its first half runs once)."""
    room = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def callback(message) -> None:
        steps.append(f"start {message.value}")
        if message.value == "r1":
            await room
        steps.append(f"put {message.value}")

    consumer = DrainingConsumer([(0, "r0"), (1, "r1"), (2, "r2")], callback)
    asyncio.get_running_loop().call_later(0.05, room.set_result, None)
    await faust_fixes._drain_messages_without_tasks(consumer, consumer)
    assert steps == ["start r0", "put r0", "start r1", "put r1", "start r2", "put r2"]
    assert consumer.wait_first_calls == 1


async def test_a_suspended_flow_drops_the_record_that_waits_as_faust_does() -> None:
    """The flow is suspended (a rebalance) while a record waits: the wait is cancelled inside
    the callback, the record is not put, and the loop goes on."""
    never = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def callback(message) -> None:
        try:
            if message.value == "r1":
                await never
            steps.append(f"put {message.value}")
        except asyncio.CancelledError:
            steps.append(f"cancelled {message.value}")
            raise

    consumer = DrainingConsumer([(0, "r0"), (1, "r1"), (2, "r2")], callback)
    asyncio.get_running_loop().call_later(0.05, consumer.suspend_flow.set)
    key = (tp(0).topic, tp(0).partition)
    before = faust_fixes.TRACE.yielded[key], faust_fixes.TRACE.suspended[key]
    await faust_fixes._drain_messages_without_tasks(consumer, consumer)
    await asyncio.sleep(0)
    assert steps == ["put r0", "cancelled r1", "put r2"]
    assert consumer.wait_first_calls == 2  # r1 waited; r2 came while the flow was suspended
    # the trace counts the three handed on and the one the suspended flow dropped
    after = faust_fixes.TRACE.yielded[key], faust_fixes.TRACE.suspended[key]
    assert (after[0] - before[0], after[1] - before[1]) == (3, 1)


class _RecordingThread(QueueServiceThread):
    """A consumer thread whose ``seek`` notes the thread it ran on (aiokafka's must run on
    the consumer thread's loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.seeks: list[tuple[object, int, int]] = []

    def seek(self, partition: object, offset: int) -> None:
        self.seeks.append((partition, offset, threading.get_ident()))

    async def on_thread_started(self) -> None:
        await super().on_thread_started()
        self.ident = threading.get_ident()


async def test_a_seek_runs_on_the_consumer_thread_not_the_caller() -> None:
    thread = _RecordingThread()
    await thread.start()
    try:
        tp, delegate = TopicPartition("x.reviews", 1), SimpleNamespace(_thread=thread)
        await faust_fixes._original_delegate_seek(delegate, tp, 56)  # Faust's: the caller's
        await faust_fixes._seek_on_the_consumer_thread(delegate, tp, 57)
        assert thread.seeks == [(tp, 56, threading.get_ident()), (tp, 57, thread.ident)]
        assert thread.ident != threading.get_ident()
    finally:
        await thread.stop()


async def test_the_trace_counts_what_aiokafka_returned_per_partition() -> None:
    """A stall's log line compares these counts with what the ledger saw."""
    a, b = TopicPartition("x.chats", 0), TopicPartition("x.chats", 1)

    async def getmany(active_partitions, timeout):
        return {a: [1, 2, 3], b: [4]}

    delegate = SimpleNamespace(_thread=SimpleNamespace(getmany=getmany))
    before = faust_fixes.TRACE.fetched[("x.chats", 0)], faust_fixes.TRACE.fetched[("x.chats", 1)]
    records = await faust_fixes._getmany_counted(delegate, {a, b}, 1.0)
    assert records == {a: [1, 2, 3], b: [4]}  # handed on unchanged
    after = faust_fixes.TRACE.fetched[("x.chats", 0)], faust_fixes.TRACE.fetched[("x.chats", 1)]
    assert (after[0] - before[0], after[1] - before[1]) == (3, 1)


def test_the_outbox_reaches_fausts_own_aiokafka_producer_or_refuses_at_build() -> None:
    import faust
    from faust.exceptions import NotReady

    app = faust.App("outbox-accessor", broker="kafka://127.0.0.1:1")  # no I/O until started
    ensure = faust_fixes.aiokafka_producer(app)
    assert ensure.__self__ is app.producer  # the producer Faust flushes before a commit
    with pytest.raises(NotReady):  # its aiokafka producer exists once Faust started it
        ensure()
    other = SimpleNamespace(producer=SimpleNamespace(send=lambda *a: None))
    with pytest.raises(RuntimeError, match="has no _ensure_producer"):
        faust_fixes.aiokafka_producer(other)
