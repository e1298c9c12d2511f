"""Choose the surge detector's warm-up and tail probability, and measure it against the
detector it replaces.

    python bench/tune_surge.py    # ~5-8 min on 2 cores once the texts are scored (cached)

Procedure (fixed before any result was looked at):

* Traffic: ``stream.backtest.evaluation.simulate_surges`` on the **tuning seeds 100-101**
  only, in both review domains (Fine Foods, Rotten Tomatoes) at both background rates (2 and 8
  texts per product-hour): four cells, 230,400 product windows each.
* Grid: ``warmup_windows`` in 16/32/48/96 hops (4/8/12/24 h) x ``max_tail_p`` in
  1e-3/1e-4/1e-5/1e-6; z, minimum negatives, variance floor, alpha and cooldown unchanged.
* Rule: keep the points whose false alerts are at most 0.10 per 10k windows in **every** cell,
  at the product level and at the brand level (brands pool 5 products: they stand in for busy
  subjects, 10 and 40 texts an hour); among them take the highest product recall pooled over
  the cells; ties go to the shorter warm-up (it misses fewer bursts on new products), then to
  the larger tail probability (the more sensitive trigger). If no point qualifies, take the
  lowest worst-cell false rate.

It then replays the report seeds (0-4) through the detector of ``--before`` (a git revision,
default the last one before the warm-up) and through the current one, and writes both, with
the grid, to ``bench/results/tune-surge.json`` and a section of ``docs/evaluation.md``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream.backtest import evaluation
from stream.core import surge

WARMUPS = (16, 32, 48, 96)
TAILS = (1e-3, 1e-4, 1e-5, 1e-6)
MAX_FALSE_PER_10K = 0.10
#: The last revision whose detector had no warm-up and no tail test.
BEFORE_REV = "264e0ca"
RESULTS = Path("bench/results/tune-surge.json")
TITLE = "Surge detector: choosing the warm-up and tail probability, before and after"


def load_revision(rev: str) -> ModuleType:
    """``stream/surge.py`` as it was at ``rev`` (before it moved to ``stream/core/``), imported
    under another name."""
    source = subprocess.run(
        ["git", "show", f"{rev}:stream/surge.py"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "surge_before.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("surge_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["surge_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def pooled(runs: dict[int, Any], kind: str = "product") -> dict[str, Any]:
    total = evaluation._total(runs, kind)
    day1 = sum(
        sum(t < 24 * 3_600_000 for t in r[kind]["false_alert_times_ms"]) for r in runs.values()
    )
    return {**total, "false_day1": day1}


def grid(corpora: dict[str, evaluation.ScoredCorpus]) -> list[dict[str, Any]]:
    points = []
    for warmup in WARMUPS:
        for tail in TAILS:
            cfg = dataclasses.replace(surge.DEFAULT, warmup_windows=warmup, max_tail_p=tail)
            brand = dataclasses.replace(surge.BRAND, warmup_windows=warmup, max_tail_p=tail)
            cells = evaluation._cells(corpora, cfg, brand, evaluation.TUNING_SEEDS)
            by_cell = {cell: pooled(runs) for cell, runs in cells.items()}
            brands = {cell: pooled(runs, "brand") for cell, runs in cells.items()}
            bursts = sum(c["bursts"] for c in by_cell.values())
            points.append(
                {
                    "warmup_windows": warmup,
                    "max_tail_p": tail,
                    "recall": sum(c["recall"] * c["bursts"] for c in by_cell.values()) / bursts,
                    "worst_false_per_10k": max(
                        c["false_per_10k"] for c in [*by_cell.values(), *brands.values()]
                    ),
                    "cells": by_cell,
                    "brand_cells": brands,
                }
            )
            click.echo(
                f"warm-up {warmup:3d}  tail {tail:g}: recall {points[-1]['recall']:.3f}, "
                f"worst cell {points[-1]['worst_false_per_10k']:.2f} false per 10k windows"
            )
    return points


def choose(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The rule in the module docstring."""
    ok = [p for p in points if p["worst_false_per_10k"] <= MAX_FALSE_PER_10K]
    if not ok:
        return min(points, key=lambda p: p["worst_false_per_10k"])
    return max(ok, key=lambda p: (p["recall"], -p["warmup_windows"], p["max_tail_p"]))


