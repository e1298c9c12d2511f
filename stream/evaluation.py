"""``riskstream eval fraud|surge``: measure the fraud score and the surge detector on real data.

Both replay labelled data in event-time order through the same pure functions the worker runs
(``stream/fraud.py``, ``stream/surge.py``) and write their figures to ``docs/evaluation.md``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.serving.base import HEAD_NAMES
from stream import fraud as fraud_rules

#: ULB's ``Time`` is seconds since its first transaction; we place that at midnight UTC.
ULB_EPOCH_MS = 1_377_993_600_000  # 2013-09-01T00:00:00Z (the data is from September 2013)


def _population_features(amounts: np.ndarray, times_s: np.ndarray) -> list[dict[str, Any]]:
    """Behaviour features with the whole card population as one history (ULB has no member
    ids): amount z against all earlier amounts, night-time; device/country/velocity unknown."""
    out = []
    stats = None
    history: dict[str, Any] = {"counts": {"transaction": 0}}
    for amount, seconds in zip(amounts, times_s, strict=True):
        event_ms = ULB_EPOCH_MS + int(seconds * 1000)
        history["spend"] = {"EUR": stats} if stats else {}
        txn = {"amount": float(amount), "currency": "EUR", "device_id": "-", "country": "--",
               "merchant_id": "-"}  # fmt: skip
        features = fraud_rules.behaviour_features(history, txn, event_ms)
        features.update(new_device=False, new_country=False, new_merchant=False)
        out.append(features)
        stats = fraud_rules.welford_update(stats, float(amount))
    return out


def evaluate_fraud(on_stage: Callable[[str], object] = print) -> dict[str, Any]:
    """Train on day 1, replay day 2 in time order; model vs rules-only vs the served combination."""
    from models.training import fraud

    started = time.perf_counter()
    on_stage("loading ULB credit-card data")
    frame = fraud.load_ulb()
    on_stage("training the booster on day 1")
    booster, info = fraud.train(frame)
    model = fraud.FraudModel(booster, info["threshold"], "in-memory")
    parts = fraud.day_split(frame, fraud.RECIPE.calibration_fraction)

    def scores(part: Any, model_p: np.ndarray | None = None) -> tuple[dict, np.ndarray, list]:
        """Each scorer's scores, plus the model inputs and behaviour features behind them."""
        rows = fraud.model_inputs(
            part[list(fraud.VECTOR_NAMES)].to_numpy(), part["Amount"].to_numpy()
        )
        if model_p is None:
            model_p = model.predict(rows)
        features = _population_features(part["Amount"].to_numpy(), part["Time"].to_numpy())
        rules_only = np.array([fraud_rules.assess(f, None)["score"] for f in features])
        combined = np.array(
            [fraud_rules.assess(f, p)["score"] for f, p in zip(features, model_p, strict=True)]
        )
        by_scorer = {"model": model_p, "rules only": rules_only, "served (model + rules)": combined}
        return by_scorer, rows, features

    on_stage("replaying the calibration slice and day 2")
    # day 1 is scored out-of-fold (the served booster has seen it) to set every threshold
    day1 = pd.concat([parts["train"], parts["calibration"]])
    calibration, _, _ = scores(day1, info.pop("day1_oof_scores"))
    test, test_rows, test_features = scores(parts["test"])
    y_cal, y_test = day1["Class"].to_numpy(), parts["test"]["Class"].to_numpy()
    results = {}
    for name in test:
        threshold = fraud.threshold_for_precision(
            y_cal, calibration[name], fraud.RECIPE.target_precision
        )
        results[name] = fraud.evaluate(y_test, test[name], threshold)
    # reasons for the first few alerts, as an analyst would see them
    flagged = np.nonzero(test["model"] >= info["threshold"])[0][:3]
    examples = [
        fraud_rules.assess(
            test_features[i], float(test["model"][i]), model.explain(test_rows[i : i + 1])[0]
        )
        for i in flagged
    ]
    return {
        "data": {
            "rows": info["rows"],
            "frauds": info["frauds"],
            "split": "day 1 (first 80 % train, last 20 % calibration) / day 2 test, by Time",
        },
        "booster_rounds": info["rounds"],
        "other_seeds_test_pr_auc": info["other_seeds_test_pr_auc"],
        "calibration_pr_auc": info["calibration_pr_auc"],
        "target_precision_on_calibration": fraud.RECIPE.target_precision,
        "test": results,
        "example_alerts": examples,
        "seconds": round(time.perf_counter() - started, 1),
    }


