"""``riskstream`` command line: run (the main job), worker, simulate, broker."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from stream.broker import BrokerError, EmbeddedBroker

console = Console(stderr=True)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    sys.exit(2)


@click.group()
def main() -> None:
    """Streaming risk-and-sentiment processor for e-commerce event streams."""


@main.command()
@click.option(
    "--duration", type=float, default=60.0, show_default=True, help="Seconds of demo traffic."
)
@click.option("--rate", type=float, default=80.0, show_default=True, help="Demo events per second.")
@click.option(
    "--broker",
    "broker_url",
    envvar="KAFKA_BROKER",
    default=None,
    help="Use this broker (kafka://host:port) instead of the embedded one.",
)
@click.option("--malformed-ratio", type=float, default=0.02, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Logs and summary.json go here (default runs/<timestamp>).",
)
@click.option("--no-live", is_flag=True, help="No live view (for CI logs).")
def run(
    duration: float,
    rate: float,
    broker_url: str | None,
    malformed_ratio: float,
    seed: int,
    run_dir: Path | None,
    no_live: bool,
) -> None:
    """Broker + worker + demo traffic, with a live view and a summary."""
    from models.student import ensure_built
    from stream.runner import RunOptions, run_main_job

    ensure_built(progress=True)
    run_dir = run_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    options = RunOptions(
        duration_s=duration,
        rate=rate,
        broker_url=broker_url,
        run_dir=run_dir,
        seed=seed,
        malformed_ratio=malformed_ratio,
        show_live=not no_live,
    )
    try:
        summary = asyncio.run(run_main_job(options, console))
    except BrokerError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        console.print("interrupted")
        return
    console.rule("summary")
    for key, value in summary.items():
        console.print(f"{key:>26}: {value}")


@main.command()
def worker() -> None:
    """Run the Faust worker (reads KAFKA_BROKER and RISKSTREAM_* settings)."""
    from faust import Worker

    from stream.admin import ensure_topics
    from stream.app import app, settings

    logging.basicConfig(level=settings.log_level.upper())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(ensure_topics(settings))
    except Exception as exc:
        _fail(f"cannot reach broker {settings.kafka_broker}: {exc!r}")
    import stream.agents  # noqa: F401  (registers agents, tables, pages)

    Worker(app, loglevel=settings.log_level, loop=loop).execute_from_commandline()


@main.command()
@click.option("--rate", type=float, default=100.0, show_default=True)
@click.option("--count", type=int, default=None, help="Stop after this many records.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--broker", "broker_url", envvar="KAFKA_BROKER", required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--malformed-ratio", type=float, default=0.02, show_default=True)
def simulate(
    rate: float,
    count: int | None,
    duration: float | None,
    broker_url: str,
    seed: int,
    malformed_ratio: float,
) -> None:
    """Produce demo traffic (reviews, chats, transactions, some malformed) to a broker."""
    from aiokafka import AIOKafkaProducer

    from stream.admin import bootstrap_servers, ensure_topics
    from stream.config import Settings
    from stream.simulate import DemoCorpus, DemoTraffic, produce_demo_traffic

    settings = Settings(KAFKA_BROKER=broker_url)

    async def go() -> None:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(broker_url), acks="all")
        await producer.start()
        try:
            traffic = DemoTraffic(DemoCorpus.load(), seed=seed, malformed_ratio=malformed_ratio)
            stats = await produce_demo_traffic(
                producer,
                traffic,
                topic_name=settings.topic,
                rate=rate,
                count=count,
                duration_s=duration,
            )
        finally:
            await producer.stop()
        console.print(f"sent {stats.total} records {dict(stats.sent)}, {stats.malformed} malformed")

    if count is None and duration is None:
        _fail("give --count or --duration")
    asyncio.run(go())


@main.command()
@click.option("--port", type=int, default=9092, show_default=True)
@click.option("--log", "log_path", type=click.Path(path_type=Path), default=Path("runs/broker.log"))
def broker(port: int, log_path: Path) -> None:
    """Run the embedded Tansu broker in the foreground (memory storage) until Ctrl-C."""
    try:
        with EmbeddedBroker(port=port, log_path=log_path) as embedded:
            console.print(f"broker ready at {embedded.url} (log: {log_path}); Ctrl-C stops it")
            while embedded.process is not None and embedded.process.poll() is None:
                time.sleep(0.5)
    except BrokerError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        pass


@main.group("eval")
def eval_group() -> None:
    """Measure the fraud score and the surge detector on real data -> docs/evaluation.md."""


_doc_option = click.option(
    "--doc",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/evaluation.md"),
    show_default=True,
)


def _run_evaluation(kind: str, section: str, doc: Path) -> None:
    """Run one evaluation, print its section, write it into ``doc`` and its JSON beside."""
    from stream import evaluation

    evaluate = getattr(evaluation, f"evaluate_{kind}")
    result = evaluate(on_stage=lambda stage: click.echo(f"... {stage}"))
    lines = getattr(evaluation, f"render_{kind}")(result)
    click.echo("\n".join(lines))
    evaluation.write_section(doc, section, lines)
    evaluation.dump(result, Path(f"bench/results/eval-{kind}.json"))


@eval_group.command("fraud")
@_doc_option
def eval_fraud(doc: Path) -> None:
    """Train on ULB day 1, replay day 2: PR-AUC, recall at 1 % FPR, alert precision."""
    _run_evaluation("fraud", "Transaction fraud risk", doc)


@eval_group.command("surge")
@_doc_option
def eval_surge(doc: Path) -> None:
    """Real reviews as background + injected negative bursts: recall, false alerts, delay."""
    _run_evaluation("surge", "Public-opinion surges", doc)
