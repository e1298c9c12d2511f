"""Test doubles for the stream side: a deterministic model handler and a controllable clock."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from models.serving.base import ModelHandler, PredictionResult, TextScores, rows_callback


class FakeModelHandler(ModelHandler[str]):
    """Scores a text by keywords; records every batch it was given. With ``rows_gate`` it
    streams rows (``streams_rows``): each text's result goes to ``ON_ROWS`` alone, in input
    order, and after the first it waits for the gate."""

    def __init__(
        self,
        *,
        fail_with: Exception | None = None,
        block: threading.Event | None = None,
        version: str = "fake-1",
        rows_gate: threading.Event | None = None,
    ):
        self.rows_gate = rows_gate
        self.version = version
        self.batches: list[list[str]] = []
        self.loads = 0
        self.fail_with = fail_with
        self.block = block

    @property
    def model_version(self) -> str:
        return self.version

    @property  # type: ignore[override]
    def streams_rows(self) -> bool:
        return self.rows_gate is not None

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
        results = [
            PredictionResult(
                t,
                TextScores(0.99 if "awful" in t else 0.01, 0.95 if "prize" in t else 0.0),
                self.model_version,
            )
            for t in batch
        ]
        on_rows = rows_callback(inference_args)
        if on_rows is not None and self.rows_gate is not None:
            for i, result in enumerate(results):
                on_rows([i], [result])
                if i == 0:
                    self.rows_gate.wait(5)
        return results


class FakeClock:
    def __init__(self, start: float = 0.0, step: float = 0.0) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
