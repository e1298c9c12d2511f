"""Two targeted fixes for Faust 0.15, applied once when the app is created.

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
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

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
        return committed

    return await self.call_thread(seek)


_original_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer
_fetch_max_wait_ms = 1500


def _create_worker_consumer_with_fetch_wait(self: AIOKafkaConsumerThread, transport: Any) -> Any:
    consumer = _original_create_worker_consumer(self, transport)
    consumer._fetch_max_wait_ms = _fetch_max_wait_ms  # read when the consumer starts
    return consumer


def apply(fetch_max_wait_ms: int = 1500) -> None:
    """Install both fixes (idempotent)."""
    global _fetch_max_wait_ms
    _fetch_max_wait_ms = fetch_max_wait_ms
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed_then_rewind_uncommitted
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer_with_fetch_wait
