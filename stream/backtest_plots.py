"""Plots of a backtest for ``report.md``: alerts over event time, and precision-recall curves
wherever the replayed events carry labels. matplotlib draws off-screen (Agg)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stream.backtest import InputFacts, ReplayOutputs, labelled_arrays, unique_alerts
from stream.codec import parse_event_time

HOUR_MS = 3_600_000


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def alerts_over_time(outputs: ReplayOutputs, path: Path) -> bool:
    """Alerts per event-time hour, stacked by type."""
    alerts = unique_alerts(outputs.alerts)
    if not alerts:
        return False
    per_type: dict[str, Counter] = defaultdict(Counter)
    for alert in alerts:
        per_type[alert["alert_type"]][parse_event_time(alert["event_time"]) // HOUR_MS] += 1
    hours = sorted({h for counts in per_type.values() for h in counts})
    start = hours[0]
    x = np.arange(hours[-1] - start + 1)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3))
    bottom = np.zeros(len(x))
    for alert_type, counts in sorted(per_type.items()):
        heights = np.array([counts.get(start + i, 0) for i in x], dtype=float)
        ax.bar(x, heights, bottom=bottom, label=alert_type, width=1.0)
        bottom += heights
    ax.set_xlabel("event time, hours since the first alert")
    ax.set_ylabel("alerts")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def precision_recall(y: np.ndarray, score: np.ndarray, threshold: float, title: str, path: Path):
    """The precision-recall curve of a labelled score, with the configured threshold marked."""
    order = np.argsort(-score, kind="stable")
    hits = np.cumsum(y[order])
    precision = hits / np.arange(1, len(y) + 1)
    recall = hits / max(int(y.sum()), 1)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(recall, precision)
    flagged = score >= threshold
    if flagged.any():
        tp = int((flagged & (y == 1)).sum())
        ax.plot([tp / max(int(y.sum()), 1)], [tp / flagged.sum()], "o", label=f"≥ {threshold}")
        ax.legend(fontsize=8)
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1.02), ylim=(0, 1.02))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def draw_plots(
    facts: Sequence[InputFacts],
    outputs: ReplayOutputs,
    folder: Path,
    label: str,
    thresholds: dict[str, float],
) -> list[str]:
    """Draw what the run's data supports; returns the file names written in ``folder``."""
    names = []
    name = f"alerts-over-time-{label}.png"
    if alerts_over_time(outputs, folder / name):
        names.append(name)
    for alert_type, (y, score, _) in labelled_arrays(facts, outputs).items():
        if y.any() and not y.all():
            name = f"pr-{alert_type}-{label}.png"
            precision_recall(
                y, score, thresholds[alert_type], f"{alert_type} ({label})", folder / name
            )
            names.append(name)
    return names
