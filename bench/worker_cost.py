"""The stream layer's cost per event: this worker beside a bare Faust app, model stubbed out.

    .venv/bin/python bench/worker_cost.py [--events 20000] [--runs 3] [--partitions 2]
        [--app both|worker|bare] [--mix 40:35:25] [--json bench/results/worker_cost.json]
        [--warm 0] [--members 500]

``--warm N``: the steady state users see. N events of the same members are processed first
(``--members 200 --warm 20000``: 100 events a member, past the member stage's 64-event
horizon), then the measured events are produced into the running app; every figure (window,
CPU, records and bytes written) covers the measured events only.

With the model answering at once (``RISKSTREAM_BACKEND=stub``), what is left is the worker's
own cost: decode, batching, member state, changelogs, outputs. The yardstick is
``bench/naive_app.py`` (one agent: decode, stub model, send to scored-events), fed the same
inputs (``NAIVE_TRANSACTIONS=1``: transactions pass through unscored).

Each run, on its own topic prefix of one embedded broker: the demo events (no malformed ones;
``--mix`` = reviews:chats:transactions weights, the demo's by default) are produced *before*
the app starts, then the app starts and drains the backlog. The processing window runs from
the first scored-events record to the last expected one (record timestamps), so process
start-up and the broker's group join (~5 s) stay out of it. Reported per run, then as medians:

- events/s over the window (and text events/s);
- CPU ms per event of the app process (with its children) and of the broker, from
  ``/proc/<pid>/stat`` (utime+stime) sampled every 50 ms and interpolated at the window's ends;
  the broker's includes serving this bench's one reader of scored-events (same for both apps);
- records and bytes (key + value) per topic of the prefix, changelogs included, read end to
  end after the app stopped, per input event and per text event: the broker writes each event
  costs. Input topics are listed but not counted as the app's writes.

Runs alternate the app kinds (worker, bare, then bare, worker, ...). The Markdown table goes to
stdout, everything to ``--json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's stream/ and models/, not an installed copy

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from bench.pipeline import OutputCollector, machine  # noqa: E402
from stream.config import Settings  # noqa: E402
from stream.ops.admin import ensure_topics  # noqa: E402
from stream.ops.broker import WORKER_SETTINGS, EmbeddedBroker, free_port  # noqa: E402
from stream.ops.simulate import DemoCorpus, DemoTraffic, OutgoingRecord  # noqa: E402
from stream.security import plaintext_env  # noqa: E402

INPUT_TOPICS = ("reviews", "chats", "transactions")
TEXT_TOPICS = ("reviews", "chats")
KINDS = ("worker", "bare")
TARGETS = {"worker_over_bare_events_per_s": 0.6, "writes_per_text_event": 3.0}
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- inputs


def parse_mix(text: str) -> dict[str, float]:
    """``"40:35:25"`` -> reviews/chats/transactions weights (normalised)."""
    parts = [float(p) for p in text.split(":")]
    if len(parts) != 3 or min(parts) < 0 or sum(parts[:2]) <= 0:
        raise click.BadParameter("reviews:chats:transactions weights, e.g. 40:35:25 or 1:1:0")
    return {t: w / sum(parts) for t, w in zip(INPUT_TOPICS, parts, strict=True)}


def quotas(count: int, mix: dict[str, float]) -> dict[str, int]:
    """``count`` split by ``mix``, largest remainders first, so the counts add up exactly."""
    exact = {t: count * share for t, share in mix.items()}
    counts = {t: int(v) for t, v in exact.items()}
    for t in sorted(exact, key=lambda t: exact[t] - counts[t], reverse=True):
        if sum(counts.values()) >= count:
            break
        counts[t] += 1
    return counts


def demo_events(
    count: int, mix: dict[str, float], seed: int, members: int = 500
) -> list[OutgoingRecord]:
    """``count`` valid demo records in the asked mix: each kind in the demo's own order,
    kinds interleaved at random (seeded), so no stretch of the input is all one kind."""
    want = quotas(count, mix)
    traffic = DemoTraffic(DemoCorpus.load(), seed=seed, members=members, malformed_ratio=0.0)
    pools: dict[str, list[OutgoingRecord]] = {t: [] for t in INPUT_TOPICS}
    while any(len(pools[t]) < want[t] for t in INPUT_TOPICS):
        record = traffic.next_record()
        if len(pools[record.topic]) < want[record.topic]:
            pools[record.topic].append(record)
    order = [t for t in INPUT_TOPICS for _ in range(want[t])]
    random.Random(seed).shuffle(order)
    iters = {t: iter(pools[t]) for t in INPUT_TOPICS}
    return [next(iters[t]) for t in order]


async def produce_backlog(bootstrap: str, prefix: str, records: list[OutgoingRecord]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        futures = [await producer.send(prefix + r.topic, r.value, key=r.key) for r in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


# --------------------------------------------------------------------------- CPU from /proc


def cpu_s(pid: int, *, with_reaped_children: bool = False) -> float | None:
    """utime+stime of ``pid`` (all its threads), seconds; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name may hold spaces; fields 3.. follow it
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICK


