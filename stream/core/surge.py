"""Public-opinion surges: per product or brand, a window of scored texts against what the
subject's own history (and, while it is young, the stream's) makes usual, as one pure
state-transition function.

``observe`` folds one scored text about a subject into its state and returns any
``opinion_surge`` alert. Windows are ``window_ms`` long and advance every ``hop_ms`` (1 h every
5 min by default), so a burst is never split across two tumbling windows, and a surge is
flagged as soon as the open window departs from the baseline, without waiting for it to close.
The hop is fine because a burst starts at any minute: on a 15-minute grid the best window held
on average seven eighths of an hour-long burst, and the detector lost a tenth of its recall at
2 texts per product-hour to that alone (``bench/tune_surge.py``'s bound, with bursts placed as
the simulation places them). A state kept under another hop is rescaled on read
(``_rehop``).
A cooldown keeps one surge to one alert. Everything runs on event time: replaying the same
events gives the same alerts.

A mention's ``event_time_ms`` is its text's *counted* time (``stream.core.member.counted_time``):
the event time, or the wall clock when the member stage ran if that was earlier. So the open hop,
window expiry and baseline decay of a subject never move past the wall clock: one mention dated
2099 (with the future bound lifted) would otherwise have closed every window up to 2099, decayed
the baseline and counted every later mention as late, in the 2099 hop. A mention ahead of the
wall clock counts in the hop it arrived in; its alert still carries its own ``event_time``.

**What a window is compared with.** Each text lands in one of ``BINS`` bins of its
P(negative) (``p_negative`` on the mention; a mention written before scores were carried has
only ``negative`` and counts at ``LEGACY_SCORES``). A subject's baseline is its texts per hop
and their share per bin, from the hops that have left the open window (so a burst is never
compared with itself), EWMA-discounted (``alpha`` per hop). It is a posterior: texts per hop
~ Gamma(shape, rate) and the bin shares ~ Dirichlet, shrunk towards

* the **stream prior** while the subject is young: the same figures pooled over every subject
  of its kind on the partition (``absorb`` folds a subject's closed windows into it; the
  stage keeps it under ``PRIOR_KEY``), with its weight falling linearly to zero over the
  subject's first ``prior_hops`` hops — so a subject older than that alerts on its own
  history alone, whatever the prior held — and the prior's volume shape (how alike subjects'
  volumes are) estimated from the spread of their window totals (method of moments,
  capped by ``prior_max_shape``);
* a weak fixed prior always (``base_shape`` for the volume, ``bin_pseudo`` texts per bin), so
  a subject with neither history nor stream prior has a predictive too wide to alert on.

**The statistic.** The window's texts are weighted by the log likelihood ratio of "a burst of
``burst_texts`` negative texts on top of the baseline" against "the baseline": a text scored
``p`` weighs ``log(1 + burst_texts * p / E[sum of p per window])``, taking the scores as
roughly calibrated (the four evaluation domains of ``docs/evaluation.md`` bear it out), so
what counts is a shift of the window's summed P(negative) against the subject's own, and a
background the model half misreads as negative raises the expectation rather than the count.
A window alerts when

* the chance of that much weight under the baseline's predictive (Poisson counts per bin, the
  volume Gamma-mixed: a young subject's uncertain volume widens it) is at most
  ``max_tail_p`` — a saddlepoint tail (``weighted_tail``), so the trigger is close to a
  false-alarm rate per window whatever the subject's volume or negative share;
* its mean P(negative) is unusual for the subject's texts, their number fixed, at the
  ``max_shift_p`` level (``shift_tail``): a busier hour whose texts read as usual is no
  opinion surge; and when the window before it was already far busier than the baseline
  (``step_z``), that window is the volume baseline (a brand whose product launched);
* at least ``min_negatives`` of its texts were counted negative (``negative`` on the mention).

An alerted window's hops stay out of the baseline (and the stream prior), so one surge does
not blind the detector to the next. ``max_tail_p`` (products, brands) was picked on the
recall / false-surge curves of simulation seeds 100-101 by ``bench/tune_surge.py`` (rule in its
docstring); docs/evaluation.md reports seeds 0-4.

**Replays.** A subject's alerts depend on its own mentions, folded in event-time order, and
while it is younger than ``prior_hops`` on the stream prior it was handed. The prior is folded
from other subjects in the order the stage flushes them, so two replays of the same events
give the same alerts for every subject past its first ``prior_hops`` hops, and for younger
ones when the prior they meet is the same (in a replay the prior differs only by what other
subjects' flushes the 2-second hold put before or after).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Bins of P(negative) a subject's baseline keeps per-hop counts of (equal width).
BINS = 10
#: The score each bin stands for (its midpoint).
BIN_SCORES = tuple((b + 0.5) / BINS for b in range(BINS))
#: The score a mention written before mentions carried ``p_negative`` counts at.
LEGACY_SCORES = {True: 0.9, False: 0.1}
#: Bins read as negative in an alert's baseline figures (P(negative) >= 0.5).
NEGATIVE_BINS = range(BINS // 2, BINS)
#: The reserved key prefix of a partition's stream prior in the surge table (no subject key
#: starts with "~": they are "product:..." and "brand:..."); see ``prior_key``.
PRIOR_KEY = "~stream-prior"

#: The hop of states written before they said which hop they were kept under.
LEGACY_HOP_MS = 900_000

#: Picked by ``bench/tune_surge.py`` on seeds 100-101 (see the module docstring).
MAX_TAIL_P = 3e-6
BRAND_MAX_TAIL_P = 1e-8


@dataclass(frozen=True, slots=True)
class SurgeConfig:
    """Window, baseline, prior and alert policy (measured by ``riskstream eval surge``)."""

    window_ms: int = 3_600_000
    hop_ms: int = 300_000
    #: Discount per hop of the subject's baseline (1 / alpha hops: 500 hops, about 42 h).
    alpha: float = 0.002
    #: When the window before the open one held more texts than the baseline's volume puts
    #: above this many standard deviations, that window is the volume baseline: a subject
    #: that got busier (a brand's new product) is usual again an hour later.
    step_z: float = 4.0
    #: Texts counted negative (``negative`` on the mention) a window needs to alert.
    min_negatives: int = 6
    #: Windows after an alert during which the subject cannot alert again.
    cooldown_windows: int = 3
    #: Negative-event ids carried by an alert.
    sample_ids: int = 5
    #: Empty hops folded one by one before the baseline is decayed in one step.
    max_gap_hops: int = 6_000
    #: The window's weighted count must have at most this chance under the baseline.
    max_tail_p: float = MAX_TAIL_P
    #: The burst the weights are tuned to detect: texts in one window.
    burst_texts: float = 10.0
    #: Hops over which the stream prior's weight falls from full to zero (a day).
    prior_hops: int = 288
    #: Texts' worth of weight the stream prior's bin shares carry at full weight.
    prior_texts: float = 50.0
    #: Windows the stream prior must hold before it is used (one closes every hop).
    prior_min_windows: int = 1_200
    #: Bounds on the stream prior's volume shape (how alike subjects' volumes are taken to be).
    prior_min_shape: float = 0.5
    prior_max_shape: float = 20.0
    #: Discount per hop of event time of the stream prior (1 / this many hops: a week).
    prior_memory_hops: int = 2_016
    #: The fixed prior: volume shape and texts per bin every subject starts with.
    base_shape: float = 0.5
    bin_pseudo: float = 0.1
    #: The window's mean P(negative) must also be this unlikely for the subject's texts (their
    #: number fixed): a window that is only busier, its texts read as usual, is no opinion
    #: surge (``shift_tail``).
    max_shift_p: float = 0.2
    #: Windows whose weighted count is less than this many standard deviations above the
    #: baseline's mean skip the tail computation (it would be far above any ``max_tail_p``).
    gate_z: float = 2.0

    @property
    def hops_per_window(self) -> int:
        return self.window_ms // self.hop_ms


DEFAULT = SurgeConfig()
#: Brands pool several products, so their background is larger and mixed, and their volume
#: steps up when a product launches or takes off: more support, a window must read clearly
#: more negative than the brand's usual texts, and a busier last hour becomes the volume
#: baseline sooner (``max_tail_p`` picked on seeds 100-101 like the product one).
BRAND = SurgeConfig(min_negatives=8, max_tail_p=BRAND_MAX_TAIL_P, max_shift_p=0.01, step_z=2.0)
#: The settings per subject kind.
CONFIGS = {"product": DEFAULT, "brand": BRAND}


def hop_start(event_ms: int, hop_ms: int) -> int:
    return event_ms - event_ms % hop_ms


def score_bin(p_negative: float) -> int:
    return min(max(int(p_negative * BINS), 0), BINS - 1)


def empty_state(kind: str, subject_id: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "id": subject_id,
        "hop": None,  # start of the open hop
        "first_hop": None,  # start of the subject's first hop
        #: [hop start, negatives, total, [texts per bin]] for the hops inside the open window
        "buckets": [],
        "sample": [],
        #: the baseline: discounted hops and texts per bin of the hops that left the window
        "exposure": 0.0,
        "counts": [0.0] * BINS,
        "recent": [],  # texts in each of the last hops that left the window (a window's worth)
        "windows": 0,  # hops closed since the first (the subject's age)
        "cooldown_until": None,
        #: the alerted window's hops, [from, until), stay out of the baseline and the prior
        "quarantine": None,
        "late": 0,
        #: closed windows not yet absorbed into the stream prior (see ``absorb``)
        "contrib": _empty_aggregate(),
    }


def _migrate(state: Mapping[str, Any], cfg: SurgeConfig) -> dict[str, Any]:
    """A state written before per-bin baselines (mean and variance of negatives per window):
    its negative rate is kept, over as many hops as its EWMA held, with as many non-negative
    texts assumed; its buckets' texts count at ``LEGACY_SCORES``."""
    old = dict(state)
    hpw = cfg.hops_per_window
    exposure = float(min(old.get("windows", 0), 1 / cfg.alpha))
    per_hop = max(float(old.get("mean", 0.0)), 0.0) / hpw
    counts = [0.0] * BINS
    counts[score_bin(LEGACY_SCORES[True])] = per_hop * exposure
    counts[score_bin(LEGACY_SCORES[False])] = per_hop * exposure
    buckets = []
    for hop, negatives, total, *_ in old.get("buckets", []):
        bins = [0] * BINS
        bins[score_bin(LEGACY_SCORES[True])] += negatives
        bins[score_bin(LEGACY_SCORES[False])] += total - negatives
        buckets.append([hop, negatives, total, bins])
    for key in ("mean", "var"):
        old.pop(key, None)
    if old.get("hop") is not None:  # its age, as far as the state knows it
        old["first_hop"] = old["hop"] - old.get("windows", 0) * cfg.hop_ms
    return {
        **empty_state(old["kind"], old["id"]),
        **old,
        "buckets": buckets,
        "exposure": exposure,
        "counts": counts,
    }


