"""``riskstream labels import|build-set`` and ``riskstream adapt``: the operator's side of the
learning loop (label -> labelled set -> adapt; then ``riskstream models promote``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from stream.topics import LABELS


def _cli():  # the CLI's helpers, imported late: stream.ops.cli registers this module
    from stream.ops import cli

    return cli


def _bootstrap() -> tuple[str, str]:
    from stream.ops.admin import bootstrap_servers

    settings = _cli()._settings()
    return bootstrap_servers(settings.kafka_broker), settings.topic_prefix


@click.group("labels")
def labels_group() -> None:
    """Analysts' labels: import them to the labels topic, build a labelled set."""


@labels_group.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--allow-invalid",
    is_flag=True,
    help="Produce the valid rows even when some are refused (default: refuse the file).",
)
def import_labels(file: Path, allow_invalid: bool) -> None:
    """Produce FILE's labels (CSV, JSONL or Parquet; columns event_id, head, value, labeller,
    labelled_at, note) to the labels topic, keyed event_id|head."""
    from stream.ops.labels import LabelsError, parse_label_rows, produce_labels, read_label_rows

    try:
        parsed = parse_label_rows(read_label_rows(file))
    except LabelsError as exc:
        _cli()._fail(str(exc))
    for number, why in list(parsed.refused.items())[:20]:
        click.echo(f"row {number}: {why}", err=True)
    if parsed.refused and not allow_invalid:
        _cli()._fail(
            f"{len(parsed.refused)} of {len(parsed.refused) + len(parsed.labels)} rows refused; "
            "nothing produced (fix them, or --allow-invalid)"
        )
    bootstrap, prefix = _bootstrap()
    sent = asyncio.run(produce_labels(bootstrap, prefix + LABELS, parsed.labels))
    click.echo(f"produced {sent} labels to {prefix + LABELS} ({len(parsed.refused)} refused)")


@labels_group.command("build-set")
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), default=Path("labelled"),
    show_default=True, help="Folder of the labelled-<sha>.parquet file.",
)  # fmt: skip
@click.option(
    "--replay",
    "replay_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Join with a replay's outputs (its --out folder) instead of the live topics.",
)
@click.option(
    "--input",
    "input_file",
    type=click.Path(path_type=Path),
    default=None,
    help="With --replay: the file that was replayed (its texts).",
)
@click.option(
    "--labels-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Labels from this file instead of the labels topic.",
)
@click.option(
    "--from-time",
    default=None,
    help="Only events scored at or after this time (ISO-8601 or epoch ms; scored-events "
    "record time).",
)
@click.option("--to-time", default=None, help="... and before this time.")
def build_set(
    out_dir: Path,
    replay_dir: Path | None,
    input_file: Path | None,
    labels_file: Path | None,
    from_time: str | None,
    to_time: str | None,
) -> None:
    """Join the latest label of each event with what was scored (masked text as served,
    event type, language, scores, build) into a hash-named Parquet file."""
    from stream.ops import labels as ops

    fail = _cli()._fail
    settings = _cli()._settings()
    edge = {"pseudonymiser": settings.pseudonymiser(), "pii_in_ids": settings.pii_in_ids}
    try:
        if labels_file is not None:
            parsed = ops.parse_label_rows(ops.read_label_rows(labels_file))
            latest, invalid = ops.latest_labels(parsed.labels), len(parsed.refused)
        if replay_dir is not None:
            if input_file is None:
                fail("--replay needs --input, the file that was replayed")
            if from_time or to_time:
                fail("--from-time/--to-time select live scored-events; a replay is its own range")
            scored = ops.from_replay(replay_dir, input_file, **edge)
            if labels_file is None:
                bootstrap, prefix = _bootstrap()
                records = asyncio.run(ops.read_to_end(bootstrap, [prefix + LABELS]))
                latest, invalid = ops.labels_of(records)
        else:
            bootstrap, prefix = _bootstrap()
            window = {"from_ms": _cli()._epoch_ms(from_time), "to_ms": _cli()._epoch_ms(to_time)}
            topic_labels, topic_invalid, scored = asyncio.run(
                ops.from_broker(bootstrap, prefix, **window, **edge)
            )
            if labels_file is None:
                latest, invalid = topic_labels, topic_invalid
        path, facts = ops.build_set(latest, scored, invalid, out_dir)
    except ops.LabelsError as exc:
        fail(str(exc))
    click.echo(json.dumps(facts, sort_keys=True))
    click.echo(str(path))


@click.command("adapt")
@click.argument("labelled_set", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--base",
    "base_version",
    default=None,
    help="The build to adapt (default: the served English student; the multilingual "
    "student for Chinese labels).",
)
@click.option("--language", type=click.Choice(["en", "zh"]), default="en", show_default=True)
@click.option(
    "--target-precision", type=click.FloatRange(0.5, 0.999), default=0.90, show_default=True
)
@click.option("--min-labels", type=click.IntRange(20), default=100, show_default=True)
@click.option(
    "--base-per-domain", type=click.IntRange(10), default=400, show_default=True,
    help="Base training texts per domain and class in the regulariser.",
)  # fmt: skip
@click.option("--bootstrap", "rounds", type=click.IntRange(100), default=1000, show_default=True)
def adapt(
    labelled_set: Path,
    base_version: str | None,
    language: str,
    target_precision: float,
    min_labels: int,
    base_per_domain: int,
    rounds: int,
) -> None:
    """Refit a build's heads on a labelled set (base mix as regulariser, strength by
    cross-validation), calibrate, choose thresholds; install the build and print its
    version. Refuses (exit 1) when labels are too few or the lift is not significant."""
    try:
        from models.serving import artefacts
        from models.training.adapt import AdaptOptions, AdaptRefused, run_adapt
    except ModuleNotFoundError as exc:
        _cli()._fail(
            f"adapt needs the train extra (pip install 'riskstream[train,backtest]'): {exc}"
        )
    if base_version is None:
        zh = language == "zh"
        base_version = artefacts.multilingual_version() if zh else artefacts.model_version()
    options = AdaptOptions(
        target_precision=target_precision,
        min_labels=min_labels,
        base_per_domain=base_per_domain,
        bootstrap=rounds,
    )
    try:
        bundle, path = run_adapt(
            labelled_set,
            base_version=base_version,
            options=options,
            on_stage=lambda s: click.echo(f"... {s}", err=True),
        )
    except AdaptRefused as exc:
        _cli()._fail(f"adapt refused: {exc}")
    click.echo((path / "model-card.md").read_text(encoding="utf-8"), err=True)
    click.echo(f"built {bundle['model_version']} in {path}", err=True)
    click.echo(bundle["model_version"])
