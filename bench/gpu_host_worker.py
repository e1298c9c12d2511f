"""``python -m stream worker`` with torch-cuda built as the GPU-host benchmark needs it.

The worker builds its backend through ``models.factory``, whose torch-cuda entry takes the
handler's defaults: fp16, no ``torch.compile``, and a silent CPU fallback when CUDA is missing.
No setting exposes ``compile`` or ``require_cuda`` yet, so ``bench/gpu_host.py`` starts its
workers through this file, which swaps that one factory entry before the worker starts:

    RISKSTREAM_TEST_TORCH_COMPILE=1|0   torch.compile the network (default 1)
    RISKSTREAM_TEST_REQUIRE_CUDA=1|0    fail rather than fall back to CPU (default 1)

(``RISKSTREAM_TEST_*`` variables are bench-only and never read by the product.) Everything else
is the product's worker. Drop this file once the factory has such settings.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def patch_torch_cuda_factory() -> None:
    """Point ``models.factory``'s torch-cuda entry at a handler with compile/require_cuda set."""
    from models import factory
    from models.backends.torch_cuda import TorchCudaHandler

    compile_network = _flag("RISKSTREAM_TEST_TORCH_COMPILE", True)
    require_cuda = _flag("RISKSTREAM_TEST_REQUIRE_CUDA", True)

    def torch_cuda(artefact_path: Path | None) -> TorchCudaHandler:
        return TorchCudaHandler(
            artefact_path=artefact_path, compile=compile_network, require_cuda=require_cuda
        )

    factory.BACKENDS["torch-cuda"] = torch_cuda


def main() -> None:
    patch_torch_cuda_factory()
    from stream.cli import main as cli_main

    cli_main(["worker"], prog_name="stream")


if __name__ == "__main__":
    main()
