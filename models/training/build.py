"""The served build in one call: the committed student installed, its ONNX builds exported,
the tokenizer saved beside them (so ONNX serving needs no encoder package, hence no torch).

``python -m models build`` runs it, and so does anything that is about to start a worker
(``riskstream run``, a backtest, the test fixtures): serving itself never exports, it only
finds what this made (:func:`models.serving.artefacts.onnx_path`). Exporting needs torch, so
it is imported only when an ONNX file is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from models.serving import artefacts
from models.serving.tokenizer import TOKENIZER_FILE, encoder_path
from models.training import student


def ensure_built(progress: bool = True, force: bool = False, cache_dir: Path | None = None) -> Path:
    """The served model's artefact folder with ``model.onnx``, ``model.int8.onnx`` and
    ``tokenizer.json`` beside the student weights, making whichever is missing (all of them
    with ``force``)."""
    path = student.ensure_built(progress=progress, force=force, cache_dir=cache_dir)
    return export_builds(path, force=force)


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
    """Copy the encoder's ``tokenizer.json`` into the artefact folder (atomically)."""
    target = path / TOKENIZER_FILE
    if force or not target.is_file():
        staging = target.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(encoder_path() / TOKENIZER_FILE, staging)
        os.replace(staging, target)
    return target
