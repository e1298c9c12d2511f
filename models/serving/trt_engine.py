"""Build or load a TensorRT engine from the ONNX export, once per model version and GPU.

Modelled on NVIDIA's ``samples/python/efficientdet/build_engine.py`` (``EngineBuilder`` with
``create_network`` then ``create_engine``), but failures raise :class:`EngineBuildError` instead
of calling ``sys.exit``, and only TensorRT 10 APIs are used (``build_serialized_network``,
``set_memory_pool_limit``, name-based tensors).

The network gets one optimisation profile per sequence-length bucket (:data:`SEQ_BUCKETS`),
each covering batch ``1..max_batch_size``, so a batch of one-line chat messages never runs on
kernels tuned for 256-token reviews. :func:`plan_engine_calls` is the pure function that maps a
micro-batch onto those profiles; the TensorRT handler and the tests share it.

An engine only runs on the GPU model and TensorRT version it was built with, so the cache key
(:func:`engine_cache_path`) holds model version, GPU name, compute capability, TensorRT version
and the build settings. Build ahead of time with ``python -m models.training.trt_build``; a
worker that finds no fp16/fp32 engine builds one in ``load_model`` (minutes), which is the slow
path. INT8 engines need calibration texts (training data), so only that command builds them
(:mod:`models.training.trt_build`); a worker never does.

``tensorrt`` is optional (``pip install .[gpu]``): this module imports on CPU machines and only
the functions that need TensorRT raise :class:`TensorRTUnavailableError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from models.serving.artefacts import (
    ONNX_INPUT_NAMES,
    ONNX_OPSET,
    ONNX_OUTPUT_NAME,
    riskstream_cache_dir,
)
from models.serving.batching import (
    DEFAULT_CALL_OVERHEAD_TOKENS,
    DEFAULT_MAX_BATCH_TOKENS,
    plan_sub_batches,
)
from models.serving.tokenizer import MAX_LENGTH

log = logging.getLogger(__name__)

try:
    import tensorrt as trt
except (ImportError, OSError) as exc:  # ModuleNotFoundError, or a wheel whose libs fail to load
    trt = None
    TENSORRT_IMPORT_ERROR: str | None = f"{type(exc).__name__}: {exc}"
    log.warning("tensorrt is not importable (%s); the tensorrt backend is unavailable", exc)
else:
    TENSORRT_IMPORT_ERROR = None

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "INPUT_NAMES",
    "OUTPUT_NAME",
    "SEQ_BUCKETS",
    "EngineBuildError",
    "EngineBuilder",
    "Precision",
    "ProfileShapes",
    "TensorRTUnavailableError",
    "build_or_load_engine",
    "current_device_key",
    "engine_cache_path",
    "plan_engine_calls",
    "profile_shapes",
    "require_tensorrt",
    "select_profile",
]

Precision = Literal["fp16", "int8", "fp32"]

#: The ONNX export's contract (see ``models.serving.artefacts``): both inputs int64
#: ``[batch, seq]``, the output float32 ``[batch, len(HEAD_NAMES)]`` sigmoid probabilities.
INPUT_NAMES: tuple[str, ...] = ONNX_INPUT_NAMES
OUTPUT_NAME = ONNX_OUTPUT_NAME

#: Inclusive token-length ranges, one optimisation profile each; the last ends at MAX_LENGTH.
SEQ_BUCKETS: tuple[tuple[int, int], ...] = ((1, 64), (65, 128), (129, MAX_LENGTH))
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_WORKSPACE_BYTES = 4 << 30
#: Bump when this module changes how engines are built; part of the cache key.
ENGINE_RECIPE_VERSION = "1"


class TensorRTUnavailableError(RuntimeError):
    """TensorRT (or a CUDA device) is needed for this and is not present."""


class EngineBuildError(RuntimeError):
    """The ONNX file did not parse, or TensorRT could not build an engine from it."""


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, or a clear error naming why it is missing."""
    if trt is None:
        raise TensorRTUnavailableError(
            f"tensorrt is not importable ({TENSORRT_IMPORT_ERROR}); install the gpu extra "
            "(`pip install .[gpu]`) on a machine with an NVIDIA driver, or pick another backend"
        )
    return trt


# --------------------------------------------------------------------------- profiles (pure)


@dataclass(frozen=True, slots=True)
class ProfileShapes:
    """min/opt/max ``(batch, seq)`` of one optimisation profile, applied to every input."""

    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]


def _check_buckets(buckets: Sequence[tuple[int, int]]) -> None:
    expected_low = 1
    for low, high in buckets:
        if low != expected_low or high < low:
            raise ValueError(f"buckets must be contiguous inclusive ranges from 1: {buckets}")
        expected_low = high + 1


