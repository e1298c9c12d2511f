"""The served builds in one call: a committed student installed, its ONNX builds exported,
the tokenizer saved beside them (so ONNX serving needs no encoder package, hence no torch).

``python -m models build`` runs it, and so does anything that is about to start a worker
(``riskstream run``, a backtest, the test fixtures): serving itself never exports, it only
finds what this made (:func:`models.serving.artefacts.onnx_path`). Exporting needs torch, so
it is imported only when an ONNX file is missing.

Two students are committed: the MiniLM student (English) and the multilingual student
(English + Chinese, :mod:`models.training.multilingual`); :data:`COMMITTED` says which
version each installs as.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from models.serving import artefacts
from models.serving.tokenizer import TOKENIZER_FILE, encoder_path
from models.training import student


def _install_student(progress: bool, force: bool, cache_dir: Path | None) -> Path:
    return student.ensure_built(progress=progress, force=force, cache_dir=cache_dir)


def _install_multilingual(progress: bool, force: bool, cache_dir: Path | None) -> Path:
    from models.training import multilingual

    return multilingual.ensure_installed(force=force, cache_dir=cache_dir)


#: Version -> installer of every committed model (no training: a hash-checked file each).
COMMITTED: dict[str, Callable[[bool, bool, Path | None], Path]] = {
    artefacts.model_version(): _install_student,
    artefacts.multilingual_version(): _install_multilingual,
}


def ensure_built(
    progress: bool = True,
    force: bool = False,
    cache_dir: Path | None = None,
    version: str | None = None,
) -> Path:
    """The artefact folder of ``version`` (default: the served model) with ``model.onnx``,
    ``model.int8.onnx`` and ``tokenizer.json`` beside the weights, making whichever is missing
    (all of them with ``force``). Only committed versions (:data:`COMMITTED`) can be made here;
    a baseline is built by ``python -m models baseline``."""
    version = version or artefacts.model_version()
    installer = COMMITTED.get(version)
    if installer is None:
        path = artefacts.artefact_dir(version, cache_dir)
        return export_builds(artefacts.require_built(path), force=force)
    return export_builds(installer(progress, force, cache_dir), force=force)


def ensure_served(
    progress: bool = True, force: bool = False, cache_dir: Path | None = None
) -> Path:
    """Every committed build (:data:`COMMITTED`: the student, and the multilingual student that
    scores Chinese text by default) with its ONNX builds; returns the student's folder."""
    for version in COMMITTED:
        ensure_built(progress, force, cache_dir, version)
    return artefacts.artefact_dir(artefacts.model_version(), cache_dir)


def export_builds(path: Path, force: bool = False) -> Path:
    """Make the serving files of the built artefact at ``path`` (student or baseline): the
    tokenizer, and the ONNX fp32 and INT8 builds if missing."""
    save_tokenizer(path, force=force)
    onnx_files = (path / artefacts.ONNX_FILE, path / artefacts.INT8_FILE)
    if force or not all(file.is_file() for file in onnx_files):
        from models.training.export import export_onnx, quantize_int8

        export_onnx(path, force=force)
        quantize_int8(path, force=force)
    return path


def save_tokenizer(path: Path, force: bool = False) -> Path:
    """Copy the encoder's ``tokenizer.json`` into the artefact folder (atomically): that of the
    build's own encoder folder if it has one, else the MiniLM package's."""
    target = path / TOKENIZER_FILE
    if force or not target.is_file():
        own = path / artefacts.ENCODER_DIR
        source = own if (own / TOKENIZER_FILE).is_file() else encoder_path()
        staging = target.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(source / TOKENIZER_FILE, staging)
        os.replace(staging, target)
    return target
