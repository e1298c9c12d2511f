"""``riskstream replay``: a backtest through the live code path.

The selected records (a topic range on any broker, or a JSONL/Parquet file) are copied into
input topics under an isolated prefix, ``backtest.<run id>.``, and the ordinary worker process
runs over them with that prefix: its own consumer group, changelogs and outputs, so it starts
from empty state and never touches the live topics. Outputs are collected into files and a
report (``report.json``, ``report.md`` with plots). The report is rewritten every few seconds
and on Ctrl-C, always atomically, so an interrupted backtest leaves a valid partial report.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import re
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TimeRemainingColumn

from stream.backtest.report import (
    INPUT_TOPICS,
    InputFacts,
    ReplayOutputs,
    ReplayRecord,
    build_report,
    compare_alerts,
    input_facts,
    record_from_row,
    records_from_jsonl,
    render_compare_markdown,
    render_markdown,
)
from stream.config import Settings
from stream.core.rules import AlertThresholds
from stream.ops import live
from stream.ops.admin import bootstrap_servers, ensure_topics
from stream.ops.broker import WORKER_SETTINGS, EmbeddedBroker, free_port
from stream.ops.runner import WorkerProcess, worker_env
from stream.security import KafkaSecurity, plaintext_env, start_client
from stream.topics import INTERNAL_TOPICS, OUTPUT_TOPICS

RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ReplayError(RuntimeError):
    """A backtest that cannot start: bad source, bad range, unreachable broker."""


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True, slots=True)
class TopicRange:
    """Records of the three input topics, every partition, within offset and/or time bounds.

    Offsets are per partition, ``from`` inclusive and ``to`` exclusive; times are the records'
    timestamps in epoch ms, likewise. The end of each partition is its high watermark when the
    replay starts, so a busy topic still gives a finite range."""

    broker_url: str
    prefix: str = ""
    from_offset: int | None = None
    to_offset: int | None = None
    from_ms: int | None = None
    to_ms: int | None = None

    def keeps(self, timestamp_ms: int) -> bool:
        return (self.from_ms is None or timestamp_ms >= self.from_ms) and (
            self.to_ms is None or timestamp_ms < self.to_ms
        )

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "topics",
            "broker": self.broker_url,
            "topics": [self.prefix + t for t in INPUT_TOPICS],
            "from_offset": self.from_offset,
            "to_offset": self.to_offset,
            "from_ms": self.from_ms,
            "to_ms": self.to_ms,
        }


async def _seek_start(consumer: AIOKafkaConsumer, tps: list[TopicPartition], rng: TopicRange):
    """Seek every partition to the range's start; returns the partitions with anything left."""
    if rng.from_ms is not None:
        # A hint only (records are filtered by timestamp too): a broker that answers too early
        # costs reading time, never records.
        found = await consumer.offsets_for_times({tp: rng.from_ms for tp in tps})
        live_tps = [tp for tp in tps if found.get(tp) is not None]
        for tp in live_tps:
            consumer.seek(tp, max(found[tp].offset, rng.from_offset or 0))
        return live_tps
    for tp in tps:
        if rng.from_offset is not None:
            consumer.seek(tp, rng.from_offset)
        else:
            await consumer.seek_to_beginning(tp)
    return tps


