"""Binary classification metrics for the model card and training reports: scikit-learn's."""

from __future__ import annotations

import numpy as np
from sklearn import metrics


def binary_metrics(y_true: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy, precision/recall/F1 of class 1, macro-F1 over both classes, and log loss.

    A ratio with nothing to count (no predicted or no actual positives) is 0.0.
    """
    y_true = np.asarray(y_true).astype(np.int8)
    probabilities = np.asarray(probabilities)
    y_pred = (probabilities >= threshold).astype(np.int8)
    both = {"labels": [0, 1], "zero_division": 0}
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        y_true, y_pred, average="binary", **both
    )
    return {
        "n": len(y_true),
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "macro_f1": float(metrics.f1_score(y_true, y_pred, average="macro", **both)),
        "log_loss": float(metrics.log_loss(y_true, probabilities, labels=[0, 1])),
    }


def alert_metrics(y_true: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict:
    """Ranking quality of class 1 (ROC-AUC; PR-AUC as average precision) plus accuracy at 0.5
    and precision/recall at one alert threshold, so a new language or model reads like the
    card's operating points. A ratio with nothing to count is 0.0.
    """
    y_true = np.asarray(y_true).astype(np.int8)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    flagged = probabilities >= threshold
    hits = int((flagged & (y_true == 1)).sum())
    return {
        "n": len(y_true),
        "n_positive": int(y_true.sum()),
        "accuracy": float(metrics.accuracy_score(y_true, probabilities >= 0.5)),
        "roc_auc": float(metrics.roc_auc_score(y_true, probabilities)),
        "pr_auc": float(metrics.average_precision_score(y_true, probabilities)),
        "threshold": threshold,
        "precision_at_threshold": hits / max(int(flagged.sum()), 1),
        "recall_at_threshold": hits / max(int(y_true.sum()), 1),
        "flagged_at_threshold": int(flagged.sum()),
    }


def threshold_for_precision(
    y_true: np.ndarray, scores: np.ndarray, target: float, min_flagged: int = 1
) -> float | None:
    """The lowest threshold whose flagged set (every score >= it, at least ``min_flagged``
    texts) reaches ``target`` precision: the most recall that precision allows. ``None`` when
    no threshold does. Tied scores are flagged together (scikit-learn's precision-recall curve).
    """
    y_true = np.asarray(y_true).astype(np.int8)
    scores = np.asarray(scores, dtype=np.float64)
    if not (y_true == 1).any():
        return None
    precision, _, thresholds = metrics.precision_recall_curve(y_true, scores)
    flagged = len(scores) - np.searchsorted(np.sort(scores), thresholds, side="left")
    ok = (precision[:-1] >= target) & (flagged >= min_flagged)  # the last point has no threshold
    return float(thresholds[ok].min()) if ok.any() else None
