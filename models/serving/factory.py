"""Pick an inference backend by name, importing only the one chosen."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.serving.base import ModelHandler

log = logging.getLogger(__name__)


def _torch_cpu(artefact_path: Path | None, **options: Any) -> ModelHandler:
    from models.serving.backends.torch_cpu import TorchCpuHandler

    return TorchCpuHandler(artefact_path=artefact_path, **options)


#: ONNX Runtime on CPU: sessions that can stop spinning between runs and take a thread count
#: (``OnnxCpuHandler(spin_wait=, intra_op_threads=)``).
_ORT_CPU_BACKENDS = ("onnx-cpu", "onnx-cpu-int8")


def _onnx_cpu(artefact_path: Path | None, **options: Any) -> ModelHandler:
    from models.serving.backends.onnx_cpu import OnnxCpuHandler

    return OnnxCpuHandler(precision="fp32", artefact_path=artefact_path, **options)


def _onnx_cpu_int8(artefact_path: Path | None, **options: Any) -> ModelHandler:
    from models.serving.backends.onnx_cpu import OnnxCpuHandler

    return OnnxCpuHandler(precision="int8", artefact_path=artefact_path, **options)


def _torch_cuda(artefact_path: Path | None, **options: Any) -> ModelHandler:
    from models.serving.backends.torch_cuda import TorchCudaHandler

    return TorchCudaHandler(artefact_path=artefact_path, **options)


def _tensorrt(artefact_path: Path | None, **options: Any) -> ModelHandler:
    from models.serving.backends.tensorrt import TensorRTHandler

    return TensorRTHandler(artefact_path=artefact_path, **options)


def _stub(artefact_path: Path | None, **options: Any) -> ModelHandler:
    from models.serving.backends.stub import StubHandler

    # no model, so no token bound either; it answers as the build asked for
    return StubHandler(version=artefact_path.name if artefact_path else None)


#: Backend name -> constructor. Constructors import lazily so unused engines are never loaded.
BACKENDS: dict[str, Callable[..., ModelHandler]] = {
    "torch-cpu": _torch_cpu,
    "onnx-cpu": _onnx_cpu,
    "onnx-cpu-int8": _onnx_cpu_int8,
    "torch-cuda": _torch_cuda,
    "tensorrt": _tensorrt,
    "stub": _stub,  # instant answers: measures the stream layer alone (benchmarks, dry runs)
}

#: Files an NVIDIA driver leaves on Linux (``/dev/dxg``: WSL2's GPU bridge). With none of them
#: there is no CUDA device, and ``auto`` says so without importing torch (~300 MiB of RSS).
_NVIDIA_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/dxg")


def _no_nvidia_driver() -> str | None:
    """Why there can be no CUDA device, decided without importing torch; None if there may be."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return "CUDA_VISIBLE_DEVICES hides every device"
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    if sys.platform == "linux" and not any(os.path.exists(f) for f in _NVIDIA_DRIVER_FILES):
        return "no NVIDIA driver (none of " + ", ".join(_NVIDIA_DRIVER_FILES) + ")"
    return None


def cuda_status() -> tuple[bool, str]:
    """Whether torch sees a CUDA device, and a phrase saying so for the log.

    torch is imported only where a device may exist (an NVIDIA driver is present)."""
    reason = _no_nvidia_driver()
    if reason is not None:
        return False, f"no CUDA device ({reason})"
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


def create_handler(
    backend: str = "auto",
    model_version: str | None = None,
    *,
    max_batch_tokens: int | None = None,
    torch_compile: bool = False,
    require_cuda: bool = False,
    chinese_model_version: str | None = None,
    spin_wait: bool = True,
    intra_op_threads: int | None = None,
) -> ModelHandler:
    """A ready-to-load handler for ``backend`` serving ``model_version`` (default: the current
    student; any other build in the model cache, e.g. a baseline, for comparisons).

    ``max_batch_tokens`` bounds rows x padded length of every forward pass, and so a worker's
    activation memory, whatever the texts' lengths (unset: the backend's default, 2,048 on CPU,
    16,384 on a GPU); it must be at least the model's 256-token ``max_length``. The stub backend
    ignores it. ``torch_compile`` and ``require_cuda`` apply to torch-cuda: compile the network,
    and fail instead of falling back to the CPU. ``chinese_model_version``: a second build, on
    the same backend, that scores Chinese text (a :class:`~models.serving.router.RoutedHandler`
    in front of both); unset or equal to ``model_version``: one build scores everything.
    ``intra_op_threads``: threads per ONNX Runtime session on CPU (unset: ORT's choice, one
    per core); 1 runs every operator on the calling thread, with no thread pool, for hosts
    running one worker per core. ``load_model()`` is the caller's job."""
    from models.serving import artefacts

    if chinese_model_version and chinese_model_version != model_version and backend != "stub":
        from models.serving.router import RoutedHandler

        def single(version: str | None) -> ModelHandler:
            return create_handler(
                backend,
                version,
                max_batch_tokens=max_batch_tokens,
                torch_compile=torch_compile,
                require_cuda=require_cuda,
                spin_wait=False,  # two sessions share the cores: an idle one must not spin
                intra_op_threads=intra_op_threads,
            )

        return RoutedHandler(single(model_version), single(chinese_model_version))
    name, reason = resolve_backend(backend)
    path = artefacts.artefact_dir(model_version) if model_version else None
    options: dict[str, Any] = {}
    if max_batch_tokens is not None:
        options["max_batch_tokens"] = max_batch_tokens
    if name == "torch-cuda":
        options.update(compile=torch_compile, require_cuda=require_cuda)
    if name in _ORT_CPU_BACKENDS:
        if not spin_wait:
            options["spin_wait"] = False
        if intra_op_threads is not None:
            options["intra_op_threads"] = intra_op_threads
    handler = BACKENDS[name](path, **options)
    if path is not None and name != "stub":
        from models.serving.adapted import CalibratedHandler, calibration_of

        calibration = calibration_of(path)  # an adapted build serves calibrated scores
        if calibration:
            handler = CalibratedHandler(handler, calibration)
    log.info("model backend %s (%s), model_version=%s", name, reason, handler.model_version)
    return handler
