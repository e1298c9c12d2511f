"""Pick an inference backend by name, importing only the one chosen."""

from __future__ import annotations

import logging
from collections.abc import Callable

from models.base import ModelHandler

log = logging.getLogger(__name__)


def _torch_cpu() -> ModelHandler:
    from models.backends.torch_cpu import TorchCpuHandler

    return TorchCpuHandler()


#: Backend name -> constructor. Constructors import lazily so unused engines are never loaded.
BACKENDS: dict[str, Callable[[], ModelHandler]] = {"torch-cpu": _torch_cpu}


def available_backends() -> tuple[str, ...]:
    return ("auto", *BACKENDS)


def resolve_backend(backend: str) -> tuple[str, str]:
    """``(name, reason)`` for a requested backend; ``auto`` picks the best one present."""
    if backend == "auto":
        return "torch-cpu", "auto: torch-cpu is the only backend this build provides"
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown model backend {backend!r}; available: {', '.join(available_backends())}"
        )
    return backend, "requested explicitly"


def create_handler(backend: str = "auto") -> ModelHandler:
    """A ready-to-load handler for ``backend`` (``load_model()`` is the caller's job)."""
    name, reason = resolve_backend(backend)
    handler = BACKENDS[name]()
    log.info("model backend %s (%s), model_version=%s", name, reason, handler.model_version)
    return handler
