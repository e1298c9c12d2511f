"""Public-opinion surges: per product or brand, negative-text counts in hopping event-time
windows against an EWMA baseline, as one pure state-transition function.

``observe`` folds one scored text into a subject's state and returns any ``opinion_surge``
alert. Windows are ``window_ms`` long and advance every ``hop_ms`` (1 h every 15 min by
default), so a burst is never split across two tumbling windows. A surge is flagged as soon
as the open window's negative count departs from the baseline (z-score over the EWMA mean
and variance of past windows) with enough support, without waiting for the window to close.
Hops with no texts count as zero, a surge window enters the baseline clipped (so one burst
does not blind the detector to the next), and a cooldown keeps one surge to one alert.
Everything runs on event time: replaying the same events gives the same alerts.

A mention's ``event_time_ms`` is its text's *counted* time (``stream.core.member.counted_time``):
the event time, or the wall clock when the member stage ran if that was earlier. So the open hop,
window expiry and baseline decay of a subject never move past the wall clock: one mention dated
2099 (with the future bound lifted) would otherwise have closed every window up to 2099, decayed
the baseline and counted every later mention as late, in the 2099 hop. A mention ahead of the
wall clock counts in the hop it arrived in; its alert still carries its own ``event_time``.

A baseline that starts from nothing calls a subject's ordinary traffic a surge, so:

* **Warm-up.** A subject cannot alert until ``warmup_windows`` hops of its own history have
  closed. Windows that started before its first hop are partial and stay out of the baseline,
  which is a plain running average until it has ``1 / alpha`` windows (no bias towards zero).
* **A trigger on the subject's own rate.** Besides z and the minimum support, the window's
  negatives must be unlikely under a Poisson count at the subject's baseline mean (its usual
  volume times its usual negative share): at 2 reviews per hour and 51 % of them negative, 6
  negatives in an hour happen about once in 1,500 windows, so the old "6 negatives" fired there.
  ``max_tail_p`` is thus close to a false-alarm rate per window whatever the subject's volume
  or share; the price is recall on bursts that are small next to the subject's usual
  negatives (10 negatives in an hour on a product with 8 reviews an hour is rarely flagged).

``warmup_windows`` and ``max_tail_p`` were picked on simulation seeds 100-101 by
``bench/tune_surge.py`` (rule and grid in its docstring); docs/evaluation.md reports seeds 0-4.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Picked by ``bench/tune_surge.py`` on seeds 100-101 (see the module docstring).
WARMUP_WINDOWS = 16
MAX_TAIL_P = 1e-5


@dataclass(frozen=True, slots=True)
class SurgeConfig:
    """Window, baseline and alert policy (defaults measured by ``riskstream eval surge``)."""

    window_ms: int = 3_600_000
    hop_ms: int = 900_000
    alpha: float = 0.02
    #: Departure from baseline, in baseline standard deviations, that counts as a surge.
    #: z, min_negatives and variance_floor were picked on simulation seeds 100-101 (a 27-point
    #: grid); docs/evaluation.md reports seeds 0-4, which played no part in the choice.
    z_threshold: float = 3.0
    #: Floor on the baseline variance, so a quiet product needs real volume to alert.
    variance_floor: float = 1.0
    min_negatives: int = 6
    #: Windows after an alert during which the subject cannot alert again.
    cooldown_windows: int = 3
    #: Negative-event ids carried by an alert.
    sample_ids: int = 5
    #: Empty hops folded one by one before the baseline is decayed in one step.
    max_gap_hops: int = 2_000
    #: Hops of a subject's own history before it may alert (a new subject has no baseline).
    warmup_windows: int = WARMUP_WINDOWS
    #: The window's negatives must have at most this chance under a Poisson count at the
    #: subject's baseline mean, so the trigger rises with the subject's own negative rate.
    max_tail_p: float = MAX_TAIL_P

    @property
    def hops_per_window(self) -> int:
        return self.window_ms // self.hop_ms


DEFAULT = SurgeConfig()
#: Brands pool several products, so their background is higher and noisier: a stricter
#: threshold and more support (picked on seeds 100-101 like the product settings).
BRAND = SurgeConfig(z_threshold=4.0, min_negatives=8)
#: The settings per subject kind.
CONFIGS = {"product": DEFAULT, "brand": BRAND}


def hop_start(event_ms: int, hop_ms: int) -> int:
    return event_ms - event_ms % hop_ms


def empty_state(kind: str, subject_id: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "id": subject_id,
        "hop": None,  # start of the open hop
        "buckets": [],  # [hop start, negatives, total] for the hops inside the open window
        "sample": [],
        "mean": 0.0,
        "var": 0.0,
        "windows": 0,
        "cooldown_until": None,
        "late": 0,
    }


def _window_counts(state: Mapping[str, Any]) -> tuple[int, int]:
    return sum(b[1] for b in state["buckets"]), sum(b[2] for b in state["buckets"])


def _fold_window(state: dict[str, Any], negatives: int, cfg: SurgeConfig) -> None:
    """EWMA of the window's negative count and its variance; surges enter clipped.

    The first ``hops_per_window - 1`` windows of a subject began before its first hop, so they
    are skipped; after that the weight is ``max(alpha, 1 / full windows)``, a running mean
    and variance until the EWMA takes over, so a young baseline is not pulled towards zero.
    Nothing is clipped during the warm-up: there is no baseline yet to clip against."""
    state["windows"] += 1
    full = state["windows"] - (cfg.hops_per_window - 1)
    if full <= 0:
        return
    value = float(negatives)
    if state["windows"] > cfg.warmup_windows:
        ceiling = state["mean"] + cfg.z_threshold * math.sqrt(state["var"] + cfg.variance_floor)
        value = min(value, ceiling)
    weight = max(cfg.alpha, 1.0 / full)
    delta = value - state["mean"]
    state["mean"] += weight * delta
    state["var"] = (1 - weight) * (state["var"] + weight * delta * delta)


def _advance(state: dict[str, Any], hop: int, cfg: SurgeConfig) -> None:
    """Close every hop up to ``hop`` (each closes one window into the baseline), open ``hop``."""
    if state["hop"] is not None:
        gap = (hop - state["hop"]) // cfg.hop_ms
        for step in range(min(gap, cfg.max_gap_hops)):
            _fold_window(state, _window_counts(state)[0], cfg)
            oldest = state["hop"] + (step + 2) * cfg.hop_ms - cfg.window_ms
            state["buckets"] = [b for b in state["buckets"] if b[0] >= oldest]
        if gap > cfg.max_gap_hops:  # a long silence: decay in closed form
            decay = (1 - cfg.alpha) ** (gap - cfg.max_gap_hops)
            state["mean"] *= decay
            state["var"] *= decay
            state["windows"] += gap - cfg.max_gap_hops
            state["buckets"] = []
        if not any(b[1] for b in state["buckets"]):
            state["sample"] = []
    state["hop"] = hop
    state["buckets"] = [b for b in state["buckets"] if b[0] > hop - cfg.window_ms]
    state["buckets"].append([hop, 0, 0])


def surge_score(negatives: int, state: Mapping[str, Any], cfg: SurgeConfig) -> float:
    """How many baseline standard deviations ``negatives`` sits above the baseline mean."""
    return (negatives - state["mean"]) / math.sqrt(state["var"] + cfg.variance_floor)


def poisson_tail(count: int, mean: float) -> float:
    """P(N >= count) for N ~ Poisson(mean): how often the baseline alone gives ``count``.

    Summed upwards from ``count`` (not ``1 - CDF``) so tiny tails keep their precision; only
    called for ``count`` above the mean, where the terms shrink."""
    if count <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    term = math.exp(count * math.log(mean) - mean - math.lgamma(count + 1))
    total, k = term, count
    while term > total * 1e-12:
        k += 1
        term *= mean / k
        total += term
    return min(total, 1.0)


def observe(
    state: Mapping[str, Any] | None,
    kind: str,
    subject_id: str,
    event_ms: int,
    negative: bool,
    event_id: str,
    cfg: SurgeConfig = DEFAULT,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Fold one scored text about the subject -> (new state, an alert or None)."""
    current = {**(state or empty_state(kind, subject_id))}
    current["buckets"] = [list(b) for b in current["buckets"]]
    current["sample"] = list(current["sample"])
    hop = hop_start(event_ms, cfg.hop_ms)
    if current["hop"] is None or hop > current["hop"]:
        _advance(current, hop, cfg)
    elif hop < current["hop"]:
        current["late"] += 1  # its hop is closed: counted in the open one, and noted
    bucket = current["buckets"][-1]
    bucket[2] += 1
    if not negative:
        return current, None
    bucket[1] += 1
    if len(current["sample"]) < cfg.sample_ids:
        current["sample"].append(event_id)
    negatives, _ = _window_counts(current)
    until = current["cooldown_until"]
    if (until is not None and current["hop"] < until) or negatives < cfg.min_negatives:
        return current, None
    if current["windows"] < cfg.warmup_windows:
        return current, None
    score = surge_score(negatives, current, cfg)
    if score < cfg.z_threshold:
        return current, None
    tail = poisson_tail(negatives, current["mean"])
    if tail > cfg.max_tail_p:
        return current, None
    current["cooldown_until"] = current["hop"] + cfg.cooldown_windows * cfg.window_ms
    return current, surge_alert(current, score, cfg, tail)


