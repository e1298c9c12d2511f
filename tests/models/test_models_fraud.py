"""The fraud model's metrics, threshold choice, and the committed booster."""

from __future__ import annotations

import numpy as np
import pytest

from models.training import fraud


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


def test_average_precision_does_not_depend_on_order_under_ties() -> None:
    from sklearn.metrics import average_precision_score

    score = np.array([0.5, 0.5, 0.2, 0.2])
    # The hand-written version ranked ties by position: 0.75 for the first order, 0.5 for the
    # second. Tied scores are one threshold: at 0.5 precision 1/2 recall 1/2, at 0.2 precision
    # 2/4 recall 1, so AP = 0.5 * 0.5 + 0.5 * 0.5 whatever the order.
    for labels in ([1, 0, 0, 1], [0, 1, 0, 1], [0, 1, 1, 0], [1, 0, 1, 0]):
        y = np.array(labels)
        assert fraud.average_precision(y, score) == pytest.approx(0.5)
        assert fraud.average_precision(y, score) == pytest.approx(average_precision_score(y, score))


def test_recall_at_fpr_and_threshold_for_precision_do_not_depend_on_order_under_ties() -> None:
    # a positive tied with a negative at 0.8: flagging it flags the negative too
    score = np.array([0.9, 0.8, 0.8, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    first = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    second = np.array([1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    for y in (first, second):
        # 9 negatives. >= 0.9 flags none of them; >= 0.8 flags the tied one (FPR 1/9), and
        # neither 0.8 can be flagged without the other; >= 0.3 still flags only that one.
        assert fraud.recall_at_fpr(y, score, 0.0) == pytest.approx(1 / 3)
        assert fraud.recall_at_fpr(y, score, 0.1) == pytest.approx(1 / 3)
        assert fraud.recall_at_fpr(y, score, 0.12) == 1.0
        # precision at >= 0.9: 1, >= 0.8: 2/3, >= 0.3: 3/4, >= 0.2: 3/5. The hand-written
        # version stopped inside the tie (0.8 for target 1.0) when the positive came first.
        assert fraud.threshold_for_precision(y, score, 1.0) == 0.9
        assert fraud.threshold_for_precision(y, score, 0.8) == 0.9
        assert fraud.threshold_for_precision(y, score, 0.7) == 0.3
        assert fraud.at_threshold(y, score, 0.8) == {
            "threshold": 0.8,
            "alerts": 3,
            "precision": pytest.approx(2 / 3),
            "recall": pytest.approx(2 / 3),
        }


def test_metrics_without_positives_or_negatives() -> None:
    negatives, positives = np.zeros(3, dtype=int), np.ones(3, dtype=int)
    score = np.array([0.1, 0.5, 0.9])
    assert fraud.threshold_for_precision(negatives, score, 0.8) == 1.0
    assert fraud.recall_at_fpr(positives, score, 0.01) == 1.0
    assert fraud.at_threshold(negatives, score, 0.95) == {
        "threshold": 0.95,
        "alerts": 0,
        "precision": 0.0,
        "recall": 0.0,
    }


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
