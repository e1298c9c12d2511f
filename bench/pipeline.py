"""End-to-end pipeline benchmark (a command, not a test): model limit vs this project vs a naive
Faust app, on the same texts and machine, in one run.

    .venv/bin/python bench/pipeline.py [--events 3000] [--naive-events 400] [--repeats 3]
        [--latency-seconds 20] [--backend auto] [--partitions 2] [--profile /tmp/worker.txt]

1. limit: the backend's offline texts/s (``handler.run_inference`` on batches of the benchmark
   texts, in arrival order). A batch-size sweep on a subset picks the best size, which is then
   timed on all the burst texts.
2. project: embedded broker + the real worker process. After a warm-up, ``--events`` text events
   are produced as fast as possible; throughput = events / (first send -> last scored-events
   record's timestamp). Then latency at 50 % and 90 % of that rate, paced for
   ``--latency-seconds``: output record timestamp - send time, per event.
3. naive: ``bench/naive_app.py`` (one agent, one text per model call), measured like 2.

Texts are the demo generator's reviews and chats (no transactions, nothing malformed). Writes
every figure to ``bench/results/pipeline.json``. ``--profile PATH`` runs ``py-spy record`` on the
worker during one extra burst (kept out of the medians); a raw (collapsed) profile is also
summarised into hotspots.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.metadata
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stream.config import Settings
from stream.core.steps import rfc3339_from_ms
from stream.ops import live
from stream.ops.admin import bootstrap_servers, ensure_topics
from stream.ops.broker import WORKER_SETTINGS, EmbeddedBroker, free_port
from stream.ops.runner import WorkerProcess
from stream.ops.simulate import DemoCorpus, DemoTraffic
from stream.security import KafkaSecurity

REPO = Path(__file__).resolve().parent.parent
PY_SPY = Path(sys.executable).parent / "py-spy"
TARGETS = {"project_over_limit": 0.85, "project_over_naive": 15.0, "p99_ms_at_50pct": 250.0}
console = Console(width=None if sys.stdout.isatty() else 130)


# --------------------------------------------------------------------------- texts and events


@dataclass(frozen=True, slots=True)
class TextEvent:
    """One benchmark input: logical topic, key and the event body (re-stamped per send)."""

    topic: str
    key: bytes
    body: dict[str, Any]

    @property
    def text(self) -> str:
        return self.body["text"]

    def record(self, event_id: str) -> tuple[str, bytes, bytes]:
        """``(logical topic, key, value)`` with a fresh id and event time."""
        body = {
            **self.body,
            "event_id": event_id,
            "event_time": rfc3339_from_ms(int(time.time() * 1000)),
        }
        return self.topic, self.key, orjson.dumps(body)


def text_events(count: int, seed: int) -> list[TextEvent]:
    """The first ``count`` reviews and chats of the seeded demo traffic."""
    traffic = DemoTraffic(DemoCorpus.load(), seed=seed, malformed_ratio=0.0)
    events: list[TextEvent] = []
    while len(events) < count:
        record = traffic.next_record()
        if record.topic in ("reviews", "chats"):
            events.append(TextEvent(record.topic, record.key, orjson.loads(record.value)))
    return events


def cycle(events: Sequence[TextEvent], count: int) -> Iterator[TextEvent]:
    for i in range(count):
        yield events[i % len(events)]


# --------------------------------------------------------------------------- 1. model limit


#: Set when the run is cancelled, so the limit measurement (in a thread) stops early.
_abort = threading.Event()


def _time_batches(handler: Any, model: Any, texts: Sequence[str], batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        if _abort.is_set():
            raise RuntimeError("cancelled")
        handler.run_inference(texts[start : start + batch], model)
    return time.perf_counter() - started


def measure_limit(
    backend: str,
    texts: Sequence[str],
    sweep_texts: int,
    batch_sizes: Sequence[int],
    repeats: int,
) -> dict[str, Any]:
    """Offline texts/s: a batch-size sweep on a subset, then the best size on all ``texts``."""
    from models.serving.factory import create_handler, resolve_backend

    handler = create_handler(backend)
    started = time.perf_counter()
    model = handler.load_model()
    load_s = time.perf_counter() - started
    subset = texts[:sweep_texts]
    sweep: dict[int, float] = {}
    _time_batches(handler, model, subset, max(batch_sizes))  # untimed: first shapes are slow
    for batch in batch_sizes:
        seconds = [_time_batches(handler, model, subset, batch) for _ in range(repeats)]
        sweep[batch] = len(subset) / statistics.median(seconds)
        console.log(f"limit: batch {batch:4d} -> {sweep[batch]:7.1f} texts/s on {len(subset)}")
    best = max(sweep, key=sweep.__getitem__)
    runs = [len(texts) / _time_batches(handler, model, texts, best) for _ in range(repeats)]
    console.log(f"limit: batch {best} on {len(texts)} texts -> {runs}")
    result = {
        "backend": resolve_backend(backend)[0],
        "model_version": handler.model_version,
        "model_load_s": round(load_s, 2),
        "sweep_texts": len(subset),
        "sweep_texts_per_s": {str(b): round(v, 1) for b, v in sweep.items()},
        "best_batch": best,
        "texts": len(texts),
        "texts_per_s_runs": [round(v, 1) for v in runs],
        "texts_per_s": round(statistics.median(runs), 1),
    }
    del model, handler
    gc.collect()
    return result


# --------------------------------------------------------------------------- Kafka helpers


@dataclass
class OutputCollector:
    """Reads an output topic from the start in the background: event_id -> output timestamp."""

    bootstrap: str
    topic: str
    seen: dict[str, float] = field(default_factory=dict)  # event id -> record timestamp (s)
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **KafkaSecurity.from_env().aiokafka_kwargs(),
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"collect {self.topic}")

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            received = time.time()
            for messages in batches.values():
                for message in messages:
                    event_id = orjson.loads(message.value)["event_id"]
                    stamp = message.timestamp / 1000 if message.timestamp > 0 else received
                    self.seen.setdefault(event_id, stamp)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()

    async def wait_for(
        self, ids: Sequence[str], *, stall_s: float, alive: Any = lambda: True
    ) -> int:
        """Wait until every id has an output, or none arrives for ``stall_s`` (or the process
        under test dies); returns how many are missing."""
        if self._task is not None and self._task.done():
            self._task.result()  # the collector crashed: say why
        pending = set(ids)
        last_progress = time.monotonic()
        while pending:
            before = len(pending)
            pending = {i for i in pending if i not in self.seen}
            now = time.monotonic()
            if len(pending) < before:
                last_progress = now
            if now - last_progress > stall_s or not alive():
                break
            await asyncio.sleep(0.05)
        return len(pending)


async def send_all(
    producer: AIOKafkaProducer, prefix: str, events: Sequence[TextEvent], tag: str
) -> tuple[list[str], float]:
    """Produce ``events`` as fast as possible; returns their ids and the first send time."""
    records = [event.record(f"{tag}-{i:07d}") for i, event in enumerate(events)]
    ids = [orjson.loads(value)["event_id"] for _, _, value in records]
    started = time.time()
    futures = [await producer.send(prefix + t, value, key=key) for t, key, value in records]
    await asyncio.gather(*futures)
    return ids, started


@dataclass
class Target:
    """The process under test, as the measuring code sees it."""

    name: str
    prefix: str
    producer: AIOKafkaProducer
    collector: OutputCollector
    process: subprocess.Popen
    web_port: int | None = None
    stall_s: float = 30.0

    def alive(self) -> bool:
        return self.process.poll() is None

    def peak_rss_mib(self) -> float | None:
        """VmHWM of the process (peak resident set), MiB."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        return None

    def metrics(self) -> live.MetricsSnapshot | None:
        if self.web_port is None:
            return None
        return live.scrape(f"http://127.0.0.1:{self.web_port}/metrics", time.monotonic())


