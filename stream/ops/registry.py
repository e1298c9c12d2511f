"""The model registry on the broker: read every route's champion and challenger, promote or
roll back, and shadow a build or stop shadowing.

The registry is the compacted ``model-registry`` topic, one record per route change
(``stream/core/registry.py`` decides what a record says). Readers use a plain consumer with
``assign`` (no group: every reader reads every record) from the beginning up to the high-water
marks, so a read is a snapshot that ends. Writers read the latest record of the route, check
the action, and produce the next one with ``acks=all``. Two operators acting on one route at
the same moment both succeed and the later record wins: the registry is for people, not for
tools racing each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from stream.core.registry import (
    ROUTES,
    RegistryError,
    RegistryRecord,
    encode_record,
    entry,
    fold,
    promote,
    record_key,
    rollback,
    shadow,
    stop_shadow,
)
from stream.core.steps import utc_now
from stream.ops.admin import admin_client, bootstrap_servers, creation_configs, replication_for
from stream.security import KafkaSecurity, start_client
from stream.topics import MODEL_REGISTRY, SHADOW_SCORES, TOPIC_CONFIGS

logger = logging.getLogger("riskstream.registry")

#: Texts a build must have been shadowed on before it may be promoted.
MIN_SHADOWED = 20


async def _scan(
    bootstrap: str,
    topic: str,
    on_record: Callable[[Any], None],
    security: KafkaSecurity | None,
    timeout_s: float,
) -> bool:
    """Every record of ``topic`` from the beginning up to the high-water marks of when the
    read began, to ``on_record`` in offset order per partition; -> False if the topic does
    not exist. ``TimeoutError`` if the end is not reached within ``timeout_s``."""
    security = security or KafkaSecurity.from_env()
    servers = bootstrap_servers(bootstrap)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,  # an empty partition answers after this
        **security.aiokafka_kwargs(),
    )
    await start_client(consumer, servers, security, timeout_s)
    try:
        async with asyncio.timeout(timeout_s):
            if topic not in await consumer.topics():  # asks the broker, creates nothing
                return False
            partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await read_to_end(consumer, tps, on_record)
            return True
    finally:
        await consumer.stop()


async def read_to_end(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], on_record: Callable[[Any], None]
) -> None:
    """Read the assigned ``tps`` from the beginning up to their ends as of the first fetch,
    each record to ``on_record``. The end is the larger of the listed end offset and the
    high-water mark of the first fetch response: some brokers (the embedded Tansu) list an
    end below the records they hold, and fetch responses carry the true one
    (``stream/worker/faust_fixes.py`` works around the same)."""
    listed = await consumer.end_offsets(tps)
    await consumer.seek_to_beginning(*tps)
    ends: dict[TopicPartition, int] = {}
    todo = set(tps)
    while todo:
        batches = await consumer.getmany(*todo, timeout_ms=500)
        for tp, messages in batches.items():
            for message in messages:
                if message.offset < ends.get(tp, message.offset + 1):
                    on_record(message)
        for tp in list(todo):
            high = consumer.highwater(tp)
            if high is not None and tp not in ends:
                ends[tp] = max(high, listed.get(tp) or 0)
            if tp in ends and await consumer.position(tp) >= ends[tp]:
                todo.discard(tp)


async def read_registry(
    bootstrap: str,
    prefix: str,
    security: KafkaSecurity | None = None,
    timeout_s: float = 10,
) -> dict[str, RegistryRecord]:
    """Route -> its latest registry record (none for a route never promoted; an absent topic:
    ``{}``). A record that does not decode is logged and skipped."""
    registry: dict[str, RegistryRecord] = {}
    topic = f"{prefix}{MODEL_REGISTRY}"

    def take(message: Any) -> None:
        problem = fold(registry, message.key, message.value)
        if problem is not None:
            logger.warning(
                "%s[%d] offset %d: %s", topic, message.partition, message.offset, problem
            )

    await _scan(bootstrap, topic, take, security, timeout_s)
    return registry


async def shadowed_count(
    bootstrap: str,
    prefix: str,
    model_version: str,
    security: KafkaSecurity | None = None,
    timeout_s: float = 60,
) -> int:
    """How many ``shadow-scores`` records name ``model_version`` as the challenger: the
    evidence a promotion asks for."""
    found = 0
    needle = model_version.encode()

    def take(message: Any) -> None:
        nonlocal found
        if message.value is None or needle not in message.value:  # most records: no parse
            return
        try:
            challenger = orjson.loads(message.value)["challenger"]["model_version"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        found += challenger == model_version

    await _scan(bootstrap, f"{prefix}{SHADOW_SCORES}", take, security, timeout_s)
    return found


async def ensure_registry_topic(
    bootstrap: str,
    prefix: str,
    *,
    replication_factor: int | None = None,
    security: KafkaSecurity | None = None,
    timeout_s: float = 10,
) -> bool:
    """Create the compacted registry topic (one partition: a handful of records) if it is
    missing, where clusters do not auto-create topics; -> whether it was created.
    ``replication_factor`` None: min(3, brokers), as the worker creates its topics."""
    topic = f"{prefix}{MODEL_REGISTRY}"
    async with admin_client(bootstrap, security=security, timeout_s=timeout_s) as admin:
        if topic in set(await admin.list_topics()):
            return False
        if replication_factor is None:
            replication_factor = replication_for(len((await admin.describe_cluster())["brokers"]))
        configs = creation_configs(TOPIC_CONFIGS[MODEL_REGISTRY], replication_factor)
        new = NewTopic(topic, 1, replication_factor, topic_configs=configs)
        try:
            await admin.create_topics([new])
        except TopicAlreadyExistsError:
            return False
        return True


async def _produce(
    bootstrap: str, prefix: str, record: RegistryRecord, security: KafkaSecurity | None
) -> None:
    security = security or KafkaSecurity.from_env()
    servers = bootstrap_servers(bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", **security.aiokafka_kwargs())
    await start_client(producer, servers, security)
    try:
        await producer.send_and_wait(
            f"{prefix}{MODEL_REGISTRY}", encode_record(record), key=record_key(record.route)
        )
    finally:
        await producer.stop()


async def promote_build(
    bootstrap: str,
    prefix: str,
    build: str,
    *,
    by: str,
    why: str,
    min_shadowed: int = MIN_SHADOWED,
    security: KafkaSecurity | None = None,
    cache_dir: Path | None = None,
    at: str | None = None,
) -> RegistryRecord:
    """Make the adapted build ``build`` (in the local model cache) its route's champion; -> the
    record produced. Refused (``RegistryError``, one line) when the build is not here, was
    shadowed on fewer than ``min_shadowed`` texts, or is the champion already. The entry
    carries the build's bundle, so every worker can materialise it. A route's first promotion
    records the bundle's base build as the champion before it, so it can be rolled back."""
    bundle, route = _local_bundle(build, cache_dir, "promote")
    registry = await read_registry(bootstrap, prefix, security)
    current = registry.get(route)
    if current is not None and current.champion.model_version == build:
        raise RegistryError(f"{build} is already the {route} champion")
    shadowed = await shadowed_count(bootstrap, prefix, build, security)
    if shadowed < min_shadowed:
        raise RegistryError(
            f"cannot promote {build}: shadowed on {shadowed} texts, fewer than {min_shadowed} "
            f"(`riskstream models shadow {build}` first, and let the workers score some texts)"
        )
    at = at or utc_now()
    if current is None:
        current = _served_before(build, bundle, route, by=by, at=at)
    new = entry(build, by=by, at=at, why=why, report=bundle.get("report"), bundle=bundle)
    record = promote(current, new, route=route)
    await _produce(bootstrap, prefix, record, security)
    logger.info("promoted %s to %s champion (record %d)", build, route, record.seq)
    return record


