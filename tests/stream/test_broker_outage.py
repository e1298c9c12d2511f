"""A broker that comes back empty under load: the worker exits with a clear reason instead of
hanging (before: consumed counter frozen for 11.5 minutes), and the restart a supervisor does
then works against the new broker."""

from __future__ import annotations

import asyncio
import time

import pytest

from stream.config import Settings
from stream.ops.admin import ensure_topics
from stream.ops.broker import EmbeddedBroker
from stream.ops.runner import WorkerProcess
from stream.ops.simulate import DemoCorpus, DemoTraffic
from tests.fixtures import worker_env
from tests.kafka_io import collect, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]


async def test_broker_back_empty_means_exit_then_a_restart_works(
    tmp_path, built_model, topic_prefix
) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "broker1.log").start()
    port = broker.port
    traffic = DemoTraffic(DemoCorpus.load(), seed=4, members=40, malformed_ratio=0.0)
    settings = Settings(KAFKA_BROKER=broker.url, topic_prefix=topic_prefix, partitions=2)
    workers: list[WorkerProcess] = []
    try:
        await ensure_topics(settings)
        first = WorkerProcess(worker_env(broker, topic_prefix), tmp_path / "worker1.log")
        workers.append(first)
        first.start()
        batch = [traffic.next_record() for _ in range(200)]
        scored = topic_prefix + "scored-events"

        async def send(records) -> None:
            await produce(
                broker.bootstrap, [(topic_prefix + r.topic, r.key, r.value) for r in records]
            )

        await send(batch)
        found = await collect(
            broker.bootstrap, [scored], lambda f: len(f[scored]) >= 200, 120, first.alive
        )
        assert len(found[scored]) >= 200, first.log_tail()

        broker.stop()  # the broker dies under load and comes back on its port, empty
        broker = EmbeddedBroker(port=port, log_path=tmp_path / "broker2.log").start()
        started = time.monotonic()
        while first.alive():
            assert time.monotonic() - started < 240, "worker neither recovered nor exited"
            await asyncio.sleep(1)
        waited = time.monotonic() - started
        log = (tmp_path / "worker1.log").read_text(errors="replace")
        assert "missing from the broker" in log or "no record admitted" in log, log[-3000:]
        print(f"worker exited {waited:.0f} s after the broker came back empty")

        second = WorkerProcess(worker_env(broker, topic_prefix), tmp_path / "worker2.log")
        workers.append(second)
        second.start()  # what the supervisor does; it recreates the topics
        await asyncio.sleep(8)
        await send([traffic.next_record() for _ in range(100)])
        found = await collect(
            broker.bootstrap, [scored], lambda f: len(f[scored]) >= 100, 120, second.alive
        )
        assert len(found[scored]) >= 100, second.log_tail()
    finally:
        for worker in workers:
            worker.stop()
        broker.stop()
