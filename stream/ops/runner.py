"""The main job: embedded broker (unless one is configured) + worker process + demo traffic,
with a live terminal view and a summary at the end. The worker is a separate process, as in
production; if it stops hard (see ``stream.core.errors``) the runner starts it again."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.live import Live

from stream.config import Settings
from stream.ops import live
from stream.ops.admin import bootstrap_servers, ensure_topics
from stream.ops.broker import WORKER_SETTINGS, EmbeddedBroker, free_port, port_is_free
from stream.ops.simulate import DemoCorpus, DemoTraffic, ProduceStats, produce_demo_traffic
from stream.security import KafkaSecurity, plaintext_env


class WorkerProcess:
    """``python -m stream worker`` as a child process, with its own log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stream", "worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def state(self) -> str:
        if self.process is None:
            return "stopped"
        code = self.process.poll()
        return "running" if code is None else f"exited ({code})"

    def restart_if_dead(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            self.restarts += 1
            self.start()
            return True
        return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker's process group: no shutdown hooks, no final commit."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout_s: float = 20.0) -> None:
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def warnings(self, limit: int = 40) -> str:
        """The log's WARNING and ERROR lines but heartbeat noise, the last ``limit`` of them."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        found = [
            line
            for line in text.splitlines()
            if ("[WARNING]" in line or "[ERROR]" in line) and "Heartbeat failed" not in line
        ]
        return "\n".join(found[-limit:])

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class RunOptions:
    duration_s: float
    rate: float
    broker_url: str | None
    run_dir: Path
    seed: int = 0
    malformed_ratio: float = 0.02
    show_live: bool = True
    drain_timeout_s: float = 60.0
    #: Start a local Prometheus (Debian's ``prometheus`` binary) scraping the worker.
    prometheus: bool = False


def worker_env(settings_env: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings_env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


async def run_main_job(options: RunOptions, console: Console) -> dict:
    options.run_dir.mkdir(parents=True, exist_ok=True)
    broker: EmbeddedBroker | None = None
    overrides: dict[str, str] = {}
    if options.broker_url is None:
        broker = EmbeddedBroker(log_path=options.run_dir / "broker.log").start()
        options.broker_url = broker.url
        # the embedded broker's settings, unless the environment sets them
        overrides |= {name: os.environ.get(name, value) for name, value in WORKER_SETTINGS.items()}
        overrides |= plaintext_env()  # RISKSTREAM_KAFKA_* describe the configured broker, not this
        console.print(f"embedded broker on {broker.bootstrap} (log: {broker.log_path})")
    web_port = free_port()
    overrides |= {"KAFKA_BROKER": options.broker_url, "RISKSTREAM_WEB_PORT": str(web_port)}
    settings = Settings(**{"KAFKA_BROKER": options.broker_url})
    worker = WorkerProcess(worker_env(overrides), options.run_dir / "worker.log")
    prometheus: subprocess.Popen | None = None
    try:
        await ensure_topics(settings, security=KafkaSecurity.from_env(worker.env))
        corpus = await asyncio.to_thread(DemoCorpus.load)
        worker.start()
        console.print(
            f"worker started (log: {worker.log_path}); metrics on "
            f"http://127.0.0.1:{web_port}/metrics"
        )
        if options.prometheus:
            prometheus = start_prometheus(options.run_dir, web_port, console)
        return await _drive(options, settings, worker, corpus, web_port, console)
    finally:
        worker.stop()
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=20)
        if broker is not None:
            broker.stop()


def start_prometheus(run_dir: Path, web_port: int, console: Console) -> subprocess.Popen | None:
    """The compose stack's Prometheus (same job and alert rules) without Docker, if the
    ``prometheus`` binary is installed; on loopback, data in the run folder."""
    import shutil

    from stream.ops.monitoring import ALERTS_PATH, prometheus_config_for

    binary = shutil.which("prometheus")
    if binary is None:
        console.print("[yellow]--prometheus: no prometheus binary (apt-get install prometheus)")
        return None
    config = run_dir / "prometheus.yml"
    config.write_text(prometheus_config_for([f"127.0.0.1:{web_port}"], ALERTS_PATH))
    port = 9090 if port_is_free(9090) else free_port()
    with open(run_dir / "prometheus.log", "ab") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={run_dir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    console.print(f"prometheus on http://127.0.0.1:{port} (alerts: /alerts)")
    return process


async def _drive(
    options: RunOptions,
    settings: Settings,
    worker: WorkerProcess,
    corpus: DemoCorpus,
    web_port: int,
    console: Console,
) -> dict:
    url = f"http://127.0.0.1:{web_port}/metrics"
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers(settings.kafka_broker),
        acks="all",
        linger_ms=5,
        **KafkaSecurity.from_env(worker.env).aiokafka_kwargs(),  # the worker's own security
    )
    await producer.start()
    stats = ProduceStats()
    stop = asyncio.Event()
    traffic = DemoTraffic(corpus, seed=options.seed, malformed_ratio=options.malformed_ratio)
    started = time.monotonic()
    history: list[live.MetricsSnapshot] = []
    produce_task = asyncio.create_task(
        produce_demo_traffic(
            producer,
            traffic,
            topic_name=settings.topic,
            rate=options.rate,
            duration_s=options.duration_s,
            stats=stats,
            stop=stop,
        )
    )
    interrupted = False
    try:
        with Live(console=console, auto_refresh=False, transient=False) as view:
            drain_deadline: float | None = None
            while True:
                await asyncio.sleep(1.0)
                if worker.restart_if_dead():
                    console.print(f"[yellow]worker stopped; restarted (#{worker.restarts})")
                snap = await asyncio.to_thread(live.scrape, url, time.monotonic())
                if snap is not None:
                    history.append(snap)
                before = history[-2] if len(history) > 1 else None
                if options.show_live:
                    view.update(
                        live.render(
                            snap, before, stats.total, time.monotonic() - started, worker.state()
                        ),
                        refresh=True,
                    )
                if produce_task.done():
                    drain_deadline = drain_deadline or time.monotonic() + options.drain_timeout_s
                    done = (
                        history
                        and history[-1].get(live.CONSUMED) >= stats.total
                        and (
                            history[-1].get(live.SCORED) + history[-1].get(live.DEAD) >= stats.total
                        )
                    )
                    if done or time.monotonic() > drain_deadline:
                        break
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
        stop.set()
    finally:
        if not produce_task.done():
            stop.set()
            with contextlib.suppress(Exception):
                await produce_task
        await producer.stop()
    summary = summarize(history, stats, time.monotonic() - started, worker, interrupted, options)
    (options.run_dir / "summary.json").write_bytes(
        orjson.dumps(summary, option=orjson.OPT_INDENT_2)
    )
    return summary


def summarize(
    history: list[live.MetricsSnapshot],
    stats: ProduceStats,
    elapsed_s: float,
    worker: WorkerProcess,
    interrupted: bool,
    options: RunOptions,
) -> dict:
    last = history[-1] if history else None
    busy = [
        (a, b)
        for a, b in itertools.pairwise(history)
        if b.get(live.CONSUMED) > a.get(live.CONSUMED)
    ]
    processing_s = sum(b.at - a.at for a, b in busy)
    consumed = last.get(live.CONSUMED) if last else 0.0
    return {
        "elapsed_s": round(elapsed_s, 1),
        "interrupted": interrupted,
        "rate_requested": options.rate,
        "produced": dict(stats.sent),
        "produced_total": stats.total,
        "malformed_produced": stats.malformed,
        "consumed": consumed,
        "scored_events": last.get(live.SCORED) if last else 0,
        "scored_by_type": last.labelled(live.SCORED) if last else {},
        "dead_letters": last.labelled(live.DEAD) if last else {},
        "alerts": last.labelled(live.ALERTS) if last else {},
        "profiles_published": last.get(live.PROFILES) if last else 0,
        "events_per_s_while_busy": round(consumed / processing_s, 1) if processing_s else None,
        "mean_batch_size": round(live.mean_batch(last), 2) if last else None,
        "peak_worker_rss_mib": round(max((s.get(live.RSS) for s in history), default=0) / 2**20),
        "worker_restarts": worker.restarts,
        "shadow": live.shadow_summary(last) if last else None,
        "run_dir": str(options.run_dir),
    }
