"""``riskstream`` command line: run (the main job), worker, simulate, broker, replay, eval."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console

from stream.config import Settings, SettingsError, env_name, load_settings
from stream.ops.broker import BrokerError, EmbeddedBroker

console = Console(stderr=True)

#: Exit codes: a runtime failure (broker unreachable, a worker that stopped) vs a usage error
#: (a bad option or setting, as click itself uses).
EXIT_FAILURE, EXIT_USAGE = 1, 2


def _fail(message: str, code: int = EXIT_FAILURE) -> None:
    from rich.markup import escape

    # the message is text, not markup: "pip install 'riskstream[broker]'" keeps its brackets
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def _settings(**overrides: object) -> Settings:
    """The settings in effect, or one line naming the bad variable (exit code 2)."""
    from stream.security import KafkaSecurity, KafkaSecurityError

    try:
        settings = load_settings(**overrides)
        KafkaSecurity.from_env()  # RISKSTREAM_KAFKA_*: a bad combination is a usage error too
    except SettingsError as exc:
        _fail(f"bad setting: {exc}", EXIT_USAGE)
        raise  # unreachable: _fail exits
    except KafkaSecurityError as exc:
        _fail(str(exc), EXIT_USAGE)
        raise
    return settings


def _require(command: str, *extras: str) -> None:
    """One line naming the missing extra and its pip command (exit 1), not a traceback."""
    from stream.ops.extras import MissingExtraError, require_extras

    try:
        require_extras(command, *extras)
    except MissingExtraError as exc:
        _fail(str(exc))


async def _until_sigterm(job):
    """Run ``job``; SIGTERM cancels it like Ctrl-C, so its ``finally`` stops the children."""
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(job)
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _interrupt_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt, so ``with``/``finally`` blocks stop what they started."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _settings_epilog() -> str:
    """``worker --help`` lists every setting with its default."""
    lines = ["\b", "Settings (environment variables or .env):"]
    for field, info in Settings.model_fields.items():
        default = "computed" if info.default_factory is not None else info.default
        lines.append(f"  {env_name(field)} (default {default!s}): {info.description or ''}")
    return "\n".join(lines)


@click.group()
@click.version_option(package_name="riskstream", prog_name="riskstream")
def main() -> None:
    """Streaming risk-and-sentiment processor for e-commerce event streams."""
    from dotenv import load_dotenv

    # every command, and the model cache's own variables, see the .env file (the environment
    # wins where both set a variable)
    load_dotenv(".env", override=False)


@main.command()
@click.option("--markdown", is_flag=True, help="The README's configuration table.")
def settings(markdown: bool) -> None:
    """Print the settings in effect (or, with --markdown, the table of all settings)."""
    from stream.config import settings_table

    if markdown:
        click.echo(settings_table())
        return
    current = _settings()
    for field in Settings.model_fields:
        click.echo(f"{env_name(field)}={getattr(current, field)}")


@main.command()
@click.option(
    "--duration", type=float, default=60.0, show_default=True, help="Seconds of demo traffic."
)
@click.option("--rate", type=float, default=80.0, show_default=True, help="Demo events per second.")
@click.option(
    "--broker",
    "broker_url",
    default=None,
    help="Send the demo traffic to this broker (kafka://host:port) instead of an embedded one. "
    "Never taken from KAFKA_BROKER: demo traffic goes to a cluster only when asked.",
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
@click.option(
    "--prometheus",
    "with_prometheus",
    is_flag=True,
    help="Also start a local Prometheus (the compose stack's config and alert rules) if the "
    "prometheus binary is installed.",
)
def run(
    duration: float,
    rate: float,
    broker_url: str | None,
    malformed_ratio: float,
    seed: int,
    run_dir: Path | None,
    no_live: bool,
    with_prometheus: bool,
) -> None:
    """Broker + worker + demo traffic, with a live view and a summary."""
    _require("riskstream run", "train", *(["broker"] if broker_url is None else []))
    from models.training.build import ensure_served
    from stream.ops.runner import RunOptions, run_main_job

    _settings()  # a bad setting fails here, in one line, before anything starts
    ensure_served(progress=True)
    run_dir = run_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    console.print(
        f"demo traffic goes to {broker_url or 'an embedded broker (memory storage)'}"
        + (
            " (KAFKA_BROKER is ignored by run; use --broker)"
            if broker_url is None and "KAFKA_BROKER" in os.environ
            else ""
        )
    )
    options = RunOptions(
        duration_s=duration,
        rate=rate,
        broker_url=broker_url,
        run_dir=run_dir,
        seed=seed,
        malformed_ratio=malformed_ratio,
        show_live=not no_live,
        prometheus=with_prometheus,
    )
    try:
        summary = asyncio.run(_until_sigterm(run_main_job(options, console)))
    except BrokerError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        console.print("interrupted")
        return
    console.rule("summary")
    for key, value in _flat(summary):
        console.print(f"{key:>34}: {value}", soft_wrap=True, markup=False)


@main.command(epilog=_settings_epilog())
def worker() -> None:
    """Run the Faust worker (reads KAFKA_BROKER and RISKSTREAM_* settings)."""
    settings = _settings()  # before anything is created: a bad setting is one line, exit 2
    from faust import Worker

    from stream.ops.admin import ensure_topics
    from stream.worker.app import build_app

    logging.basicConfig(level=settings.log_level.upper())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from stream.ops.admin import TopicLayoutError, with_replication

    try:
        loop.run_until_complete(ensure_topics(settings))
        settings = loop.run_until_complete(with_replication(settings))
    except TopicLayoutError as exc:
        _fail(f"topics on {settings.kafka_broker}: {exc}")
    except Exception as exc:
        _fail(f"cannot reach broker {settings.kafka_broker}: {exc!r}")
    app = build_app(settings).app

    runner = Worker(app, loglevel=settings.log_level, loop=loop)
    # Faust's terminal spinner sets the root logger to DEBUG (its handler filters), so every
    # debug call in Faust and aiokafka builds a record: ~2 % of the worker's time. No spinner.
    runner.spinner = None
    runner.execute_from_commandline()


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
    _require("riskstream simulate", "data")  # the demo corpus: real texts read with pandas
    from aiokafka import AIOKafkaProducer

    from stream.ops.admin import bootstrap_servers, ensure_topics
    from stream.ops.simulate import DemoCorpus, DemoTraffic, produce_demo_traffic
    from stream.security import KafkaSecurity

    settings = _settings(KAFKA_BROKER=broker_url)

    async def go() -> None:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(broker_url),
            acks="all",
            **KafkaSecurity.from_env().aiokafka_kwargs(),  # RISKSTREAM_KAFKA_* (SASL, TLS)
        )
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
        console.print(
            f"sent {stats.total} records ({_shown(dict(stats.sent))}), {stats.malformed} malformed"
        )

    if count is None and duration is None:
        _fail("give --count or --duration", EXIT_USAGE)
    asyncio.run(go())


@main.command()
@click.option("--port", type=int, default=9092, show_default=True)
@click.option("--log", "log_path", type=click.Path(path_type=Path), default=Path("runs/broker.log"))
def broker(port: int, log_path: Path) -> None:
    """Run the embedded Tansu broker in the foreground (memory storage) until Ctrl-C or SIGTERM."""
    _require("riskstream broker", "broker")
    _interrupt_on_sigterm()
    try:
        with EmbeddedBroker(port=port, log_path=log_path) as embedded:
            console.print(f"broker ready at {embedded.url} (log: {log_path}); Ctrl-C stops it")
            while embedded.process is not None and embedded.process.poll() is None:
                time.sleep(0.5)
    except BrokerError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        pass


def _epoch_ms(value: str | None) -> int | None:
    """ISO-8601 (``2026-11-23T10:00:00Z``) or epoch milliseconds -> epoch ms."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither ISO-8601 nor epoch milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _setting_pairs(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    """``fraud_risk_threshold=0.3`` or ``RISKSTREAM_FRAUD_RISK_THRESHOLD=0.3`` -> env names,
    checked against the worker's settings."""
    from pydantic import ValidationError

    from stream.backtest.replay import settings_with

    settings: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r}: expected NAME=VALUE", param_hint=option)
        env_name = name.upper()
        env_name = env_name if env_name.startswith("RISKSTREAM_") else f"RISKSTREAM_{env_name}"
        if env_name.removeprefix("RISKSTREAM_").lower() not in Settings.model_fields:
            raise click.BadParameter(f"{name!r} is not a worker setting", param_hint=option)
        settings[env_name] = value
    try:
        settings_with(settings)
    except ValidationError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None
    return settings