def _rehop(state: dict[str, Any], cfg: SurgeConfig) -> dict[str, Any]:
    """A state kept under another ``hop_ms`` (``LEGACY_HOP_MS`` when it does not say), in this
    one's hops: the baseline's exposure, the age and the pending prior contribution are counted
    in hops, so they scale by the ratio of the hops; texts and times stay as they are. The open
    window's buckets keep their start times (an old hop's texts count in one new hop); the last
    window's texts per hop (the step guard) start again."""
    kept = state.get("hop_ms", LEGACY_HOP_MS if state.get("hop") is not None else cfg.hop_ms)
    if kept == cfg.hop_ms:
        return {**state, "hop_ms": cfg.hop_ms}
    ratio = kept / cfg.hop_ms
    return {
        **state,
        "hop_ms": cfg.hop_ms,
        "exposure": state["exposure"] * ratio,
        "windows": round(state["windows"] * ratio),
        "recent": [],
        "contrib": _rehop_aggregate(state.get("contrib") or _empty_aggregate(), kept, cfg),
    }


def _copy(state: Mapping[str, Any] | None, kind: str, subject_id: str, cfg: SurgeConfig) -> dict:
    if state is None:
        return {**empty_state(kind, subject_id), "hop_ms": cfg.hop_ms}
    if "counts" not in state:  # written before the bins, so under the old hop too
        legacy = dataclasses.replace(
            cfg, hop_ms=LEGACY_HOP_MS, alpha=cfg.alpha * LEGACY_HOP_MS / cfg.hop_ms
        )
        return _rehop({**_migrate(state, legacy), "hop_ms": LEGACY_HOP_MS}, cfg)
    current = _rehop(dict(state), cfg)
    current["buckets"] = [[b[0], b[1], b[2], list(b[3])] for b in state["buckets"]]
    current["sample"] = list(state["sample"])
    return current


