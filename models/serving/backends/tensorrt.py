"""TensorRT backend: the ONNX export compiled into an engine for this GPU, one profile per bucket.

``load_model`` finds the ONNX export (made by ``python -m models build``), builds or loads the
cached engine (:func:`models.serving.trt_engine.build_or_load_engine`) and creates one execution
context per optimisation profile. ``run_inference`` tokenises like torch-cpu, plans engine calls
with :func:`models.serving.trt_engine.plan_engine_calls` (length-sorted sub-batches, each on the
profile of
its longest row), and scatters results back to input order. Device buffers are torch CUDA
tensors; only TensorRT 10 name-based tensor APIs are used (``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``).

Importing this module needs neither CUDA nor TensorRT; ``load_model`` raises
:class:`models.serving.trt_engine.TensorRTUnavailableError` when either is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.serving import artefacts, trt_engine
from models.serving.base import HEAD_NAMES, ModelHandler, PredictionResult
from models.serving.batching import (
    DEFAULT_CALL_OVERHEAD_TOKENS,
    DEFAULT_MAX_BATCH_TOKENS,
    check_max_batch_tokens,
    text_scores,
)
from models.serving.encoder import pad_batch
from models.serving.tokenizer import MAX_LENGTH, served_tokenizer, tokenize
from models.serving.trt_engine import (
    DEFAULT_MAX_BATCH_SIZE,
    INPUT_NAMES,
    OUTPUT_NAME,
    SEQ_BUCKETS,
    Precision,
    TensorRTUnavailableError,
    plan_engine_calls,
)

__all__ = [
    "LoadedTensorRTEngine",
    "TensorRTHandler",
    "TensorRTInferenceFn",
    "default_tensorrt_inference_fn",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedTensorRTEngine:
    """What ``load_model`` hands the stream; ``contexts[i]`` is bound to profile ``i``."""

    engine: Any
    contexts: tuple[Any, ...]
    stream: torch.cuda.Stream
    tokenizer: Any
    model_version: str
    engine_path: Path
    buckets: tuple[tuple[int, int], ...]
    max_batch_size: int
    #: torch dtype of every I/O tensor, as the engine declares it.
    dtypes: Mapping[str, torch.dtype]
    #: Kept so the runtime outlives the engine it deserialised.
    runtime: Any = None


#: ``(model, profile index, {"input_ids", "attention_mask"} on CPU) -> CPU float probabilities``.
TensorRTInferenceFn = Callable[
    [LoadedTensorRTEngine, int, Mapping[str, torch.Tensor]], torch.Tensor
]


def default_tensorrt_inference_fn(
    model: LoadedTensorRTEngine, profile: int, batch: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """Copy inputs to the GPU, run the context bound to ``profile``, copy scores back."""
    context = model.contexts[profile]
    rows = int(batch["input_ids"].shape[0])
    with torch.cuda.stream(model.stream):
        device_inputs = {
            name: batch[name].to("cuda", dtype=model.dtypes[name], non_blocking=True).contiguous()
            for name in INPUT_NAMES
        }
        for name, tensor in device_inputs.items():
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        expected = (rows, len(HEAD_NAMES))
        if tuple(context.get_tensor_shape(OUTPUT_NAME)) != expected:
            raise RuntimeError(
                f"engine output shape {tuple(context.get_tensor_shape(OUTPUT_NAME))} != {expected}"
            )
        output = torch.empty(expected, dtype=model.dtypes[OUTPUT_NAME], device="cuda")
        context.set_tensor_address(OUTPUT_NAME, output.data_ptr())
        if not context.execute_async_v3(model.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed; see the TensorRT log")
        return output.float().cpu()  # enqueued on model.stream, so this waits for the engine


def _torch_dtypes(engine: Any) -> dict[str, torch.dtype]:
    trt = trt_engine.require_tensorrt()
    known = {
        trt.DataType.INT64: torch.int64,
        trt.DataType.INT32: torch.int32,
        trt.DataType.FLOAT: torch.float32,
        trt.DataType.HALF: torch.float16,
    }
    dtypes: dict[str, torch.dtype] = {}
    for name in (*INPUT_NAMES, OUTPUT_NAME):
        trt_dtype = engine.get_tensor_dtype(name)
        if trt_dtype not in known:
            raise RuntimeError(f"engine tensor {name!r} has unsupported dtype {trt_dtype}")
        dtypes[name] = known[trt_dtype]
    return dtypes


class TensorRTHandler(ModelHandler[LoadedTensorRTEngine]):
    """The built model as a TensorRT engine with one optimisation profile per length bucket."""

    backend = "tensorrt"

    def __init__(
        self,
        *,
        artefact_path: Path | None = None,
        inference_fn: TensorRTInferenceFn = default_tensorrt_inference_fn,
        precision: Precision = "fp16",
        min_batch_size: int = 1,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_batch_duration_secs: float = 0.02,
        buckets: Sequence[tuple[int, int]] = SEQ_BUCKETS,
        engine_cache_dir: Path | None = None,
        max_length: int = MAX_LENGTH,
        call_overhead_tokens: int = DEFAULT_CALL_OVERHEAD_TOKENS,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ) -> None:
        if not 1 <= min_batch_size <= max_batch_size:
            raise ValueError(f"need 1 <= min_batch_size <= max_batch_size, got {min_batch_size}")
        if max_length > buckets[-1][1]:
            raise ValueError(f"max_length {max_length} exceeds the last bucket {buckets[-1]}")
        trt_engine.profile_shapes(buckets, max_batch_size)  # validates the buckets early
        self._path = artefact_path or artefacts.artefact_dir()
        self._inference_fn = inference_fn
        self._precision: Precision = precision
        self._min_batch_size = min_batch_size
        self._max_batch_size = max_batch_size
        self._max_batch_duration_secs = max_batch_duration_secs
        self._buckets = tuple((int(low), int(high)) for low, high in buckets)
        self._engine_cache_dir = engine_cache_dir
        self._max_length = max_length
        self._call_overhead_tokens = call_overhead_tokens
        self._max_batch_tokens = check_max_batch_tokens(max_batch_tokens, max_length)

    @property
    def model_version(self) -> str:
        return self._path.name

    def batch_elements_kwargs(self) -> dict[str, Any]:
        """The engine's profiles fix the largest batch; bigger micro-batches are split."""
        return {
            "min_batch_size": self._min_batch_size,
            "max_batch_size": self._max_batch_size,
            "max_batch_duration_secs": self._max_batch_duration_secs,
        }

    def load_model(self) -> LoadedTensorRTEngine:
        """Export ONNX and build the engine if absent, then deserialise and warm every profile."""
        trt = trt_engine.require_tensorrt()
        if not torch.cuda.is_available():
            raise TensorRTUnavailableError("the tensorrt backend needs a CUDA device")
        artefacts.check_card(self._path)
        engine_path = trt_engine.build_or_load_engine(
            artefacts.onnx_path(self._path),
            self.model_version,
            precision=self._precision,
            max_batch_size=self._max_batch_size,
            buckets=self._buckets,
            cache_dir=self._engine_cache_dir,
        )
        trt_logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(trt_logger)
        engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise RuntimeError(
                f"could not deserialise {engine_path}; delete it to rebuild "
                "(built by another TensorRT version or GPU?)"
            )
        if engine.num_optimization_profiles != len(self._buckets):
            raise RuntimeError(
                f"{engine_path} has {engine.num_optimization_profiles} profiles, "
                f"expected {len(self._buckets)}"
            )
        stream = torch.cuda.Stream()
        contexts = []
        for profile in range(engine.num_optimization_profiles):
            context = engine.create_execution_context()
            if context is None:
                raise RuntimeError(f"could not create an execution context for profile {profile}")
            context.set_optimization_profile_async(profile, stream.cuda_stream)
            contexts.append(context)
        stream.synchronize()
        model = LoadedTensorRTEngine(
            engine=engine,
            contexts=tuple(contexts),
            stream=stream,
            tokenizer=served_tokenizer(self._path),
            model_version=self.model_version,
            engine_path=engine_path,
            buckets=self._buckets,
            max_batch_size=self._max_batch_size,
            dtypes=_torch_dtypes(engine),
            runtime=runtime,
        )
        # One call per profile at its shortest length, so no request pays for lazy set-up.
        for profile, (low, _) in enumerate(self._buckets):
            warm_up = {name: torch.ones((1, low), dtype=torch.long) for name in INPUT_NAMES}
            self._inference_fn(model, profile, warm_up)
        log.info("loaded %s as TensorRT engine %s", self.model_version, engine_path)
        return model

    def run_inference(
        self,
        batch: Sequence[str],
        model: LoadedTensorRTEngine,
        inference_args: Mapping[str, Any] | None = None,
    ) -> list[PredictionResult]:
        """Score ``batch`` in per-profile engine calls; results in input order."""
        texts = list(batch)
        if not texts:
            return []
        args = inference_args or {}
        token_ids = tokenize(model.tokenizer, texts, self._max_length)
        calls = plan_engine_calls(
            [len(ids) for ids in token_ids],
            model.buckets,
            model.max_batch_size,
            int(args.get("call_overhead_tokens", self._call_overhead_tokens)),
            check_max_batch_tokens(
                int(args.get("max_batch_tokens", self._max_batch_tokens)), self._max_length
            ),
        )
        probabilities = np.empty((len(texts), len(HEAD_NAMES)), dtype=np.float32)
        for profile, indices in calls:
            tensors = pad_batch([token_ids[i] for i in indices], model.tokenizer.pad_token_id)
            probabilities[indices] = self._inference_fn(model, profile, tensors).numpy()
        return [
            PredictionResult(text, text_scores(row), model.model_version)
            for text, row in zip(texts, probabilities, strict=True)
        ]