def surge_alert(
    state: Mapping[str, Any], score: float, cfg: SurgeConfig, tail: float | None = None
) -> dict[str, Any]:
    """An ``opinion_surge`` alert body (the caller adds model version and event time)."""
    negatives, total = _window_counts(state)
    if tail is None:
        tail = poisson_tail(negatives, state["mean"])
    start = state["hop"] + cfg.hop_ms - cfg.window_ms
    key = f"opinion_surge|{state['kind']}|{state['id']}|{state['hop']}"
    return {
        "alert_id": hashlib.sha1(key.encode()).hexdigest()[:20],
        "alert_type": "opinion_surge",
        "severity": "high" if score >= 2 * cfg.z_threshold else "medium",
        "subject": {"kind": state["kind"], "id": state["id"]},
        "score": round(score, 4),
        "reasons": [
            f"{negatives} negative of {total} texts in the last {cfg.window_ms // 60_000} min",
            f"baseline {state['mean']:.2f} ± {math.sqrt(state['var']):.2f} negatives per window "
            f"over {state['windows']} windows",
            f"chance of {negatives} or more at the baseline rate: {tail:.1e} per window",
        ],
        "event_ids": list(state["sample"]),
        "window": {
            "start_ms": start,
            "end_ms": start + cfg.window_ms,
            "negatives": negatives,
            "total": total,
            "baseline_mean": round(state["mean"], 4),
            "baseline_std": round(math.sqrt(state["var"]), 4),
        },
    }