def _window_counts(state: Mapping[str, Any]) -> tuple[int, int]:
    return sum(b[1] for b in state["buckets"]), sum(b[2] for b in state["buckets"])


# --------------------------------------------------------------------------- the stream prior


def _empty_aggregate() -> dict[str, Any]:
    """Closed windows pooled: how many, their texts and squared texts, texts per bin."""
    return {"hop": None, "windows": 0.0, "texts": 0.0, "texts_sq": 0.0, "bins": [0.0] * BINS}


def _rehop_aggregate(agg: Mapping[str, Any], kept: int, cfg: SurgeConfig) -> dict[str, Any]:
    """Pooled windows counted under hops of ``kept`` ms, as many as this hop closes in the
    same time (one window closes per hop; each window's texts are unchanged)."""
    ratio = kept / cfg.hop_ms
    return {
        **agg,
        "hop_ms": cfg.hop_ms,
        "windows": agg["windows"] * ratio,
        "texts": agg["texts"] * ratio,
        "texts_sq": agg["texts_sq"] * ratio,
        "bins": [c * ratio for c in agg["bins"]],
    }


def _in_hops(agg: Mapping[str, Any], cfg: SurgeConfig) -> Mapping[str, Any]:
    kept = agg.get("hop_ms", LEGACY_HOP_MS)
    return agg if kept == cfg.hop_ms else _rehop_aggregate(agg, kept, cfg)


