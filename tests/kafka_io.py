"""Produce and collect records with plain aiokafka clients (test-side only)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def produce(
    bootstrap: str, records: Iterable[tuple[str, bytes | None, bytes]], **client: Any
) -> int:
    """``client``: more client arguments, e.g. ``KafkaSecurity.aiokafka_kwargs()``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **client)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in records]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


Collected = dict[str, list]


async def collect(
    bootstrap: str,
    topics: list[str],
    until: Callable[[Collected], bool],
    timeout_s: float,
    alive: Callable[[], bool] = lambda: True,
    **client: Any,
) -> Collected:
    """Read ``topics`` from the start until ``until(records_by_topic)`` holds, time runs out,
    or ``alive()`` turns false (the worker under test died)."""
    found: Collected = defaultdict(list)
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **client,
    )
    await consumer.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while loop.time() < deadline and alive() and not until(found):
            batches = await consumer.getmany(timeout_ms=500)
            for tp, messages in batches.items():
                found[tp.topic].extend(messages)
    finally:
        await consumer.stop()
    return found
