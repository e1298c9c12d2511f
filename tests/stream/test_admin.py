"""Topic set-up: the app's co-partitioned topics (internal topics, table changelogs) get its
partition count; an empty one with another count is recreated, one holding records is an error;
inputs and outputs keep whatever count they have."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.config import Settings
from stream.ops.admin import TopicLayoutError, ensure_topics
from tests.kafka_io import produce

pytestmark = pytest.mark.integration


async def partitions_of(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(topics)}
    finally:
        await admin.close()


async def create(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def test_partition_counts(kafka_broker, topic_prefix) -> None:
    settings = Settings(KAFKA_BROKER=kafka_broker.url, topic_prefix=topic_prefix, partitions=2)
    changelog = f"{topic_prefix}riskstream-member-to-profile-changelog"
    await create(kafka_broker.bootstrap, changelog, 4)  # e.g. auto-created by the broker
    await create(kafka_broker.bootstrap, topic_prefix + "reviews", 6)  # the platform's choice
    await ensure_topics(settings)
    counts = await partitions_of(
        kafka_broker.bootstrap, [changelog, topic_prefix + "reviews", topic_prefix + "alerts"]
    )
    assert counts == {changelog: 2, topic_prefix + "reviews": 6, topic_prefix + "alerts": 2}

    other = Settings(KAFKA_BROKER=kafka_broker.url, topic_prefix=topic_prefix, partitions=3)
    await produce(kafka_broker.bootstrap, [(changelog, b"m1", b"{}")])
    with pytest.raises(TopicLayoutError, match="hold records"):
        await ensure_topics(other)


async def test_after_broker_data_loss_owned_topics_are_recreated_and_clean(
    kafka_broker, topic_prefix, tmp_path
) -> None:
    """The watchdog's marker: a changelog auto-created with the broker's count holds records
    written after the loss and is recreated anyway; a topic a producer wrote to while it was
    missing (the embedded broker keeps such records) is created clean, so the first write to
    it succeeds (before: ``UnknownError``, and every restarted worker stopped)."""
    from aiokafka import AIOKafkaProducer

    from stream.ops.admin import data_loss_marker

    settings = Settings(
        KAFKA_BROKER=kafka_broker.url, topic_prefix=topic_prefix, partitions=2, data_dir=tmp_path
    )
    changelog = f"{topic_prefix}riskstream-member-to-profile-changelog"
    scored = topic_prefix + "scored-events"
    await create(kafka_broker.bootstrap, changelog, 4)
    await produce(kafka_broker.bootstrap, [(changelog, b"m1", b"{}")])
    await create(kafka_broker.bootstrap, scored, 2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(scored, b"old", partition=1)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([scored])  # lost ...
        finally:
            await admin.close()
        await producer.send_and_wait(scored, b"orphan", partition=1)  # ... and written to
        marker = data_loss_marker(settings)
        marker.parent.mkdir(parents=True)
        marker.write_text("the broker lost data this worker knew (...)")
        created = await ensure_topics(settings)
        assert scored in created and not marker.exists()
        assert (await partitions_of(kafka_broker.bootstrap, [changelog]))[changelog] == 2
        sent = await producer.send_and_wait(scored, b"new", partition=1)
        assert sent.offset == 0
    finally:
        await producer.stop()
