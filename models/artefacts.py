"""Where a built model lives, what names it, and how it is loaded.

Two families share one folder layout (``<cache>/models/<version>/`` with ``card.json``):

* the served model, the distilled student (``minilm-l6-student-<sha256[:10]>``): its
  fine-tuned layers and heads are a committed file pinned by hash, so the version *is* the
  weights' hash;
* the baseline, frozen MiniLM + logistic heads (``minilm-l6-heads-<hash>``), identified by
  everything that can change its weights: data pins, encoder, hyper-parameters and
  :data:`TRAINING_RECIPE_VERSION`. It is built only on request, for comparison.

Change any input and the version (and so the folder) changes, so stale weights are never
loaded silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from models.base import HEAD_NAMES
from models.data import PINNED_WHEELS, riskstream_cache_dir
from models.encoder import ENCODER_PACKAGE, EncoderWithHeads, encoder_id, load_encoder, make_heads

#: Bump when the training code changes in a way the hyper-parameters below do not capture.
TRAINING_RECIPE_VERSION = "1"
MODEL_FAMILY = "minilm-l6-heads"
STUDENT_FAMILY = "minilm-l6-student"
CARD_FILE = "card.json"
HEADS_FILE = "heads.safetensors"
STUDENT_FILE = "student.safetensors"
#: sha256 of ``models/distilled/student.safetensors``: the served weights.
STUDENT_SHA256 = "78b1c808b2287086a9a413bd400a2af6108c426ab546a641c0c3f07e63fccf99"
#: What the student file replaces in the base encoder; everything else (embeddings) is frozen.
STUDENT_LAYER_PREFIX = "encoder.encoder.layer."


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


def model_version() -> str:
    """The served model: ``minilm-l6-student-<first 10 hex of the weights' sha256>``."""
    return f"{STUDENT_FAMILY}-{STUDENT_SHA256[:10]}"


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


def models_root(cache_dir: Path | None = None) -> Path:
    return (cache_dir or riskstream_cache_dir()) / "models"


def artefact_dir(version: str | None = None, cache_dir: Path | None = None) -> Path:
    """The folder a build of ``version`` (default: the current one) lives in."""
    return models_root(cache_dir) / (version or model_version())


def is_built(path: Path) -> bool:
    """The card is written last, so its presence means the build completed."""
    weights = (path / HEADS_FILE).is_file() or (path / STUDENT_FILE).is_file()
    return (path / CARD_FILE).is_file() and weights


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


class WeightsMismatchError(ValueError):
    """A student file that does not fit the base encoder it claims to extend."""


def load_student_into(network: EncoderWithHeads, weights: Path) -> EncoderWithHeads:
    """Overwrite ``network``'s transformer layers and heads with the student file (fp32).

    Every layer and head tensor of the network must come from the file and nothing else may
    be in it, so a file for another architecture fails here rather than scoring garbage.
    """
    state = {key: value.float() for key, value in load_file(str(weights)).items()}
    expected = {
        key
        for key in network.state_dict()
        if key.startswith(STUDENT_LAYER_PREFIX) or key.startswith("heads.")
    }
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise WeightsMismatchError(
            f"{weights} does not fit {ENCODER_PACKAGE}: missing {missing[:3]}, extra {extra[:3]}"
        )
    network.load_state_dict(state, strict=False)
    return network


def load_network(path: Path) -> EncoderWithHeads:
    """The fp32 network of a built artefact (student or baseline), in eval mode."""
    require_built(path)
    if (path / STUDENT_FILE).is_file():
        network = EncoderWithHeads(load_encoder(), make_heads())
        return load_student_into(network, path / STUDENT_FILE).eval()
    return EncoderWithHeads(load_encoder(), load_heads(path)).eval()


def publish(staging: Path, final: Path) -> None:
    """Atomically move a finished build into place; a concurrent winner is kept as is."""
    retired = None
    if final.exists():
        retired = final.with_name(f".retired-{final.name}-{uuid.uuid4().hex[:8]}")
        final.rename(retired)
    try:
        staging.rename(final)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not is_built(final):
            raise
    finally:
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
