"""A publisher batch's outputs produced as record batches: one per topic-partition.

Faust's ``Producer.send``, and aiokafka's ``send`` under it, pay per record: Faust's produce
hooks, aiokafka's partitioner, a future per record when it is appended and another set when
the broker answers (about 10 % of the stubbed worker's samples, ``docs/benchmarks.md``). The
publisher already waits for all of a batch's outputs before it writes member states
(``Stages.deliver``), so it gives up nothing by handing aiokafka one ``BatchBuilder`` per
topic-partition (``send_batch``): one future per partition, the same record bytes, for a key
the same partition as aiokafka's default partitioner picks (murmur2 over the sorted
partitions), and the same order within a partition. Faust flushes the producer before it
commits, and these batches are in its accumulator like any other, so a commit still waits
for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from stream.core.member import Output
from stream.core.partitioning import key_partition


class Outbox:
    """``send_many(outputs)`` -> one delivery future per record batch, each with
    ``on_delivery`` as its done callback. ``names`` maps a logical topic to its name."""

    def __init__(
        self,
        producer: Callable[[], AIOKafkaProducer],
        names: Mapping[str, str],
        on_delivery: Callable[[asyncio.Future[Any]], None],
    ) -> None:
        self.producer = producer
        self.names = names
        self.on_delivery = on_delivery

    async def send_many(self, outputs: Sequence[Output]) -> list[asyncio.Future[Any]]:
        producer = self.producer()
        partitions: dict[str, list[int]] = {}
        by_partition: dict[tuple[str, int], list[Output]] = {}
        deliveries: list[asyncio.Future[Any]] = []
        for output in outputs:
            topic = self.names[output.topic]
            partition = output.partition
            if partition is None:
                if output.key is None:  # no key: the producer picks one (none of ours)
                    deliveries.append(await producer.send(topic, output.value))
                    continue
                known = partitions.get(topic)
                if known is None:
                    known = partitions[topic] = sorted(await producer.partitions_for(topic))
                partition = key_partition(output.key, known)
            by_partition.setdefault((topic, partition), []).append(output)
        for (topic, partition), records in by_partition.items():
            builder = producer.create_batch()
            for record in records:
                if builder.append(timestamp=None, key=record.key, value=record.value) is None:
                    # full: out it goes (a builder always takes its first record)
                    sent = await producer.send_batch(builder, topic, partition=partition)
                    deliveries.append(sent)
                    builder = producer.create_batch()
                    builder.append(timestamp=None, key=record.key, value=record.value)
            builder.close()  # no ``producer.send`` appends to it: its one future is ours
            deliveries.append(await producer.send_batch(builder, topic, partition=partition))
        for delivery in deliveries:
            delivery.add_done_callback(self.on_delivery)
        return deliveries
