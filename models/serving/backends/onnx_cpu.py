"""ONNX Runtime on CPU: the exported encoder + heads, fp32 or dynamically quantised INT8.

Same tokenisation and length bucketing as the torch reference; only the forward pass differs.
INT8 is built (``models.training.export.quantize_int8``) but not the default: with the current
heads it does not hold label parity (see docs/model-card.md), so ``precision="fp32"`` is what
auto picks.

This path never imports torch or transformers (``tests/test_import_rules.py``): the tokenizer
is the Rust ``tokenizers`` library, padding and planning are numpy. The ONNX files are made
ahead of time by ``python -m models build``; a missing one raises ``ModelNotBuiltError``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from models.serving import artefacts
from models.serving.base import CPU_BATCH_LIMITS, ModelHandler, PredictionResult
from models.serving.batching import (
    DEFAULT_CALL_OVERHEAD_TOKENS,
    DEFAULT_CPU_MAX_BATCH_TOKENS,
    check_max_batch_tokens,
    plan_sub_batches,
    score_in_sub_batches,
)
from models.serving.tokenizer import MAX_LENGTH, served_tokenizer

__all__ = [
    "LoadedOnnxModel",
    "OnnxCpuHandler",
    "OnnxInferenceFn",
    "default_onnx_inference_fn",
    "validate_provider",
]

log = logging.getLogger(__name__)

Precision = Literal["fp32", "int8"]
#: ``(session, {"input_ids", "attention_mask"} as int64 arrays) -> probabilities (rows, heads)``.
OnnxInferenceFn = Callable[[Any, Mapping[str, np.ndarray]], np.ndarray]


def default_onnx_inference_fn(session: Any, feed: Mapping[str, np.ndarray]) -> np.ndarray:
    return session.run([artefacts.ONNX_OUTPUT_NAME], dict(feed))[0]


def validate_provider(provider: str) -> None:
    """An unknown execution provider is an error naming the ones available."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider not in available:
        raise ValueError(f"ONNX Runtime provider {provider!r} unavailable; have {available}")


@dataclass(frozen=True, slots=True)
class LoadedOnnxModel:
    session: Any
    tokenizer: Any
    model_version: str
    path: Path


class OnnxCpuHandler(ModelHandler[LoadedOnnxModel]):
    @property  # type: ignore[override]
    def backend(self) -> str:
        return "onnx-cpu-int8" if self.precision == "int8" else "onnx-cpu"

    def __init__(
        self,
        *,
        precision: Precision = "fp32",
        artefact_path: Path | None = None,
        inference_fn: OnnxInferenceFn = default_onnx_inference_fn,
        provider: str = "CPUExecutionProvider",
        intra_op_threads: int | None = None,
        max_length: int = MAX_LENGTH,
        call_overhead_tokens: int = DEFAULT_CALL_OVERHEAD_TOKENS,
        max_batch_tokens: int = DEFAULT_CPU_MAX_BATCH_TOKENS,
        spin_wait: bool = True,
    ) -> None:
        """``spin_wait=False`` stops idle intra-op threads from spinning after each run: two
        sessions in one process (a language router) otherwise take turns burning the cores
        the working one needs (router mix on 2 cores: 53 texts/s spinning, see
        ``bench/multilingual_options.py``)."""
        self.precision = precision
        self._spin_wait = spin_wait
        self._path = artefact_path or artefacts.artefact_dir()
        self._inference_fn = inference_fn
        self._provider = provider
        self._threads = intra_op_threads
        self._max_length = max_length
        self._call_overhead_tokens = call_overhead_tokens
        self._max_batch_tokens = check_max_batch_tokens(max_batch_tokens, max_length)

    @property
    def model_version(self) -> str:
        return self._path.name

    @property
    def max_batch_tokens(self) -> int:
        return self._max_batch_tokens

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return dict(CPU_BATCH_LIMITS)

    def get_metrics_namespace(self) -> str:
        return f"riskstream.model.onnx_cpu.{self.precision}"

    def load_model(self) -> LoadedOnnxModel:
        """Open an ORT session on the built ONNX file and warm it up."""
        import onnxruntime as ort

        validate_provider(self._provider)
        artefacts.check_card(self._path)
        path = artefacts.onnx_path(self._path, self.precision)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self._threads:
            options.intra_op_num_threads = self._threads
        if not self._spin_wait:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=[self._provider])
        model = LoadedOnnxModel(session, served_tokenizer(self._path), self.model_version, path)
        self.run_inference(["warm-up"], model)
        log.info("loaded %s (%s) from %s", self.model_version, self.precision, path)
        return model

    def run_inference(
        self,
        batch: Sequence[str],
        model: LoadedOnnxModel,
        inference_args: Mapping[str, Any] | None = None,
    ) -> list[PredictionResult]:
        return score_in_sub_batches(
            batch,
            model.tokenizer,
            model.model_version,
            self._max_length,
            lambda token_ids: plan_sub_batches(
                [len(ids) for ids in token_ids],
                self._call_overhead_tokens,
                self._max_batch_tokens,
            ),
            lambda arrays: self._inference_fn(model.session, arrays),
        )