def descendants(pid: int) -> set[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class CpuSampler:
    """(wall time, app tree CPU s, broker CPU s) every ``interval_s`` in a thread, so CPU at
    any instant of the run (a record's timestamp) can be interpolated afterwards."""

    def __init__(self, app_pid: int, broker_pid: int, interval_s: float = 0.05) -> None:
        self.app_pid, self.broker_pid, self.interval_s = app_pid, broker_pid, interval_s
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._children: set[int] = set()
        self._gone: dict[int, float] = {}  # children that exited: their last reading

    def _app_cpu(self) -> float:
        total = cpu_s(self.app_pid, with_reaped_children=True) or 0.0
        for child in self._children:
            reading = cpu_s(child)
            if reading is None:  # reaped: now in the parent's cutime (if it waited)
                continue
            self._gone[child] = reading
            total += reading
        return total

    def _run(self) -> None:
        next_scan = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_scan:  # the process tree rarely changes: rescan every 2 s
                self._children = descendants(self.app_pid)
                next_scan = now + 2.0
            app = self._app_cpu()
            broker = cpu_s(self.broker_pid) or 0.0
            self.samples.append((time.time(), app, broker))
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, when: float) -> tuple[float, float]:
        """(app, broker) CPU seconds at wall time ``when``, linearly interpolated."""
        times = [s[0] for s in self.samples]
        i = bisect_left(times, when)
        if i == 0:
            return self.samples[0][1:]
        if i == len(times):
            return self.samples[-1][1:]
        (t0, a0, b0), (t1, a1, b1) = self.samples[i - 1], self.samples[i]
        f = (when - t0) / (t1 - t0) if t1 > t0 else 1.0
        return a0 + f * (a1 - a0), b0 + f * (b1 - b0)


# --------------------------------------------------------------------------- records per topic


