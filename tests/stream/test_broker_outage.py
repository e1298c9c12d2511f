"""Broker data loss is loud (issue 20), against the real embedded broker.

Killed under load and brought back empty (memory storage: a lost disk or a recreated cluster
looks the same), while producers keep writing, so the inputs reappear at once (auto-created)
and the worker's own writes recreate its changelogs with the broker's default partition count.
Before: the worker stayed alive and not ready with no line saying why (0 of 6,052 new events
scored in 300 s). Now it names what the broker lost in one line and exits 70 within a bounded
time, ``/readyz`` says why meanwhile, and the restart its supervisor does scores every event
produced to the new broker.

Recreated topics with the group's offsets kept (offsets beyond the new logs' end): the restarted
worker reads them from the earliest offset and says so in one line; before, its ledger skipped
every record below the old offset as a repeat.

Restarted *with* its data: ``tests/stream/test_broker_restart_with_data.py`` (the embedded
broker on S3 storage, served by a local moto S3 server).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.config import Settings
from stream.ops.admin import ensure_topics
from stream.ops.broker import EmbeddedBroker
from stream.ops.runner import WorkerProcess
from stream.ops.simulate import DemoCorpus, DemoTraffic
from stream.topics import INPUT_TOPICS
from tests.fixtures import readyz, worker_env
from tests.kafka_io import Load, collect

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

LOST_LINE = "the broker lost data this worker knew"


def event_ids(records) -> set[str]:
    return {orjson.loads(r.value)["event_id"] for r in records}


async def scored_ids(broker: EmbeddedBroker, prefix: str, wanted: set[str], timeout_s, alive):
    topic = prefix + "scored-events"

    def done(found) -> bool:
        return wanted <= event_ids(found[topic])

    found = await collect(broker.bootstrap, [topic], done, timeout_s, alive)
    return event_ids(found[topic])


async def restart_scores_every_event(
    broker: EmbeddedBroker,
    prefix: str,
    load: Load,
    *,
    since: float,
    workers: list[WorkerProcess],
    log: Path,
    run_s: float,
    produced_to: str,
) -> None:
    """What a supervisor does after the exit: a fresh worker, which must score every event
    the broker acknowledged ``since`` then (load stopped after ``run_s``)."""
    second = WorkerProcess(worker_env(broker, prefix), log)
    workers.append(second)
    restarted = time.monotonic()
    second.start()
    await asyncio.sleep(run_s)
    await load.stop()
    wanted = load.since(since)
    found = await scored_ids(broker, prefix, wanted, 150, second.alive)
    print(
        f"after the restart: {len(wanted & found)} of {len(wanted)} events produced to "
        f"{produced_to} scored ({time.monotonic() - restarted:.0f} s after the restart)"
    )
    assert wanted <= found, second.log_tail()


async def test_broker_killed_under_load_back_empty_worker_exits_loudly_and_restart_scores(
    tmp_path, built_model, topic_prefix
) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "broker1.log").start()
    port = broker.port
    traffic = DemoTraffic(DemoCorpus.load(), seed=4, members=40, malformed_ratio=0.0)
    settings = Settings(KAFKA_BROKER=broker.url, topic_prefix=topic_prefix, partitions=2)
    workers: list[WorkerProcess] = []
    load = Load(broker, topic_prefix, traffic, rate=40)
    try:
        await ensure_topics(settings)
        first = WorkerProcess(worker_env(broker, topic_prefix), tmp_path / "worker1.log")
        workers.append(first)
        first.start()
        load.start()
        await asyncio.sleep(20)
        before = load.since(0)
        found = await scored_ids(broker, topic_prefix, set(list(before)[:100]), 90, first.alive)
        assert len(found) >= 100, first.log_tail()

        broker.process.kill()  # killed under load ...
        broker.stop()
        await asyncio.sleep(8)
        # ... and back on its port, empty; the producers go on
        broker = EmbeddedBroker(port=port, log_path=tmp_path / "broker2.log").start()
        load.broker = broker
        back = time.monotonic()
        reasons: list[str] = []
        while first.alive():
            assert time.monotonic() - back < 90, "worker neither exited nor recovered"
            reason = readyz(first).get("reason")
            if reason and LOST_LINE in reason:
                reasons.append(reason)
            await asyncio.sleep(1)
        exited_after = time.monotonic() - back
        log = (tmp_path / "worker1.log").read_text(errors="replace")
        critical = [line for line in log.splitlines() if "[CRITICAL]" in line]
        assert first.process.returncode == 70, log[-3000:]
        assert len(critical) == 1 and LOST_LINE in critical[0], log[-3000:]
        assert reasons, "/readyz never said why"
        print(f"\nexited {exited_after:.0f} s after the broker came back empty: {critical[0]}")
        print(f"/readyz meanwhile: {reasons[0]}")

        await restart_scores_every_event(
            broker,
            topic_prefix,
            load,
            since=back,
            workers=workers,
            log=tmp_path / "worker2.log",
            run_s=25,
            produced_to="the empty broker",
        )
    finally:
        await load.stop()
        for worker in workers:
            worker.stop()
        broker.stop()


async def test_input_topics_recreated_under_a_running_worker_mean_exit_then_a_clean_restart(
    tmp_path, built_model, topic_prefix
) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    traffic = DemoTraffic(DemoCorpus.load(), seed=5, members=40, malformed_ratio=0.0)
    settings = Settings(KAFKA_BROKER=broker.url, topic_prefix=topic_prefix, partitions=2)
    inputs = [topic_prefix + name for name in INPUT_TOPICS]
    load = Load(broker, topic_prefix, traffic, rate=40)
    workers: list[WorkerProcess] = []
    try:
        await ensure_topics(settings)
        first = WorkerProcess(worker_env(broker, topic_prefix), tmp_path / "worker1.log")
        workers.append(first)
        first.start()
        load.start()
        await asyncio.sleep(20)
        found = await scored_ids(
            broker, topic_prefix, set(list(load.since(0))[:100]), 90, first.alive
        )
        assert len(found) >= 100, first.log_tail()

        await load.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:  # an operator deletes and recreates the inputs: their offsets start again at 0
            await admin.delete_topics(inputs)
            for _ in range(50):
                if not set(inputs) & set(await admin.list_topics()):
                    break
                await asyncio.sleep(0.1)
            await admin.create_topics([NewTopic(name, 2, 1) for name in inputs])
        finally:
            await admin.close()
        recreated = time.monotonic()
        load.start()
        while first.alive():
            assert time.monotonic() - recreated < 90, "worker neither exited nor recovered"
            await asyncio.sleep(1)
        log = (tmp_path / "worker1.log").read_text(errors="replace")
        critical = [line for line in log.splitlines() if "[CRITICAL]" in line]
        assert first.process.returncode == 70, log[-3000:]
        assert len(critical) == 1 and "offsets out of range" in critical[0], log[-3000:]
        print(f"\nexited {time.monotonic() - recreated:.0f} s after the recreation: {critical[0]}")

        await restart_scores_every_event(
            broker,
            topic_prefix,
            load,
            since=recreated,
            workers=workers,
            log=tmp_path / "worker2.log",
            run_s=20,
            produced_to="the recreated topics",
        )
    finally:
        await load.stop()
        for worker in workers:
            worker.stop()
        broker.stop()