async def warm_up(target: Target, events: Sequence[TextEvent], timeout_s: float) -> float:
    """Produce a warm-up batch and wait for all its outputs (worker joined, model loaded)."""
    started = time.monotonic()
    ids, _ = await send_all(target.producer, target.prefix, events, "warm")
    pending = set(ids)
    while pending:
        pending = {i for i in pending if i not in target.collector.seen}
        if not target.alive():
            raise RuntimeError(f"{target.name} exited with code {target.process.returncode}")
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"{target.name}: {len(pending)} warm-up outputs missing")
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # let the commits and the first profile publications settle
    return time.monotonic() - started


async def max_throughput(target: Target, events: Sequence[TextEvent], tag: str) -> dict:
    """Events / (first send -> last output record) for a burst produced as fast as possible."""
    before = target.metrics()
    ids, started = await send_all(target.producer, target.prefix, events, tag)
    produced_s = time.time() - started
    missing = await target.collector.wait_for(ids, stall_s=target.stall_s, alive=target.alive)
    done = [target.collector.seen[i] for i in ids if i in target.collector.seen]
    elapsed = max(done) - started if done else float("nan")
    after = target.metrics()
    result = {
        "events": len(ids),
        "missing": missing,
        "produce_s": round(produced_s, 3),
        "seconds": round(elapsed, 3),
        "events_per_s": round(len(done) / elapsed, 1) if done else 0.0,
    }
    if len(done) >= 20:  # the middle 80 % of outputs: the rate without start-up and drain
        times = sorted(done)
        low, high = len(times) // 10, len(times) * 9 // 10 - 1
        if times[high] > times[low]:
            result["steady_events_per_s"] = round((high - low) / (times[high] - times[low]), 1)
    if before is not None and after is not None:
        result["mean_batch_size"] = round(live.mean_batch(after, before), 1)
    console.log(f"{target.name} {tag}: {result}")
    return result