async def topic_counts(bootstrap: str, prefix: str, timeout_s: float = 60.0) -> dict[str, dict]:
    """Every topic of ``prefix`` read from offset 0 to its high-water mark (from fetch
    responses: this broker lists wrong end offsets, see stream/worker/faust_fixes.py fix 5):
    logical name -> records, key+value bytes, and the high-water marks' sum."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        topics = sorted(t for t in await consumer.topics() if t.startswith(prefix))
        tps = [
            TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t))
        ]
        counts = {t.removeprefix(prefix): {"records": 0, "bytes": 0} for t in topics}
        if not tps:
            return counts
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=20_000)
            for tp, messages in batches.items():
                entry = counts[tp.topic.removeprefix(prefix)]
                entry["records"] += len(messages)
                entry["bytes"] += sum(len(m.key or b"") + len(m.value or b"") for m in messages)
            marks = {tp: consumer.highwater(tp) for tp in tps}
            positions = {tp: await consumer.position(tp) for tp in tps}
            if all(marks[tp] is not None and positions[tp] >= marks[tp] for tp in tps):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"reading the topics of {prefix} took over {timeout_s:.0f} s")
        for t in topics:
            counts[t.removeprefix(prefix)]["offsets"] = sum(
                marks[tp] for tp in tps if tp.topic == t
            )
        return counts
    finally:
        await consumer.stop()


# --------------------------------------------------------------------------- one run


@dataclass
class Options:
    events: int
    runs: int
    partitions: int
    app: str
    mix: dict[str, float]
    seed: int
    settle_s: float
    start_timeout_s: float
    stall_s: float
    json_path: Path
    run_dir: Path
    warm: int = 0
    members: int = 500
    kinds: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.kinds = KINDS if self.app == "both" else (self.app,)


def python_path() -> str:
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def start_app(kind: str, broker: EmbeddedBroker, prefix: str, opts: Options, log: Path):
    """The worker (``python -m stream worker``) or the bare app, stub model, as a child."""
    fetch_wait = os.environ.get(
        "RISKSTREAM_FETCH_MAX_WAIT_MS", WORKER_SETTINGS["RISKSTREAM_FETCH_MAX_WAIT_MS"]
    )
    env = {
        **os.environ,
        **plaintext_env(),  # RISKSTREAM_KAFKA_* describe some other broker, not this one
        "PYTHONPATH": python_path(),
        "PYTHONUNBUFFERED": "1",
        "KAFKA_BROKER": broker.url,
    }
    if kind == "worker":
        env |= {
            **{k: os.environ.get(k, v) for k, v in WORKER_SETTINGS.items()},
            "RISKSTREAM_TOPIC_PREFIX": prefix,
            "RISKSTREAM_PARTITIONS": str(opts.partitions),
            "RISKSTREAM_BACKEND": "stub",
            "RISKSTREAM_WEB_PORT": str(free_port()),
            "RISKSTREAM_LOG_LEVEL": "warning",
            "RISKSTREAM_DATA_DIR": str(opts.run_dir / f"{prefix}faust"),
        }
        command = [sys.executable, "-m", "stream", "worker"]
    else:
        env |= {
            "NAIVE_TOPIC_PREFIX": prefix,
            "NAIVE_APP_ID": f"{prefix}naive-scorer",
            "NAIVE_PARTITIONS": str(opts.partitions),
            "NAIVE_WEB_PORT": str(free_port()),
            "NAIVE_BACKEND": "stub",
            "NAIVE_DATA_DIR": str(opts.run_dir / f"{prefix}naive"),
            "NAIVE_FETCH_MAX_WAIT_MS": fetch_wait,
            "NAIVE_TRANSACTIONS": "1",
        }
        command = [sys.executable, str(ROOT / "bench" / "naive_app.py"), "worker", "-l", "warn"]
    with open(log, "ab") as out:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop_app(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM (a clean stop: final commit and flush), SIGKILL to the group if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def log_tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


async def wait_for_outputs(
    collector: OutputCollector, ids: set[str], process: subprocess.Popen, opts: Options
) -> int:
    """Until every id has a scored-events record; gives up when the app exits, when no first
    output comes within the start timeout, or when outputs stall. -> how many are missing."""
    started = time.monotonic()
    while not collector.seen:
        if process.poll() is not None or time.monotonic() - started > opts.start_timeout_s:
            return len(ids)
        await asyncio.sleep(0.1)
    return await collector.wait_for(
        list(ids), stall_s=opts.stall_s, alive=lambda: process.poll() is None
    )


async def one_run(
    kind: str,
    number: int,
    broker: EmbeddedBroker,
    records: list[OutgoingRecord],
    opts: Options,
    warm: list[OutgoingRecord] | None = None,
) -> dict[str, Any]:
    prefix = f"wc{number}{kind[0]}{uuid.uuid4().hex[:6]}."
    await ensure_topics(
        Settings(KAFKA_BROKER=broker.url, topic_prefix=prefix, partitions=opts.partitions)
    )
    await produce_backlog(broker.bootstrap, prefix, warm or records)
    ids = {orjson.loads(r.value)["event_id"] for r in records}
    texts = sum(r.topic in TEXT_TOPICS for r in records)
    log = opts.run_dir / f"{prefix}{kind}.log"
    collector = OutputCollector(broker.bootstrap, f"{prefix}scored-events")
    await collector.start()
    launched = time.time()
    process = start_app(kind, broker, prefix, opts, log)
    assert broker.process is not None
    sampler = CpuSampler(process.pid, broker.process.pid)
    sampler.start()
    before: dict[str, dict] = {}
    try:
        if warm:
            warm_ids = {orjson.loads(r.value)["event_id"] for r in warm}
            if await wait_for_outputs(collector, warm_ids, process, opts):
                raise RuntimeError(f"{kind}: the warm-up did not finish (log {log})")
            await asyncio.sleep(opts.settle_s)
            before = await topic_counts(broker.bootstrap, prefix)
            launched = time.time()
            await produce_backlog(broker.bootstrap, prefix, records)
        missing = await wait_for_outputs(collector, ids, process, opts)
        if missing == len(ids):
            raise RuntimeError(f"{kind}: no output (log {log}):\n{log_tail(log)}")
        await asyncio.sleep(opts.settle_s)  # held surge mentions fold, last writes land
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited with code {process.returncode}:\n{log_tail(log)}")
    finally:
        sampler.stop()
        stop_app(process)
        await collector.stop()
    done = [collector.seen[i] for i in ids if i in collector.seen]
    first, last = min(done), max(done)
    window = last - first
    (app0, broker0), (app1, broker1) = sampler.at(first), sampler.at(last)
    app_cpu, broker_cpu = app1 - app0, broker1 - broker0
    topics = await topic_counts(broker.bootstrap, prefix)
    for name, entry in topics.items():  # what the measured events wrote
        for key in ("records", "bytes", "offsets"):
            entry[key] -= before.get(name, {}).get(key, 0)
        entry["role"] = "input" if name in INPUT_TOPICS else "written"
    writes = [t for t in topics.values() if t["role"] == "written"]
    inputs_bytes = sum(t["bytes"] for t in topics.values() if t["role"] == "input")
    events = len(records)

    def per(value: float, count: int, digits: int = 3) -> float | None:
        return round(value / count, digits) if count else None

    result = {
        "kind": kind,
        "run": number,
        "prefix": prefix,
        "events": events,
        "text_events": texts,
        "missing": missing,
        "first_output_after_s": round(first - launched, 2),
        "window_s": round(window, 3),
        "events_per_s": round(len(done) / window, 1) if window > 0 else None,
        "text_events_per_s": round(texts / window, 1) if window > 0 else None,
        "app_cpu_s": round(app_cpu, 3),
        "broker_cpu_s": round(broker_cpu, 3),
        "app_cpu_ms_per_event": per(app_cpu * 1000, events),
        "broker_cpu_ms_per_event": per(broker_cpu * 1000, events),
        "cpu_ms_per_event": per((app_cpu + broker_cpu) * 1000, events),
        "app_cpu_ms_per_text_event": per(app_cpu * 1000, texts),
        "broker_cpu_ms_per_text_event": per(broker_cpu * 1000, texts),
        "app_cpu_s_whole_run": round(sampler.samples[-1][1], 2),
        "writes_per_event": per(sum(t["records"] for t in writes), events),
        "writes_per_text_event": per(sum(t["records"] for t in writes), texts),
        "bytes_per_event": per(sum(t["bytes"] for t in writes), events, 1),
        "bytes_per_text_event": per(sum(t["bytes"] for t in writes), texts, 1),
        "input_bytes_per_event": per(inputs_bytes, events, 1),
        "written_over_input_bytes": per(sum(t["bytes"] for t in writes), inputs_bytes, 2),
        "topics": {
            name: {
                **entry,
                "per_event": per(entry["records"], events),
                "per_text_event": per(entry["records"], texts),
                "bytes_per_event": per(entry["bytes"], events, 1),
            }
            for name, entry in sorted(topics.items())
        },
    }
    if any(t["records"] != t["offsets"] for t in topics.values()):
        result["note"] = "records read differ from offsets written (compaction?): see topics"
    click.echo(
        f"run {number} {kind:>6}: {result['events_per_s']} events/s, "
        f"app {result['app_cpu_ms_per_event']} + broker {result['broker_cpu_ms_per_event']} "
        f"CPU ms/event, {result['writes_per_text_event']} writes/text event, "
        f"{missing} missing",
        err=True,
    )
    return result


# --------------------------------------------------------------------------- summary


SUMMARY_KEYS = (
    "events_per_s",
    "text_events_per_s",
    "app_cpu_ms_per_event",
    "broker_cpu_ms_per_event",
    "cpu_ms_per_event",
    "app_cpu_ms_per_text_event",
    "broker_cpu_ms_per_text_event",
    "writes_per_event",
    "writes_per_text_event",
    "bytes_per_event",
    "bytes_per_text_event",
    "input_bytes_per_event",
    "written_over_input_bytes",
    "first_output_after_s",
    "window_s",
)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per app kind, per-topic medians, worker ÷ bare, and the targets."""
    summary: dict[str, Any] = {}
    for kind in KINDS:
        mine = [r for r in runs if r["kind"] == kind]
        if not mine:
            continue
        names = sorted({name for r in mine for name in r["topics"]})
        summary[kind] = {
            "runs": len(mine),
            **{key: _median([r[key] for r in mine]) for key in SUMMARY_KEYS},
            "topics": {
                name: {
                    key: _median([r["topics"].get(name, {}).get(key, 0.0) for r in mine])
                    for key in ("per_event", "per_text_event", "bytes_per_event")
                }
                | {"role": "input" if name in INPUT_TOPICS else "written"}
                for name in names
            },
        }
    if "worker" in summary and "bare" in summary:
        summary["worker_over_bare"] = {
            key: round(summary["worker"][key] / summary["bare"][key], 3)
            if summary["worker"][key] and summary["bare"][key]
            else None
            for key in SUMMARY_KEYS
        }
    ratio = summary.get("worker_over_bare", {}).get("events_per_s")
    writes = summary.get("worker", {}).get("writes_per_text_event")
    summary["targets"] = {
        "worker events/s >= 0.6 x bare": _met(ratio, TARGETS["worker_over_bare_events_per_s"]),
        "worker writes per text event <= 3": _met(
            writes, TARGETS["writes_per_text_event"], below=True
        ),
    }
    return summary


