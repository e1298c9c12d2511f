"""Distillation: the loss, calibration, batching, the committed teacher/student artefacts, and a
real (tiny) fine-tuning run on CPU."""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F

from models.serving import artefacts
from models.serving.encoder import (
    EncoderWithHeads,
    WeightsMismatchError,
    load_encoder,
    load_network,
    load_student_into,
    make_heads,
)
from models.serving.tokenizer import load_tokenizer
from models.training.data import DataIntegrityError, LabelledText, all_datasets, sha256_file
from models.training.distil import (
    SCAM,
    SENTIMENT,
    FitConfig,
    distillation_loss,
    fit,
    fit_temperature,
    hard_targets,
    length_bucketed_batches,
    text_key,
)
from models.training.pipeline import SOFT_LABELS_FILE, TRAIN_KEYS, VALIDATION_KEYS
from models.training.student import (
    DISTILLED_DIR,
    STUDENT_REPORT_FILE,
    TEACHER_REPORT_FILE,
    committed_weights,
    ensure_built,
    read_report,
)
from models.training.teacher import (
    SoftLabelError,
    read_soft_labels,
    soft_logits_for,
    write_soft_labels,
)

# --------------------------------------------------------------------------- pure pieces


def test_hard_targets_label_reviews_for_sentiment_and_as_not_spam() -> None:
    rows = [
        LabelledText("awful", "negative", "fine_foods"),
        LabelledText("lovely", "positive", "rotten_tomatoes"),
        LabelledText("WIN NOW", "spam", "sms_spam"),
        LabelledText("see you at 5", "ham", "sms_spam"),
    ]
    targets = hard_targets(rows)
    assert targets[:, SENTIMENT][:2].tolist() == [1.0, 0.0]
    assert np.isnan(targets[2:, SENTIMENT]).all()  # SMS carry no sentiment label
    assert targets[:, SCAM].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_distillation_loss_ignores_missing_labels_and_weights_its_terms() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    hard = torch.tensor([[1.0, float("nan")], [float("nan"), 0.0]])
    teacher = torch.tensor([[1.0, 0.0], [-2.0, 1.0]])
    hard_only = distillation_loss(logits, hard, None, 1.0, 2.0)
    expected = F.binary_cross_entropy_with_logits(
        torch.tensor([2.0, 3.0]), torch.tensor([1.0, 0.0])
    )
    assert hard_only.item() == pytest.approx(expected.item())

    soft_only = distillation_loss(logits, hard, teacher, 0.0, 2.0)
    soft = F.binary_cross_entropy_with_logits(logits / 2, torch.sigmoid(teacher / 2))
    assert soft_only.item() == pytest.approx(4 * soft.item())
    mixed = distillation_loss(logits, hard, teacher, 0.25, 2.0)
    assert mixed.item() == pytest.approx(0.25 * hard_only.item() + 0.75 * soft_only.item())


def test_soft_loss_is_stationary_when_the_student_matches_the_teacher() -> None:
    teacher = torch.tensor([[1.5, -0.7], [-2.0, 0.3]])
    student = teacher.clone().requires_grad_(True)
    no_labels = torch.full_like(teacher, float("nan"))
    distillation_loss(student, no_labels, teacher, 0.0, 3.0).backward()
    assert student.grad is not None
    assert student.grad.abs().max().item() < 1e-6


def test_fit_temperature_recovers_an_overconfident_scale() -> None:
    generator = np.random.default_rng(0)
    true_logits = generator.normal(0, 2, 20_000)
    labels = (generator.random(20_000) < 1 / (1 + np.exp(-true_logits))).astype(np.float32)
    temperature = fit_temperature(3.0 * true_logits, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)


def test_length_bucketed_batches_cover_every_row_once_and_are_seeded() -> None:
    lengths = [random.Random(1).randint(3, 256) for _ in range(1000)]
    batches = list(length_bucketed_batches(lengths, 32, random.Random(7)))
    flat = sorted(i for batch in batches for i in batch)
    assert flat == list(range(1000))
    assert all(len(batch) <= 32 for batch in batches)
    again = list(length_bucketed_batches(lengths, 32, random.Random(7)))
    assert batches == again
    # within a batch lengths are close: far less padding than random batches
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.2 * sum(lengths)


def test_soft_labels_round_trip_with_stable_bytes(tmp_path: Path) -> None:
    texts = {"sms_spam/train": ["hello", "WIN"], "fine_foods/train": ["tasty"]}
    logits = {
        "sms_spam/train": np.array([[0.1, -3.0], [0.2, 4.0]], dtype=np.float32),
        "fine_foods/train": np.array([[-2.5, -6.0]], dtype=np.float32),
    }
    first = write_soft_labels(tmp_path / "a.csv.gz", logits, texts)
    second = write_soft_labels(tmp_path / "b.csv.gz", logits, texts)
    assert first == second, "gzip bytes must depend on content only"
    table = read_soft_labels(tmp_path / "a.csv.gz")
    got = soft_logits_for(["WIN", "tasty"], table)
    np.testing.assert_allclose(got, [[0.2, 4.0], [-2.5, -6.0]])
    with pytest.raises(SoftLabelError, match="re-run"):
        soft_logits_for(["never scored"], table)


# --------------------------------------------------------------------------- committed artefacts


