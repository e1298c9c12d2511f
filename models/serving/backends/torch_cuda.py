"""The torch-cpu model on a CUDA device in fp16, with an explicit, logged CPU fallback.

Everything but placement is torch-cpu's: the same artefact check, ``EncoderWithHeads``,
tokenisation, length-bucketed sub-batches (``plan_sub_batches``) and scatter back to input
order, inherited from :class:`~models.serving.backends.torch_cpu.TorchCpuHandler`. Only the
network's device and dtype, the optional ``torch.compile`` and the inference function (which
moves each sub-batch to the network's device and the scores back) differ.

Like Beam's ``PytorchModelHandlerTensor``, a missing GPU is not silent: ``load_model`` logs a
warning and runs on CPU in fp32, or raises :class:`CudaUnavailableError` when
``require_cuda=True``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from models.serving.backends.torch_cpu import LoadedTorchModel, TorchCpuHandler, TorchInferenceFn
from models.serving.batching import DEFAULT_MAX_BATCH_TOKENS
from models.serving.encoder import EncoderWithHeads
from models.serving.tokenizer import MAX_LENGTH

__all__ = [
    "CudaUnavailableError",
    "LoadedTorchCudaModel",
    "TorchCudaHandler",
    "default_torch_cuda_inference_fn",
]

log = logging.getLogger(__name__)

#: Per-call cost in padded-token equivalents on a GPU, where a forward pass is launch-bound
#: for small batches. An estimate (not yet measured): tune on the target GPU.
DEFAULT_CUDA_CALL_OVERHEAD_TOKENS = 2048
#: Padded sub-batches are rounded up to these (width, rows) multiples. Eager fp16 on an H100
#: paid ~100 ms for each new shape (p50 111 ms vs 3.9 ms forward at batch 64, bench/gpu.py),
#: so a bounded set of shapes matters more than the few padded tokens it adds.
DEFAULT_CUDA_SHAPE_MULTIPLES = (16, 8)


class CudaUnavailableError(RuntimeError):
    """``require_cuda=True`` and no CUDA device is visible."""


@dataclass(frozen=True, slots=True)
class LoadedTorchCudaModel(LoadedTorchModel):
    """A loaded torch model plus where it actually runs (``"cuda"`` or the ``"cpu"`` fallback)."""

    device: str = "cpu"
    dtype: torch.dtype = torch.float32


def _device_of(network: torch.nn.Module) -> torch.device:
    return next(network.parameters()).device


def default_torch_cuda_inference_fn(
    model: EncoderWithHeads, batch: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """Move the sub-batch to the network's device, run it, return float32 scores on CPU."""
    device = _device_of(model)
    with torch.inference_mode():
        inputs = {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}
        return model(**inputs).float().cpu()


class TorchCudaHandler(TorchCpuHandler):
    """Encoder + heads on ``cuda`` in fp16 (by default), falling back to CPU fp32 with a warning."""

    backend = "torch-cuda"

    def __init__(
        self,
        *,
        artefact_path: Path | None = None,
        inference_fn: TorchInferenceFn = default_torch_cuda_inference_fn,
        device: str = "cuda",
        dtype: torch.dtype = torch.float16,
        compile: bool = False,
        require_cuda: bool = False,
        max_length: int = MAX_LENGTH,
        call_overhead_tokens: int = DEFAULT_CUDA_CALL_OVERHEAD_TOKENS,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ) -> None:
        super().__init__(
            artefact_path=artefact_path,
            inference_fn=inference_fn,
            max_length=max_length,
            call_overhead_tokens=call_overhead_tokens,
            max_batch_tokens=max_batch_tokens,
        )
        self._shape_multiples = DEFAULT_CUDA_SHAPE_MULTIPLES
        self._device = device
        self._dtype = dtype
        self._compile = compile
        self._require_cuda = require_cuda

    def load_model(self) -> LoadedTorchCudaModel:
        """Load on CPU (torch-cpu's checks), then move to CUDA in ``dtype``, or fall back."""
        if torch.cuda.is_available():
            device, dtype = self._device, self._dtype
        elif self._require_cuda:
            raise CudaUnavailableError(
                "torch-cuda was asked for with require_cuda=True but torch.cuda.is_available() "
                f"is False (torch {torch.__version__}, built for CUDA {torch.version.cuda})"
            )
        else:
            device, dtype = "cpu", torch.float32
            log.warning(
                "torch-cuda: CUDA is not available (torch %s, built for CUDA %s); "
                "falling back to CPU in fp32, which is much slower",
                torch.__version__,
                torch.version.cuda,
            )
        base = super().load_model()  # card check, encoder + heads, CPU warm-up
        network = base.network.to(device=device, dtype=dtype)
        if self._compile:
            network = torch.compile(network, dynamic=True)
        model = LoadedTorchCudaModel(
            network, base.tokenizer, base.model_version, device=str(device), dtype=dtype
        )
        self.run_inference(["warm-up"], model)
        log.info(
            "torch-cuda: %s on %s in %s%s",
            model.model_version,
            device,
            str(dtype).removeprefix("torch."),
            " (torch.compile)" if self._compile else "",
        )
        return model
