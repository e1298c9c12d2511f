"""``Outbox``: a batch's outputs as one record batch per topic-partition, against the real
broker: the partitions aiokafka's default partitioner picks for the same keys, order within a
partition, the bytes as given, and a full builder split rather than a record lost."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.member import Output
from stream.core.partitioning import key_partition, murmur2
from stream.worker.outbox import Outbox
from tests.kafka_io import collect


async def _topics(bootstrap: str, *names: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


async def _read(bootstrap: str, topic: str, count: int) -> dict[int, list[tuple[bytes, bytes]]]:
    """``count`` records of ``topic`` (30 s at most), by partition, in offset order."""
    found = await collect(bootstrap, [topic], lambda got: len(got[topic]) >= count, 30)
    by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
    for record in found[topic]:
        by_partition[record.partition].append((record.key, record.value))
    return by_partition


@pytest.mark.asyncio
async def test_keyed_outputs_land_where_the_default_partitioner_puts_them_in_order(
    kafka_broker,
) -> None:
    bootstrap = kafka_broker.bootstrap
    ours, theirs = f"outbox-{uuid.uuid4().hex[:8]}", f"outbox-ref-{uuid.uuid4().hex[:8]}"
    await _topics(bootstrap, ours, theirs, partitions=3)
    keys = [f"event-{i % 17}".encode() for i in range(60)]  # repeated keys: order matters
    outputs = [Output("scored", key, b"v%d" % i) for i, key in enumerate(keys)]
    outputs.append(Output("scored", b"pinned", b"on partition 2", partition=2))
    delivered: list[asyncio.Future] = []
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        outbox = Outbox(lambda: producer, {"scored": ours}, delivered.append)
        deliveries = await outbox.send_many(outputs)
        await asyncio.gather(*deliveries)
        assert len(deliveries) == 3  # one record batch per partition, not 61 futures
        assert delivered == deliveries  # each with the delivery callback
        await asyncio.gather(*[await producer.send(theirs, b"", key=key) for key in keys])
    finally:
        await producer.stop()
    got = await _read(bootstrap, ours, len(outputs))
    reference = await _read(bootstrap, theirs, len(keys))
    theirs_at = {key: partition for partition, rs in reference.items() for key, _ in rs}
    assert {key: theirs_at[key] for key in keys} == {
        key: key_partition(key, [0, 1, 2]) for key in keys
    }
    for partition, records in got.items():
        for key, _ in records:
            assert (key == b"pinned" and partition == 2) or theirs_at[key] == partition
    for partition in range(3):
        expected = [
            (o.key, o.value)
            for o in outputs
            if (o.partition == partition) or (o.partition is None and theirs_at[o.key] == partition)
        ]
        assert got[partition] == expected


@pytest.mark.asyncio
async def test_a_full_record_batch_is_sent_and_the_rest_goes_in_the_next(kafka_broker) -> None:
    bootstrap = kafka_broker.bootstrap
    topic = f"outbox-full-{uuid.uuid4().hex[:8]}"
    await _topics(bootstrap, topic, partitions=1)
    outputs = [Output("scored", b"k%d" % i, bytes([65 + i % 26]) * 300) for i in range(40)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=2048)
    await producer.start()
    try:
        deliveries = await Outbox(lambda: producer, {"scored": topic}, lambda _: None).send_many(
            outputs
        )
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()
    assert len(deliveries) > 5  # 12 kB of records in 2 kB batches
    got = await _read(bootstrap, topic, len(outputs))
    assert got[0] == [(o.key, o.value) for o in outputs]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_murmur2_is_kafkas(data: bytes) -> None:
    from aiokafka.partitioner import murmur2 as aiokafkas

    assert murmur2(data) == aiokafkas(data)
