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
