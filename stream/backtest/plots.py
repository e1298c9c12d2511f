"""Plots of a backtest for ``report.md``: alerts over event time, and precision-recall curves
wherever the replayed events carry labels. matplotlib draws off-screen (Agg)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.backtest.report import InputFacts, ReplayOutputs, labelled_arrays, unique_alerts
from stream.core.codec import parse_event_time

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: Bin widths for alerts over time, narrowest first; the first giving at most ``MAX_BARS``
#: bars over the alerts' span is used (a multi-year replay gets years, a day gets hours).
BINS = (
    ("hour", HOUR_MS),
    ("6 hours", 6 * HOUR_MS),
    ("day", DAY_MS),
    ("week", 7 * DAY_MS),
    ("30 days", 30 * DAY_MS),
    ("quarter (91 days)", 91 * DAY_MS),
    ("year (365 days)", 365 * DAY_MS),
)
MAX_BARS = 200


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class AlertBins:
    """Alert counts per type over equal event-time bins (bin ``i`` starts at
    ``start_ms + i * bin_ms``)."""

    bin_name: str
    bin_ms: int
    start_ms: int
    counts: dict[str, np.ndarray]

    @property
    def bars(self) -> int:
        return len(next(iter(self.counts.values()))) if self.counts else 0


def bin_alerts(times_by_type: Mapping[str, Sequence[int]], max_bars: int = MAX_BARS) -> AlertBins:
    """Choose the narrowest bin that keeps the span within ``max_bars`` bars, then count."""
    every = [t for times in times_by_type.values() for t in times]
    first, last = min(every), max(every)
    fits = [(n, w) for n, w in BINS if last // w - first // w + 1 <= max_bars]
    if fits:
        name, width = fits[0]
    else:  # longer than 200 years: whole multiples of a year
        years = -(-(last - first + 1) // (BINS[-1][1] * (max_bars - 1)))
        name, width = f"{years} years", BINS[-1][1] * years
    start = first // width * width
    bars = (last - start) // width + 1
    counts = {
        alert_type: np.bincount((np.asarray(times) - start) // width, minlength=bars)
        for alert_type, times in sorted(times_by_type.items())
    }
    return AlertBins(name, width, start, counts)


def alerts_over_time(outputs: ReplayOutputs, path: Path) -> AlertBins | None:
    """Alerts per event-time bin, stacked by type; the bin (hour ... year) is chosen from the
    span so the plot has at most ``MAX_BARS`` bars whatever the replay covers."""
    alerts = unique_alerts(outputs.alerts)
    if not alerts:
        return None
    times: dict[str, list[int]] = defaultdict(list)
    for alert in alerts:
        times[alert["alert_type"]].append(parse_event_time(alert["event_time"]))
    binned = bin_alerts(times)
    plt = _pyplot()
    import matplotlib.dates as mdates

    days = binned.bin_ms / DAY_MS
    left = mdates.date2num(np.datetime64(binned.start_ms, "ms")) + days * np.arange(binned.bars)
    fig, ax = plt.subplots(figsize=(8, 3))
    bottom = np.zeros(binned.bars)
    for alert_type, heights in binned.counts.items():
        ax.bar(left, heights, bottom=bottom, width=days, align="edge", label=alert_type)
        bottom += heights
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlim(left[0], left[-1] + days)
    ax.set_xlabel("event time (UTC)")
    ax.set_ylabel(f"alerts per {binned.bin_name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return binned


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
