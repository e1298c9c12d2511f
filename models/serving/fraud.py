"""The transaction fraud booster at serve time: load the committed booster, score and explain.

Gradient-boosted trees (LightGBM) on the 28 upstream PCA components plus log(1 + amount); one
row costs about 0.1 ms (predict + TreeSHAP contributions). Training, the ULB data and the
evaluation metrics are :mod:`models.training.fraud`'s; this module needs only numpy and
lightgbm. (LightGBM itself imports pandas and scikit-learn when they are installed; a worker
image built without the ``train``/``backtest`` extras has neither.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.serving.artefacts import sha256_file

VECTOR_NAMES = tuple(f"V{i}" for i in range(1, 29))
FEATURE_NAMES = (*VECTOR_NAMES, "log_amount")

FRAUD_DIR = Path(__file__).resolve().parents[1] / "fraud_booster"
BOOSTER_FILE = "booster.txt"
REPORT_FILE = "fraud-report.json"
#: sha256 of the committed booster: the served fraud model.
BOOSTER_SHA256 = "d689651b5e671806b81a92b8c44660122e44e72edfb94da002834fc9eae183c3"


def model_inputs(vectors: np.ndarray, amounts: np.ndarray) -> np.ndarray:
    """``(rows, 29)``: the 28 upstream components and log(1 + amount)."""
    return np.column_stack([vectors, np.log1p(np.maximum(amounts, 0.0))]).astype(np.float32)


def vectors_of(rows: Sequence[Sequence[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), len(VECTOR_NAMES))


class FraudModel:
    """A loaded booster: probabilities and per-feature contributions for a batch of rows."""

    def __init__(self, booster: Any, threshold: float, version: str) -> None:
        self.booster = booster
        self.threshold = threshold
        self.version = version

    @classmethod
    def load(cls, folder: Path = FRAUD_DIR, verify: bool = True) -> FraudModel:
        import lightgbm

        path = folder / BOOSTER_FILE
        digest = sha256_file(path)
        if verify and digest != BOOSTER_SHA256:
            raise ValueError(f"{path} has sha256 {digest}, pinned {BOOSTER_SHA256}")
        report = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
        booster = lightgbm.Booster(model_file=str(path))
        return cls(booster, report["threshold"], f"ulb-lgbm-{digest[:10]}")

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(rows, num_threads=1), dtype=np.float64)

    def explain(self, rows: np.ndarray, top: int = 3) -> list[list[tuple[str, float, float]]]:
        """Per row, the ``top`` features pushing the log-odds up: (name, value, contribution)."""
        contributions = self.booster.predict(rows, pred_contrib=True, num_threads=1)
        out = []
        for row, contrib in zip(rows, contributions, strict=True):
            order = np.argsort(-contrib[:-1])[:top]  # the last column is the bias
            out.append(
                [
                    (FEATURE_NAMES[i], float(row[i]), float(contrib[i]))
                    for i in order
                    if contrib[i] > 0
                ]
            )
        return out
