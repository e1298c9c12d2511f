"""The baseline build (frozen encoder + logistic heads): versioning, head fitting, metrics."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch

from models.serving.base import HEAD_NAMES
from models.training import train
from models.training.metrics import binary_metrics
from models.training.train import RECIPE, baseline_version, fit_head, heads_from_fits, predict


def test_baseline_version_names_the_family_and_tracks_the_recipe() -> None:
    version = baseline_version()
    assert re.fullmatch(r"minilm-l6-heads-[0-9a-f]{10}", version)
    assert version == baseline_version(RECIPE)
    assert baseline_version(dataclasses.replace(RECIPE, learning_rate=0.1)) != version


def test_baseline_version_tracks_the_recipe_version(monkeypatch: pytest.MonkeyPatch) -> None:
    version = baseline_version()
    monkeypatch.setattr(train, "TRAINING_RECIPE_VERSION", "test-bump")
    assert baseline_version() != version


def test_binary_metrics_on_a_worked_example() -> None:
    y_true = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=np.float32)
    probs = np.array([0.9, 0.8, 0.2, 0.7, 0.1, 0.1, 0.3, 0.4], dtype=np.float32)
    metrics = binary_metrics(y_true, probs)
    # tp=2 fp=1 fn=1 tn=4
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    expected = -np.mean(np.where(y_true == 1, np.log(probs), np.log(1 - probs)))
    assert metrics["log_loss"] == pytest.approx(expected, rel=1e-6)
    # one class only: ratios with nothing to count are 0, log loss still defined
    empty = binary_metrics(np.zeros(3), np.array([0.1, 0.2, 0.3]))
    assert (empty["precision"], empty["recall"], empty["f1"], empty["macro_f1"]) == (0, 0, 0, 0.5)
    assert empty["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.7])))


def test_fit_head_learns_a_linear_rule_and_folds_standardisation() -> None:
    generator = torch.Generator().manual_seed(0)
    y = (torch.rand(600, generator=generator) < 0.3).float()
    direction = torch.nn.functional.normalize(torch.randn(384, generator=generator), dim=0)
    noise = torch.randn(600, 384, generator=generator)
    # Two clusters +-3 sigma apart along one direction, projected to unit length like embeddings.
    x = torch.nn.functional.normalize(noise + 3.0 * (2 * y - 1)[:, None] * direction, dim=1)
    recipe = dataclasses.replace(RECIPE, weight_decays=(0.0, 1e-2), epoch_checkpoints=(50, 200))

    fit = fit_head((x[:500], y[:500]), [(x[500:], y[500:])], recipe)

    heads = heads_from_fits({name: fit for name in HEAD_NAMES})
    held_out = predict(heads, "scam_risk", x[500:].numpy()) >= 0.5
    assert np.mean(held_out == y[500:].numpy().astype(bool)) > 0.95
    assert fit.weight_decay in recipe.weight_decays
    assert fit.epochs in recipe.epoch_checkpoints
