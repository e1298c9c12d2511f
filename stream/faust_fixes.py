"""Three targeted fixes for Faust 0.15, applied once when the app is created.

1. Fetch wait. Faust hard-codes ``fetch_max_wait_ms=1500`` for its consumers. A broker answers
   a fetch at once when it has data, so the wait costs nothing on Apache Kafka, but a broker
   that holds every fetch until the wait runs out (the embedded Tansu broker does) adds up to
   1.5 s per consumer hop. ``RISKSTREAM_FETCH_MAX_WAIT_MS`` sets it (default 100 ms).

2. Delivery gap.

What goes wrong: when a worker joins, aiokafka may fetch records of the input partitions before
Faust pauses them for table recovery; Faust drops records that arrive while its flow is
suspended but still advances its read offset. After recovery, Faust seeks each partition to its
committed offset, but aiokafka's ``seek_to_committed`` only seeks when that offset is > 0, so a
partition with no commit (or commit 0) is never rewound: its leading records are never processed,
and Faust's commit bookkeeping (contiguous runs of acked offsets, starting at the lowest acked
one) then commits past them. Observed here as lost events after a restart
(tests/stream/test_restart.py, docs/benchmarks.md "Delivery").

The fix: after Faust's seek, partitions without a positive committed offset are sought to the
beginning, which is what ``consumer_auto_offset_reset="earliest"`` means for them anyway.

3. Head gap. Records can still be dropped after that seek (Faust discards fetched records of a
   partition that is not active, or when its flow stops mid-batch, and aiokafka's position has
   moved past them). With no commit yet, Faust's ``_new_offset`` does not check the head of
   the acked offsets, so it commits past the dropped records and a restart never reads them:
   measured as 93 of 1,200 events lost in 2 of 3 SIGKILL-restart runs with a 20 ms fetch wait.
   The fix remembers, per partition, the next offset that must be processed (from the seek,
   then from each commit). A commit is refused while acked offsets start above it, and the
   partition is sought back to it once, so the dropped records are fetched again (their
   outputs are keyed and the member state skips repeats, so re-processing is harmless).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

logger = logging.getLogger("riskstream.faust_fixes")
_original_seek_to_committed = AIOKafkaConsumerThread.seek_to_committed


async def _seek_to_committed_then_rewind_uncommitted(
    self: AIOKafkaConsumerThread,
) -> Mapping[Any, int]:
    consumer = self._ensure_consumer()

    async def seek() -> Mapping[Any, int]:
        committed = await consumer.seek_to_committed()
        uncommitted = [tp for tp, offset in committed.items() if not offset]
        if uncommitted:
            await consumer.seek_to_beginning(*uncommitted)
            logger.debug("rewound partitions without a commit: %s", uncommitted)
        for tp, offset in committed.items():
            start = offset if offset else await consumer.position(tp)
            _next_to_process[(tp.topic, tp.partition)] = start
        return committed

    return await self.call_thread(seek)


#: (topic, partition) -> the offset that must be processed before anything later is committed.
_next_to_process: dict[tuple[str, int], int] = {}
#: (topic, partition, offset) rewinds already asked for, so a slow refill is not sought twice.
_rewinds: set[tuple[str, int, int]] = set()
_seeks: set[asyncio.Future] = set()
_original_new_offset = Consumer._new_offset


def _new_offset_without_skipping_the_head(self: Consumer, tp: Any) -> int | None:
    acked = self._acked[tp]
    key = (tp.topic, tp.partition)
    expected = _next_to_process.get(key)
    if acked and expected is not None:
        head = min([min(acked), *(gap.begin for gap in self._gap[tp])])
        if head > expected:
            if (*key, expected) not in _rewinds:
                _rewinds.add((*key, expected))
                logger.warning(
                    "%s: offsets %d..%d were fetched but not processed; reading them again",
                    tp,
                    expected,
                    head - 1,
                )
                task = asyncio.ensure_future(self.seek(tp, expected))
                _seeks.add(task)
                task.add_done_callback(_seeks.discard)
            return None
    new_offset = _original_new_offset(self, tp)
    if new_offset is not None:
        _next_to_process[key] = new_offset
    return new_offset


_original_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer
_fetch_max_wait_ms = 1500


def _create_worker_consumer_with_fetch_wait(self: AIOKafkaConsumerThread, transport: Any) -> Any:
    consumer = _original_create_worker_consumer(self, transport)
    consumer._fetch_max_wait_ms = _fetch_max_wait_ms  # read when the consumer starts
    return consumer


def apply(fetch_max_wait_ms: int = 1500) -> None:
    """Install the fixes (idempotent)."""
    global _fetch_max_wait_ms
    _fetch_max_wait_ms = fetch_max_wait_ms
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed_then_rewind_uncommitted
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer_with_fetch_wait
    Consumer._new_offset = _new_offset_without_skipping_the_head