async def paced_latency(
    target: Target, events: Sequence[TextEvent], rate: float, duration_s: float, tag: str
) -> dict:
    """Send at ``rate``/s for ``duration_s``; latency = output record timestamp - send time."""
    total = max(1, int(rate * duration_s))
    sent_at: dict[str, float] = {}
    futures: list[asyncio.Future] = []
    source = cycle(events, total)
    started = time.perf_counter()
    for i in range(total):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        event_id = f"{tag}-{i:07d}"
        topic, key, value = next(source).record(event_id)
        sent_at[event_id] = time.time()
        futures.append(await target.producer.send(target.prefix + topic, value, key=key))
    send_span = time.perf_counter() - started
    await asyncio.gather(*futures)
    ids = list(sent_at)
    missing = await target.collector.wait_for(ids, stall_s=target.stall_s, alive=target.alive)
    seen = target.collector.seen
    latencies = np.array([(seen[i] - sent_at[i]) * 1000 for i in ids if i in seen])
    first_send = min(sent_at.values())
    last_out = max((seen[i] for i in ids if i in seen), default=first_send)
    p50, p95, p99 = (
        np.percentile(latencies, q) if latencies.size else float("nan") for q in (50, 95, 99)
    )
    result = {
        "target_rate": round(rate, 1),
        "events": total,
        "missing": missing,
        "achieved_send_rate": round((total - 1) / send_span, 1) if send_span else None,
        "completed_rate": round(latencies.size / (last_out - first_send), 1)
        if last_out > first_send
        else None,
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "p99_ms": round(float(p99), 1),
        "max_ms": round(float(latencies.max()), 1) if latencies.size else None,
    }
    console.log(f"{target.name} {tag}: {result}")
    return result


# --------------------------------------------------------------------------- profiling


