"""Import rules: serving never imports training; the ONNX path never imports torch; the worker
never imports training, pandas, pyarrow, matplotlib or scikit-learn.

Statically, with import-linter's contracts (``[tool.importlinter]`` in pyproject.toml, imports
inside functions included); and at run time, in fresh interpreters: importing a serving module
loads no heavy library and reads no file, and an onnx-cpu handler loads and scores a batch
without torch, transformers or pandas ever entering ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Never in a worker serving onnx-cpu (the worker image does not even install them).
TRAINING_LIBRARIES = ("torch", "transformers", "pandas", "pyarrow", "matplotlib", "sklearn")
#: Loaded by ``load_model()`` or on first use, never by an import.
MODEL_LIBRARIES = ("onnxruntime", "tokenizers", "lightgbm", "tensorrt", "safetensors")

#: Serving modules that never import torch, even when it is installed.
TORCH_FREE = (
    "models.serving",
    "models.serving.base",
    "models.serving.artefacts",
    "models.serving.tokenizer",
    "models.serving.batching",
    "models.serving.factory",
    "models.serving.fraud",
    "models.serving.backends",
    "models.serving.backends.onnx_cpu",
    "models.serving.backends.stub",
)
#: Serving modules of the torch and TensorRT backends: torch is theirs to import, training
#: libraries are not.
TORCH_SERVING = (
    "models.serving.encoder",
    "models.serving.trt_engine",
    "models.serving.backends.torch_cpu",
    "models.serving.backends.torch_cuda",
    "models.serving.backends.tensorrt",
)


def run_python(code: str, env: dict[str, str] | None = None) -> Any:
    """Run ``code`` in a fresh interpreter at the repo root (with ``env`` instead of this
    process's environment, if given); it prints one JSON value last."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_linter_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        pytest.fail("lint-imports is missing: install the test extra (import-linter)")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


# Records every file opened by Python code (builtins.open, io.open, Path.open and what uses
# them) while ``MODULE`` is imported: an import must not read a model, a card or a tokenizer.
_IMPORT_PROBE = """
import builtins, io, json, pathlib, sys
import numpy  # a base dependency; its own start-up is not the module's I/O
opened = []
real_open = io.open
def recording_open(file, *args, **kwargs):
    opened.append(str(file))
    return real_open(file, *args, **kwargs)
builtins.open = io.open = recording_open
real_path_open = pathlib.Path.open
def recording_path_open(self, *args, **kwargs):
    opened.append(str(self))
    return real_path_open(self, *args, **kwargs)
pathlib.Path.open = recording_path_open
import importlib
importlib.import_module(MODULE)
builtins.open = io.open = real_open
pathlib.Path.open = real_path_open
print(json.dumps({
    "opened": opened,
    "loaded": sorted(
        name for name in sys.modules
        if name.split(".")[0] in WATCHED or name.startswith("models.training")
    ),
}))
"""


def _import_probe(module: str) -> dict:
    watched = sorted({*TRAINING_LIBRARIES, *MODEL_LIBRARIES})
    code = f"MODULE = {module!r}\nWATCHED = {watched!r}\n" + _IMPORT_PROBE
    return run_python(code)


@pytest.mark.parametrize("module", TORCH_FREE)
def test_torch_free_serving_module_imports_nothing_heavy_and_reads_no_file(module: str) -> None:
    probe = _import_probe(module)
    assert probe["loaded"] == [], f"importing {module} loaded {probe['loaded']}"
    assert probe["opened"] == [], f"importing {module} opened {probe['opened']}"


@pytest.mark.parametrize("module", TORCH_SERVING)
def test_torch_serving_module_imports_no_training_library_and_reads_no_model(module: str) -> None:
    probe = _import_probe(module)
    allowed = {"torch", "safetensors", "tensorrt"}  # tensorrt: tried at import, if installed
    unexpected = [name for name in probe["loaded"] if name.split(".")[0] not in allowed]
    assert unexpected == [], f"importing {module} loaded {unexpected}"
    models_read = [p for p in probe["opened"] if p.endswith((".onnx", ".safetensors", ".engine"))]
    assert models_read == [], f"importing {module} read {models_read}"


@pytest.mark.usefixtures("built_model")
def test_onnx_cpu_loads_and_scores_without_torch_transformers_or_pandas() -> None:
    """The worker's default CPU path, end to end in a fresh interpreter."""
    code = f"""
import json, sys
from models.serving.factory import create_handler
handler = create_handler("onnx-cpu", max_batch_tokens=512)
model = handler.load_model()
texts = ["Great taste, arrived fresh.", "WIN a FREE prize, text 8000 now", "x " * 3000]
results = handler.run_inference(texts, model)
print(json.dumps({{
    "examples": [r.example for r in results],
    "scores": [r.inference.as_dict() for r in results],
    "loaded": sorted(n for n in sys.modules if n.split(".")[0] in {list(TRAINING_LIBRARIES)!r}),
    "training": sorted(n for n in sys.modules if n.startswith("models.training")),
}}))
"""
    probe = run_python(code)
    assert len(probe["examples"]) == 3 and probe["examples"][0].startswith("Great")
    assert all(0.0 <= s["scam_risk"] <= 1.0 for s in probe["scores"])
    assert probe["scores"][1]["scam_risk"] > probe["scores"][0]["scam_risk"]
    assert probe["loaded"] == [], f"the onnx-cpu path imported {probe['loaded']}"
    assert probe["training"] == []


def test_auto_without_an_nvidia_driver_decides_without_torch() -> None:
    from models.serving.factory import _NVIDIA_DRIVER_FILES

    if sys.platform != "linux" or any(Path(f).exists() for f in _NVIDIA_DRIVER_FILES):
        pytest.skip("an NVIDIA driver is present: auto rightly asks torch about CUDA here")
    probe = run_python(
        "import json, sys\n"
        "from models.serving.factory import resolve_backend\n"
        "name, reason = resolve_backend('auto')\n"
        "print(json.dumps({'name': name, 'reason': reason, 'torch': 'torch' in sys.modules}))"
    )
    assert probe["name"] == "onnx-cpu" and "no CUDA device" in probe["reason"]
    assert probe["torch"] is False
