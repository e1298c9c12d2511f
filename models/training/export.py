"""Export the encoder + heads to ONNX (dynamic batch and sequence axes), check it against torch,
and build the dynamically quantised INT8 CPU variant.

Modelled on optimum's exporter: named dynamic axes (DistilBERT-style inputs, no token_type_ids),
outputs validated within an ``atol`` with typed errors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from models.serving import artefacts
from models.serving.artefacts import (
    INT8_FILE,
    ONNX_FILE,
    ONNX_INPUT_NAMES,
    ONNX_OPSET,
    ONNX_OUTPUT_NAME,
)
from models.serving.base import HEAD_NAMES
from models.serving.encoder import EncoderWithHeads, pad_batch
from models.serving.encoder import load_network as load_built_network
from models.serving.tokenizer import served_tokenizer, tokenize

log = logging.getLogger(__name__)

#: Transformer layers whose weight MatMuls stay fp32 in the INT8 build. Quantising every layer
#: (per-channel) flips 0.7 % of labels on 2,046 held-out texts; the early layers' activation
#: ranges are the sensitive part, and keeping layers 0-1 in fp32 brings agreement to 99.8 %
#: (bench/backends.py, docs/model-card.md).
INT8_FP32_LAYERS: tuple[int, ...] = (0, 1, 2)
INPUT_NAMES = ONNX_INPUT_NAMES
OUTPUT_NAME = ONNX_OUTPUT_NAME
DYNAMIC_AXES = {
    "input_ids": {0: "batch_size", 1: "sequence_length"},
    "attention_mask": {0: "batch_size", 1: "sequence_length"},
    OUTPUT_NAME: {0: "batch_size"},
}
OPSET = ONNX_OPSET
#: Texts for checking an export: short and long, so padding and truncation are both exercised.
CHECK_TEXTS = (
    "Great taste, arrived fresh.",
    "Stale, tasteless and overpriced; the bag was torn and half empty. Never again.",
    "WINNER!! You have been selected for a 1000 prize. Call now to claim.",
    "ok",
    " ".join(["The coffee was fine but the delivery took three weeks."] * 30),
    "质量很差，用了两天就坏了，非常失望，要求退货！",  # noqa: RUF001 (Chinese punctuation)
)


class ExportError(RuntimeError):
    """The exported model does not reproduce the torch model."""


class ShapeError(ExportError):
    """Output shape differs from torch's."""


class AtolError(ExportError):
    """Outputs differ from torch's by more than the tolerance."""


def load_network(artefact_path: Path | None = None) -> tuple[EncoderWithHeads, object]:
    path = artefact_path or artefacts.artefact_dir()
    return load_built_network(path), served_tokenizer(path)


def sample_inputs(tokenizer: object, texts: Sequence[str] = CHECK_TEXTS) -> dict[str, torch.Tensor]:
    return pad_batch(tokenize(tokenizer, texts), tokenizer.pad_token_id)


def export_onnx(artefact_path: Path | None = None, *, force: bool = False) -> Path:
    """Write ``model.onnx`` beside the built heads (once), validated against torch."""
    folder = artefacts.require_built(artefact_path or artefacts.artefact_dir())
    target = folder / ONNX_FILE
    if target.exists() and not force:
        return target
    network, tokenizer = load_network(folder)
    inputs = sample_inputs(tokenizer)
    staging = target.with_suffix(f".{os.getpid()}.tmp")
    with torch.inference_mode():
        torch.onnx.export(
            network,
            (inputs["input_ids"], inputs["attention_mask"]),
            str(staging),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=DYNAMIC_AXES,
            opset_version=OPSET,
            dynamo=False,
        )
    validate_outputs(staging, network, tokenizer)
    os.replace(staging, target)
    log.info("exported %s", target)
    return target


def onnx_scores(onnx_path: Path, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = {name: inputs[name].numpy() for name in INPUT_NAMES}
    return session.run([OUTPUT_NAME], feed)[0]


def validate_outputs(
    onnx_path: Path, network: EncoderWithHeads, tokenizer: object, atol: float = 1e-4
) -> float:
    """Max |onnx - torch| on ``CHECK_TEXTS``; raises ``ShapeError``/``AtolError``."""
    inputs = sample_inputs(tokenizer)
    with torch.inference_mode():
        expected = network(**inputs).numpy()
    actual = onnx_scores(onnx_path, inputs)
    if actual.shape != expected.shape or expected.shape[1] != len(HEAD_NAMES):
        raise ShapeError(f"onnx output {actual.shape} != torch {expected.shape}")
    difference = float(np.abs(actual - expected).max())
    if difference > atol:
        raise AtolError(f"onnx differs from torch by {difference:.2e} > atol {atol:.0e}")
    return difference


def fp32_matmuls(onnx_path: Path, layers: Sequence[int]) -> list[str]:
    """Names of the MatMul nodes inside the given transformer layers (exporter naming)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    markers = tuple(f"/layer.{layer}/" for layer in layers)
    return [
        n.name for n in graph.node if n.op_type == "MatMul" and any(m in n.name for m in markers)
    ]


def quantize_int8(artefact_path: Path | None = None, *, force: bool = False) -> Path:
    """Dynamic INT8 quantisation, per output channel, of the MatMul weights outside
    :data:`INT8_FP32_LAYERS` (activations are quantised per call)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = artefacts.require_built(artefact_path or artefacts.artefact_dir())
    target = folder / INT8_FILE
    if target.exists() and not force:
        return target
    source = export_onnx(folder)
    staging = target.with_suffix(f".{os.getpid()}.tmp")
    quantize_dynamic(
        str(source),
        str(staging),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        nodes_to_exclude=fp32_matmuls(source, INT8_FP32_LAYERS),
    )
    os.replace(staging, target)
    log.info("quantised %s", target)
    return target