class Profiler:
    """``py-spy record`` on one process (all its Python threads), stopped with SIGINT."""

    def __init__(self, pid: int, path: Path, log_path: Path) -> None:
        self.path = path
        self.format = {".svg": "flamegraph", ".json": "speedscope"}.get(path.suffix, "raw")
        self.log_path = log_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    *(str(PY_SPY), "record", "--pid", str(pid), "--threads", "--nonblocking"),
                    *("--rate", "100", "--format", self.format, "--output", str(path)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _frame_name(frame: str) -> str:
    """``func (path:line)`` -> ``func (short path)``: site-packages and repo prefixes dropped."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.11/", f"{REPO}/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})"


def _component(frame: str) -> str:
    """The package (or repo file) a frame belongs to, for a coarse breakdown."""
    where = frame.partition(" (")[2].rstrip(")")
    if where.startswith(("stream/", "models/", "bench/")):
        return where
    return where.split("/", 1)[0].removesuffix(".py") if "/" in where else where


#: Frames every stack of a thread passes through; left out of the cumulative ranking.
PLUMBING = (
    "(threading.py)",
    "(concurrent/futures/",
    "(<frozen runpy>)",
    "(click/core.py)",
    "(stream/__main__.py)",
    "(stream/ops/cli.py)",
    "(mode/worker.py)",
    "(asyncio/base_events.py)",
    "(asyncio/events.py)",
)


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """Self and cumulative shares by function, self share by component and by thread, from a
    py-spy raw (collapsed stacks) file."""
    self_counts: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    components: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    thread_leaf: dict[str, Counter[str]] = defaultdict(Counter)
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames.pop(0) if frames and frames[0].startswith("thread ") else "?"
        if frames and frames[0].startswith("process "):
            frames.pop(0)
        names = [_frame_name(f) for f in frames]
        if not names:
            continue
        total += count
        self_counts[names[-1]] += count
        components[_component(names[-1])] += count
        threads[thread] += count
        thread_leaf[thread][_component(names[-1])] += count
        for name in set(names):
            if not any(marker in name for marker in PLUMBING):
                cumulative[name] += count

    def share(counter: Counter[str], n: int = top) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(n)]

    return {
        "samples": total,
        "self_pct": share(self_counts),
        "cumulative_pct": share(cumulative, top + 5),
        "component_self_pct": share(components),
        "thread_pct": [
            (f"{t} [{', '.join(c for c, _ in thread_leaf[t].most_common(2))}]", pct)
            for t, pct in share(threads, 8)
        ],
    }


# --------------------------------------------------------------------------- the run


@dataclass
class Options:
    events: int
    naive_events: int
    warmup_events: int
    repeats: int
    latency_seconds: float
    latency_loads: tuple[float, ...]
    backend: str
    partitions: int
    sweep_texts: int
    batch_sizes: tuple[int, ...]
    seed: int
    skip_naive: bool
    out: Path
    profile: Path | None
    run_dir: Path
    stall_s: float
    latency_rate: float | None = None  # events/s taken as 100 % load; None: the measured max


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError):
        kib = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
        memory_gib = round(int(kib) / 2**20, 1)

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gib": memory_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            d: version(d)
            for d in ("torch", "onnxruntime", "faust-streaming", "aiokafka", "tokenizers", "orjson")
        },
    }


def worker_env(broker: EmbeddedBroker, prefix: str, opts: Options, web_port: int) -> dict:
    return {
        **os.environ,
        "KAFKA_BROKER": broker.url,
        "RISKSTREAM_TOPIC_PREFIX": prefix,
        "RISKSTREAM_PARTITIONS": str(opts.partitions),
        **WORKER_SETTINGS,
        "RISKSTREAM_FETCH_MAX_WAIT_MS": os.environ.get(
            "RISKSTREAM_FETCH_MAX_WAIT_MS", WORKER_SETTINGS["RISKSTREAM_FETCH_MAX_WAIT_MS"]
        ),
        "RISKSTREAM_WEB_PORT": str(web_port),
        "RISKSTREAM_LOG_LEVEL": "warning",
        "RISKSTREAM_BACKEND": opts.backend,
        "RISKSTREAM_DATA_DIR": str(opts.run_dir / "faust"),
        "PYTHONUNBUFFERED": "1",
    }


def _median(runs: list[dict], key: str = "events_per_s") -> float | None:
    values = [r[key] for r in runs if key in r]
    return round(statistics.median(values), 1) if values else None


async def bench_project(
    broker: EmbeddedBroker, opts: Options, events: list[TextEvent], stack: Any
) -> dict[str, Any]:
    """The real worker: warm-up, max-throughput bursts, optional profiled burst, latency."""
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    settings = Settings(KAFKA_BROKER=broker.url, topic_prefix=prefix, partitions=opts.partitions)
    await ensure_topics(settings)
    web_port = free_port()
    worker = WorkerProcess(worker_env(broker, prefix, opts, web_port), opts.run_dir / "worker.log")
    worker.start()
    stack.callback(worker.stop)
    assert worker.process is not None
    bootstrap = bootstrap_servers(broker.url)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", **KafkaSecurity.from_env().aiokafka_kwargs()
    )
    await producer.start()
    stack.push_async_callback(producer.stop)
    collector = OutputCollector(bootstrap, f"{prefix}scored-events")
    await collector.start()
    stack.push_async_callback(collector.stop)
    target = Target("project", prefix, producer, collector, worker.process, web_port, opts.stall_s)

    ready_s = await warm_up(target, events[: opts.warmup_events], timeout_s=180)
    console.log(f"project worker ready after {ready_s:.1f}s (pid {worker.process.pid})")
    burst = events[: opts.events]
    runs = [await max_throughput(target, burst, f"max{r}") for r in range(opts.repeats)]
    result: dict[str, Any] = {
        "topic_prefix": prefix,
        "partitions": opts.partitions,
        "ready_s": round(ready_s, 1),
        "max_throughput_runs": runs,
        "events_per_s": _median(runs),
        "steady_events_per_s": _median(runs, "steady_events_per_s"),
    }
    if opts.profile is not None:
        profiler = Profiler(worker.process.pid, opts.profile, opts.run_dir / "py-spy.log")
        stack.callback(profiler.stop)
        await asyncio.sleep(1.0)  # py-spy attaches
        profiled = await max_throughput(target, burst, "profiled")
        profiler.stop()
        result["profiled_run"] = {**profiled, "path": str(opts.profile), "format": profiler.format}
        if profiler.format == "raw" and opts.profile.exists():
            result["profile"] = summarize_profile(opts.profile)
    result["latency"] = {}
    full = opts.latency_rate or result["events_per_s"]
    for load in opts.latency_loads:
        rate = load * full
        tag = f"lat{round(load * 100)}"
        result["latency"][f"{round(load * 100)}%"] = await paced_latency(
            target, events, rate, opts.latency_seconds, tag
        )
    snapshot = target.metrics()
    result["worker_peak_rss_mib"] = target.peak_rss_mib()
    result["worker_rss_mib_at_end"] = (
        round(snapshot.get(live.RSS) / 2**20, 1) if snapshot is not None else None
    )
    result["worker_mean_batch_size"] = round(live.mean_batch(snapshot), 1) if snapshot else None
    return result


async def bench_naive(
    broker: EmbeddedBroker, opts: Options, events: list[TextEvent], stack: Any
) -> dict[str, Any]:
    """``bench/naive_app.py``: warm-up, then max-throughput bursts of ``--naive-events``."""
    prefix = f"naive{uuid.uuid4().hex[:6]}."
    settings = Settings(KAFKA_BROKER=broker.url, topic_prefix=prefix, partitions=opts.partitions)
    await ensure_topics(settings)
    env = {
        **os.environ,
        "KAFKA_BROKER": broker.url,
        "NAIVE_TOPIC_PREFIX": prefix,
        "NAIVE_APP_ID": f"{prefix}naive-scorer",
        "NAIVE_PARTITIONS": str(opts.partitions),
        "NAIVE_WEB_PORT": str(free_port()),
        "NAIVE_BACKEND": opts.backend,
        "NAIVE_DATA_DIR": str(opts.run_dir / "naive"),
        "PYTHONUNBUFFERED": "1",
    }
    with open(opts.run_dir / "naive.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "naive_app.py"), "worker", "-l", "warn"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    stack.callback(_terminate, process)
    bootstrap = bootstrap_servers(broker.url)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", **KafkaSecurity.from_env().aiokafka_kwargs()
    )
    await producer.start()
    stack.push_async_callback(producer.stop)
    collector = OutputCollector(bootstrap, f"{prefix}scored-events")
    await collector.start()
    stack.push_async_callback(collector.stop)
    target = Target("naive", prefix, producer, collector, process, None, opts.stall_s)
    ready_s = await warm_up(target, events[: min(opts.warmup_events, 50)], timeout_s=180)
    console.log(f"naive app ready after {ready_s:.1f}s (pid {process.pid})")
    burst = events[: opts.naive_events]
    runs = [await max_throughput(target, burst, f"max{r}") for r in range(opts.repeats)]
    return {
        "topic_prefix": prefix,
        "max_throughput_runs": runs,
        "events_per_s": _median(runs),
        "steady_events_per_s": _median(runs, "steady_events_per_s"),
        "peak_rss_mib": target.peak_rss_mib(),
    }


def _terminate(process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def run(opts: Options) -> dict[str, Any]:
    from models.training.build import ensure_built

    ensure_built(progress=False)
    opts.run_dir.mkdir(parents=True, exist_ok=True)
    pool = text_events(max(opts.events, opts.naive_events, opts.warmup_events), opts.seed)
    burst_texts = [e.text for e in pool[: opts.events]]
    console.log(
        f"{len(pool)} text events (mean {statistics.mean(len(t) for t in burst_texts):.0f} "
        f"chars); logs in {opts.run_dir}"
    )
    try:
        limit = await asyncio.to_thread(
            measure_limit,
            opts.backend,
            burst_texts,
            opts.sweep_texts,
            opts.batch_sizes,
            opts.repeats,
        )
    except asyncio.CancelledError:
        _abort.set()
        raise
    results: dict[str, Any] = {"limit": limit}
    broker = EmbeddedBroker(log_path=opts.run_dir / "broker.log").start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            results["project"] = await bench_project(broker, opts, pool, stack)
        if not opts.skip_naive:
            async with contextlib.AsyncExitStack() as stack:
                results["naive"] = await bench_naive(broker, opts, pool, stack)
    finally:
        broker.stop()
    return results


def figures(results: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers, the ratios and whether each target is met."""
    limit = results["limit"]["texts_per_s"]
    project = results["project"]["events_per_s"]
    naive = results.get("naive", {}).get("events_per_s")
    latency = results["project"]["latency"]
    p99_half = latency.get("50%", {}).get("p99_ms")
    out = {
        "limit_texts_per_s": limit,
        "limit_best_batch": results["limit"]["best_batch"],
        "project_events_per_s": project,
        "naive_events_per_s": naive,
        "project_over_limit": round(project / limit, 3) if limit else None,
        "project_over_naive": round(project / naive, 2) if naive else None,
        "latency_ms": {
            load: {k: v[k] for k in ("p50_ms", "p95_ms", "p99_ms")} for load, v in latency.items()
        },
        "project_steady_events_per_s": results["project"]["steady_events_per_s"],
        "naive_steady_events_per_s": results.get("naive", {}).get("steady_events_per_s"),
        "worker_peak_rss_mib": results["project"]["worker_peak_rss_mib"],
        "naive_peak_rss_mib": results.get("naive", {}).get("peak_rss_mib"),
    }
    out["targets"] = {
        "project_over_limit >= 0.85": _met(
            out["project_over_limit"], TARGETS["project_over_limit"]
        ),
        "project_over_naive >= 15": _met(out["project_over_naive"], TARGETS["project_over_naive"]),
        "p99 at 50% load <= 250 ms": _met(p99_half, TARGETS["p99_ms_at_50pct"], below=True),
    }
    return out


def _met(value: float | None, target: float, *, below: bool = False) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= target if below else value >= target) else "not met"


