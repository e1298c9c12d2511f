"""Backend selection and the ``python -m models`` CLI."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from models.__main__ import cli
from models.serving.backends.onnx_cpu import OnnxCpuHandler
from models.serving.backends.torch_cpu import TorchCpuHandler
from models.serving.factory import available_backends, create_handler


def test_auto_picks_onnx_cpu_without_a_gpu_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="models.serving.factory"):
        handler = create_handler()
    assert isinstance(handler, OnnxCpuHandler)
    assert "onnx-cpu" in caplog.text
    assert "auto" in caplog.text


def test_named_backend_is_honoured() -> None:
    assert isinstance(create_handler("torch-cpu"), TorchCpuHandler)


def test_a_thread_count_reaches_the_onnx_sessions_and_scores_stay_the_same(
    artefact_path: Path,
) -> None:
    """``RISKSTREAM_MODEL_THREADS=1``: one thread per session (no ORT thread pool), for hosts
    running one worker per core; the scores do not depend on it."""
    texts = ["terrible, it broke in a day", "lovely, works great", "send me your card number"]
    one, default = create_handler("onnx-cpu", intra_op_threads=1), create_handler("onnx-cpu")
    scores = []
    for handler in (one, default):
        model = handler.load_model()
        scores.append([r.inference.as_dict() for r in handler.run_inference(texts, model)])
        threads = model.session.get_session_options().intra_op_num_threads
        assert threads == (1 if handler is one else 0), threads
    for a, b in zip(*scores, strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_unknown_backend_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match="torch-cpu") as caught:
        create_handler("tensorrt-h100")
    assert "auto" in str(caught.value)
    assert "torch-cpu" in available_backends()


def test_cli_info_and_build_report_the_built_model(artefact_path: Path) -> None:
    runner = CliRunner()
    info = runner.invoke(cli, ["info"])
    build = runner.invoke(cli, ["build", "--quiet"])  # already built: reads the card only
    assert info.exit_code == 0, info.output
    assert build.exit_code == 0, build.output
    for output in (info.output, build.output):
        assert artefact_path.name in output
        assert "fine_foods_test_accuracy" in output


def test_the_stub_backend_answers_deterministically_and_only_by_name() -> None:
    from models.serving.factory import create_handler, resolve_backend

    handler = create_handler("stub")
    model = handler.load_model()
    texts = ["Terrible, broke in two days", "You won a prize, wire the fee", "fine"]
    first = handler.run_inference(texts, model)
    assert [r.example for r in first] == texts
    assert first[0].inference.sentiment_negative > 0.85
    assert first[1].inference.scam_risk > 0.9
    assert first[2].inference.sentiment_negative < 0.3
    assert handler.run_inference(texts, model) == first
    assert resolve_backend("auto")[0] != "stub"


def test_the_worker_passes_its_thread_setting_to_every_session(artefact_path: Path) -> None:
    from stream.config import Settings
    from stream.worker.app import _default_handler

    settings = Settings(KAFKA_BROKER="kafka://127.0.0.1:1", backend="onnx-cpu", model_threads=1)
    handler = _default_handler(settings)
    sessions = [getattr(handler, name, None) for name in ("english", "multilingual")]
    sessions = [h for h in sessions if h is not None] or [handler]
    assert sessions and all(isinstance(h, OnnxCpuHandler) for h in sessions), sessions
    assert all(h._threads == 1 for h in sessions)
