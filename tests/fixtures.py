"""Shared fixtures. Real Kafka (the embedded Tansu broker) appears only in session-scoped
integration fixtures; each test isolates itself with its own topic prefix and app id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.admin import ensure_topics
from stream.broker import EmbeddedBroker, free_port
from stream.config import Settings


@pytest.fixture(scope="session")
def built_model() -> Path:
    from models.train import ensure_built

    return ensure_built(progress=False)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "broker.log").start()
    yield broker
    broker.stop()


class WorkerProcess:
    """A real ``python -m stream worker`` subprocess against the test broker."""

    def __init__(self, broker: EmbeddedBroker, prefix: str, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        self.web_port = free_port()
        self.env = {
            **os.environ,
            "KAFKA_BROKER": broker.url,
            "RISKSTREAM_TOPIC_PREFIX": prefix,
            "RISKSTREAM_PARTITIONS": "2",
            "RISKSTREAM_REBALANCE_TIMEOUT_S": "6",
            "RISKSTREAM_SESSION_TIMEOUT_S": "10",
            "RISKSTREAM_WEB_PORT": str(self.web_port),
            "RISKSTREAM_LOG_LEVEL": "warning",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stream", "worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commit."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def make_worker(
    kafka_broker: EmbeddedBroker, built_model: Path, topic_prefix: str, tmp_path: Path
) -> Iterator:
    workers: list[WorkerProcess] = []

    async def factory(**env: str) -> WorkerProcess:
        # Create the topics first, so records produced before the worker is up do not
        # auto-create them with the broker's default partition count.
        settings = Settings(KAFKA_BROKER=kafka_broker.url, topic_prefix=topic_prefix, partitions=2)
        await ensure_topics(settings)
        worker = WorkerProcess(
            kafka_broker, topic_prefix, tmp_path / f"worker{len(workers)}.log", **env
        )
        workers.append(worker)
        return worker.start()

    yield factory
    for worker in workers:
        worker.stop()