def profile_shapes(
    buckets: Sequence[tuple[int, int]] = SEQ_BUCKETS,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    opt_batch_size: int | None = None,
) -> list[ProfileShapes]:
    """One profile per bucket: batch ``1..max_batch_size``, sequence ``low..high``."""
    _check_buckets(buckets)
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be at least 1")
    opt_batch = min(opt_batch_size or max(1, max_batch_size // 2), max_batch_size)
    return [
        ProfileShapes(min=(1, low), opt=(opt_batch, high), max=(max_batch_size, high))
        for low, high in buckets
    ]


def select_profile(length: int, buckets: Sequence[tuple[int, int]] = SEQ_BUCKETS) -> int:
    """Index of the bucket whose inclusive range holds a padded length of ``length`` tokens."""
    for index, (low, high) in enumerate(buckets):
        if low <= length <= high:
            return index
    raise ValueError(f"no profile covers {length} tokens (buckets {list(buckets)})")


def plan_engine_calls(
    lengths: Sequence[int],
    buckets: Sequence[tuple[int, int]] = SEQ_BUCKETS,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    call_overhead_tokens: int = DEFAULT_CALL_OVERHEAD_TOKENS,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
) -> list[tuple[int, list[int]]]:
    """``(profile index, row indices)`` per engine call, covering every row exactly once.

    Rows are grouped by :func:`models.serving.batching.plan_sub_batches` (fewest padded
    tokens plus call overhead), groups over ``max_batch_size`` are split, and each call runs on
    the profile holding its longest row (its padded length), which is always within range.
    """
    calls: list[tuple[int, list[int]]] = []
    for group in plan_sub_batches(lengths, call_overhead_tokens, max_batch_tokens):
        for start in range(0, len(group), max_batch_size):
            rows = group[start : start + max_batch_size]
            calls.append((select_profile(max(lengths[i] for i in rows), buckets), rows))
    return calls


# --------------------------------------------------------------------------- engine cache


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "unknown"


def engine_cache_path(
    model_version: str,
    *,
    gpu_name: str,
    compute_capability: tuple[int, int],
    trt_version: str,
    precision: Precision = "fp16",
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    buckets: Sequence[tuple[int, int]] = SEQ_BUCKETS,
    cache_dir: Path | None = None,
) -> Path:
    """``<cache>/engines/<model_version>/<gpu>-sm<cc>-trt<version>-<precision>-<hash>.engine``.

    Pure: every argument that makes an engine unusable elsewhere is in the name, and the build
    settings (batch limit, buckets, recipe version) are folded into a short hash.
    """
    settings = {
        "recipe": ENGINE_RECIPE_VERSION,
        "onnx_opset": ONNX_OPSET,
        "max_batch_size": max_batch_size,
        "buckets": [list(bucket) for bucket in buckets],
        "precision": precision,
        "gpu": gpu_name,
        "cc": list(compute_capability),
        "trt": trt_version,
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    major, minor = compute_capability
    name = f"{_slug(gpu_name)}-sm{major}{minor}-trt{_slug(trt_version)}-{precision}-{digest}"
    return (cache_dir or riskstream_cache_dir()) / "engines" / model_version / f"{name}.engine"


def current_device_key() -> dict[str, Any]:
    """GPU name, compute capability and TensorRT version of this machine (needs CUDA + TRT)."""
    import torch

    trt_module = require_tensorrt()
    if not torch.cuda.is_available():
        raise TensorRTUnavailableError("no CUDA device is visible (torch.cuda.is_available())")
    return {
        "gpu_name": torch.cuda.get_device_name(),
        "compute_capability": tuple(torch.cuda.get_device_capability()),
        "trt_version": trt_module.__version__,
    }


# --------------------------------------------------------------------------- builder


class EngineBuilder:
    """Parses an ONNX file into a TensorRT network and serialises an engine from it."""

    def __init__(self, *, workspace_bytes: int = DEFAULT_WORKSPACE_BYTES, verbose: bool = False):
        trt_module = require_tensorrt()
        self.trt_logger = trt_module.Logger(
            trt_module.Logger.VERBOSE if verbose else trt_module.Logger.WARNING
        )
        trt_module.init_libnvinfer_plugins(self.trt_logger, namespace="")
        self.builder = trt_module.Builder(self.trt_logger)
        self.config = self.builder.create_builder_config()
        self.config.set_memory_pool_limit(trt_module.MemoryPoolType.WORKSPACE, workspace_bytes)
        self.network: Any = None
        self.parser: Any = None
        self.profiles: list[ProfileShapes] = []

    def create_network(self, onnx_path: Path, profiles: Sequence[ProfileShapes]) -> None:
        """Parse ``onnx_path`` and add one optimisation profile per entry of ``profiles``."""
        # TensorRT 10 networks are always explicit-batch; the old EXPLICIT_BATCH flag is gone.
        self.network = self.builder.create_network(0)
        self.parser = trt.OnnxParser(self.network, self.trt_logger)
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise EngineBuildError(f"no ONNX file at {onnx_path}")
        if not self.parser.parse_from_file(str(onnx_path)):
            errors = [str(self.parser.get_error(i)) for i in range(self.parser.num_errors)]
            raise EngineBuildError(f"could not parse {onnx_path}:\n" + "\n".join(errors))

        inputs = [self.network.get_input(i) for i in range(self.network.num_inputs)]
        outputs = [self.network.get_output(i) for i in range(self.network.num_outputs)]
        input_names = sorted(tensor.name for tensor in inputs)
        if input_names != sorted(INPUT_NAMES) or [t.name for t in outputs] != [OUTPUT_NAME]:
            raise EngineBuildError(
                f"{onnx_path} has inputs {input_names} and outputs {[t.name for t in outputs]}; "
                f"expected {list(INPUT_NAMES)} -> [{OUTPUT_NAME!r}]"
            )
        for tensor in inputs + outputs:
            log.info("network %s %s %s", tensor.name, tuple(tensor.shape), tensor.dtype)

        if not profiles:
            raise EngineBuildError("at least one optimisation profile is needed")
        for shapes in profiles:
            profile = self.builder.create_optimization_profile()
            for name in INPUT_NAMES:
                profile.set_shape(name, shapes.min, shapes.opt, shapes.max)
            if self.config.add_optimization_profile(profile) < 0:
                raise EngineBuildError(f"TensorRT rejected optimisation profile {shapes}")
        self.profiles = list(profiles)

    def create_engine(
        self,
        engine_path: Path,
        precision: Precision = "fp16",
        calibrator: Any = None,
    ) -> Path:
        """Build and write the serialised engine atomically; returns ``engine_path``."""
        if self.network is None:
            raise EngineBuildError("call create_network() before create_engine()")
        if precision in ("fp16", "int8"):
            self.config.set_flag(trt.BuilderFlag.FP16)  # int8 falls back to fp16, not fp32
        if precision == "int8":
            if calibrator is None:
                raise EngineBuildError(
                    "int8 needs a calibrator (models.training.trt_build.TextCalibrator) or an "
                    "explicitly quantised ONNX with Q/DQ"
                )
            self.config.set_flag(trt.BuilderFlag.INT8)
            self.config.int8_calibrator = calibrator
            calibration = self.builder.create_optimization_profile()
            fixed = (calibrator.batch_size, calibrator.seq_len)
            for name in INPUT_NAMES:
                calibration.set_shape(name, fixed, fixed, fixed)
            self.config.set_calibration_profile(calibration)
        elif precision != "fp32":
            raise ValueError(f"unknown precision {precision!r}; use fp16, int8 or fp32")

        log.info("building %s TensorRT engine (%d profiles)", precision, len(self.profiles))
        serialized = self.builder.build_serialized_network(self.network, self.config)
        if serialized is None:
            raise EngineBuildError("build_serialized_network failed; see the TensorRT log above")
        engine_path = Path(engine_path)
        engine_path.parent.mkdir(parents=True, exist_ok=True)
        partial = engine_path.with_name(f"{engine_path.name}.{os.getpid()}.partial")
        partial.write_bytes(bytes(serialized))
        partial.replace(engine_path)  # a crashed build never leaves a half-written engine
        log.info("wrote %s (%.1f MiB)", engine_path, engine_path.stat().st_size / 2**20)
        return engine_path


def build_or_load_engine(
    onnx_path: Path,
    model_version: str,
    *,
    precision: Precision = "fp16",
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    buckets: Sequence[tuple[int, int]] = SEQ_BUCKETS,
    cache_dir: Path | None = None,
    force: bool = False,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    calibrator: Callable[[Path], Any] | None = None,
) -> Path:
    """The cached engine for this model version and machine, building it if absent.

    An INT8 build needs ``calibrator``: ``engine path -> calibrator`` (its scales are cached
    beside the engine), which :mod:`models.training.trt_build` supplies; without one, a missing
    INT8 engine is an :class:`EngineBuildError` naming that command.
    """
    engine_path = engine_cache_path(
        model_version,
        precision=precision,
        max_batch_size=max_batch_size,
        buckets=buckets,
        cache_dir=cache_dir,
        **current_device_key(),
    )
    if engine_path.is_file() and not force:
        log.info("using cached TensorRT engine %s", engine_path)
        return engine_path
    if precision == "int8" and calibrator is None:
        raise EngineBuildError(
            f"no INT8 engine at {engine_path}; INT8 engines are calibrated on training texts, "
            "built ahead of time by `python -m models.training.trt_build --precision int8`"
        )
    builder = EngineBuilder(workspace_bytes=workspace_bytes)
    builder.create_network(onnx_path, profile_shapes(buckets, max_batch_size))
    int8_calibrator = calibrator(engine_path) if precision == "int8" and calibrator else None
    return builder.create_engine(engine_path, precision, int8_calibrator)