def render_fraud(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Transaction fraud risk (ULB credit-card data)",
        "",
        f"Command: `riskstream eval fraud` ({result['seconds']:.0f} s on 2 cores). Split: "
        f"{result['data']['split']}; rows {result['data']['rows']}, frauds "
        f"{result['data']['frauds']}. LightGBM, {result['booster_rounds']} rounds. Each "
        "threshold is the lowest score reaching precision "
        f"{result['target_precision_on_calibration']:.2f} on day 1 scored out-of-fold (5 "
        "contiguous time blocks), then applied to day 2 unchanged.",
        "",
        "| scorer | PR-AUC | recall at 1 % FPR | threshold | alerts | precision | recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in result["test"].items():
        t = r["at_threshold"]
        lines.append(
            f"| {name} | **{r['pr_auc']:.3f}** | {r['recall_at_1pct_fpr']:.3f} | "
            f"{t['threshold']:.3f} | {t['alerts']} | {t['precision']:.3f} | {t['recall']:.3f} |"
        )
    seeds = result["other_seeds_test_pr_auc"]
    lines += [
        "",
        "Seed spread: the same recipe refitted with seeds "
        + ", ".join(f"{seed} → PR-AUC {auc:.3f}" for seed, auc in seeds.items())
        + f" (model alone): {sum(a >= 0.8 for a in seeds.values())} of {len(seeds)} reach 0.80, "
        "so the margin over the target is within seed noise.",
        "",
        "ULB carries no member, device, country or merchant ids, so on this data the rules can",
        "only use the amount (z-score against all earlier transactions) and the hour (Time 0 is",
        "placed at midnight UTC); the member-history rules (velocity, new device/country/",
        "merchant, recent scam chat) are covered by unit and integration tests instead.",
        "",
        "Example reasons on day-2 alerts:",
        "",
        *[
            f"- score {e['score']:.3f}: " + "; ".join(e["reasons"])
            for e in result["example_alerts"]
        ],
        "",
    ]
    return lines


def write_section(path: Path, title: str, lines: list[str]) -> None:
    """Replace (or append) the section starting ``## title`` in the evaluation document."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Evaluation\n\n"
    start = text.find(f"## {title}")
    block = "\n".join(lines).rstrip() + "\n\n"
    if start == -1:
        text = text.rstrip() + "\n\n" + block
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + block + (text[end + 1 :] if end != -1 else "")
    path.write_text(text, encoding="utf-8")


def dump(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- surges


def _score_reviews(on_stage: Callable[[str], object]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every Fine Foods review with its label and the served model's P(negative)."""
    from models.serving.factory import create_handler
    from models.training.data import fine_foods_reviews
    from models.training.evaluate import score_texts

    rows = [r for split in ("train", "validation", "test") for r in fine_foods_reviews(split)]
    texts = [text for _, text, _ in rows]
    handler = create_handler("auto")
    model = handler.load_model()
    on_stage(f"scoring {len(texts)} real reviews with {handler.model_version}")
    p_negative = score_texts(handler, model, texts)[:, HEAD_NAMES.index("sentiment_negative")]
    labels = np.array([label == "negative" for _, _, label in rows])
    return texts, labels, p_negative.astype(np.float64)


def simulate_surges(
    p_negative: np.ndarray,
    labels: np.ndarray,
    cfg: Any,
    *,
    brand_cfg: Any = None,
    products: int = 40,
    brands: int = 8,
    days: int = 30,
    rate_per_hour: float = 2.0,
    bursts: int = 30,
    burst_size: int = 10,
    warmup_days: int = 3,
    negative_threshold: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """Background reviews (real texts, real scores) on synthetic products over ``days``, plus
    bursts of real negative reviews at known times; run the detector, match its alerts."""
    from stream import surge

    configs = {"product": cfg, "brand": brand_cfg or surge.BRAND}
    rng = np.random.default_rng(seed)
    hour = 3_600_000
    span = days * 24 * hour
    n_background = rng.poisson(rate_per_hour * products * days * 24)
    events = [
        (int(t), int(p), int(i), False)
        for t, p, i in zip(
            rng.integers(0, span, n_background),
            rng.integers(0, products, n_background),
            rng.integers(0, len(p_negative), n_background),
            strict=True,
        )
    ]
    negative_texts = np.nonzero(labels)[0]
    truth = []
    for burst in range(bursts):
        product = int(rng.integers(0, products))
        start = int(rng.integers(warmup_days * 24 * hour, span - 4 * hour))
        truth.append({"burst": burst, "product": product, "start_ms": start})
        for t in rng.integers(start, start + hour, burst_size):
            events.append((int(t), product, int(rng.choice(negative_texts)), True))
    events.sort()

    states: dict[tuple[str, int], Any] = {}
    alerts = []
    for n, (t, product, text, _injected) in enumerate(events):
        negative = bool(p_negative[text] >= negative_threshold)
        for kind, subject in (("product", product), ("brand", product % brands)):
            state, alert = surge.observe(
                states.get((kind, subject)), kind, str(subject), t, negative, f"e{n}", configs[kind]
            )
            states[(kind, subject)] = state
            if alert:
                alerts.append((kind, subject, t))

    def window(ms: int) -> int:
        return ms // cfg.window_ms

    result: dict[str, Any] = {}
    for kind, subjects in (("product", products), ("brand", brands)):
        found, delays, matched = 0, [], set()
        for b in truth:
            subject = b["product"] if kind == "product" else b["product"] % brands
            hits = [
                (window(t) - window(b["start_ms"]), i)
                for i, (k, s, t) in enumerate(alerts)
                if k == kind and s == subject and 0 <= window(t) - window(b["start_ms"]) <= 2
            ]
            if hits:
                found += 1
                delays.append(min(hits)[0])
                matched.update(i for _, i in hits)
        false = [i for i, (k, _, _) in enumerate(alerts) if k == kind and i not in matched]
        windows = subjects * (span // cfg.hop_ms)  # windows evaluated: one per hop
        result[kind] = {
            "bursts": len(truth),
            "detected": found,
            "recall": found / len(truth),
            "false_alerts": len(false),
            "windows": windows,
            "false_alerts_per_10k_windows": 1e4 * len(false) / windows,
            "median_delay_windows": float(np.median(delays)) if delays else None,
            "max_delay_windows": max(delays) if delays else None,
        }
    return result


def evaluate_surge(on_stage: Callable[[str], object] = print) -> dict[str, Any]:
    """The default detector on 5 seeds, plus a z-threshold sweep on the same data."""
    import dataclasses

    from stream import surge

    started = time.perf_counter()
    _, labels, p_negative = _score_reviews(on_stage)
    on_stage("replaying 30 simulated days per seed")
    runs = {
        seed: simulate_surges(p_negative, labels, surge.DEFAULT, seed=seed) for seed in range(5)
    }
    sweep = {
        z: simulate_surges(p_negative, labels, dataclasses.replace(surge.DEFAULT, z_threshold=z))
        for z in (2.5, 3.0, 3.5, 4.0)
    }
    return {
        "config": dataclasses.asdict(surge.DEFAULT),
        "brand_config": dataclasses.asdict(surge.BRAND),
        "model_negative_rate": float(np.mean(p_negative >= 0.5)),
        "label_negative_rate": float(np.mean(labels)),
        "seeds": runs,
        "z_sweep_seed0": sweep,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _total(runs: dict[Any, Any], kind: str) -> dict[str, float]:
    bursts = sum(r[kind]["bursts"] for r in runs.values())
    false = sum(r[kind]["false_alerts"] for r in runs.values())
    windows = sum(r[kind]["windows"] for r in runs.values())
    delays = [
        r[kind]["max_delay_windows"]
        for r in runs.values()
        if r[kind]["max_delay_windows"] is not None
    ]
    return {
        "recall": sum(r[kind]["detected"] for r in runs.values()) / bursts,
        "bursts": bursts,
        "false_per_10k": 1e4 * false / windows,
        "false": false,
        "windows": windows,
        "max_delay": max(delays) if delays else None,
    }


def render_surge(result: dict[str, Any]) -> list[str]:
    cfg = result["config"]
    lines = [
        "## Public-opinion surges (real Fine Foods reviews, injected bursts)",
        "",
        f"Command: `riskstream eval surge` ({result['seconds']:.0f} s on 2 cores). Every Fine "
        "Foods review (4,972) is scored once by the served model (P(negative) ≥ 0.5 counts as "
        f"negative: {100 * result['model_negative_rate']:.1f} % of reviews; "
        f"{100 * result['label_negative_rate']:.1f} % are labelled negative). Per seed, 30 days "
        "of background traffic put reviews drawn from them on 40 synthetic products (8 brands) "
        "at 2 reviews per product-hour, and 30 bursts of 10 real negative-labelled reviews "
        "land on random products within one random hour after a 3-day warm-up. A burst counts "
        "as detected if its product raises `opinion_surge` within 2 windows of the burst's "
        "first window; every other alert is false.",
        "",
        f"Detector: {cfg['window_ms'] // 60_000}-minute windows hopping every "
        f"{cfg['hop_ms'] // 60_000} minutes (false alerts are per 10k evaluated windows, one per "
        "hop), EWMA baseline "
        f"(alpha {cfg['alpha']}), z ≥ {cfg['z_threshold']} with ≥ {cfg['min_negatives']} "
        f"negatives, variance floor {cfg['variance_floor']}, cooldown {cfg['cooldown_windows']} "
        "windows. z, the minimum negatives and the variance floor were chosen on simulation "
        "seeds 100-101 (27-point grid: z 3/3.5/4, min 4/5/6, floor 0.5/1/2); the seeds "
        "below (0-4) were not used for the choice.",
        "",
        "| level | bursts | recall | false alerts | windows | false per 10k windows "
        "| max delay (windows) |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in ("product", "brand"):
        t = _total(result["seeds"], kind)
        lines.append(
            f"| {kind} (5 seeds) | {t['bursts']} | **{t['recall']:.3f}** | {t['false']} | "
            f"{t['windows']:,} | **{t['false_per_10k']:.2f}** | {t['max_delay']} |"
        )
    product = _total(result["seeds"], "product")
    hours = product["windows"] * cfg["hop_ms"] / cfg["window_ms"]
    lines += [
        "",
        f"Counted per product-hour instead of per evaluated window, the product-level false "
        f"alerts are {1e4 * product['false'] / hours:.2f} per 10k (each hour holds "
        f"{cfg['window_ms'] // cfg['hop_ms']} overlapping windows). Brands use stricter settings "
        f"(z ≥ {result['brand_config']['z_threshold']}, ≥ {result['brand_config']['min_negatives']}"
        " negatives, same tuning seeds): a brand pools 5 products, so the same 10-review burst is "
        "a much smaller departure there and brand recall is low; brand-sized bursts are not "
        "simulated yet.",
        "",
        "Sensitivity (seed 0, product level):",
        "",
        "| z threshold | recall | false per 10k windows | max delay |",
        "|---|---|---|---|",
    ]
    for z, r in result["z_sweep_seed0"].items():
        p = r["product"]
        lines.append(
            f"| {z} | {p['recall']:.3f} | {p['false_alerts_per_10k_windows']:.2f} | "
            f"{p['max_delay_windows']} |"
        )
    lines += [
        "",
        "",
    ]
    return lines
