"""Binary classification metrics, in numpy, so the model card needs no sklearn."""

from __future__ import annotations

import numpy as np


def _confusion(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) with 1 as the positive class."""
    y_true = y_true.astype(bool)
    y_pred = y_pred.astype(bool)
    tp = int(np.sum(y_true & y_pred))
    fp = int(np.sum(~y_true & y_pred))
    fn = int(np.sum(y_true & ~y_pred))
    tn = int(np.sum(~y_true & ~y_pred))
    return tp, fp, fn, tn


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _f1(tp: int, fp: int, fn: int) -> float:
    return _ratio(2 * tp, 2 * tp + fp + fn)


def binary_metrics(y_true: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy, precision/recall/F1 of class 1, macro-F1 over both classes, and log loss."""
    y_pred = probabilities >= threshold
    tp, fp, fn, tn = _confusion(y_true, y_pred)
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    log_loss = -np.mean(y_true * np.log(clipped) + (1 - y_true) * np.log(1 - clipped))
    return {
        "n": len(y_true),
        "accuracy": _ratio(tp + tn, len(y_true)),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _f1(tp, fp, fn),
        "macro_f1": (_f1(tp, fp, fn) + _f1(tn, fn, fp)) / 2,
        "log_loss": float(log_loss),
    }