def _local_bundle(build: str, cache_dir: Path | None, doing: str) -> tuple[dict[str, Any], str]:
    """The adapted build's bundle from the local model cache, and its route; ``RegistryError``
    (one line) when the build is not here or names no known route."""
    from models.serving.adapted import read_bundle
    from models.serving.artefacts import ModelNotBuiltError

    try:
        bundle = read_bundle(build, cache_dir)
    except ModelNotBuiltError as exc:
        raise RegistryError(f"cannot {doing} {build}: {exc}") from None
    route = bundle.get("route")
    if route not in ROUTES:
        raise RegistryError(f"cannot {doing} {build}: its bundle names no known route ({route!r})")
    return bundle, route


def _served_before(
    build: str, bundle: dict[str, Any], route: str, *, by: str, at: str
) -> RegistryRecord | None:
    """A route's first record: the bundle's base build as champion (the build served before
    the registry), so a promotion can be rolled back and a challenger has a champion; None
    when the bundle names no other base build."""
    base = bundle.get("base_version")
    if not base or base == build:
        return None
    before = entry(base, by=by, at=at, why="the build served before the registry")
    return promote(None, before, route=route)  # type: ignore[arg-type]


async def shadow_build(
    bootstrap: str,
    prefix: str,
    build: str,
    *,
    by: str,
    why: str,
    security: KafkaSecurity | None = None,
    cache_dir: Path | None = None,
    at: str | None = None,
) -> RegistryRecord:
    """Make the adapted build ``build`` (in the local model cache) its route's challenger:
    every worker scores it beside the champion, off the critical path, and publishes the
    comparisons to ``shadow-scores`` (the evidence ``promote_build`` asks for), without a
    restart; -> the record produced. Refused (``RegistryError``, one line) when the build is
    not here, is the champion, or is the challenger already. The entry carries the bundle, so
    every worker can materialise the build. On a route never promoted, the record names the
    bundle's base build as champion (what workers serve before the registry)."""
    bundle, route = _local_bundle(build, cache_dir, "shadow")
    registry = await read_registry(bootstrap, prefix, security)
    at = at or utc_now()
    current = registry.get(route) or _served_before(build, bundle, route, by=by, at=at)
    if current is None:
        raise RegistryError(
            f"cannot shadow {build}: no {route} champion on record and its bundle names no "
            f"base build to shadow it against"
        )
    new = entry(
        build, by=by, at=at, why=why, action="shadow", report=bundle.get("report"), bundle=bundle
    )
    record = shadow(current, new, route=route)  # type: ignore[arg-type]
    await _produce(bootstrap, prefix, record, security)
    logger.info(
        "shadowing %s against %s champion %s (record %d)",
        build,
        route,
        record.champion.model_version,
        record.seq,
    )
    return record