def test_committed_soft_labels_cover_every_training_text_and_match_the_reports() -> None:
    path = DISTILLED_DIR / SOFT_LABELS_FILE
    table = read_soft_labels(path)
    datasets = all_datasets()
    for key in (*TRAIN_KEYS, *VALIDATION_KEYS):
        logits = soft_logits_for([row.text for row in datasets[key]], table)
        assert logits.shape == (len(datasets[key]), 2)
    digest = sha256_file(path)
    assert read_report(TEACHER_REPORT_FILE)["soft_labels_sha256"] == digest
    assert read_report(STUDENT_REPORT_FILE)["soft_labels_sha256"] == digest


def test_teacher_soft_labels_agree_with_the_hard_labels_they_replace() -> None:
    """The teacher is worth distilling from: its train-set logits mostly match the labels."""
    table = read_soft_labels(DISTILLED_DIR / SOFT_LABELS_FILE)
    rows = all_datasets()["fine_foods/train"]
    logits = soft_logits_for([row.text for row in rows], table)[:, SENTIMENT]
    labels = hard_targets(rows)[:, SENTIMENT]
    assert np.mean((logits > 0) == (labels == 1)) > 0.85


def test_the_reports_describe_the_committed_weights() -> None:
    """Distillation wrote the layers (its report names that file); the head refit wrote the
    committed file from those layers (its report names both)."""
    report = read_report(STUDENT_REPORT_FILE)
    refit = read_report("heads-report.json")
    assert refit["layers_from_student_sha256"] == report["student_sha256"]
    assert refit["student_sha256"] == artefacts.STUDENT_SHA256 == sha256_file(committed_weights())
    assert report["headline"]["fine_foods_test_accuracy"] > 0.8


def test_a_tampered_student_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dir = tmp_path / "distilled"
    shutil.copytree(DISTILLED_DIR, fake_dir)
    weights = fake_dir / artefacts.STUDENT_FILE
    with weights.open("r+b") as handle:
        handle.seek(-1, 2)
        last = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([last[0] ^ 0xFF]))
    monkeypatch.setattr("models.training.student.DISTILLED_DIR", fake_dir)
    with pytest.raises(DataIntegrityError, match="sha256 mismatch"):
        ensure_built(cache_dir=tmp_path / "cache")


def test_installed_student_card_names_its_folder(artefact_path: Path) -> None:
    card = json.loads((artefact_path / artefacts.CARD_FILE).read_text())
    assert card["model_version"] == artefact_path.name == artefacts.model_version()
    assert card["student_sha256"] == artefacts.STUDENT_SHA256


def test_a_student_file_for_another_layout_is_refused(tmp_path: Path) -> None:
    state = load_file(str(committed_weights()))
    dropped = sorted(state)[0]
    del state[dropped]
    partial = tmp_path / "partial.safetensors"
    save_file(state, str(partial))
    network = EncoderWithHeads(load_encoder(), make_heads())
    with pytest.raises(WeightsMismatchError, match="missing"):
        load_student_into(network, partial)


def test_loaded_student_carries_the_file_weights_on_the_pinned_embeddings(
    artefact_path: Path,
) -> None:
    network = load_network(artefact_path)
    state = load_file(str(committed_weights()))
    name = "encoder.encoder.layer.3.output.dense.weight"
    assert torch.equal(network.state_dict()[name], state[name].float())
    base = load_encoder().state_dict()
    key = "embeddings.word_embeddings.weight"
    assert torch.equal(network.encoder.state_dict()[key], base[key])


# --------------------------------------------------------------------------- a real run


def test_a_tiny_distillation_run_trains_layers_and_keeps_embeddings_frozen() -> None:
    datasets = all_datasets()
    train = datasets["fine_foods/train"][:12] + datasets["sms_spam/train"][:12]
    validation = {
        "fine_foods/validation": datasets["fine_foods/validation"][:16],
        "sms_spam/validation": datasets["sms_spam/validation"][:16],
    }
    table = read_soft_labels(DISTILLED_DIR / SOFT_LABELS_FILE)
    soft = soft_logits_for([row.text for row in train], table)
    network = EncoderWithHeads(load_encoder(), make_heads())
    before = {k: v.clone() for k, v in network.state_dict().items()}
    config = FitConfig(
        epochs=1, batch_size=8, max_length=64, hard_weight=0.2, freeze_embeddings=True
    )

    result = fit(network, load_tokenizer(), train, validation, config, torch.device("cpu"), soft)

    after = result.network.state_dict()
    embedding = "encoder.embeddings.word_embeddings.weight"
    assert torch.equal(after[embedding], before[embedding])
    layer = "encoder.encoder.layer.5.output.dense.weight"
    assert not torch.equal(after[layer], before[layer])
    assert result.best_epoch == 1 and len(result.history) == 1
    assert set(result.history[0]["validation"]) == set(validation)
    assert all(t > 0 for t in result.temperatures.values())
    assert text_key("abc") == text_key("abc") != text_key("abd")


def test_soft_label_file_is_gzip_csv_with_the_documented_header() -> None:
    with gzip.open(DISTILLED_DIR / SOFT_LABELS_FILE, "rt") as handle:
        header = handle.readline().strip()
    assert header == "key,source_split,sentiment_negative_logit,scam_risk_logit"
