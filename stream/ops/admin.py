"""Create the app's topics on the broker (idempotent): production clusters often disable
auto-creation, and member-profiles must be compacted from the start."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from stream.config import Settings
from stream.security import KafkaSecurity, start_client
from stream.topics import INTERNAL_TOPICS, TABLES, TOPIC_CONFIGS

logger = logging.getLogger("riskstream.admin")

#: The tables' changelogs are created here too: a changelog the broker auto-created with its
#: default partition count stops the worker (Faust's PartitionsMismatch), as after a broker that
#: came back without its data.


def co_partitioned(settings: Settings) -> set[str]:
    """The internal topics and the changelogs of the tables that read them."""
    app_id = settings.topic(settings.app_id)
    return {
        *(settings.topic(name) for name in INTERNAL_TOPICS),
        *(f"{app_id}-{table}-changelog" for table in TABLES),
    }


def wanted_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic the app needs (prefixed names) -> its configs."""
    topics = {settings.topic(name): configs for name, configs in TOPIC_CONFIGS.items()}
    app_id = settings.topic(settings.app_id)
    for table in TABLES:
        topics[f"{app_id}-{table}-changelog"] = {"cleanup.policy": "compact"}
    return topics


def bootstrap_servers(broker_url: str) -> str:
    """``kafka://a:9092;kafka://b:9092`` -> ``a:9092,b:9092`` (aiokafka's form)."""
    hosts = [
        part.strip().removeprefix("kafka://") for part in broker_url.replace(",", ";").split(";")
    ]
    return ",".join(h for h in hosts if h)


async def ensure_topics(
    settings: Settings, *, timeout_s: float = 30.0, security: KafkaSecurity | None = None
) -> list[str]:
    """Create missing topics; returns the names created. ``security``: how to reach the broker
    (default: the ``RISKSTREAM_KAFKA_*`` environment). A broker that cannot be reached with it
    raises ``KafkaAccessError``, one line saying whether TLS, SASL or the connection failed."""
    security = security or KafkaSecurity.from_env()
    bootstrap = bootstrap_servers(settings.kafka_broker)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        **security.aiokafka_kwargs(),
    )
    await start_client(admin, bootstrap, security, timeout_s)
    try:
        existing = set(await admin.list_topics())
        needed = wanted_topics(settings)
        await _repair_partition_counts(admin, settings, needed, existing, security)
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, settings.partitions, settings.replication_factor, topic_configs=configs)
            for name, configs in needed.items()
            if name not in existing
        ]
        created: list[str] = []
        for topic in wanted:
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        if created:
            logger.info("created topics: %s", ", ".join(created))
        return created
    finally:
        await admin.close()


class TopicLayoutError(RuntimeError):
    """A topic exists with another partition count than the app needs, and holds records."""


async def _repair_partition_counts(
    admin: AIOKafkaAdminClient,
    settings: Settings,
    needed: dict,
    existing: set[str],
    security: KafkaSecurity,
) -> None:
    """A needed topic with the wrong partition count is deleted (and then created again) only
    if it holds no record, e.g. auto-created on a broker that lost its data; otherwise that
    is a clear error, never a silent repartitioning."""
    # Only the topics the app owns must have its partition count: a table's source topic and
    # its changelog must be co-partitioned. Inputs and outputs may have any count.
    owned = co_partitioned(settings)
    present = [name for name in needed if name in existing and name in owned]
    if not present:
        return
    described = await admin.describe_topics(present)
    wrong = {
        d["topic"]: len(d["partitions"])
        for d in described
        if d.get("partitions") and len(d["partitions"]) != settings.partitions
    }
    if not wrong:
        return
    holding = await _topics_with_records(settings, wrong, security)
    if holding:
        raise TopicLayoutError(
            ", ".join(f"{t} has {wrong[t]} partitions" for t in sorted(holding))
            + f"; the app needs {settings.partitions} (RISKSTREAM_PARTITIONS) and they hold "
            "records: repartition them or change the setting"
        )
    logger.warning("recreating empty topics with %d partitions: %s", settings.partitions, wrong)
    await admin.delete_topics(list(wrong))
    for _ in range(50):  # deletion is asynchronous on some brokers
        if not set(wrong) & set(await admin.list_topics()):
            break
        await asyncio.sleep(0.1)


async def _topics_with_records(
    settings: Settings, topics: dict[str, int], security: KafkaSecurity
) -> set[str]:
    """Topics with any record, by the high-water marks of fetch responses (some brokers list
    wrong end offsets; see stream/worker/faust_fixes.py, fix 5)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from stream.worker.faust_fixes import fetched_highwaters

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(settings.kafka_broker), **security.aiokafka_kwargs()
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
        marks = await fetched_highwaters(consumer, tps, {tp: 0 for tp in tps})
    finally:
        await consumer.stop()
    return {tp.topic for tp, mark in marks.items() if mark}
