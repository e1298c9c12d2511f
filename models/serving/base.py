"""The one narrow interface every inference backend implements (after Beam's ModelHandler).

The stream side never imports torch, onnxruntime or tensorrt: it holds a ``ModelHandler``,
calls ``load_model()`` once (off the event loop) and ``run_inference()`` per micro-batch.
Backends swap by configuration and share one contract test.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

ModelT = TypeVar("ModelT")

#: Names of the heads one forward pass yields, in the order backends return them.
HEAD_NAMES: tuple[str, ...] = ("sentiment_negative", "scam_risk")


@dataclass(frozen=True, slots=True)
class TextScores:
    """Every head's output for one text.

    ``sentiment_negative`` is P(negative) from the sentiment head, in [0, 1];
    ``sentiment_polarity`` = 1 - 2 * P(negative), in [-1, 1] (positive is good);
    ``scam_risk`` is P(scam/spam) from the text-risk head, in [0, 1].
    """

    sentiment_negative: float
    scam_risk: float

    @property
    def sentiment_polarity(self) -> float:
        return 1.0 - 2.0 * self.sentiment_negative

    def as_dict(self) -> dict[str, float]:
        return {
            "sentiment_negative": round(self.sentiment_negative, 6),
            "sentiment_polarity": round(self.sentiment_polarity, 6),
            "scam_risk": round(self.scam_risk, 6),
        }


@dataclass(frozen=True, slots=True)
class PredictionResult:
    """A result that carries its input, so scores map back to event keys and offsets."""

    example: str
    inference: TextScores
    model_id: str


#: Batch limits of the CPU backends: no wait after a batch's first text. A batch is what
#: queued while the model ran the one before, so it grows with the load by itself, and an
#: idle model is never kept idle. With 20 ms the p99 at half load was 237 ms and with none
#: 138 ms, at the same saturated rate (93.4 vs 92.6 events/s; ``docs/benchmarks.md``).
CPU_BATCH_LIMITS: dict[str, Any] = {"max_batch_size": 64, "max_batch_duration_secs": 0.0}


class ModelHandler(abc.ABC, Generic[ModelT]):
    """Loads a model and runs it on a batch of texts; results come back in input order."""

    #: The backend as ``RISKSTREAM_BACKEND`` names it (``onnx-cpu``, ``tensorrt``...): what
    #: ``riskstream_model_info`` reports, never a class name.
    backend: ClassVar[str] = "custom"

    def routes(self) -> dict[str, ModelHandler[Any]]:
        """Route -> the handler that scores it: one route unless a router splits the text."""
        return {"all": self}

    @abc.abstractmethod
    def load_model(self) -> ModelT:
        """Load (and warm up) the model. Called once per worker, off the event loop."""

    @abc.abstractmethod
    def run_inference(
        self,
        batch: Sequence[str],
        model: ModelT,
        inference_args: Mapping[str, Any] | None = None,
    ) -> list[PredictionResult]:
        """Tokenise and score ``batch``; one result per text, in input order."""

    @property
    @abc.abstractmethod
    def model_version(self) -> str:
        """Stamped on every scored event so outputs can be traced to the weights."""

    def batch_elements_kwargs(self) -> dict[str, Any]:
        """The backend owns its batch limits (an engine profile may fix them)."""
        return {"max_batch_size": 64, "max_batch_duration_secs": 0.02}

    def get_metrics_namespace(self) -> str:
        return f"riskstream.model.{type(self).__name__}"

    def get_num_bytes(self, batch: Sequence[str]) -> int:
        return sum(len(text.encode("utf-8")) for text in batch)
