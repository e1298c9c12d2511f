"""The fraud model's metrics, threshold choice, and the committed booster."""

from __future__ import annotations

import numpy as np
import pytest

from models import fraud


def test_average_precision_on_a_worked_example() -> None:
    y = np.array([1, 0, 1, 0, 0])
    score = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    # hits at ranks 1 and 3: (1/1 + 2/3) / 2
    assert fraud.average_precision(y, score) == pytest.approx((1 + 2 / 3) / 2)


def test_recall_at_fpr_and_threshold_for_precision() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    score = np.array([0.95, 0.9, 0.3, 0.8, 0.2, 0.1, 0.1, 0.05, 0.04, 0.01])
    assert fraud.recall_at_fpr(y, score, 0.0) == pytest.approx(2 / 3)  # above every negative
    assert fraud.recall_at_fpr(y, score, 0.15) == 1.0  # one negative (0.8) may be flagged
    assert fraud.threshold_for_precision(y, score, 1.0) == 0.9
    point = fraud.at_threshold(y, score, 0.3)
    assert point == {"threshold": 0.3, "alerts": 4, "precision": 0.75, "recall": 1.0}


def test_committed_booster_is_pinned_and_explains_its_scores() -> None:
    model = fraud.FraudModel.load()
    assert model.version.startswith("ulb-lgbm-")
    rows = fraud.model_inputs(np.zeros((3, 28)), np.array([1.0, 10.0, 100.0]))
    p = model.predict(rows)
    assert p.shape == (3,) and ((p > 0) & (p < 1)).all()
    reasons = model.explain(rows)
    assert len(reasons) == 3
    assert all(contribution > 0 for row in reasons for _, _, contribution in row)
    assert all(name in fraud.FEATURE_NAMES for row in reasons for name, _, _ in row)


def test_a_tampered_booster_is_refused(tmp_path) -> None:
    for name in (fraud.BOOSTER_FILE, fraud.REPORT_FILE):
        (tmp_path / name).write_bytes((fraud.FRAUD_DIR / name).read_bytes())
    with (tmp_path / fraud.BOOSTER_FILE).open("a") as handle:
        handle.write("\n")
    with pytest.raises(ValueError, match="pinned"):
        fraud.FraudModel.load(tmp_path)