# --------------------------------------------------------------------------- stream wiring


#: Applied event ids a subject state remembers, so redelivered events are not counted twice.
RECENT_EVENT_IDS = 64


def subject_events(member_evt: Mapping[str, Any], negative_threshold: float) -> list[dict]:
    """The product and brand mentions of one scored review or member chat (none otherwise),
    at the event's counted time (``member_evt["event_time_ms"]``, see the module docstring)."""
    kind = member_evt["event_type"]
    data = member_evt["event"]
    scores = member_evt.get("scores") or {}
    if "sentiment_negative" not in scores:
        return []
    if kind == "chat" and data.get("sender_role") != "member":
        return []
    base = {
        "event_id": data["event_id"],
        "event_time": data["event_time"],
        "event_time_ms": member_evt["event_time_ms"],
        "negative": scores["sentiment_negative"] >= negative_threshold,
        "model_version": member_evt.get("model_version"),
    }
    return [
        {**base, "kind": field if field == "brand" else "product", "id": str(data[field])}
        for field in ("product_id", "brand")
        if data.get(field)
    ]


def apply_subject_event(
    state: Mapping[str, Any] | None,
    subject_evt: Mapping[str, Any],
    configs: Mapping[str, SurgeConfig] = CONFIGS,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Idempotent ``observe`` for the stream: (new state or None if a duplicate, alert)."""
    cfg = configs[subject_evt["kind"]]
    seen = (state or {}).get("recent_event_ids", [])
    if subject_evt["event_id"] in seen:
        return None, None
    new, alert = observe(
        state,
        subject_evt["kind"],
        subject_evt["id"],
        subject_evt["event_time_ms"],
        subject_evt["negative"],
        subject_evt["event_id"],
        cfg,
    )
    new["recent_event_ids"] = [*seen, subject_evt["event_id"]][-RECENT_EVENT_IDS:]
    if alert is not None:
        alert.update(
            model_version=subject_evt["model_version"], event_time=subject_evt["event_time"]
        )
    return new, alert


def subject_key(subject_evt: Mapping[str, Any]) -> bytes:
    return f"{subject_evt['kind']}:{subject_evt['id']}".encode()


# --------------------------------------------------------------------------- event-time order


@dataclass(frozen=True, slots=True)
class ReorderPolicy:
    """How long a subject's mentions wait to be put in event-time order before ``observe``.

    Mentions of one subject come from every member partition, so their arrival order varies
    from run to run. Held until the oldest has waited ``hold_s`` (processing time), then
    folded sorted by (event time, event id), a burst gives the same windows, baseline and
    alert in every replay. The price is up to ``hold_s`` of extra alert latency."""

    hold_s: float = 2.0
    #: A busy subject is flushed at this many pending mentions, whatever their age.
    max_pending: int = 256


REORDER = ReorderPolicy()


def hold_mention(
    state: Mapping[str, Any] | None, subject_evt: Mapping[str, Any], arrived_s: float
) -> dict[str, Any] | None:
    """Add a mention to the subject's pending list (None if it was seen already)."""
    current = dict(state or empty_state(subject_evt["kind"], subject_evt["id"]))
    pending = current.get("pending", [])
    event_id = subject_evt["event_id"]
    if event_id in current.get("recent_event_ids", []) or any(
        p["event_id"] == event_id for p in pending
    ):
        return None
    current["pending"] = [*pending, {**subject_evt, "arrived_s": arrived_s}]
    return current


def flush_due(state: Mapping[str, Any], now_s: float, policy: ReorderPolicy = REORDER) -> bool:
    pending = state.get("pending") or []
    if len(pending) >= policy.max_pending:
        return True
    return bool(pending) and now_s - min(p["arrived_s"] for p in pending) >= policy.hold_s


def flush_pending(
    state: Mapping[str, Any], configs: Mapping[str, SurgeConfig] = CONFIGS
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fold every pending mention in (event time, event id) order -> (state, alerts)."""
    current: dict[str, Any] = {**state, "pending": []}
    alerts = []
    ordered = sorted(state.get("pending") or [], key=lambda p: (p["event_time_ms"], p["event_id"]))
    for mention in ordered:
        mention = {k: v for k, v in mention.items() if k != "arrived_s"}
        new, alert = apply_subject_event(current, mention, configs)
        if new is not None:
            current = new
        if alert is not None:
            alerts.append(alert)
    return current, alerts
