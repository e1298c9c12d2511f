"""Create the app's topics on the broker (idempotent): production clusters often disable
auto-creation, and member-profiles must be compacted from the start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

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


def replication_for(brokers: int) -> int:
    """min(3, brokers): a topic survives a broker's loss on a real cluster, and the single
    embedded broker still gets 1 (``riskstream doctor``'s rule)."""
    return max(1, min(3, brokers))


@contextlib.asynccontextmanager
async def admin_client(
    broker: str, *, security: KafkaSecurity | None = None, timeout_s: float = 30.0
) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client for ``broker`` (``kafka://`` URLs or host:port), closed after.
    A broker that cannot be reached raises ``KafkaAccessError``, one line on what failed."""
    security = security or KafkaSecurity.from_env()
    bootstrap = bootstrap_servers(broker)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        **security.aiokafka_kwargs(),
    )
    await start_client(admin, bootstrap, security, timeout_s)
    try:
        yield admin
    finally:
        await admin.close()


def creation_replication(settings: Settings, brokers: int) -> int:
    """The replication factor of the topics this app creates: ``RISKSTREAM_REPLICATION_FACTOR``
    where it is set, else min(3, brokers), so a topic survives a broker's loss on a real
    cluster and the single embedded broker still gets 1 (``riskstream doctor``'s rule)."""
    if settings.replication_factor is not None:
        return settings.replication_factor
    return replication_for(brokers)


def creation_configs(configs: dict[str, str], replication: int) -> dict[str, str]:
    """``configs`` plus ``min.insync.replicas=2`` where the topic has 3 or more replicas: the
    worker produces with acks=all, which with Kafka's default of 1 is acknowledged by the leader
    alone, so a leader lost right after acking loses the write."""
    if replication >= 3 and "min.insync.replicas" not in configs:
        return {**configs, "min.insync.replicas": "2"}
    return configs


def bootstrap_servers(broker_url: str) -> str:
    """``kafka://a:9092;kafka://b:9092`` -> ``a:9092,b:9092`` (aiokafka's form)."""
    hosts = [
        part.strip().removeprefix("kafka://") for part in broker_url.replace(",", ";").split(";")
    ]
    return ",".join(h for h in hosts if h)


async def with_replication(
    settings: Settings, *, timeout_s: float = 30.0, security: KafkaSecurity | None = None
) -> Settings:
    """``settings`` with the replication factor resolved (unset: min(3, brokers), asked of
    the cluster), for what Faust creates itself (its leader topic, a changelog it finds
    missing) to follow the same rule as :func:`ensure_topics`."""
    if settings.replication_factor is not None:
        return settings
    async with admin_client(settings.kafka_broker, security=security, timeout_s=timeout_s) as a:
        brokers = len((await a.describe_cluster())["brokers"])
    replication = creation_replication(settings, brokers)
    return settings.model_copy(update={"replication_factor": replication})


async def ensure_topics(
    settings: Settings,
    *,
    timeout_s: float = 30.0,
    security: KafkaSecurity | None = None,
    after_data_loss: bool | None = None,
) -> list[str]:
    """Create missing topics; returns the names created. ``security``: how to reach the broker
    (default: the ``RISKSTREAM_KAFKA_*`` environment). A broker that cannot be reached with it
    raises ``KafkaAccessError``, one line saying whether TLS, SASL or the connection failed.

    ``after_data_loss`` (default: whether the last worker left :func:`data_loss_marker`): the
    worker's watchdog found that the broker lost its data. A topic the app owns with another
    partition count was then auto-created since (by the worker's own writes, with the broker's
    default count), so it is recreated even if it holds records; and a topic created here is
    deleted and created once more, which clears records a producer wrote to it while it was
    missing: the embedded broker keeps those, and its first write to the new topic then fails
    (``UnknownError``, measured: it stopped every restarted worker)."""
    marker = data_loss_marker(settings)
    if after_data_loss is None:
        after_data_loss = marker.exists()
    security = security or KafkaSecurity.from_env()
    async with admin_client(settings.kafka_broker, security=security, timeout_s=timeout_s) as admin:
        existing = set(await admin.list_topics())
        needed = wanted_topics(settings)
        await _repair_partition_counts(
            admin, settings, needed, existing, security, after_data_loss=after_data_loss
        )
        existing = set(await admin.list_topics())
        missing = {name: configs for name, configs in needed.items() if name not in existing}
        replication = settings.replication_factor or 1
        if missing:
            brokers = len((await admin.describe_cluster())["brokers"])
            replication = creation_replication(settings, brokers)
        wanted = [
            NewTopic(
                name,
                settings.partitions,
                replication,
                topic_configs=creation_configs(configs, replication),
            )
            for name, configs in missing.items()
        ]
        created: list[str] = []
        for topic in wanted:
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        if after_data_loss:
            await _create_clean(admin, [t for t in wanted if t.name in created])
            logger.warning(
                "the broker lost data a worker knew (its watchdog said so when it exited): "
                "created its topics anew (%s); inputs are read from their earliest offsets",
                ", ".join(created) or "none were missing",
            )
            marker.unlink(missing_ok=True)
        elif created:
            logger.info("created topics: %s", ", ".join(created))
        return created


def data_loss_marker(settings: Settings) -> Path:
    """A file the watchdog leaves in the worker's data folder when it exits because the broker
    lost data (its reason inside): the next :func:`ensure_topics` repairs the topics then,
    when no worker of the lost generation writes any more."""
    return settings.data_dir / f"{settings.topic(settings.app_id)}-data" / "broker-data-lost"


def group_member_file(settings: Settings) -> Path:
    """Where a worker keeps its process id and group member id (see below)."""
    return settings.data_dir / f"{settings.topic(settings.app_id)}-data" / "group-member"


async def leave_for_a_killed_worker(
    settings: Settings, *, security: KafkaSecurity | None = None
) -> str | None:
    """Remove from the group the member that a killed worker of this data folder left, and
    return its id (None if there was none, or its process still runs).

    Measured before: a worker restarted after SIGKILL scored nothing for 23 s, 18 s of them in
    the group join, which waited for the dead member's session to expire (10 s with the
    embedded broker's settings; Faust's default is 60 s) and then rebalanced again. A stopped
    worker leaves the group itself; a killed one cannot, so its successor does it for it
    (LeaveGroup with the dead member's id), and joins at once."""
    if settings.group_instance_id is not None:
        return None  # a static member rejoins as itself; a LeaveGroup would rebalance
    path = group_member_file(settings)
    try:
        pid_text, member_id = path.read_text().split(maxsplit=1)
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if pid != os.getpid() and _process_alive(pid):
        return None  # a live worker shares this data folder: it is not dead
    path.unlink(missing_ok=True)
    from aiokafka.client import AIOKafkaClient, CoordinationType
    from aiokafka.errors import for_code
    from aiokafka.protocol.group import LeaveGroupRequest

    security = security or KafkaSecurity.from_env()
    group = settings.topic(settings.app_id)
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap_servers(settings.kafka_broker), **security.aiokafka_kwargs()
    )
    await client.bootstrap()
    try:
        node = await client.coordinator_lookup(CoordinationType.GROUP, group)
        response = await client.send(node, LeaveGroupRequest(group, member_id))
    finally:
        await client.close()
    error = for_code(response.error_code)
    if error.errno == 0:
        logger.warning(
            "removed member %s, left in group %s by a worker that stopped hard (pid %d), so this "
            "worker joins without waiting for its session to expire",
            member_id,
            group,
            pid,
        )
        return member_id
    logger.info("the member %s of a killed worker was gone already (%s)", member_id, error.__name__)
    return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _create_clean(admin: AIOKafkaAdminClient, topics: list[NewTopic]) -> None:
    """Delete the just-created ``topics`` and create them again (see ``ensure_topics``)."""
    if not topics:
        return
    names = [topic.name for topic in topics]
    await admin.delete_topics(names)
    for _ in range(50):  # deletion is asynchronous on some brokers
        if not set(names) & set(await admin.list_topics()):
            break
        await asyncio.sleep(0.1)
    for topic in topics:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([topic])


class TopicLayoutError(RuntimeError):
    """A topic exists with another partition count than the app needs, and holds records."""


async def _repair_partition_counts(
    admin: AIOKafkaAdminClient,
    settings: Settings,
    needed: dict,
    existing: set[str],
    security: KafkaSecurity,
    *,
    after_data_loss: bool = False,
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
    holding = set() if after_data_loss else await _topics_with_records(settings, wrong, security)
    if holding:
        raise TopicLayoutError(
            ", ".join(f"{t} has {wrong[t]} partitions" for t in sorted(holding))
            + f"; the app needs {settings.partitions} (RISKSTREAM_PARTITIONS) and they hold "
            "records: repartition them or change the setting"
        )
    logger.warning(
        "recreating %s topics with %d partitions: %s",
        "auto-created" if after_data_loss else "empty",
        settings.partitions,
        wrong,
    )
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