def prior_key(partition: int) -> str:
    """Where the surge stage keeps partition ``partition``'s stream prior in the surge table
    (written only while that partition's records are processed, so it lives in its changelog
    partition and moves with it)."""
    return f"{PRIOR_KEY}:{partition}"


def absorb(
    prior: Mapping[str, Any] | None, state: Mapping[str, Any], cfg: SurgeConfig | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Move a subject's closed windows into the partition's stream prior -> (prior, state).

    ``prior`` is what the stage keeps under ``PRIOR_KEY`` (``{kind: aggregate}``), discounted
    by event time (``prior_memory_hops``) as the subjects' hops move on."""
    cfg = cfg or CONFIGS.get(state["kind"], DEFAULT)
    contrib = state.get("contrib")
    out = {kind: dict(agg) for kind, agg in (prior or {}).items()}
    if not contrib or not contrib["windows"]:
        return out, dict(state)
    agg = _in_hops(out.get(state["kind"]) or {**_empty_aggregate(), "hop_ms": cfg.hop_ms}, cfg)
    hop = contrib["hop"]
    if agg["hop"] is not None and hop is not None and hop > agg["hop"]:
        decay = (1 - 1 / cfg.prior_memory_hops) ** ((hop - agg["hop"]) // cfg.hop_ms)
        agg = {
            **agg,
            "windows": agg["windows"] * decay,
            "texts": agg["texts"] * decay,
            "texts_sq": agg["texts_sq"] * decay,
            "bins": [c * decay for c in agg["bins"]],
        }
    out[state["kind"]] = {
        "hop_ms": cfg.hop_ms,
        "hop": hop if agg["hop"] is None else max(agg["hop"], hop or agg["hop"]),
        "windows": agg["windows"] + contrib["windows"],
        "texts": agg["texts"] + contrib["texts"],
        "texts_sq": agg["texts_sq"] + contrib["texts_sq"],
        "bins": [a + c for a, c in zip(agg["bins"], contrib["bins"], strict=True)],
    }
    return out, {**state, "contrib": _empty_aggregate()}


@dataclass(frozen=True, slots=True)
class Prior:
    """What a new subject of a kind is expected to look like: texts per hop (a Gamma with
    this mean and shape) and the share of texts per bin."""

    per_hop: float
    shape: float
    shares: tuple[float, ...]


def stream_prior(prior: Mapping[str, Any] | None, kind: str, cfg: SurgeConfig) -> Prior | None:
    """The kind's prior from its aggregate, or None until it holds ``prior_min_windows``."""
    agg = (prior or {}).get(kind)
    if agg:
        agg = _in_hops(agg, cfg)
    if (
        not agg
        or agg["windows"] < cfg.prior_min_windows
        or min(agg["texts"], sum(agg["bins"])) <= 0
    ):
        return None
    mean = agg["texts"] / agg["windows"]  # texts per window
    spread = agg["texts_sq"] / agg["windows"] - mean * mean - mean  # beyond Poisson
    shape = mean * mean / spread if spread > 0 else cfg.prior_max_shape
    total = sum(agg["bins"])
    return Prior(
        per_hop=mean / cfg.hops_per_window,
        shape=min(max(shape, cfg.prior_min_shape), cfg.prior_max_shape),
        shares=tuple(c / total for c in agg["bins"]),
    )


# --------------------------------------------------------------------------- the baseline


def _fold_hop(state: dict[str, Any], hop: int, bucket: list | None, cfg: SurgeConfig) -> None:
    """Hop ``hop`` leaves the window: into the baseline, unless an alert quarantined it."""
    quarantine = state.get("quarantine")
    if quarantine is not None and quarantine[0] <= hop < quarantine[1]:
        return
    keep = 1 - cfg.alpha
    state["exposure"] = state["exposure"] * keep + 1
    if bucket is None:
        state["counts"] = [c * keep for c in state["counts"]]
    else:
        state["counts"] = [c * keep + n for c, n in zip(state["counts"], bucket[3], strict=True)]
    recent = state.get("recent", [])
    state["recent"] = [*recent, bucket[2] if bucket else 0][-cfg.hops_per_window :]


def _close_window(state: dict[str, Any], cfg: SurgeConfig) -> None:
    """The open window closes (its last hop ends): into the stream prior's contribution if
    it was a full window of the subject's life and not an alerted one."""
    if state["first_hop"] is None or state["hop"] is None:
        return
    start = state["hop"] + cfg.hop_ms - cfg.window_ms
    if start < state["first_hop"]:
        return
    quarantine = state.get("quarantine")
    if quarantine is not None and start < quarantine[1] and state["hop"] >= quarantine[0]:
        return
    texts = sum(b[2] for b in state["buckets"])
    contrib = state["contrib"] = dict(state.get("contrib") or _empty_aggregate())
    contrib["hop"] = state["hop"]
    contrib["windows"] += 1
    contrib["texts"] += texts
    contrib["texts_sq"] += texts * texts
    oldest = state["buckets"][0] if state["buckets"] else None
    if oldest is not None and oldest[0] == start:  # its first hop leaves: count it once
        contrib["bins"] = [c + n for c, n in zip(contrib["bins"], oldest[3], strict=True)]


def _advance(state: dict[str, Any], hop: int, cfg: SurgeConfig) -> None:
    """Close every hop up to ``hop`` (each closes a window; the hop leaving it goes into the
    baseline), open ``hop``."""
    if state["hop"] is None:
        state["first_hop"] = hop
    else:
        gap = (hop - state["hop"]) // cfg.hop_ms
        for _ in range(min(gap, cfg.max_gap_hops)):
            _close_window(state, cfg)
            state["windows"] += 1
            state["hop"] += cfg.hop_ms
            oldest = state["hop"] - cfg.window_ms
            leaving = [b for b in state["buckets"] if b[0] <= oldest]
            state["buckets"] = [b for b in state["buckets"] if b[0] > oldest]
            if oldest >= state["first_hop"]:
                _fold_hop(state, oldest, leaving[0] if leaving else None, cfg)
        if gap > cfg.max_gap_hops:  # a long silence: decay in closed form
            extra = gap - cfg.max_gap_hops
            decay = (1 - cfg.alpha) ** extra
            state["exposure"] = state["exposure"] * decay + (1 - decay) / cfg.alpha
            state["counts"] = [c * decay for c in state["counts"]]
            state["recent"] = [0] * cfg.hops_per_window
            state["windows"] += extra
            state["buckets"] = []
        if not any(b[1] for b in state["buckets"]):
            state["sample"] = []
    state["hop"] = hop
    state["buckets"] = [b for b in state["buckets"] if b[0] > hop - cfg.window_ms]
    state["buckets"].append([hop, 0, 0, [0] * BINS])


@dataclass(frozen=True, slots=True)
class Baseline:
    """The predictive of the open window: texts ~ Poisson(volume x hops x share per bin) with
    the volume per hop ~ Gamma(shape, rate), and the weight of a text in each bin."""

    shape: float
    rate: float
    hops: int
    shares: tuple[float, ...]
    weights: tuple[float, ...]

    @property
    def texts(self) -> float:
        """Expected texts in the window."""
        return self.hops * self.shape / self.rate

    def moments(self) -> tuple[float, float]:
        """Mean and variance of the window's weighted count."""
        m1 = sum(s * w for s, w in zip(self.shares, self.weights, strict=True))
        m2 = sum(s * w * w for s, w in zip(self.shares, self.weights, strict=True))
        return self.texts * m1, self.texts * (m2 + self.hops * m1 * m1 / self.rate)

    def negatives(self) -> tuple[float, float]:
        """Mean and standard deviation of the window's texts in the negative bins."""
        share = sum(self.shares[b] for b in NEGATIVE_BINS)
        mean = self.texts * share
        return mean, math.sqrt(mean + mean * mean / self.shape)


def baseline(
    state: Mapping[str, Any], cfg: SurgeConfig, prior: Prior | None = None
) -> Baseline | None:
    """The subject's posterior (its own hops shrunk to ``prior`` while it is young, see the
    module docstring), or None when there is nothing to compare with yet."""
    counts = state["counts"]
    texts = sum(counts)
    shape, rate = cfg.base_shape + texts, state["exposure"]
    pseudo = [cfg.bin_pseudo] * BINS
    if prior is not None:
        weight = max(0.0, 1 - state["windows"] / cfg.prior_hops)
        shape += weight * prior.shape
        rate += weight * prior.shape / prior.per_hop
        pseudo = [
            p + weight * cfg.prior_texts * s for p, s in zip(pseudo, prior.shares, strict=True)
        ]
    if rate <= 0:
        return None
    recent = state.get("recent", [])
    if len(recent) == cfg.hops_per_window:
        usual = cfg.hops_per_window * shape / rate
        spread = math.sqrt(usual + usual * usual / shape)
        if sum(recent) > usual + cfg.step_z * spread:  # it got busier: the last hour is usual
            shape, rate = cfg.base_shape + sum(recent), float(cfg.hops_per_window)
    denominator = texts + sum(pseudo)
    shares = tuple((c + p) / denominator for c, p in zip(counts, pseudo, strict=True))
    if state["first_hop"] is None:  # a state from before the first hop was kept
        hops = cfg.hops_per_window
    else:
        hops = min(cfg.hops_per_window, (state["hop"] - state["first_hop"]) // cfg.hop_ms + 1)
    expected = hops * shape / rate * sum(s * p for s, p in zip(shares, BIN_SCORES, strict=True))
    weights = tuple(math.log1p(cfg.burst_texts * p / expected) for p in BIN_SCORES)
    return Baseline(shape, rate, hops, shares, weights)


# --------------------------------------------------------------------------- the tail


Cumulants = Callable[[float], "tuple[float, float, float] | None"]


def saddlepoint_tail(
    value: float, mean: float, var: float, cumulants: Cumulants
) -> tuple[float, float]:
    """P(S >= value) from S's cumulant generating function K -> (tail, z), z the standard
    normal quantile with the same upper tail. ``cumulants(t)`` gives (K, K', K'') at t, or
    None past K's singularity. Barndorff-Nielsen's r*: Newton (bracketed) for K'(t) = value,
    then z = r + log(u / r) / r with r = sqrt(2 (t value - K)), u = t sqrt(K'')."""
    if value <= mean or var <= 0:
        return 1.0, 0.0
    low, high = 0.0, math.inf
    t = (value - mean) / var
    best = None
    for _ in range(100):
        at = cumulants(t)
        if at is None:
            high = t
            t = (low + high) / 2
            continue
        best = (t, *at)
        k1, k2 = at[1], at[2]
        if abs(k1 - value) <= 1e-9 * value:
            break
        if k1 < value:
            low = t
        else:
            high = t
        step = t + (value - k1) / k2  # Newton, or bisection when it leaves the bracket
        fallback = (low + high) / 2 if high < math.inf else 2 * t
        t = step if low < step < high else fallback
    assert best is not None
    t, k0, _, k2 = best
    r = math.sqrt(max(2 * (t * value - k0), 0.0))
    u = t * math.sqrt(k2)
    if r <= 1e-8 or u <= 0:
        return 0.5, 0.0
    z = r + math.log(u / r) / r
    return 0.5 * math.erfc(z / math.sqrt(2)), z


def weighted_tail(value: float, base: Baseline) -> tuple[float, float]:
    """P(S >= value) for the window's weighted count S under ``base`` -> (tail, z).

    K(t) = -shape log(1 - hops M(t) / rate), M(t) = sum_b share_b (exp(t w_b) - 1): Poisson
    counts per bin, the volume Gamma-mixed. Within a few per cent of the exact tail
    (``tests/stream/test_surge_prior.py``); deterministic (no sampling)."""
    pairs = [(s, w) for s, w in zip(base.shares, base.weights, strict=True) if s > 0]
    scale = base.hops / base.rate
    top = max(w for _, w in pairs)

    def cumulants(t: float) -> tuple[float, float, float] | None:
        if t * top > 700:  # far past the singularity
            return None
        terms = [(s * math.exp(t * w), w) for s, w in pairs]
        g = 1 - scale * (sum(e for e, _ in terms) - 1)
        if g <= 0:
            return None
        m1 = sum(e * w for e, w in terms)
        m2 = sum(e * w * w for e, w in terms)
        k0 = -base.shape * math.log(g)
        k1 = base.shape * scale * m1 / g
        k2 = base.shape * scale * (m2 * g + scale * m1 * m1) / (g * g)
        return k0, k1, k2

    return saddlepoint_tail(value, *base.moments(), cumulants)


def shift_tail(counts: list[int], shares: tuple[float, ...]) -> tuple[float, float]:
    """P(mean P(negative) of the window's texts >= what it is), their number fixed, each
    drawn from the subject's ``shares`` per bin -> (tail, z): is the window more negative
    than the subject's usual texts, or only busier? (Saddlepoint of K(t) = n log sum_b
    share_b exp(t p_b).)"""
    n = sum(counts)
    if n == 0:
        return 1.0, 0.0
    value = sum(c * p for c, p in zip(counts, BIN_SCORES, strict=True))
    pairs = [(s, p) for s, p in zip(shares, BIN_SCORES, strict=True) if s > 0]
    mean = sum(s * p for s, p in pairs)
    var = sum(s * p * p for s, p in pairs) - mean * mean

    def cumulants(t: float) -> tuple[float, float, float]:
        terms = [(s * math.exp(t * p), p) for s, p in pairs]
        z0 = sum(e for e, _ in terms)
        m1 = sum(e * p for e, p in terms) / z0
        m2 = sum(e * p * p for e, p in terms) / z0
        return n * math.log(z0), n * m1, n * (m2 - m1 * m1)

    top = max(p for _, p in pairs)
    if value >= n * top - 1e-9:  # every text in the top bin: K' never reaches it
        return sum(s for s, p in pairs if p == top) ** n, math.inf
    return saddlepoint_tail(value, n * mean, n * var, cumulants)


def window_weight(state: Mapping[str, Any], base: Baseline) -> float:
    """The open window's weighted count."""
    return sum(
        n * w for b in state["buckets"] for n, w in zip(b[3], base.weights, strict=True) if n
    )


def window_tail(
    state: Mapping[str, Any], cfg: SurgeConfig, prior: Prior | None = None
) -> tuple[float, float, Baseline | None]:
    """The chance of the open window under the subject's baseline -> (tail, z, baseline);
    a window no more negative in mean P(negative) than the subject's texts (``shift_tail``
    above ``max_shift_p``: busier, not more negative) counts as usual (tail 1)."""
    base = baseline(state, cfg, prior)
    if base is None:
        return 1.0, 0.0, None
    value = window_weight(state, base)
    mean, var = base.moments()
    if value < mean + cfg.gate_z * math.sqrt(var):
        return 1.0, 0.0, base
    counts = [sum(b[3][k] for b in state["buckets"]) for k in range(BINS)]
    if shift_tail(counts, base.shares)[0] > cfg.max_shift_p:
        return 1.0, 0.0, base
    tail, z = weighted_tail(value, base)
    return tail, z, base


def poisson_tail(count: int, mean: float) -> float:
    """P(N >= count) for N ~ Poisson(mean), summed upwards from ``count`` (not ``1 - CDF``)
    so tiny tails keep their precision; only called for ``count`` above the mean."""
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
    *,
    p_negative: float | None = None,
    prior: Mapping[str, Any] | Prior | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Fold one scored text about the subject -> (new state, an alert or None).

    ``p_negative`` is the text's P(negative) (None: a mention from before scores were
    carried, counted at ``LEGACY_SCORES``); ``prior`` the partition's stream prior (what is
    kept under ``PRIOR_KEY``, or a ``Prior``)."""
    current = _copy(state, kind, subject_id, cfg)
    hop = hop_start(event_ms, cfg.hop_ms)
    if current["hop"] is None or hop > current["hop"]:
        _advance(current, hop, cfg)
    elif hop < current["hop"]:
        current["late"] += 1  # its hop is closed: counted in the open one, and noted
    score = LEGACY_SCORES[bool(negative)] if p_negative is None else p_negative
    bucket = current["buckets"][-1]
    bucket[2] += 1
    bucket[3][score_bin(score)] += 1
    if not negative:
        return current, None
    bucket[1] += 1
    if len(current["sample"]) < cfg.sample_ids:
        current["sample"].append(event_id)
    negatives, _ = _window_counts(current)
    until = current["cooldown_until"]
    if (until is not None and current["hop"] < until) or negatives < cfg.min_negatives:
        return current, None
    if cfg.max_tail_p <= 0:  # never alerts (the evaluation records windows this way)
        return current, None
    if not isinstance(prior, Prior):
        prior = stream_prior(prior, kind, cfg)
    tail, z, base = window_tail(current, cfg, prior)
    if base is None or tail > cfg.max_tail_p:
        return current, None
    current["cooldown_until"] = current["hop"] + cfg.cooldown_windows * cfg.window_ms
    # only the alerted window: the hours after it teach the baseline as usual, so a subject
    # whose level really changed is usual again after the cooldown
    current["quarantine"] = [
        current["hop"] + cfg.hop_ms - cfg.window_ms,
        current["hop"] + cfg.hop_ms,
    ]
    return current, surge_alert(current, z, cfg, tail, base)


def surge_alert(
    state: Mapping[str, Any], score: float, cfg: SurgeConfig, tail: float, base: Baseline
) -> dict[str, Any]:
    """An ``opinion_surge`` alert body (the caller adds model version and event time);
    ``score`` is the window's departure as a standard normal quantile (the tail's z)."""
    negatives, total = _window_counts(state)
    usual, spread = base.negatives()
    start = state["hop"] + cfg.hop_ms - cfg.window_ms
    key = f"opinion_surge|{state['kind']}|{state['id']}|{state['hop']}"
    scored = sum(n * p for b in state["buckets"] for n, p in zip(b[3], BIN_SCORES, strict=True))
    usual_score = sum(s * p for s, p in zip(base.shares, BIN_SCORES, strict=True))
    return {
        "alert_id": hashlib.sha1(key.encode()).hexdigest()[:20],
        "alert_type": "opinion_surge",
        "severity": "high" if tail <= cfg.max_tail_p / 1000 else "medium",
        "subject": {"kind": state["kind"], "id": state["id"]},
        "score": round(score, 4),
        "reasons": [
            f"{negatives} negative of {total} texts in the last {cfg.window_ms // 60_000} min, "
            f"mean P(negative) {scored / max(total, 1):.2f}",
            f"baseline {usual:.2f} ± {spread:.2f} negatives of {base.texts:.1f} texts per "
            f"window, mean P(negative) {usual_score:.2f}, over {state['windows']} hops",
            f"chance of a window this negative at the baseline: {tail:.1e}",
        ],
        "event_ids": list(state["sample"]),
        "window": {
            "start_ms": start,
            "end_ms": start + cfg.window_ms,
            "negatives": negatives,
            "total": total,
            "baseline_mean": round(usual, 4),
            "baseline_std": round(spread, 4),
        },
    }


# --------------------------------------------------------------------------- stream wiring


#: Applied event ids a subject state remembers, so redelivered events are not counted twice.
RECENT_EVENT_IDS = 64


def subject_events(member_evt: Mapping[str, Any], negative_threshold: float) -> list[dict]:
    """The product and brand mentions of one scored review or member chat (none otherwise),
    at the event's counted time (``member_evt["event_time_ms"]``, see the module docstring),
    with the text's P(negative) (``p_negative``, 4 decimals) and whether it reached
    ``negative_threshold``."""
    kind = member_evt["event_type"]
    data = member_evt["event"]
    scores = member_evt.get("scores") or {}
    if "sentiment_negative" not in scores:
        return []
    if kind == "chat" and data.get("sender_role") != "member":
        return []
    p_negative = float(scores["sentiment_negative"])
    base = {
        "event_id": data["event_id"],
        "event_time": data["event_time"],
        "event_time_ms": member_evt["event_time_ms"],
        "negative": p_negative >= negative_threshold,
        "p_negative": round(p_negative, 4),
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
    *,
    prior: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Idempotent ``observe`` for the stream: (new state or None if a duplicate, alert).
    ``prior``: the partition's stream prior (``PRIOR_KEY``), if the stage keeps one."""
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
        p_negative=subject_evt.get("p_negative"),
        prior=prior,
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
    return hold_mentions(state, [subject_evt], arrived_s)


