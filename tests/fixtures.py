"""Shared fixtures. Real Kafka (the embedded Tansu broker) appears only in session-scoped
integration fixtures; each test isolates itself with its own topic prefix and app id."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.config import Settings
from stream.ops.admin import ensure_topics
from stream.ops.broker import WORKER_SETTINGS, EmbeddedBroker, free_port
from stream.ops.runner import WorkerProcess

#: The pseudonymisation key of every test and test worker (public: a test key, not a secret), so
#: tests can name the pseudonym a member gets (:func:`pseudonym`) and no test writes a key into
#: the real cache.
TEST_PSEUDONYM_KEY = Path(__file__).with_name("pseudonym-test.key")


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("RISKSTREAM_PSEUDONYM_KEY_FILE", str(TEST_PSEUDONYM_KEY))


def pseudonym(field: str, value: str) -> str:
    """What the edge makes of an identifier (``member_id``, ``device_id``) under the test key."""
    from stream.core.policy import Pseudonymiser
    from stream.core.sealing import load_key

    return Pseudonymiser(load_key(TEST_PSEUDONYM_KEY).secret).pseudonym(field, value)


@pytest.fixture(scope="session")
def built_model() -> Path:
    from models.training.build import ensure_served

    return ensure_served(progress=False)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "broker.log").start()
    yield broker
    broker.stop()


def worker_env(broker: EmbeddedBroker, prefix: str, **env: str) -> dict[str, str]:
    """A test worker's settings: its own prefix and web port, short group timeouts."""
    return {
        **os.environ,
        "KAFKA_BROKER": broker.url,
        "RISKSTREAM_TOPIC_PREFIX": prefix,
        "RISKSTREAM_PARTITIONS": "2",
        **WORKER_SETTINGS,
        # every change published: tests compare the latest profile with all events folded
        "RISKSTREAM_PROFILE_THROTTLE_S": "0",
        "RISKSTREAM_WEB_PORT": str(free_port()),
        "RISKSTREAM_LOG_LEVEL": "warning",
        "PYTHONUNBUFFERED": "1",
        **env,
    }


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def make_worker(
    kafka_broker: EmbeddedBroker, built_model: Path, topic_prefix: str, tmp_path: Path
) -> Iterator:
    workers: list[WorkerProcess] = []

    async def factory(prefix: str | None = None, **env: str) -> WorkerProcess:
        # Create the topics first, so records produced before the worker is up do not
        # auto-create them with the broker's default partition count.
        prefix = prefix or topic_prefix
        partitions = int(env.get("RISKSTREAM_PARTITIONS", "2"))
        settings = Settings(
            KAFKA_BROKER=kafka_broker.url, topic_prefix=prefix, partitions=partitions
        )
        await ensure_topics(settings)
        worker = WorkerProcess(
            worker_env(kafka_broker, prefix, **env), tmp_path / f"worker{len(workers)}.log"
        )
        workers.append(worker)
        worker.start()
        return worker

    yield factory
    for worker in workers:
        worker.stop()


def readyz(worker: WorkerProcess) -> dict:
    """The worker's /readyz answer (503 bodies included; {} when it does not answer)."""
    url = f"http://127.0.0.1:{worker.env['RISKSTREAM_WEB_PORT']}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())
    except OSError:
        return {}