def _met(value: float | None, target: float, *, below: bool = False) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= target if below else value >= target) else "not met"


def _cell(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def markdown(summary: dict[str, Any], opts: Options, inputs: dict[str, int]) -> str:
    kinds = [k for k in KINDS if k in summary]
    both = "worker_over_bare" in summary
    head = ["figure (median)", *kinds, *(["worker ÷ bare"] if both else [])]
    rows = [
        ("events/s (first → last output)", "events_per_s", 1),
        ("text events/s", "text_events_per_s", 1),
        ("app CPU ms / event", "app_cpu_ms_per_event", 3),
        ("broker CPU ms / event", "broker_cpu_ms_per_event", 3),
        ("app + broker CPU ms / event", "cpu_ms_per_event", 3),
        ("app CPU ms / text event", "app_cpu_ms_per_text_event", 3),
        ("broker CPU ms / text event", "broker_cpu_ms_per_text_event", 3),
        ("writes / input event", "writes_per_event", 3),
        ("writes / text event", "writes_per_text_event", 3),
        ("bytes written / input event", "bytes_per_event", 1),
        ("input bytes / input event", "input_bytes_per_event", 1),
        ("bytes written ÷ input bytes", "written_over_input_bytes", 2),
        ("first output after start, s", "first_output_after_s", 1),
    ]
    lines = [
        f"### worker cost: {opts.events} events "
        f"({', '.join(f'{t} {n}' for t, n in inputs.items())}), "
        f"{opts.partitions} partitions, stub model, {opts.runs} run(s) per app",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" + "---:|" * (len(head) - 1),
    ]
    for label, key, digits in rows:
        cells = [_cell(summary[k][key], digits) for k in kinds]
        if both:
            cells.append(_cell(summary["worker_over_bare"][key], 2))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    names = sorted(
        {n for k in kinds for n in summary[k]["topics"]},
        key=lambda n: (n not in INPUT_TOPICS, n),
    )
    head = ["topic (records per input / per text event; bytes per input event)", *kinds]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * len(kinds)]
    for name in names:
        cells = []
        for k in kinds:
            t = summary[k]["topics"].get(name)
            cells.append(
                "-"
                if t is None or not t["per_event"]
                else f"{_cell(t['per_event'])} / {_cell(t['per_text_event'])}; "
                f"{_cell(t['bytes_per_event'], 0)} B"
            )
        role = " (input)" if name in INPUT_TOPICS else ""
        lines.append(f"| {name}{role} | " + " | ".join(cells) + " |")
    lines += [""] + [f"- target {k}: {v}" for k, v in summary["targets"].items()]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the run