async def read_topic_range(
    rng: TopicRange, idle_timeout_s: float = 30.0, security: KafkaSecurity | None = None
) -> list[ReplayRecord]:
    """The range's records in (timestamp, topic, partition, offset) order. ``security``: how
    to reach the source broker (default: the ``RISKSTREAM_KAFKA_*`` environment)."""
    security = security or KafkaSecurity.from_env()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(rng.broker_url),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **security.aiokafka_kwargs(),
    )
    await start_client(consumer, bootstrap_servers(rng.broker_url), security)
    try:
        await consumer.topics()  # metadata of every topic
        tps = [
            TopicPartition(rng.prefix + topic, partition)
            for topic in INPUT_TOPICS
            for partition in sorted(consumer.partitions_for_topic(rng.prefix + topic) or ())
        ]
        if not tps:
            raise ReplayError(
                f"none of {', '.join(rng.prefix + t for t in INPUT_TOPICS)} "
                f"exists on {rng.broker_url}"
            )
        consumer.assign(tps)
        remaining = set(await _seek_start(consumer, tps, rng))
        stop: dict[TopicPartition, int] = {}
        found: list[tuple[tuple, ReplayRecord]] = []
        last_progress = time.monotonic()
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            for tp in remaining:
                highwater = consumer.highwater(tp)  # known once a fetch answered for it
                if highwater is not None and tp not in stop:
                    stop[tp] = highwater if rng.to_offset is None else min(highwater, rng.to_offset)
            for tp, messages in batches.items():
                last_progress = time.monotonic()
                end = stop.get(tp, rng.to_offset)
                for m in messages:
                    if (end is not None and m.offset >= end) or not rng.keeps(m.timestamp):
                        continue
                    topic = tp.topic.removeprefix(rng.prefix)
                    order = (m.timestamp, INPUT_TOPICS.index(topic), tp.partition, m.offset)
                    found.append((order, ReplayRecord(topic, m.key, m.value, m.timestamp)))
            for tp in list(remaining):
                if tp in stop and await consumer.position(tp) >= stop[tp]:
                    remaining.discard(tp)
            if remaining and time.monotonic() - last_progress > idle_timeout_s:
                raise ReplayError(f"no records from {sorted(map(str, remaining))} for 30 s")
        return [record for _, record in sorted(found, key=lambda pair: pair[0])]
    finally:
        await consumer.stop()


def read_file(path: Path) -> tuple[list[ReplayRecord], dict[int, str]]:
    """Records of a JSONL (optionally .gz) or Parquet file, and the lines it had to skip."""
    if not path.is_file():
        raise ReplayError(f"no such file: {path}")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        skipped: dict[int, str] = {}
        records = []
        for number, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            try:
                records.append(record_from_row({k: v for k, v in row.items() if v is not None}))
            except ValueError as exc:
                skipped[number] = str(exc)
        return records, skipped
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        rows = list(records_from_jsonl(handle))
    records = [r for _, r in rows if isinstance(r, ReplayRecord)]
    return records, {n: r for n, r in rows if isinstance(r, str)}


# --------------------------------------------------------------------------- one run


