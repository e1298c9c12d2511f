"""``riskstream adapt``'s decisions on synthetic sentence vectors (no encoder needed)."""

from __future__ import annotations

import numpy as np
import pytest

from models.serving.adapted import HIDDEN
from models.training import adapt

OPTIONS = adapt.AdaptOptions(
    bootstrap=200, folds=3, inner_folds=3, strengths=(0.1, 1.0), cs=(1.0, 10.0)
)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def world(n: int, direction: int, seed: int, noise: float = 0.0):
    """Vectors whose class is the sign of one coordinate (plus label noise)."""
    rng = np.random.default_rng(seed)
    x = unit(rng.normal(size=(n, HIDDEN)))
    y = (x[:, direction] > 0).astype(np.int8)
    flip = rng.random(n) < noise
    y[flip] = 1 - y[flip]
    return x, y


def base_head(direction: int) -> tuple[np.ndarray, float]:
    weight = np.zeros(HIDDEN, dtype=np.float32)
    weight[direction] = 40.0
    return weight, 0.0


def test_folds_are_stable_and_stratified() -> None:
    ids = [f"e{i}" for i in range(200)]
    y = np.array([i % 4 == 0 for i in range(200)], dtype=np.int8)
    folds = adapt.hash_folds(ids, y, 5)
    assert [int((folds == k).sum()) for k in range(5)] == [40] * 5
    assert [int(y[folds == k].sum()) for k in range(5)] == [10] * 5
    assert (adapt.hash_folds(ids[::-1], y[::-1], 5)[::-1] == folds).all()


def test_holdout_is_stable_and_stratified() -> None:
    ids = [f"e{i}" for i in range(200)]
    y = np.array([i % 4 == 0 for i in range(200)], dtype=np.int8)
    mask = adapt.holdout_mask(ids, y, 0.3)
    assert mask.sum() == 60 and y[mask].sum() == 15  # 30 % of each class
    shuffled = adapt.holdout_mask(ids[::-1], y[::-1], 0.3)[::-1]
    assert (mask == shuffled).all()  # by event id, not by row order


def test_a_shop_whose_labels_follow_another_signal_gets_a_better_head() -> None:
    """Base head reads coordinate 0, the operator's labels follow coordinate 1."""
    x, y = world(400, direction=1, seed=1)
    x_base, y_base = world(300, direction=0, seed=2)
    ids = [f"e{i}" for i in range(len(y))]
    outcome, head, curve = adapt.adapt_head(
        "sentiment", ids, x, y, x_base, y_base, base_head(0), OPTIONS
    )
    assert outcome.adapted, outcome.why
    assert outcome.oof_after["pr_auc"] > outcome.oof_before["pr_auc"] + 0.2
    assert outcome.intervals["pr_auc"]["lift"][0] > 0
    assert curve is not None and curve[0] == sorted(curve[0])
    assert outcome.threshold is not None
    assert outcome.oof_at_threshold["precision"] >= 0.8
    assert (adapt.probabilities(x, head) >= 0.5).mean() == pytest.approx(y.mean(), abs=0.1)


def test_too_few_labels_keep_the_base_head() -> None:
    x, y = world(60, direction=1, seed=3)
    base = base_head(0)
    outcome, head, curve = adapt.adapt_head(
        "scam", [f"e{i}" for i in range(60)], x, y, x[:0], y[:0], base, OPTIONS
    )
    assert not outcome.adapted and "needs 100" in outcome.why
    assert head is base and curve is None


def test_noise_labels_do_not_crash_and_do_not_adapt() -> None:
    rng = np.random.default_rng(4)
    x, _ = world(300, direction=1, seed=4)
    y = (rng.random(300) < 0.4).astype(np.int8)  # labels unrelated to the text
    x_base, y_base = world(200, direction=0, seed=5)
    outcome, _, curve = adapt.adapt_head(
        "sentiment", [f"e{i}" for i in range(300)], x, y, x_base, y_base, base_head(0), OPTIONS
    )
    assert not outcome.adapted and "includes 0" in outcome.why and curve is None


def test_base_rows_pull_towards_the_base_signal() -> None:
    """More strength, closer to the base mix's direction: the regulariser works."""
    x, y = world(120, direction=1, seed=6)
    x_base, y_base = world(600, direction=0, seed=7)
    weak = adapt.fit_head(x, y, x_base, y_base, 0.01, 1.0)[0]
    strong = adapt.fit_head(x, y, x_base, y_base, 10.0, 1.0)[0]
    assert abs(strong[0]) / abs(strong[1]) > abs(weak[0]) / abs(weak[1])


def test_recall_at_precision() -> None:
    y = np.array([1, 1, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    assert adapt.recall_at_precision(y, p, 0.9) == pytest.approx(2 / 3)
    assert adapt.recall_at_precision(y, 1 - p, 0.9) == 0.0


def test_card_section_lists_each_head() -> None:
    x, y = world(300, direction=1, seed=8)
    outcome, _, _ = adapt.adapt_head(
        "sentiment", [f"e{i}" for i in range(300)], x, y, x[:0], y[:0], base_head(0), OPTIONS
    )
    kept = adapt.HeadOutcome("scam", False, "0 labels", 0, 0)
    from dataclasses import asdict

    bundle = {
        "model_version": "minilm-l6-adapted-0123456789",
        "base_version": "minilm-l6-student-71847b5b1f",
        "report": {
            "labelled_set": "labelled-x.parquet",
            "language": "en",
            "adapted_at": "2026-12-04T00:00:00+00:00",
            "options": {"target_precision": 0.9, "folds": 3},
            "heads": {"sentiment": asdict(outcome), "scam": asdict(kept)},
        },
    }
    text = adapt.card_section(bundle)
    assert "| sentiment | 300 (" in text and "kept: 0 labels" in text