def render(summary: dict[str, Any], results: dict[str, Any]) -> Table:
    table = Table(title="riskstream pipeline benchmark (medians)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target")
    status = summary["targets"]

    def mark(key: str) -> str:
        color = "green" if status[key] == "met" else "red"
        return f"[{color}]{key}: {status[key]}[/{color}]"

    table.add_row(
        "limit (offline, best batch)",
        f"{summary['limit_texts_per_s']:.1f} texts/s (batch {summary['limit_best_batch']})",
        "",
    )
    table.add_row("project (end to end)", f"{summary['project_events_per_s']:.1f} events/s", "")
    naive = summary["naive_events_per_s"]
    table.add_row("naive Faust app", f"{naive:.1f} events/s" if naive else "skipped", "")
    steady = (summary["project_steady_events_per_s"], summary["naive_steady_events_per_s"])
    table.add_row(
        "steady rate, middle 80 % of outputs",
        " / ".join(f"{v:.1f}" if v else "-" for v in steady) + " events/s",
        "project / naive (info)",
    )
    table.add_row(
        "project ÷ limit", f"{summary['project_over_limit']:.2f}", mark(next(iter(status)))
    )
    ratio = summary["project_over_naive"]
    table.add_row("project ÷ naive", f"{ratio:.1f}" if ratio else "-", mark(list(status)[1]))
    for load, lat in results["project"]["latency"].items():
        table.add_row(
            f"latency at {load} load ({lat['achieved_send_rate']}/s)",
            f"p50 {lat['p50_ms']:.0f} / p95 {lat['p95_ms']:.0f} / p99 {lat['p99_ms']:.0f} ms",
            mark(list(status)[2]) if load == "50%" else "",
        )
    table.add_row("worker peak RSS (VmHWM)", f"{summary['worker_peak_rss_mib']} MiB", "")
    table.add_row("naive app peak RSS (VmHWM)", f"{summary['naive_peak_rss_mib']} MiB", "")
    return table


