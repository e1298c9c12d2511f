"""The worker's models: the text backend chosen by configuration, behind the shared
micro-batcher, and the transaction fraud booster. Nothing here loads at import or construction:
``load_models`` in ``stream/worker/app.py`` loads both in a startup task."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.serving.base import ModelHandler
from models.serving.fraud import VECTOR_NAMES, FraudModel, model_inputs, vectors_of
from stream.config import Settings
from stream.worker import metrics
from stream.worker.batcher import MicroBatcher


def make_batcher(settings: Settings, handler: ModelHandler[Any]) -> MicroBatcher:
    """The shared micro-batcher, with the backend's own limits unless settings override them."""
    limits = handler.batch_elements_kwargs()
    return MicroBatcher(
        handler,
        max_batch_size=settings.max_batch_size or limits["max_batch_size"],
        max_wait_s=(
            settings.max_batch_wait_ms / 1000
            if settings.max_batch_wait_ms is not None
            else limits["max_batch_duration_secs"]
        ),
        on_batch=metrics.observe_batch,
        inference_timeout_s=settings.inference_timeout_s,
    )


class FraudScorer:
    """Thin shell over the booster: a transaction's feature vector -> (p, reasons, version).

    One row costs about 0.1 ms (predict + TreeSHAP contributions), so it runs inline. Loads
    the booster when constructed: construct it off the event loop."""

    def __init__(self) -> None:
        self._model = FraudModel.load()
        self._width = len(VECTOR_NAMES)

    @property
    def version(self) -> str:
        return self._model.version

    def __call__(self, txn: dict) -> tuple[float, list, str] | None:
        vector = txn.get("features")
        if not vector or len(vector) != self._width:
            return None  # no upstream vector: rules alone score it
        rows = model_inputs(vectors_of([vector]), np.array([txn["amount"]], dtype=np.float64))
        return float(self._model.predict(rows)[0]), self._model.explain(rows)[0], self.version


def model_precision(handler: ModelHandler[Any]) -> str:
    """fp32, int8, fp16...: what the backend computes in (a label of ``riskstream_model_info``)."""
    for name in ("precision", "_precision"):
        value = getattr(handler, name, None)
        if isinstance(value, str):
            return value
    dtype = getattr(handler, "_dtype", None)
    if dtype is not None:
        return {"torch.float16": "fp16", "torch.bfloat16": "bf16"}.get(str(dtype), "fp32")
    return "fp32"


def show_model_info(gauge: Any, handler: ModelHandler[Any]) -> None:
    """``riskstream_model_info`` (or the shadow's): one series per route the handler serves
    (``english``/``multilingual`` behind the language router, else ``all``), each naming its
    backend as ``RISKSTREAM_BACKEND`` spells it, its build and precision."""
    gauge.clear()
    for route, served in handler.routes().items():
        gauge.labels(route, served.backend, served.model_version, model_precision(served)).set(1)
