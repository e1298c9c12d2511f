"""Produce and collect records with plain aiokafka clients (test-side only)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import orjson
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


class Load:
    """Producers writing about ``rate`` events/s until stopped. What the broker acknowledged is
    kept; a send to a dead broker fails and is dropped (its records may still have landed)."""

    def __init__(self, broker: Any, prefix: str, traffic: Any, rate: float):
        self.broker, self.prefix, self.traffic, self.rate = broker, prefix, traffic, rate
        self.acked: set[str] = set()
        self.acked_at: list[tuple[float, str]] = []  # (when, event id)
        self.failed_sends = 0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        batch = max(1, int(self.rate / 4))
        while True:
            records = [self.traffic.next_record() for _ in range(batch)]
            try:
                await asyncio.wait_for(
                    produce(
                        self.broker.bootstrap,
                        [(self.prefix + r.topic, r.key, r.value) for r in records],
                        request_timeout_ms=3000,
                    ),
                    5,
                )
                ids = [orjson.loads(r.value)["event_id"] for r in records]
                self.acked.update(ids)
                self.acked_at.extend((time.monotonic(), i) for i in ids)
            except Exception:
                self.failed_sends += 1
                await asyncio.sleep(0.5)  # the broker is down
            await asyncio.sleep(0.25)

    def since(self, moment: float) -> set[str]:
        """Events acknowledged at or after ``moment`` (``time.monotonic()``)."""
        return {event for when, event in self.acked_at if when >= moment}

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