def hold_mentions(
    state: Mapping[str, Any] | None, subject_evts: list[Mapping[str, Any]], arrived_s: float
) -> dict[str, Any] | None:
    """``hold_mention`` for several mentions of one subject (a packed record carries many): the
    state copied once and the ids seen looked up in a set, not once per mention against every
    pending one. None if every mention was seen already."""
    if not subject_evts:
        return None
    first = subject_evts[0]
    current = dict(state or empty_state(first["kind"], first["id"]))
    pending = list(current.get("pending", []))
    seen = set(current.get("recent_event_ids", []))
    seen.update(p["event_id"] for p in pending)
    held = len(pending)
    for subject_evt in subject_evts:
        event_id = subject_evt["event_id"]
        if event_id in seen:
            continue
        seen.add(event_id)
        pending.append({**subject_evt, "arrived_s": arrived_s})
    if len(pending) == held:
        return None
    current["pending"] = pending
    return current


def flush_due(state: Mapping[str, Any], now_s: float, policy: ReorderPolicy = REORDER) -> bool:
    pending = state.get("pending") or []
    if len(pending) >= policy.max_pending:
        return True
    return bool(pending) and now_s - min(p["arrived_s"] for p in pending) >= policy.hold_s


def flush_pending(
    state: Mapping[str, Any],
    configs: Mapping[str, SurgeConfig] = CONFIGS,
    *,
    prior: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fold every pending mention in (event time, event id) order -> (state, alerts).
    ``prior``: the partition's stream prior (``PRIOR_KEY``), read only; ``absorb`` then moves
    the subject's closed windows into it."""
    current: dict[str, Any] = {**state, "pending": []}
    alerts = []
    ordered = sorted(state.get("pending") or [], key=lambda p: (p["event_time_ms"], p["event_id"]))
    for mention in ordered:
        mention = {k: v for k, v in mention.items() if k != "arrived_s"}
        new, alert = apply_subject_event(current, mention, configs, prior=prior)
        if new is not None:
            current = new
        if alert is not None:
            alerts.append(alert)
    return current, alerts
