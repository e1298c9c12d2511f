"""The Faust seek fix rewinds exactly the partitions that have no positive committed offset."""

from __future__ import annotations

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from stream import faust_fixes


class RecordingConsumer:
    def __init__(self, committed: dict[str, int | None]) -> None:
        self.committed = committed
        self.rewound: list[str] = []

    async def seek_to_committed(self) -> dict[str, int | None]:
        return self.committed

    async def seek_to_beginning(self, *partitions: str) -> None:
        self.rewound.extend(partitions)


class ThreadStandIn:
    """Just the two members the fix uses; the consumer thread itself is not under test."""

    def __init__(self, consumer: RecordingConsumer) -> None:
        self.consumer = consumer

    def _ensure_consumer(self) -> RecordingConsumer:
        return self.consumer

    async def call_thread(self, fun):
        return await fun()


async def test_uncommitted_and_zero_partitions_are_rewound() -> None:
    consumer = RecordingConsumer({"a-0": None, "a-1": 0, "a-2": 17})
    result = await faust_fixes._seek_to_committed_then_rewind_uncommitted(ThreadStandIn(consumer))
    assert result == {"a-0": None, "a-1": 0, "a-2": 17}
    assert consumer.rewound == ["a-0", "a-1"]


async def test_nothing_rewound_when_all_partitions_have_commits() -> None:
    consumer = RecordingConsumer({"a-0": 3, "a-1": 9})
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
