"""The reference backend: eager PyTorch on CPU.

Tokenisation, length-bucketed sub-batches bounded by ``max_batch_tokens`` and the scatter back
to input order are :mod:`models.serving.batching`'s, shared with every backend; only the
forward pass is torch here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.serving import artefacts
from models.serving.base import CPU_BATCH_LIMITS, ModelHandler, PredictionResult
from models.serving.batching import (
    DEFAULT_CALL_OVERHEAD_TOKENS,
    DEFAULT_CPU_MAX_BATCH_TOKENS,
    check_max_batch_tokens,
    plan_sub_batches,
    score_in_sub_batches,
)
from models.serving.encoder import EncoderWithHeads, load_network
from models.serving.tokenizer import MAX_LENGTH, served_tokenizer

__all__ = [
    "LoadedTorchModel",
    "TorchCpuHandler",
    "TorchInferenceFn",
    "default_torch_inference_fn",
]

log = logging.getLogger(__name__)

#: ``(model, {"input_ids", "attention_mask"}) -> probabilities (rows, len(HEAD_NAMES))``.
TorchInferenceFn = Callable[[EncoderWithHeads, Mapping[str, torch.Tensor]], torch.Tensor]


def default_torch_inference_fn(
    model: EncoderWithHeads, batch: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """One forward pass, no autograd bookkeeping."""
    with torch.inference_mode():
        return model(**batch)


@dataclass(frozen=True, slots=True)
class LoadedTorchModel:
    """What ``load_model`` hands the stream: opaque to it, passed back to ``run_inference``."""

    network: EncoderWithHeads
    tokenizer: Any
    model_version: str


class TorchCpuHandler(ModelHandler[LoadedTorchModel]):
    """Encoder + heads from the built artefact, run eagerly on CPU."""

    backend = "torch-cpu"

    def __init__(
        self,
        *,
        artefact_path: Path | None = None,
        inference_fn: TorchInferenceFn = default_torch_inference_fn,
        max_length: int = MAX_LENGTH,
        call_overhead_tokens: int = DEFAULT_CALL_OVERHEAD_TOKENS,
        max_batch_tokens: int = DEFAULT_CPU_MAX_BATCH_TOKENS,
    ) -> None:
        self._path = artefact_path or artefacts.artefact_dir()
        self._inference_fn = inference_fn
        self._max_length = max_length
        self._call_overhead_tokens = call_overhead_tokens
        self._max_batch_tokens = check_max_batch_tokens(max_batch_tokens, max_length)
        #: (width, rows) multiples for padded sub-batches; 1 = exact shapes (best on CPU).
        self._shape_multiples = (1, 1)

    @property
    def model_version(self) -> str:
        """The artefact folder is named by its version (checked against the card on load)."""
        return self._path.name

    @property
    def max_batch_tokens(self) -> int:
        return self._max_batch_tokens

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return dict(CPU_BATCH_LIMITS)

    def load_model(self) -> LoadedTorchModel:
        """Encoder, tokenizer and trained heads; raises ``ModelNotBuiltError`` if not built."""
        artefacts.check_card(self._path)
        network = load_network(self._path)
        model = LoadedTorchModel(network, served_tokenizer(self._path), self.model_version)
        self.run_inference(["warm-up"], model)
        log.info("loaded %s from %s", self.model_version, self._path)
        return model

    def run_inference(
        self,
        batch: Sequence[str],
        model: LoadedTorchModel,
        inference_args: Mapping[str, Any] | None = None,
    ) -> list[PredictionResult]:
        """Score ``batch`` in length buckets; results in input order.

        ``inference_args={"bucketing": False}`` runs one padded call, for comparisons (the
        ``max_batch_tokens`` bound does not apply to it).
        """
        return score_in_sub_batches(
            batch,
            model.tokenizer,
            model.model_version,
            self._max_length,
            lambda token_ids: self._sub_batches(token_ids, inference_args or {}),
            lambda arrays: self._inference_fn(
                model.network, {name: torch.from_numpy(array) for name, array in arrays.items()}
            ).numpy(),
            self._shape_multiples,
        )

    def _sub_batches(
        self, token_ids: Sequence[Sequence[int]], inference_args: Mapping[str, Any]
    ) -> list[list[int]]:
        if not inference_args.get("bucketing", True):
            return [list(range(len(token_ids)))]
        return plan_sub_batches(
            [len(ids) for ids in token_ids],
            int(inference_args.get("call_overhead_tokens", self._call_overhead_tokens)),
            check_max_batch_tokens(
                int(inference_args.get("max_batch_tokens", self._max_batch_tokens)),
                self._max_length,
            ),
        )
