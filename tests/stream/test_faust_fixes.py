"""The Faust fixes: uncommitted partitions are rewound (and the ledger learns where each
partition restarts), the fetch wait is set, and commit offsets come from the ledger only, so no
commit skips records that were fetched but never processed."""

from __future__ import annotations

from aiokafka import TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from stream import faust_fixes


def tp(partition: int) -> TopicPartition:
    return TopicPartition("a", partition)


class RecordingConsumer:
    def __init__(self, committed: dict[TopicPartition, int | None]) -> None:
        self.committed = committed
        self.rewound: list[TopicPartition] = []

    async def seek_to_committed(self) -> dict[TopicPartition, int | None]:
        return self.committed

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.rewound.extend(partitions)

    async def position(self, partition: TopicPartition) -> int:
        return 5 if partition in self.rewound else self.committed[partition]


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
    assert consumer.rewound == [tp(0), tp(1)]
    # where processing must resume: the log start for the rewound ones, else the commit
    assert [faust_fixes._ledger.committable(("a", p)) for p in range(3)] == [5, 5, 17]


async def test_nothing_rewound_when_all_partitions_have_commits() -> None:
    consumer = RecordingConsumer({tp(0): 3, tp(1): 9})
    await faust_fixes._seek_to_committed_then_rewind_uncommitted(ThreadStandIn(consumer))
    assert consumer.rewound == []


def test_the_app_installs_the_fix() -> None:
    import stream.app  # noqa: F401

    assert (
        AIOKafkaConsumerThread.seek_to_committed
        is faust_fixes._seek_to_committed_then_rewind_uncommitted
    )


def test_worker_consumers_get_the_configured_fetch_wait(monkeypatch) -> None:
    from stream.app import settings

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

    from stream.delivery import DeliveryLedger

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


def test_the_read_offset_filter_is_off() -> None:
    """Faust drops records below its read offset (records re-read after a seek) and commits
    jumps in it as gaps; with the fix its read offset is always unknown."""
    read = faust_fixes._NoReadOffsets()
    read["tp"] = 17
    assert read["tp"] is None and read.get("tp") is None
