"""Live terminal view and exit summary of a run, read from the worker's /metrics page."""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from rich.table import Table


@dataclass
class MetricsSnapshot:
    """Samples summed by metric name, and by (name, label value) for the one-label counters."""

    at: float
    totals: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    by_label: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    #: Shadow scoring: (head, decision) -> [agreeing, compared] texts.
    shadow_decisions: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def get(self, name: str) -> float:
        return self.totals.get(name, 0.0)

    def labelled(self, name: str) -> dict[str, float]:
        return {label: v for (n, label), v in self.by_label.items() if n == name and v}


def parse_metrics(text: str, at: float) -> MetricsSnapshot:
    snapshot = MetricsSnapshot(at)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            snapshot.totals[sample.name] += sample.value
            if len(sample.labels) == 1:
                (label,) = sample.labels.values()
                snapshot.by_label[(sample.name, label)] += sample.value
            if sample.name == SHADOW_DECISIONS:
                key = (sample.labels["head"], sample.labels["decision"])
                counts = snapshot.shadow_decisions.setdefault(key, [0.0, 0.0])
                counts[0] += sample.value if sample.labels["agree"] == "true" else 0.0
                counts[1] += sample.value
    return snapshot


def shadow_summary(snapshot: MetricsSnapshot) -> dict | None:
    """Shadow scoring's figures: texts compared and skipped, and the agreement per head and
    decision (``"sentiment_negative alert": 0.97``); None when no shadow ran."""
    compared = snapshot.get(SHADOW_SCORED)
    skipped = snapshot.labelled(SHADOW_DROPPED)
    if not compared and not skipped:
        return None
    return {
        "compared": compared,
        "skipped": skipped,
        "agreement": {
            f"{head} {decision}": round(agree / total, 4)
            for (head, decision), (agree, total) in sorted(snapshot.shadow_decisions.items())
            if total
        },
    }


def scrape(url: str, at: float, timeout_s: float = 2.0) -> MetricsSnapshot | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return parse_metrics(response.read().decode(), at)
    except OSError:
        return None


CONSUMED = "riskstream_stream_events_consumed_total"
SCORED = "riskstream_stream_scored_events_total"
DEAD = "riskstream_stream_dead_letters_total"
ALERTS = "riskstream_stream_alerts_total"
PROFILES = "riskstream_stream_profiles_published_total"
MEMBER_DONE = "riskstream_stream_member_events_processed_total"
SUBJECT_DONE = "riskstream_stream_subject_events_processed_total"
SURGE_HELD = "riskstream_surge_held_subjects"
SHADOW_SCORED = "riskstream_shadow_scored_total"
SHADOW_DROPPED = "riskstream_shadow_dropped_total"
SHADOW_DECISIONS = "riskstream_shadow_decisions_total"
BATCH_SUM = "riskstream_model_batch_size_sum"
BATCH_COUNT = "riskstream_model_batch_size_count"
LATENCY_SUM = "riskstream_model_batch_latency_seconds_sum"
RSS = "process_resident_memory_bytes"
LAG = "riskstream_stream_consumer_lag"
E2E = "riskstream_stream_e2e_latency_seconds_bucket"


def rate(now: MetricsSnapshot, before: MetricsSnapshot | None, name: str) -> float:
    if before is None or now.at <= before.at:
        return 0.0
    return (now.get(name) - before.get(name)) / (now.at - before.at)


def mean_batch(now: MetricsSnapshot, before: MetricsSnapshot | None = None) -> float:
    count = now.get(BATCH_COUNT) - (before.get(BATCH_COUNT) if before else 0.0)
    total = now.get(BATCH_SUM) - (before.get(BATCH_SUM) if before else 0.0)
    return total / count if count else 0.0


def quantile(
    now: MetricsSnapshot, before: MetricsSnapshot | None, bucket: str, q: float
) -> float | None:
    """The q-quantile of a histogram over the last interval (upper bound of its bucket), as
    Prometheus's histogram_quantile would bound it; None without observations."""
    edges = sorted(
        (float(le), count - (before.by_label.get((bucket, le), 0.0) if before else 0.0))
        for (name, le), count in now.by_label.items()
        if name == bucket
    )
    total = edges[-1][1] if edges else 0.0
    if total <= 0:
        return None
    return next(le for le, cumulative in edges if cumulative >= q * total)


def render(
    now: MetricsSnapshot | None,
    before: MetricsSnapshot | None,
    produced: int,
    elapsed_s: float,
    worker_state: str,
) -> Table:
    table = Table(title=f"riskstream — {elapsed_s:5.0f}s — worker {worker_state}", min_width=60)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("produced (demo traffic)", f"{produced:,}")
    if now is None:
        table.add_row("worker metrics", "waiting for the worker…")
        return table
    table.add_row("consumed", f"{now.get(CONSUMED):,.0f}  ({rate(now, before, CONSUMED):,.0f}/s)")
    table.add_row("scored events", f"{now.get(SCORED):,.0f}  ({rate(now, before, SCORED):,.0f}/s)")
    table.add_row("batch size (mean, last interval)", f"{mean_batch(now, before):.1f}")
    table.add_row("consumer lag (records)", f"{now.get(LAG):,.0f}")
    p99 = quantile(now, before, E2E, 0.99)
    table.add_row("end-to-end p99 (last interval)", "-" if p99 is None else f"≤ {p99:g} s")
    table.add_row("dead letters", _breakdown(now.get(DEAD), now.labelled(DEAD)))
    table.add_row("alerts", _breakdown(now.get(ALERTS), now.labelled(ALERTS)))
    table.add_row("profiles published", f"{now.get(PROFILES):,.0f}")
    table.add_row("worker memory (RSS)", f"{now.get(RSS) / 2**20:,.0f} MiB")
    return table


def _breakdown(total: float, parts: dict[str, float]) -> str:
    detail = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(parts.items()))
    return f"{total:,.0f}" + (f"  ({detail})" if detail else "")