def render_profile(profile: dict[str, Any]) -> list[Table]:
    """Tables: share by thread, self share by component, top functions (self, cumulative)."""
    title = f"worker hotspots (py-spy, {profile['samples']} non-idle samples, % of them)"
    tables = []
    for key, heading in (
        ("thread_pct", "thread [top components]"),
        ("component_self_pct", "component (self)"),
    ):
        table = Table(title=title if not tables else None)
        table.add_column("%", justify="right")
        table.add_column(heading)
        for name, pct in profile[key]:
            table.add_row(f"{pct:.1f}", escape(name))
        tables.append(table)
    table = Table()
    table.add_column("self %", justify="right")
    table.add_column("function (self)")
    table.add_column("cum %", justify="right")
    table.add_column("function (cumulative)")
    rows = max(len(profile["self_pct"]), len(profile["cumulative_pct"]))
    for i in range(rows):
        s = profile["self_pct"][i] if i < len(profile["self_pct"]) else ("", "")
        c = profile["cumulative_pct"][i] if i < len(profile["cumulative_pct"]) else ("", "")
        table.add_row(str(s[1]), escape(s[0]), str(c[1]), escape(c[0]))
    tables.append(table)
    return tables


@click.command()
@click.option("--events", type=int, default=3000, show_default=True, help="Burst size (project).")
@click.option("--naive-events", type=int, default=400, show_default=True)
@click.option("--warmup-events", type=int, default=100, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True, help="Throughput repeats.")
@click.option("--latency-seconds", type=float, default=20.0, show_default=True)
@click.option(
    "--latency-loads",
    default="0.5,0.9",
    show_default=True,
    help="Fractions of the measured max rate for the latency runs.",
)
@click.option(
    "--latency-rate",
    type=float,
    default=None,
    help="Events/s taken as 100 % load instead of the measured max: two builds compared at "
    "the same rate (the max moves with the machine from run to run).",
)
@click.option("--backend", default="auto", show_default=True)
@click.option("--partitions", type=int, default=2, show_default=True)
@click.option("--sweep-texts", type=int, default=512, show_default=True)
@click.option("--batch-sizes", default="8,16,32,64,128", show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--skip-naive", is_flag=True, help="Only the limit and the project.")
@click.option(
    "--stall-seconds",
    type=float,
    default=30.0,
    show_default=True,
    help="Give up waiting for outputs after this long without progress.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("bench/results/pipeline.json"),
    show_default=True,
)
@click.option(
    "--profile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="py-spy the worker during an extra burst: .svg flamegraph, .json speedscope, else raw.",
)
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
def main(
    events: int,
    naive_events: int,
    warmup_events: int,
    repeats: int,
    latency_seconds: float,
    latency_loads: str,
    latency_rate: float | None,
    backend: str,
    partitions: int,
    sweep_texts: int,
    batch_sizes: str,
    seed: int,
    skip_naive: bool,
    stall_seconds: float,
    out: Path,
    profile: Path | None,
    run_dir: Path | None,
) -> None:
    """Model limit vs this project vs a naive Faust app, side by side."""
    if profile is not None and not PY_SPY.exists():
        raise click.UsageError(f"--profile needs py-spy at {PY_SPY}")
    stamp = datetime.now(UTC)
    opts = Options(
        events=events,
        naive_events=naive_events,
        warmup_events=warmup_events,
        repeats=repeats,
        latency_seconds=latency_seconds,
        latency_loads=tuple(float(x) for x in latency_loads.split(",") if x),
        latency_rate=latency_rate,
        backend=backend,
        partitions=partitions,
        sweep_texts=sweep_texts,
        batch_sizes=tuple(int(x) for x in batch_sizes.split(",") if x),
        seed=seed,
        skip_naive=skip_naive,
        out=out,
        profile=profile.resolve() if profile else None,
        run_dir=run_dir or Path(f"/tmp/riskstream-bench-{stamp:%Y%m%d-%H%M%S}"),
        stall_s=stall_seconds,
    )
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started in background
    started = time.monotonic()
    load_at_start = os.getloadavg()  # another job on the machine skews every figure
    try:
        results = asyncio.run(run(opts))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; subprocesses and broker stopped")
        sys.exit(130)
    summary = figures(results)
    console.print(render(summary, results))
    if "profile" in results["project"]:
        for table in render_profile(results["project"]["profile"]):
            console.print(table)
    report = {
        "command": shlex.join(["python", *sys.argv]),
        "timestamp": stamp.isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - started, 1),
        "load_average": {"start": load_at_start, "end": os.getloadavg()},
        "machine": {
            **machine(),
            "backend": results["limit"]["backend"],
            "model_version": results["limit"]["model_version"],
        },
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
        "summary": summary,
        **results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    console.print(f"wrote {out}")


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
