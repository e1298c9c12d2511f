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
    from models import fraud

    started = time.perf_counter()
    on_stage("loading ULB credit-card data")
    frame = fraud.load_ulb()
    on_stage("training the booster on day 1")
    booster, info = fraud.train(frame)
    model = fraud.FraudModel(booster, info["threshold"], "in-memory")
    parts = fraud.day_split(frame, fraud.RECIPE.calibration_fraction)

    def scores(part: Any, model_p: np.ndarray | None = None) -> dict[str, np.ndarray]:
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
        return {"model": model_p, "rules only": rules_only, "served (model + rules)": combined}

    on_stage("replaying the calibration slice and day 2")
    # day 1 is scored out-of-fold (the served booster has seen it) to set every threshold
    day1 = pd.concat([parts["train"], parts["calibration"]])
    calibration = scores(day1, info.pop("day1_oof_scores"))
    test = scores(parts["test"])
    y_cal, y_test = day1["Class"].to_numpy(), parts["test"]["Class"].to_numpy()
    results = {}
    for name in test:
        threshold = fraud.threshold_for_precision(
            y_cal, calibration[name], fraud.RECIPE.target_precision
        )
        results[name] = fraud.evaluate(y_test, test[name], threshold)
    # reasons for the first few alerts, as an analyst would see them
    rows = fraud.model_inputs(
        parts["test"][list(fraud.VECTOR_NAMES)].to_numpy(), parts["test"]["Amount"].to_numpy()
    )
    flagged = np.nonzero(test["model"] >= info["threshold"])[0][:3]
    examples = [
        fraud_rules.assess(
            {**_population_features(np.array([parts["test"]["Amount"].iloc[i]]),
                                    np.array([parts["test"]["Time"].iloc[i]]))[0]},
            float(test["model"][i]),
            model.explain(rows[i : i + 1])[0],
        )
        for i in flagged
    ]  # fmt: skip
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
