"""Test doubles for the stream side: a deterministic model handler and a controllable clock."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from models.serving.base import ModelHandler, PredictionResult, TextScores


class FakeModelHandler(ModelHandler[str]):
    """Scores a text by keywords; records every batch it was given."""

    def __init__(
        self,
        *,
        fail_with: Exception | None = None,
        block: threading.Event | None = None,
        version: str = "fake-1",
    ):
        self.version = version
        self.batches: list[list[str]] = []
        self.loads = 0
        self.fail_with = fail_with
        self.block = block

    @property
    def model_version(self) -> str:
        return self.version

    def load_model(self) -> str:
        self.loads += 1
        return "fake-model"

    def run_inference(
        self, batch: Sequence[str], model: str, inference_args: Mapping[str, Any] | None = None
    ) -> list[PredictionResult]:
        if self.block is not None:
            self.block.wait(5)
        self.batches.append(list(batch))
        if self.fail_with is not None:
            raise self.fail_with
        return [
            PredictionResult(
                t,
                TextScores(0.99 if "awful" in t else 0.01, 0.95 if "prize" in t else 0.0),
                self.model_version,
            )
            for t in batch
        ]


class FakeClock:
    def __init__(self, start: float = 0.0, step: float = 0.0) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
