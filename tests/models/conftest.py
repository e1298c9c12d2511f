"""Fixtures shared by the model tests: one build, one loaded model per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.serving.backends.torch_cpu import LoadedTorchModel, TorchCpuHandler
from models.training.build import ensure_built


@pytest.fixture(scope="session")
def artefact_path() -> Path:
    """The current model version with its ONNX builds, made once if absent (CI builds it
    before the tests)."""
    return ensure_built(progress=False)


@pytest.fixture(scope="session")
def handler(artefact_path: Path) -> TorchCpuHandler:
    return TorchCpuHandler(artefact_path=artefact_path)


@pytest.fixture(scope="session")
def loaded(handler: TorchCpuHandler) -> LoadedTorchModel:
    return handler.load_model()
