"""Where the surge detector's recall at 2 texts per product-hour goes, against the bound: the
served detector on the tuning seeds' 10-text traffic, then the same with one thing it has to
estimate or require handed to it or taken away, one at a time:

* ``known baseline``: the background's true texts per hour and share per score bin (what the
  bound knows) instead of the product's own history and the stream prior;
* ``known burst``: each text weighed by the true likelihood ratio of the burst's score
  distribution (the labelled negatives') instead of the calibrated-score weights;
* ``no clauses``: the weighted tail alone, without the mean-shift test and the 6 texts
  scored >= 0.5.

Product level, seeds 100-101 (the tuning seeds: the report seeds stay unread), the served
``max_tail_p``; each row one recorded replay per cell (``emulate_alerts``). Writes a section
of ``docs/evaluation.md`` and ``bench/results/surge_gap.json``.

    .venv/bin/python bench/surge_gap.py    # ~3 min on 2 cores, scores cached
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tune_surge import _bins  # the bound's shares per score bin, the same ones

from stream.backtest import evaluation
from stream.core import surge

RESULTS = Path("bench/results/surge_gap.json")
TITLE = "Surge detector: where the recall at 2/h goes"
RATE = 2.0
VARIANTS = ("served", "known baseline", "known burst", "no clauses")


@contextlib.contextmanager
def variant(name: str, corpus: evaluation.ScoredCorpus) -> Iterator[dict[str, Any]]:
    """Patch ``stream.core.surge`` for one variant; yields the product config to run."""
    served_baseline, served_shift = surge.baseline, surge.shift_tail
    cfg = surge.DEFAULT
    background, burst = _bins(corpus.p_negative), _bins(corpus.p_negative[corpus.labels])

    def known_baseline(state: Any, c: surge.SurgeConfig, prior: Any = None) -> Any:
        base = served_baseline(state, c, prior)
        if base is None:
            return None
        shape = 1e6  # the volume known: no spread beyond Poisson
        rate = shape / (RATE / c.hops_per_window)
        texts = base.hops * shape / rate
        expected = texts * sum(s * p for s, p in zip(background, surge.BIN_SCORES, strict=True))
        weights = tuple(math.log1p(c.burst_texts * p / expected) for p in surge.BIN_SCORES)
        return surge.Baseline(shape, rate, base.hops, tuple(background), weights)

    def known_burst(state: Any, c: surge.SurgeConfig, prior: Any = None) -> Any:
        base = served_baseline(state, c, prior)
        if base is None:
            return None
        weights = tuple(
            math.log1p(c.burst_texts * q / max(base.texts * s, 1e-12))
            for q, s in zip(burst, base.shares, strict=True)
        )
        return dataclasses.replace(base, weights=weights)

    try:
        if name == "known baseline":
            surge.baseline = known_baseline
        elif name == "known burst":
            surge.baseline = known_burst
        elif name == "no clauses":
            surge.shift_tail = lambda counts, shares: (0.0, math.inf)
            cfg = dataclasses.replace(cfg, min_negatives=1)
        yield {"product": cfg, "brand": surge.BRAND}
    finally:
        surge.baseline, surge.shift_tail = served_baseline, served_shift


def measure() -> dict[str, Any]:
    started = time.perf_counter()
    tail = surge.DEFAULT.max_tail_p
    out: dict[str, Any] = {"tail": tail, "rate_per_hour": RATE, "seeds": evaluation.TUNING_SEEDS}
    cells: dict[str, Any] = {}
    for domain in evaluation.SURGE_DOMAINS:
        corpus = evaluation.score_corpus(domain, click.echo)
        cells[domain] = {}
        for name in VARIANTS:
            with variant(name, corpus) as configs:
                runs = {
                    seed: evaluation.simulate_surges(
                        corpus,
                        configs["product"],
                        brand_cfg=configs["brand"],
                        rate_per_hour=RATE,
                        seed=seed,
                        tails=(tail,),
                    )[tail]
                    for seed in evaluation.TUNING_SEEDS
                }
            cells[domain][name] = evaluation._total(runs, "product")
            click.echo(f"  {domain}, {name}: {cells[domain][name]['recall']:.3f}")
    out["cells"] = cells
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def render(result: dict[str, Any]) -> list[str]:
    lines = [
        f"## {TITLE}",
        "",
        f"Command: `python bench/surge_gap.py` ({result['seconds']:.0f} s on 2 cores). The "
        f"served detector at max tail P {result['tail']:g} on the tuning seeds' 10-text "
        f"traffic at {result['rate_per_hour']:g} texts per product-hour (seeds "
        f"{', '.join(map(str, result['seeds']))}; 60 bursts per domain, so a difference of "
        "one burst is 0.017), then with one thing it estimates or requires handed to it or "
        "taken away: the background's true rate and score shares (`known baseline`), the "
        "burst's true score distribution as the weights (`known burst`), neither the "
        "mean-shift test nor the 6 texts scored ≥ 0.5 (`no clauses`). Recall / false surges "
        "per 10k windows:",
        "",
        "| domain | " + " | ".join(VARIANTS) + " |",
        "|---|" + "---|" * len(VARIANTS),
    ]
    for domain, row in result["cells"].items():
        name = evaluation.DOMAIN_NAMES.get(domain, domain)
        lines.append(
            f"| {name} | "
            + " | ".join(
                f"{row[v]['recall']:.3f} / {row[v]['false_per_10k']:.2f}" for v in VARIANTS
            )
            + " |"
        )
    return [*lines, ""]


@click.command()
@click.option("--doc", type=click.Path(path_type=Path), default=Path("docs/evaluation.md"))
def main(doc: Path) -> None:
    result = measure()
    evaluation.dump(result, RESULTS)
    lines = render(result)
    click.echo("\n".join(lines))
    evaluation.write_section(doc, TITLE, lines)


if __name__ == "__main__":
    main()