@dataclass
class ReplayOptions:
    run_id: str
    out_dir: Path
    broker_url: str | None = None  # where the backtest runs; None: an embedded broker
    #: One partition per topic keeps each stage in input order (see README, Backtests).
    partitions: int = 1
    compare: dict[str, str] = field(default_factory=dict)  # settings of run B
    timeout_s: float = 3600.0
    show_progress: bool = True
    #: Settings every run gets (e.g. a profile throttle), before run B's overrides.
    settings: dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    label: str
    prefix: str
    outputs: ReplayOutputs
    status: str
    elapsed_s: float
    processing_s: float
    worker_peak_rss_mib: float | None
    settings: dict[str, str]


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Collector:
    """Reads a run's output and internal topics from the start and counts what arrived."""

    def __init__(self, bootstrap: str, prefix: str, security: KafkaSecurity | None = None) -> None:
        self.prefix = prefix
        self.outputs = ReplayOutputs()
        self.internal = dict.fromkeys(INTERNAL_TOPICS, 0)
        self.first_output_at: float | None = None
        self._consumer = AIOKafkaConsumer(
            *(prefix + t for t in OUTPUT_TOPICS + INTERNAL_TOPICS),
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **(security or KafkaSecurity.from_env()).aiokafka_kwargs(),
        )

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_ms: int = 500) -> None:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        for tp, messages in batches.items():
            topic = tp.topic.removeprefix(self.prefix)
            if topic in self.internal:
                self.internal[topic] += len(messages)
                continue
            if messages and self.first_output_at is None:
                self.first_output_at = time.monotonic()
            for m in messages:
                self.outputs.add(topic, m.key, m.value)

    async def caught_up(self) -> bool:
        assigned = self._consumer.assignment()
        if not assigned:
            return False
        for tp in assigned:
            highwater = self._consumer.highwater(tp)
            if highwater is None or await self._consumer.position(tp) < highwater:
                return False
        return True

    async def drain(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await self.poll(200)
            if await self.caught_up():
                return


def drained(snapshot: live.MetricsSnapshot | None, collector: Collector, total: int) -> bool:
    """Every input has an outcome, and the member and surge stages finished what they got."""
    if snapshot is None or collector.outputs.accounted() < total:
        return False
    member_done = snapshot.get(live.MEMBER_DONE)
    subject_done = snapshot.get(live.SUBJECT_DONE)
    return (
        member_done >= collector.internal["riskstream-member-events"]
        and subject_done >= collector.internal["riskstream-subject-events"]
        and snapshot.get(live.SURGE_HELD) == 0
    )


async def produce_records(
    bootstrap: str,
    prefix: str,
    records: Sequence[ReplayRecord],
    security: KafkaSecurity | None = None,
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        **(security or KafkaSecurity.from_env()).aiokafka_kwargs(),
    )
    await producer.start()
    try:
        pending = []
        for record in records:
            pending.append(
                await producer.send(
                    prefix + record.topic,
                    record.value,
                    key=record.key,
                    timestamp_ms=record.timestamp_ms,
                )
            )
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def run_once(
    label: str,
    prefix: str,
    records: Sequence[ReplayRecord],
    broker_url: str,
    options: ReplayOptions,
    overrides: Mapping[str, str],
    checkpoint: Callable[[RunResult], None],
    progress: Progress | None,
    broker_env: Mapping[str, str] | None = None,
    interrupted: asyncio.Event | None = None,
) -> RunResult:
    """Copy ``records`` under ``prefix``, run a worker over them, collect until drained.
    ``broker_env``: the worker's environment for this broker (``plaintext_env()`` for an
    embedded one); this process's clients use the same security as the worker."""
    started = time.monotonic()
    bootstrap = bootstrap_servers(broker_url)
    settings = Settings(KAFKA_BROKER=broker_url, topic_prefix=prefix, partitions=options.partitions)
    web_port = free_port()
    env = {
        **(broker_env or {}),
        "KAFKA_BROKER": broker_url,
        "RISKSTREAM_TOPIC_PREFIX": prefix,
        "RISKSTREAM_PARTITIONS": str(options.partitions),
        "RISKSTREAM_WEB_PORT": str(web_port),
        "RISKSTREAM_DATA_DIR": str(options.out_dir / f"state-{label}"),
        "RISKSTREAM_LOG_LEVEL": os.environ.get("RISKSTREAM_LOG_LEVEL", "warning"),
        **options.settings,
        **overrides,
    }
    worker = WorkerProcess(worker_env(env), options.out_dir / f"worker-{label}.log")
    security = KafkaSecurity.from_env(worker.env)
    await ensure_topics(settings, security=security)
    collector = Collector(bootstrap, prefix, security)
    result = RunResult(label, prefix, collector.outputs, "running", 0.0, 0.0, None, dict(overrides))
    task = progress.add_task(f"replay {label}", total=len(records)) if progress else None
    peak_rss = 0.0
    worker.start()
    try:
        await collector.start()
        await produce_records(bootstrap, prefix, records, security)
        last_checkpoint = 0.0
        confirmations = 0
        url = f"http://127.0.0.1:{web_port}/metrics"
        while True:
            if interrupted is not None and interrupted.is_set():
                # the task's cancellation alone is not enough: a Ctrl-C in CI was swallowed
                # on its way through a client library and the replay ran to its end
                raise asyncio.CancelledError
            await collector.poll()
            now = time.monotonic()
            snapshot = await asyncio.to_thread(live.scrape, url, now)
            if snapshot is not None:
                peak_rss = max(peak_rss, snapshot.get(live.RSS))
            if not worker.alive():
                raise ReplayError(f"the worker stopped: {worker.log_tail(20)}")
            if progress is not None:
                progress.update(task, completed=collector.outputs.accounted())
            result.elapsed_s = now - started
            result.processing_s = now - (collector.first_output_at or now)
            result.worker_peak_rss_mib = round(peak_rss / 2**20, 1) if peak_rss else None
            if now - last_checkpoint > 3.0:
                checkpoint(result)
                last_checkpoint = now
            # twice in a row, a second apart: outputs handed to the producer are on the broker
            confirmations = confirmations + 1 if drained(snapshot, collector, len(records)) else 0
            if confirmations >= 2:
                break
            if now - started > options.timeout_s:
                result.status = "timed_out"
                break
            await asyncio.sleep(0.5)
        worker.stop()  # flushes the producer
        await collector.drain()
        if result.status == "running":
            result.status = "complete"
    except asyncio.CancelledError:
        asyncio.current_task().uncancel()
        result.status = "interrupted"
        if progress is not None:
            progress.console.print("interrupted: stopping the worker, writing a partial report")
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            # bounded: an interrupted run must end with its report, whatever the broker does
            await asyncio.wait_for(collector.stop(), 10)
    result.elapsed_s = time.monotonic() - started
    return result


# --------------------------------------------------------------------------- the command


@dataclass
class ReplaySource:
    records: list[ReplayRecord]
    skipped: dict[int, str]
    description: dict[str, Any]


def settings_with(overrides: Mapping[str, str]) -> Settings:
    """The worker's settings: its environment plus ``RISKSTREAM_*`` overrides."""
    fields = {
        name.removeprefix("RISKSTREAM_").lower(): value
        for name, value in overrides.items()
        if name.startswith("RISKSTREAM_")
    }
    return Settings(**fields)


def report_for(
    result: RunResult, facts: Sequence[InputFacts], source: ReplaySource, meta: Mapping
) -> dict[str, Any]:
    settings = {**meta["settings"], **result.settings}
    worker_settings = settings_with(settings)
    thresholds = worker_settings.thresholds()

    def by_alert(own: AlertThresholds) -> dict[str, float]:
        return {
            "fraud_risk": own.fraud_risk,
            "negative_review": own.negative_review,
            "scam_chat": own.scam_chat,
        }

    chinese = worker_settings.chinese_build()
    zh = thresholds.for_event({"model_version": chinese}) if chinese else thresholds
    return build_report(
        facts,
        result.outputs,
        thresholds=by_alert(thresholds),
        language_thresholds={"zh": by_alert(zh)},
        skipped_lines=source.skipped,
        status=result.status,
        elapsed_s=result.processing_s,
        meta={
            "run_id": meta["run_id"],
            "run": result.label,
            "topic_prefix": result.prefix,
            "broker": meta["broker"],
            "source": source.description,
            "settings": settings,
            "thresholds": by_alert(thresholds),
            "wall_s": round(result.elapsed_s, 2),
            "worker_peak_rss_mib": result.worker_peak_rss_mib,
        },
    )


def combined_status(reports: Mapping[str, Mapping[str, Any]], expected: int) -> str:
    statuses = [r["status"] for r in reports.values()]
    unfinished = [s for s in statuses if s != "complete"]
    if unfinished:
        return unfinished[0]
    return "complete" if len(statuses) == expected else "interrupted"


def write_outputs(folder: Path, outputs: ReplayOutputs) -> None:
    """The file sink: one JSONL file per output topic (profiles: the latest per member)."""
    folder.mkdir(parents=True, exist_ok=True)
    sets = {
        "scored-events": outputs.scored,
        "alerts": outputs.alerts,
        "dead-letter": outputs.dead_letters,
        "member-profiles": list(outputs.profiles.values()),
    }
    for name, rows in sets.items():
        atomic_write(folder / f"{name}.jsonl", b"".join(orjson.dumps(r) + b"\n" for r in rows))


async def replay(source: ReplaySource, options: ReplayOptions, console: Console) -> dict[str, Any]:
    """Run the backtest (and run B with ``options.compare``), write outputs and reports."""
    if not RUN_ID.match(options.run_id):
        raise ReplayError(f"run id {options.run_id!r}: letters, digits, '-' and '_' only")
    options.out_dir.mkdir(parents=True, exist_ok=True)
    facts = [input_facts(r) for r in source.records]
    meta = {"run_id": options.run_id, "settings": dict(options.settings)}
    base_prefix = f"backtest.{options.run_id}."
    labels = {"a": {}, "b": options.compare} if options.compare else {"a": {}}
    results: dict[str, RunResult] = {}

    def write(final: bool) -> dict[str, Any]:
        reports = {label: report_for(r, facts, source, meta) for label, r in results.items()}
        if not options.compare:
            report = reports["a"]
            lines = render_markdown(report)
        else:
            a, b = results.get("a"), results.get("b")
            report = {
                "status": combined_status(reports, len(labels)),
                "run_id": options.run_id,
                "runs": reports,
                "compare": {
                    "settings_b": options.compare,
                    "alerts": compare_alerts(a.outputs.alerts, b.outputs.alerts) if b else None,
                },
            }
            lines = render_compare_markdown(report)
        plots: list[str] = []
        if final:
            from stream.backtest.plots import draw_plots

            for label, r in results.items():
                plots += draw_plots(
                    facts, r.outputs, options.out_dir, label, reports[label]["thresholds"]
                )
                write_outputs(options.out_dir / f"outputs-{label}", r.outputs)
        atomic_write(
            options.out_dir / "report.json", orjson.dumps(report, option=orjson.OPT_INDENT_2)
        )
        markdown = [*lines, "", *(f"![{p}]({p})" for p in plots), ""]
        atomic_write(options.out_dir / "report.md", "\n".join(markdown).encode())
        return report

    broker: EmbeddedBroker | None = None
    broker_url = options.broker_url
    broker_env: dict[str, str] = {}
    if broker_url is None:
        broker = EmbeddedBroker(log_path=options.out_dir / "broker.log").start()
        broker_url = broker.url
        # RISKSTREAM_KAFKA_* describe the user's brokers (e.g. the --topics source), not this
        broker_env = plaintext_env()
        options.settings = {**WORKER_SETTINGS, **options.settings}
        meta["settings"] = dict(options.settings)
    meta["broker"] = "embedded" if broker else broker_url
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()

    def interrupt() -> None:
        """Ctrl-C or SIGTERM: stop the run and write the partial report; a second Ctrl-C
        exits at once."""
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()
        main_task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, interrupt)
    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeRemainingColumn())
    progress = Progress(*columns, console=console, disable=not options.show_progress)
    try:
        with progress:
            for label, overrides in labels.items():
                prefix = base_prefix + (f"{label}." if options.compare else "")
                results[label] = RunResult(
                    label, prefix, ReplayOutputs(), "running", 0.0, 0.0, None, dict(overrides)
                )

                def checkpoint(result: RunResult, label: str = label) -> None:
                    results[label] = result
                    write(final=False)

                results[label] = await run_once(
                    label,
                    prefix,
                    source.records,
                    broker_url,
                    options,
                    overrides,
                    checkpoint,
                    progress,
                    broker_env,
                    interrupted,
                )
                if results[label].status != "complete":
                    break
    except asyncio.CancelledError:
        asyncio.current_task().uncancel()
        for result in results.values():
            if result.status == "running":
                result.status = "interrupted"
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        if broker is not None:
            broker.stop()
    return write(final=True)
