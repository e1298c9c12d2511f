"""Install the served model, the distilled student, into the artefact cache.

The student's weights are a committed, hash-pinned file (``models/distilled/``), so a fresh
machine needs no training: ``ensure_built`` verifies the file, copies it into
``<cache>/models/<version>/`` and writes a card, in about a second. The ONNX and INT8 builds
are then made beside it (``models.training.export``); :func:`models.training.build.ensure_built`
does both, as ``python -m models build`` does.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.serving import artefacts
from models.serving.artefacts import riskstream_cache_dir
from models.serving.base import HEAD_NAMES
from models.serving.tokenizer import encoder_id
from models.training.data import verify_sha256

DISTILLED_DIR = Path(__file__).resolve().parents[1] / "distilled"
STUDENT_REPORT_FILE = "student-report.json"
TEACHER_REPORT_FILE = "teacher-report.json"


def committed_weights() -> Path:
    """The pinned student file, verified against :data:`artefacts.STUDENT_SHA256`."""
    path = DISTILLED_DIR / artefacts.STUDENT_FILE
    verify_sha256(path, artefacts.STUDENT_SHA256)
    return path


def read_report(name: str) -> dict[str, Any]:
    return json.loads((DISTILLED_DIR / name).read_text(encoding="utf-8"))


def _card(version: str) -> dict[str, Any]:
    student, teacher = read_report(STUDENT_REPORT_FILE), read_report(TEACHER_REPORT_FILE)
    return {
        "model_version": version,
        "family": artefacts.STUDENT_FAMILY,
        "encoder": encoder_id(),
        "head_names": list(HEAD_NAMES),
        "student_sha256": artefacts.STUDENT_SHA256,
        "headline": student["headline"],
        "teacher_headline": teacher["headline"],
        "training": {
            "student_config": student["selected_config"],
            "student_epoch": student["selected_epoch"],
            "temperatures": student["temperatures"],
            "trained_on": student["environment"],
            "soft_labels_sha256": student["soft_labels_sha256"],
        },
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def ensure_built(progress: bool = True, force: bool = False, cache_dir: Path | None = None) -> Path:
    """The served model's artefact folder, installing it from the committed file if absent.

    ``progress`` is accepted for symmetry with the baseline build; installing takes a second.
    """
    del progress
    version = artefacts.model_version()
    final = artefacts.artefact_dir(version, cache_dir)
    if artefacts.is_built(final) and not force:
        return final
    source = committed_weights()
    root = artefacts.models_root(cache_dir or riskstream_cache_dir())
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".installing-{version}-"))
    staging.chmod(0o755)
    shutil.copyfile(source, staging / artefacts.STUDENT_FILE)
    artefacts.write_card(staging, _card(version))
    artefacts.publish(staging, final)
    return final
