"""State size and recovery time of the member table, for N members, per table store.

    python bench/state_recovery.py --members 100000 --members 1000000

For each N: N member states with full history (those of demo members past the 64-event
horizon of recent ids, :func:`template_states`) are written straight into the member table's
changelog on an embedded broker (what N long-lived members leave behind), then a worker
starts on it and recovers: with ``memory://`` (state rebuilt from the changelog at every
start), and with ``rocksdb://`` twice (a cold start that fills the local store, then a warm
restart that reads only what is newer than the store). Reported: seconds from process start
to /readyz 200, worker RSS and RSS per member (against a worker with no members), local disk
per member, changelog bytes per member. Input partitions are paused while a table recovers
(Faust), so a recovering worker processes 0 events/s; the time to ready is the outage.
Results go to bench/results/state_recovery.json; the figures in docs/benchmarks.md come
from it.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import click
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.member_state_size import demo_member_states  # noqa: E402
from stream.config import Settings  # noqa: E402
from stream.core.member import DIGEST_BYTES, RECENT_EVENTS  # noqa: E402
from stream.ops.admin import ensure_topics  # noqa: E402
from stream.ops.broker import WORKER_SETTINGS, EmbeddedBroker, free_port  # noqa: E402

PARTITIONS = 4


#: Demo traffic the member states are taken from: 24,000 events of 200 members, about 120
#: each, so most have folded in more events than their ring of recent ids holds.
TEMPLATE_EVENTS, TEMPLATE_MEMBERS = 24_000, 200


@functools.cache  # one traffic replay for every N of a run
def template_states() -> list[dict]:
    """States of long-lived members: those of the demo members whose ring of recent event ids
    is full (past the :data:`~stream.core.member.RECENT_EVENTS` horizon), as the member stage
    left them after the demo traffic (``bench/member_state_size.py``)."""
    states, _ = demo_member_states(TEMPLATE_EVENTS, TEMPLATE_MEMBERS)
    full = [
        s
        for _, s in sorted(states.items())
        if len(base64.b64decode(s["seen"])) == RECENT_EVENTS * DIGEST_BYTES
    ]
    if not full:
        raise RuntimeError("no demo member reached the recent-event horizon")
    return full


async def write_changelog(bootstrap: str, topic: str, members: int) -> int:
    """``members`` states into the changelog (keyed as Faust keys the table); -> bytes."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    templates = template_states()
    partitioner = DefaultPartitioner()
    partitions = list(range(PARTITIONS))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, acks=1, max_batch_size=512 * 1024
    )
    await producer.start()
    total = 0
    try:
        pending = []
        for i in range(members):
            member = f"m-{i:08d}"
            # where the member's events land (member-events is keyed by the raw member id);
            # Faust writes a table's changelog to its source partition, its key as JSON
            partition = partitioner(member.encode(), partitions, partitions)
            template = templates[i % len(templates)]
            value = orjson.dumps({**template, "member_id": member, "partition": partition})
            key = orjson.dumps(member)
            total += len(value) + len(key)
            pending.append(await producer.send(topic, value, key=key, partition=partition))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return total


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def du_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def start_and_time(env: dict, log: Path, timeout_s: float = 1800) -> tuple[float, float, int]:
    """Start a worker; -> (seconds to /readyz 200, RSS MiB once ready, pid). Leaves it running."""
    port = int(env["RISKSTREAM_WEB_PORT"])
    started = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream", "worker"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() - started > timeout_s:
            raise RuntimeError("worker not ready in time")
        time.sleep(0.2)
    ready_s = time.monotonic() - started
    time.sleep(2)
    return ready_s, rss_mib(proc.pid), proc.pid


def stop(pid: int) -> None:
    os.kill(pid, 15)
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text():
            return
        time.sleep(0.2)
    os.kill(pid, 9)


def measure(broker: EmbeddedBroker, members: int, work: Path, memory_max: int) -> dict:
    prefix = f"sr{members}."
    settings = Settings(KAFKA_BROKER=broker.url, topic_prefix=prefix, partitions=PARTITIONS)
    asyncio.run(ensure_topics(settings))
    changelog = f"{prefix}riskstream-member-to-profile-changelog"
    started = time.monotonic()
    changelog_bytes = (
        asyncio.run(write_changelog(broker.bootstrap, changelog, members)) if members else 0
    )
    result: dict = {
        "members": members,
        "write_s": round(time.monotonic() - started, 1),
        "changelog_bytes_per_member": round(changelog_bytes / members) if members else 0,
    }
    runs = [
        ("memory", "memory://", True),
        ("rocksdb-cold", "rocksdb://", True),
        ("rocksdb-warm", "rocksdb://", False),
    ]
    for name, store, fresh in runs:
        if name == "memory" and members > memory_max:
            click.echo(f"{members:>9,} members        memory: skipped (above --memory-max)")
            continue
        data_dir = work / f"data-{members}-{store.split(':')[0]}"
        if fresh and data_dir.exists():
            shutil.rmtree(data_dir)
        env = {
            **os.environ,
            **WORKER_SETTINGS,
            "KAFKA_BROKER": broker.url,
            "RISKSTREAM_TOPIC_PREFIX": prefix,
            "RISKSTREAM_PARTITIONS": str(PARTITIONS),
            "RISKSTREAM_STORE": store,
            "RISKSTREAM_DATA_DIR": str(data_dir),
            "RISKSTREAM_WEB_PORT": str(free_port()),
            "RISKSTREAM_LOG_LEVEL": "warning",
        }
        ready_s, rss, pid = start_and_time(env, work / f"worker-{members}-{name}.log")
        stop(pid)
        result[name] = {
            "ready_s": round(ready_s, 1),
            "rss_mib": round(rss, 1),
            "disk_mib": round(du_mib(data_dir), 1) if data_dir.exists() else 0.0,
        }
        click.echo(
            f"{members:>9,} members {name:>13}: ready in {ready_s:7.1f} s, "
            f"RSS {rss:8.1f} MiB, disk {result[name]['disk_mib']:8.1f} MiB"
        )
    return result


@click.command()
@click.option("--members", "counts", type=int, multiple=True, default=(100_000, 1_000_000))
@click.option(
    "--memory-max",
    type=int,
    default=200_000,
    show_default=True,
    help="Skip memory:// above this many members (its RSS grows by kilobytes a member).",
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=ROOT / "bench/results/state_recovery.json"
)
def main(counts: tuple[int, ...], memory_max: int, out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="state-recovery-"))
    broker = EmbeddedBroker(log_path=work / "broker.log").start()
    try:
        baseline = measure(broker, 0, work, memory_max)
        results = [measure(broker, n, work, memory_max) for n in counts]
    finally:
        broker.stop()
    for r in results:
        for name in ("memory", "rocksdb-cold", "rocksdb-warm"):
            if name not in r:
                continue
            extra = r[name]["rss_mib"] - baseline[name]["rss_mib"]
            r[name]["rss_kib_per_member"] = round(extra * 1024 / r["members"], 2)
            r[name]["disk_bytes_per_member"] = round(r[name]["disk_mib"] * 2**20 / r["members"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"baseline": baseline, "results": results}, indent=2) + "\n")
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
