"""A stand-in model that answers at once: for measuring the stream layer alone.

On a GPU host the forward pass costs ~25 µs a text, so the worker's own cost per event sets the
throughput; this backend lets benchmarks and dry runs measure that cost on any machine. Scores
are deterministic (a hash of the text, nudged by a few keywords) so outputs stay comparable
between runs. Never a default: it must be asked for by name (``RISKSTREAM_BACKEND=stub``).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from models.serving.base import ModelHandler, PredictionResult, TextScores

_NEGATIVE = ("terrible", "awful", "broke", "refund", "worst", "差", "失望")
_SCAM = ("prize", "wire", "gift card", "whatsapp", "telegram", "微信", "先付款")


def stub_scores(text: str) -> TextScores:
    lowered = text.lower()
    base = (zlib.crc32(text.encode("utf-8", "surrogatepass")) % 1000) / 4000.0  # 0 .. 0.25
    negative = 0.9 + base / 10 if any(w in lowered for w in _NEGATIVE) else base
    scam = 0.95 if any(w in lowered for w in _SCAM) else base / 5
    return TextScores(sentiment_negative=negative, scam_risk=scam)


class StubHandler(ModelHandler[str]):
    """Keyword-and-hash scores, no weights, no tokenizer. ``version``: the build it claims to
    be (the factory passes the requested build's name, so two "builds" can run side by side,
    e.g. a champion and a shadowed challenger); default ``stub-1``."""

    backend = "stub"

    def __init__(self, version: str | None = None) -> None:
        self._version = version or "stub-1"

    @property
    def model_version(self) -> str:
        return self._version

    def load_model(self) -> str:
        return "stub"

    def run_inference(
        self,
        batch: Sequence[str],
        model: str,
        inference_args: Mapping[str, Any] | None = None,
    ) -> list[PredictionResult]:
        return [PredictionResult(t, stub_scores(t), self.model_version) for t in batch]

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"max_batch_size": 256, "max_batch_duration_secs": 0.005}