async def run(opts: Options) -> tuple[list[dict[str, Any]], dict[str, int]]:
    opts.run_dir.mkdir(parents=True, exist_ok=True)
    every = await asyncio.to_thread(
        demo_events, opts.warm + opts.events, opts.mix, opts.seed, opts.members
    )
    warm, records = every[: opts.warm], every[opts.warm :]
    inputs = dict(Counter(r.topic for r in records))
    click.echo(f"{len(records)} events {inputs}; logs in {opts.run_dir}", err=True)
    runs: list[dict[str, Any]] = []
    with EmbeddedBroker(log_path=opts.run_dir / "broker.log") as broker:
        for number in range(1, opts.runs + 1):
            order = opts.kinds if number % 2 else tuple(reversed(opts.kinds))
            for kind in order:
                runs.append(await one_run(kind, number, broker, records, opts, warm))
    return runs, inputs


@click.command()
@click.option("--events", type=int, default=20_000, show_default=True, help="Backlog per run.")
@click.option("--runs", type=int, default=3, show_default=True, help="Runs per app kind.")
@click.option("--partitions", type=int, default=2, show_default=True)
@click.option("--app", type=click.Choice(["both", *KINDS]), default="both", show_default=True)
@click.option(
    "--mix",
    default="40:35:25",
    show_default=True,
    help="reviews:chats:transactions weights (the demo's by default; 1:1:0 for texts only).",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--settle-seconds",
    type=float,
    default=3.0,
    show_default=True,
    help="Wait after the last output before stopping the app (surge mentions fold after 2 s).",
)
@click.option("--start-timeout", type=float, default=120.0, show_default=True)
@click.option("--stall-seconds", type=float, default=30.0, show_default=True)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=ROOT / "bench/results/worker_cost.json",
    show_default=True,
)
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option(
    "--warm",
    type=int,
    default=0,
    show_default=True,
    help="Events of the same members processed before the measured ones (steady state).",
)
@click.option("--members", type=int, default=500, show_default=True, help="Demo members.")
def main(
    events: int,
    runs: int,
    partitions: int,
    app: str,
    mix: str,
    seed: int,
    settle_seconds: float,
    start_timeout: float,
    stall_seconds: float,
    json_path: Path,
    run_dir: Path | None,
    warm: int,
    members: int,
) -> None:
    """This worker's events/s, CPU and broker writes per event beside a bare Faust app's."""
    stamp = datetime.now(UTC)
    opts = Options(
        events=events,
        runs=runs,
        partitions=partitions,
        app=app,
        mix=parse_mix(mix),
        seed=seed,
        settle_s=settle_seconds,
        start_timeout_s=start_timeout,
        stall_s=stall_seconds,
        json_path=json_path,
        run_dir=run_dir or Path(f"/tmp/riskstream-worker-cost-{stamp:%Y%m%d-%H%M%S}"),
        warm=warm,
        members=members,
    )
    signal.signal(signal.SIGTERM, _raise_interrupt)  # so children and the broker are stopped
    started = time.monotonic()
    load_at_start = os.getloadavg()  # another job on the machine skews every figure
    try:
        results, inputs = asyncio.run(run(opts))
    except KeyboardInterrupt:
        click.echo("interrupted; apps and broker stopped", err=True)
        sys.exit(130)
    summary = summarize(results)
    table = markdown(summary, opts, inputs)
    click.echo(table)
    report = {
        "command": shlex.join(["python", *sys.argv]),
        "timestamp": stamp.isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - started, 1),
        "load_average": {"start": load_at_start, "end": os.getloadavg()},
        "machine": machine(),
        "options": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items() if k != "kinds"
        },
        "inputs": inputs,
        "summary": summary,
        "markdown": table,
        "runs": results,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    click.echo(f"wrote {json_path}", err=True)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