async def stop_shadow_route(
    bootstrap: str,
    prefix: str,
    route: str,
    *,
    by: str,
    why: str,
    security: KafkaSecurity | None = None,
    at: str | None = None,
) -> RegistryRecord:
    """Stop shadowing the route's challenger (workers stop scoring it, or go back to the
    challenger they were started with); -> the record produced. ``RegistryError`` when the
    route has no challenger."""
    if route not in ROUTES:
        raise RegistryError(f"unknown route {route!r}; routes: {', '.join(ROUTES)}")
    registry = await read_registry(bootstrap, prefix, security)
    current = registry.get(route)
    record = stop_shadow(current, by, at or utc_now(), why)
    await _produce(bootstrap, prefix, record, security)
    stopped = current.challenger.model_version  # type: ignore[union-attr]
    logger.info(
        "stopped shadowing %s on %s by %s: %s (record %d)", stopped, route, by, why, record.seq
    )
    return record


async def rollback_route(
    bootstrap: str,
    prefix: str,
    route: str,
    *,
    by: str,
    why: str,
    security: KafkaSecurity | None = None,
    at: str | None = None,
) -> RegistryRecord:
    """Make the route's previous champion the champion again; -> the record produced.
    ``RegistryError`` when the route has no earlier champion."""
    if route not in ROUTES:
        raise RegistryError(f"unknown route {route!r}; routes: {', '.join(ROUTES)}")
    registry = await read_registry(bootstrap, prefix, security)
    record = rollback(registry.get(route), by, at or utc_now(), why)
    await _produce(bootstrap, prefix, record, security)
    logger.info(
        "rolled %s back to %s (record %d)", route, record.champion.model_version, record.seq
    )
    return record