@main.command()
@click.option(
    "--file",
    "file_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Replay a JSONL (.jsonl, .jsonl.gz) or Parquet file of events.",
)
@click.option(
    "--topics",
    "source_broker",
    default=None,
    help="Replay the input topics of this broker (kafka://host:port).",
)
@click.option("--source-prefix", default="", help="Topic prefix of the deployment to replay.")
@click.option("--from-offset", type=click.IntRange(min=0), help="Per partition, inclusive.")
@click.option("--to-offset", type=click.IntRange(min=0), help="Per partition, exclusive.")
@click.option("--from-time", help="Record timestamp, inclusive (ISO-8601 or epoch ms).")
@click.option("--to-time", help="Record timestamp, exclusive (ISO-8601 or epoch ms).")
@click.option(
    "--broker",
    "broker_url",
    default=None,
    help="Run the backtest on this broker, under backtest.<run id>. (default: an embedded one).",
)
@click.option("--run-id", default=None, help="Default: a timestamp.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="report.json, report.md, plots and outputs (default runs/backtest-<run id>).",
)
@click.option(
    "--set",
    "set_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="A worker setting for the backtest, e.g. profile_throttle_s=0 (repeatable).",
)
@click.option(
    "--compare",
    "compare_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Also run B with these settings, e.g. fraud_risk_threshold=0.3 or "
    "model_version=<build> or backend=onnx-cpu-int8, and compare (repeatable).",
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Partitions of the backtest topics. 1 keeps every stage in input order; more run "
    "faster with several workers but surge alerts may then differ between replays.",
)
@click.option("--timeout", "timeout_s", type=float, default=3600.0, show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bar (for CI logs).")
def replay(
    file_path: Path | None,
    source_broker: str | None,
    source_prefix: str,
    from_offset: int | None,
    to_offset: int | None,
    from_time: str | None,
    to_time: str | None,
    broker_url: str | None,
    run_id: str | None,
    out_dir: Path | None,
    set_pairs: tuple[str, ...],
    compare_pairs: tuple[str, ...],
    partitions: int,
    timeout_s: float,
    no_progress: bool,
) -> None:
    """Backtest: replay a topic range or a file through the worker, isolated, with a report."""
    _require("riskstream replay", "train", "backtest", *(["broker"] if broker_url is None else []))
    from models.training.build import ensure_served
    from stream.backtest.replay import (
        ReplayError,
        ReplayOptions,
        ReplaySource,
        TopicRange,
        read_file,
        read_topic_range,
    )
    from stream.backtest.replay import replay as run_replay

    if (file_path is None) == (source_broker is None):
        _fail("give exactly one of --file and --topics", EXIT_USAGE)
    ranged = (from_offset, to_offset, from_time, to_time)
    if file_path is not None and any(v is not None for v in ranged):
        _fail("offset and time ranges apply to --topics only", EXIT_USAGE)
    settings = _setting_pairs(set_pairs, "--set")
    compare = _setting_pairs(compare_pairs, "--compare")
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S")
    options = ReplayOptions(
        run_id=run_id,
        out_dir=out_dir or Path("runs") / f"backtest-{run_id}",
        broker_url=broker_url,
        partitions=partitions,
        compare=compare,
        timeout_s=timeout_s,
        show_progress=not no_progress,
        settings=settings,
    )
    ensure_served(progress=not no_progress)
    try:
        if file_path is not None:
            records, skipped = read_file(file_path)
            source = ReplaySource(records, skipped, {"kind": "file", "path": str(file_path)})
        else:
            rng = TopicRange(
                source_broker,
                source_prefix,
                from_offset,
                to_offset,
                _epoch_ms(from_time),
                _epoch_ms(to_time),
            )
            records = asyncio.run(read_topic_range(rng))
            source = ReplaySource(records, {}, rng.describe())
        console.print(f"replaying {len(records)} records as run {run_id} -> {options.out_dir}")
        report = asyncio.run(run_replay(source, options, console))
    except (ReplayError, BrokerError) as exc:
        _fail(str(exc))
    _print_replay_summary(report, options.out_dir)
    if report["status"] != "complete":
        sys.exit(1)


def _shown(value: object) -> str:
    """A value as one readable phrase: ``reviews 10, chats 4``, not a Python dict."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_shown(v)}" for k, v in value.items()) if value else "none"
    if isinstance(value, list | tuple):
        return ", ".join(_shown(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "none" if value is None else str(value)


def _flat(summary: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Nested summary -> (dotted key, readable value) lines; small dicts stay on one line."""
    lines = []
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
            lines += _flat(value, f"{name}.")
        else:
            lines.append((name, _shown(value)))
    return lines


def _print_replay_summary(report: dict, out_dir: Path) -> None:
    runs = report.get("runs") or {"a": report}
    for label, run in runs.items():
        events = run["events"]
        console.rule(f"backtest {run['run_id']} run {label}: {run['status']}")
        console.print(
            f"{events['accounted']} of {events['input_total']} events "
            f"({run['throughput']['events_per_s']} events/s), dead letters "
            f"{_shown(events['dead_letter'])}, alerts {_shown(run['alerts']['by_type'])}",
            markup=False,
        )
        for name, quality in run["labelled"].items():
            shown = {k: v for k, v in quality.items() if not isinstance(v, dict | list)}
            console.print(f"  {name}: {_shown(shown)}", markup=False)
    if "compare" in report and report["compare"]["alerts"] is not None:
        diff = report["compare"]["alerts"]
        console.print(
            f"alerts in both: {diff['same']}, only A: {len(diff['only_a'])}, "
            f"only B: {len(diff['only_b'])}"
        )
    console.print(f"report: {out_dir / 'report.md'} and {out_dir / 'report.json'}")


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
    # fraud: pandas and scikit-learn; surge also scores through the training code (torch)
    _require(f"riskstream eval {kind}", "backtest", *(["train"] if kind == "surge" else []))
    from stream.backtest import evaluation

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


from stream.ops.registry_cli import models_group  # noqa: E402 (registered last: it imports _fail)

main.add_command(models_group, "models")

from stream.ops.labels_cli import adapt, labels_group  # noqa: E402 (they import _fail, _settings)

main.add_command(labels_group, "labels")
main.add_command(adapt, "adapt")

from stream.ops.dead_letter_cli import dead_letter_group  # noqa: E402

main.add_command(dead_letter_group, "dead-letter")

from stream.ops.privacy_cli import privacy_group  # noqa: E402

main.add_command(privacy_group, "privacy")

from stream.ops.doctor import doctor  # noqa: E402

main.add_command(doctor, "doctor")