def render(result: dict[str, Any]) -> list[str]:
    chosen = result["chosen"]
    cells = list(result["grid"][0]["cells"])
    lines = [
        f"## {TITLE}",
        "",
        f"Command: `python bench/tune_surge.py` ({result['seconds']:.0f} s on 2 cores). Grid on "
        "the tuning seeds 100-101 (every domain and rate of the previous section): warm-up "
        f"{'/'.join(map(str, WARMUPS))} windows x max tail P {'/'.join(f'{t:g}' for t in TAILS)}"
        f". Rule, fixed beforehand: false alerts ≤ {MAX_FALSE_PER_10K} per 10k windows in "
        "every cell at the product and at the brand level, then the highest product recall, "
        "then the shorter warm-up, then the larger tail P. Chosen: **warm-up "
        f"{chosen['warmup_windows']} windows, max tail P {chosen['max_tail_p']:g}**.",
        "",
        "| warm-up | max tail P | product recall | "
        + " | ".join(f"false per 10k, product / brand: {evaluation._cell_name(c)}" for c in cells)
        + " |",
        "|---|---|---|" + "---|" * len(cells),
    ]
    for p in result["grid"]:
        mark = "**" if p == chosen else ""
        lines.append(
            f"| {mark}{p['warmup_windows']}{mark} | {mark}{p['max_tail_p']:g}{mark} | "
            f"{p['recall']:.3f} | "
            + " | ".join(
                f"{p['cells'][c]['false_per_10k']:.2f} / {p['brand_cells'][c]['false_per_10k']:.2f}"
                for c in cells
            )
            + " |"
        )
    lines += [
        "",
        f"Before and after on the report seeds 0-4 (same traffic): before = `stream/core/surge.py` "
        f"at {result['before_rev']} (baseline from zero, no warm-up, trigger z ≥ 3 and ≥ 6 "
        "negatives); after = the chosen point. False alerts in day 1 are those raised "
        "while every product's baseline is new.",
        "",
        "| domain, background rate | level | detector | recall | false alerts (day 1) | "
        "false per 10k windows | median delay (min) | max delay (windows) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    comparison = result["comparison"]
    for cell in comparison["before"]:
        for kind in ("product", "brand"):
            for name in ("before", "after"):
                t = comparison[name][cell][kind]
                lines.append(
                    f"| {evaluation._cell_name(cell)} | {kind} | {name} | {t['recall']:.3f} | "
                    f"{t['false']} ({t['false_day1']}) | **{t['false_per_10k']:.2f}** | "
                    f"{evaluation._fmt_opt(t['median_delay_minutes'])} | {t['max_delay']} |"
                )
    before, after = comparison["before"], comparison["after"]
    worst_per_day = max(c["product"]["false_per_10k"] for c in before.values()) * 96 / 1e4
    costs = "; ".join(
        f"{evaluation._cell_name(c)}: recall {before[c]['product']['recall']:.2f} → "
        f"{after[c]['product']['recall']:.2f}, false per 10k windows "
        f"{before[c]['product']['false_per_10k']:.2f} → {after[c]['product']['false_per_10k']:.2f}"
        for c in before
    )
    lines += [
        "",
        f"What it costs (product level): {costs}. The old recall at 8 texts per product-hour was "
        f"bought with up to {worst_per_day:.2f} false surges per product-day; the new trigger "
        "holds false alerts near its tail probability per window whatever the volume or negative "
        "share, and finds a burst when it is large next to the subject's usual negatives "
        "(recall by burst size in the previous section). The warm-up itself costs no recall on "
        "these bursts (they come after day 3: recall is the same for every warm-up in the "
        "grid); it costs bursts in a product's first hours (previous section).",
        "",
        "Procedure note: the brand-level bound in the rule was added after a smoke run of this "
        "script (one grid point, tuning seed 100 and report seed 0) and before the grid ran; "
        "nothing in the rule or the grid was changed after its results were seen. One variant "
        "was tried afterwards on the tuning seeds only and dropped: a trigger counting the open "
        "hop plus the whole window before it (so a burst is never cut by the hop grid) found no "
        "more bursts and raised more false alerts.",
    ]
    return [*lines, "", ""]


@click.command()
@click.option("--before", "before_rev", default=BEFORE_REV, show_default=True)
@click.option(
    "--doc", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/evaluation.md")
)
@click.option("--grid/--no-grid", "run_grid", default=True, help="--no-grid: before/after only")
@click.option(
    "--render-only", is_flag=True, help="Rewrite the section from bench/results/tune-surge.json."
)
def main(before_rev: str, doc: Path, run_grid: bool, render_only: bool) -> None:
    if render_only:
        result = json.loads(RESULTS.read_text(encoding="utf-8"))
        evaluation.write_section(doc, TITLE, render(result))
        return
    started = time.perf_counter()
    corpora = {d: evaluation.score_corpus(d, click.echo) for d in evaluation.TUNING_DOMAINS}
    points = grid(corpora) if run_grid else []
    chosen = choose(points) if points else None
    click.echo(f"chosen: {chosen and {k: chosen[k] for k in ('warmup_windows', 'max_tail_p')}}")
    old = load_revision(before_rev)
    click.echo(f"before ({before_rev}) and after on seeds {evaluation.REPORT_SEEDS}")
    after = {"warmup_windows": surge.WARMUP_WINDOWS, "max_tail_p": surge.MAX_TAIL_P}
    if chosen is not None:
        after = {k: chosen[k] for k in after}
        if (
            after["warmup_windows"] != surge.WARMUP_WINDOWS
            or after["max_tail_p"] != surge.MAX_TAIL_P
        ):
            click.echo(
                f"NOTE: stream/core/surge.py defaults differ from the chosen {after}; set them"
            )
    detectors = {
        "before": (old.DEFAULT, old.BRAND, old.observe),
        "after": (
            dataclasses.replace(surge.DEFAULT, **after),
            dataclasses.replace(surge.BRAND, **after),
            surge.observe,
        ),
    }
    comparison = {}
    for name, (cfg, brand, observe) in detectors.items():
        cells = evaluation._cells(corpora, cfg, brand, evaluation.REPORT_SEEDS, observe)
        comparison[name] = {
            cell: {kind: pooled(runs, kind) for kind in ("product", "brand")}
            for cell, runs in cells.items()
        }
    result = {
        "grid": points,
        "chosen": chosen,
        "after": after,
        "before_rev": before_rev,
        "comparison": comparison,
        "seconds": round(time.perf_counter() - started, 1),
    }
    evaluation.dump(result, RESULTS)
    if chosen is not None:
        lines = render(result)
        click.echo("\n".join(lines))
        evaluation.write_section(doc, TITLE, lines)


if __name__ == "__main__":
    main()
