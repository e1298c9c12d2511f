"""Pick an inference backend by name, importing only the one chosen."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path

from models.base import ModelHandler

log = logging.getLogger(__name__)


def _torch_cpu(artefact_path: Path | None) -> ModelHandler:
    from models.backends.torch_cpu import TorchCpuHandler

    return TorchCpuHandler(artefact_path=artefact_path)


def _onnx_cpu(artefact_path: Path | None) -> ModelHandler:
    from models.backends.onnx_cpu import OnnxCpuHandler

    return OnnxCpuHandler(precision="fp32", artefact_path=artefact_path)


def _onnx_cpu_int8(artefact_path: Path | None) -> ModelHandler:
    from models.backends.onnx_cpu import OnnxCpuHandler

    return OnnxCpuHandler(precision="int8", artefact_path=artefact_path)


def _torch_cuda(artefact_path: Path | None) -> ModelHandler:
    from models.backends.torch_cuda import TorchCudaHandler

    return TorchCudaHandler(artefact_path=artefact_path)


def _tensorrt(artefact_path: Path | None) -> ModelHandler:
    from models.backends.tensorrt import TensorRTHandler

    return TensorRTHandler(artefact_path=artefact_path)


def _stub(artefact_path: Path | None) -> ModelHandler:
    from models.backends.stub import StubHandler

    return StubHandler()


#: Backend name -> constructor. Constructors import lazily so unused engines are never loaded.
BACKENDS: dict[str, Callable[[Path | None], ModelHandler]] = {
    "torch-cpu": _torch_cpu,
    "onnx-cpu": _onnx_cpu,
    "onnx-cpu-int8": _onnx_cpu_int8,
    "torch-cuda": _torch_cuda,
    "tensorrt": _tensorrt,
    "stub": _stub,  # instant answers: measures the stream layer alone (benchmarks, dry runs)
}


def cuda_status() -> tuple[bool, str]:
    """Whether torch sees a CUDA device, and a phrase saying so for the log."""
    import torch

    if torch.cuda.is_available():
        return True, f"CUDA device {torch.cuda.get_device_name()}"
    return False, f"no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda})"


def tensorrt_status() -> tuple[bool, str]:
    """Whether ``tensorrt`` imports (a wheel whose native libs fail to load counts as no)."""
    try:
        trt = importlib.import_module("tensorrt")
    except (ImportError, OSError) as exc:
        return False, f"tensorrt not importable ({type(exc).__name__}: {exc})"
    return True, f"tensorrt {getattr(trt, '__version__', '?')}"


def available_backends() -> tuple[str, ...]:
    return ("auto", *BACKENDS)


def resolve_backend(backend: str) -> tuple[str, str]:
    """``(name, reason)`` for a requested backend; ``auto`` picks the best one present.

    ``auto`` prefers tensorrt (importable and a CUDA device), then torch-cuda (a CUDA device),
    then onnx-cpu (ONNX Runtime fp32: the torch model's exact scores, 1.56x its speed on
    2 cores; see docs/model-card.md).
    """
    if backend == "auto":
        has_cuda, cuda_reason = cuda_status()
        if not has_cuda:
            return "onnx-cpu", f"auto: onnx-cpu because {cuda_reason}"
        has_trt, trt_reason = tensorrt_status()
        if has_trt:
            return "tensorrt", f"auto: tensorrt because {trt_reason} and {cuda_reason}"
        return "torch-cuda", f"auto: torch-cuda because {cuda_reason} but {trt_reason}"
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown model backend {backend!r}; available: {', '.join(available_backends())}"
        )
    return backend, "requested explicitly"


def create_handler(backend: str = "auto", model_version: str | None = None) -> ModelHandler:
    """A ready-to-load handler for ``backend`` serving ``model_version`` (default: the current
    student; any other build in the model cache, e.g. a baseline, for comparisons).
    ``load_model()`` is the caller's job."""
    from models import artefacts

    name, reason = resolve_backend(backend)
    path = artefacts.artefact_dir(model_version) if model_version else None
    handler = BACKENDS[name](path)
    log.info("model backend %s (%s), model_version=%s", name, reason, handler.model_version)
    return handler
