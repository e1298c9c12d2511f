"""The learning curve's bookkeeping on synthetic vectors: fixed test set, n labels, render."""

from __future__ import annotations

import numpy as np

from models.training import adapt, adapt_curve
from tests.models.test_adapt import base_head, world


class FakeEmbedder:
    """Texts are indices into fixed vectors."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x

    def cached(self, name: str, texts: list[str]) -> np.ndarray:
        return self.x[[int(t) for t in texts]]


def test_curve_learns_with_labels_and_renders() -> None:
    x, y = world(900, direction=1, seed=11)
    x_base, y_base = world(200, direction=0, seed=12)
    embedder = FakeEmbedder(np.vstack([x, x_base]))
    texts = [str(i) for i in range(900)]
    mix = ([str(900 + i) for i in range(200)], y_base)
    options = adapt.AdaptOptions(bootstrap=100, strengths=(0.1,), cs=(10.0,))
    result = adapt_curve.curve_for(
        "synthetic", texts, y, embedder, base_head(0), mix, "sentiment", options, (100, 500), 2
    )
    assert result["test"] == 270 and set(result["sizes"]) == {"100", "500"}
    assert result["sizes"]["500"]["pr_auc_median"] > result["before"]["pr_auc"] + 0.2
    assert len(result["sizes"]["100"]["draws"]) == 2
    lines = adapt_curve.render({"options": {"draws": 2}, "synthetic": {
        "base_version": "b", "head": "sentiment", **result}})  # fmt: skip
    text = "\n".join(lines)
    assert "| synthetic (sentiment, b) | 270" in text and "- synthetic:" in text and "met" in text
