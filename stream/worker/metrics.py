"""Every metric the worker exports, in one place (Prometheus, served at the worker's /metrics).

Names follow ``riskstream_<component>_<metric>``; the live terminal view and the benchmark
harness read the same page.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "riskstream_stream_events_consumed", "Input records consumed, per logical topic.", ["topic"]
)
DEAD_LETTERS = Counter(
    "riskstream_stream_dead_letters", "Input records sent to the dead-letter topic.", ["reason"]
)
LABELS_RECEIVED = Counter(
    "riskstream_labels_received",
    "Valid operator labels read from the labels topic (invalid ones are dead letters).",
    ["head", "value"],
)
SCORED_EVENTS = Counter(
    "riskstream_stream_scored_events", "Records published to scored-events.", ["event_type"]
)
ALERTS = Counter("riskstream_stream_alerts", "Alerts published.", ["alert_type"])
ALERTS_SUPPRESSED = Counter(
    "riskstream_stream_alerts_suppressed", "Alerts held back by the per-subject rate limit."
)
MEMBER_EVENTS_DONE = Counter(
    "riskstream_stream_member_events_processed",
    "Member-stage events whose outputs were all handed to the producer.",
)
MEMBER_EVENTS_LEFT = Counter(
    "riskstream_stream_member_events_left_to_new_owner",
    "Member-stage events not applied because their partition was revoked while they waited "
    "(the new owner applies them).",
)
MEMBER_STAGE_FUSED = Counter(
    "riskstream_stream_member_stage_fused",
    "Input events that went through the member stage in the edge, without the member-events "
    "hop (already on their member's partition).",
)
SUBJECT_EVENTS_DONE = Counter(
    "riskstream_stream_subject_events_processed",
    "Surge-stage events whose outputs were all handed to the producer.",
)
SURGE_HELD = Gauge(
    "riskstream_surge_held_subjects",
    "Subjects whose mentions are held for event-time ordering (0 when all are folded).",
)
PROCESSING_ERRORS = Counter(
    "riskstream_stream_processing_errors",
    "Events that failed inside a stage and were dead-lettered (processing_error).",
    ["stage"],
)
MEMBERS_EXPIRED = Counter(
    "riskstream_stream_members_expired",
    "Members dropped from the table after RISKSTREAM_MEMBER_TTL_DAYS without an event.",
)
PROFILES_PUBLISHED = Counter("riskstream_stream_profiles_published", "Profiles published.")
DUPLICATES_SKIPPED = Counter(
    "riskstream_stream_duplicates_skipped", "Redelivered events the member state already held."
)
BATCH_SIZE = Histogram(
    "riskstream_model_batch_size",
    "Texts per model batch.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
BATCH_LATENCY = Histogram(
    "riskstream_model_batch_latency_seconds",
    "Tokenise + inference time per batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
MODEL_LOAD_SECONDS = Gauge("riskstream_model_load_seconds", "Time to load the model backend.")
MODEL_INFO = Gauge(
    "riskstream_model_info",
    "Served model (value 1) per route (english, multilingual; all without the router): backend "
    "as RISKSTREAM_BACKEND names it, build (weight hash) and numeric precision.",
    ["route", "backend", "version", "precision"],
)
MODEL_MAX_BATCH_SIZE = Gauge(
    "riskstream_model_max_batch_size", "The micro-batcher's size limit (batch fill = size / it)."
)
CONSUMER_LAG = Gauge(
    "riskstream_stream_consumer_lag",
    "Records between this worker's position and the partition's end, per consumed partition "
    "(read at scrape time from the ledger and the last fetch's high-water mark).",
    ["topic", "partition"],
)
E2E_LATENCY = Histogram(
    "riskstream_stream_e2e_latency_seconds",
    "Input record timestamp -> its scored event handed to the producer.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
IN_FLIGHT = Gauge(
    "riskstream_stream_in_flight", "Events admitted by the edge and not yet published."
)
SHADOW_MODEL_INFO = Gauge(
    "riskstream_shadow_model_info",
    "The shadow challenger (value 1) per route: backend, build and precision; absent when "
    "shadow is off.",
    ["route", "backend", "version", "precision"],
)
SHADOW_SCORED = Counter(
    "riskstream_shadow_scored", "Texts the challenger scored and compared with the champion."
)
SHADOW_DROPPED = Counter(
    "riskstream_shadow_dropped",
    "Texts the challenger did not score: behind (its queue full: it never holds the champion "
    "back), loading, or error.",
    ["reason"],
)
SHADOW_DECISIONS = Counter(
    "riskstream_shadow_decisions",
    "Compared texts per head and decision (label: P >= 0.5; alert: the alert threshold), by "
    'whether champion and challenger agreed. Agreement = agree="true" / all.',
    ["head", "decision", "agree"],
)
SHADOW_ABS_DIFF = Histogram(
    "riskstream_shadow_score_abs_diff",
    "|champion - challenger| per head.",
    ["head"],
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
)
CHAMPION_OUTCOMES = ("switched", "failed", "ignored")
CHALLENGER_OUTCOMES = ("shadowed", "unshadowed", "shadow_failed")
CHAMPION_SWITCHES = Counter(
    "riskstream_model_champion_switches",
    "Changes read from model-registry, per route, by outcome: switched (a new champion, served "
    "from the next batch), failed (the build did not materialise or load: the old one goes on), "
    "ignored (a route this worker does not serve), shadowed / unshadowed / shadow_failed (a "
    "challenger started, stopped, or failed to load).",
    ["route", "outcome"],
)
REBALANCES = Counter("riskstream_worker_rebalances", "Partition assignments this worker received.")
READY = Gauge(
    "riskstream_worker_ready",
    "1 when the model is loaded, partitions are assigned and table recovery is done.",
)
RECOVERY_REMAINING = Gauge(
    "riskstream_table_recovery_remaining",
    "Changelog records left to read before a table partition is recovered (read at scrape "
    "time) per table partition this worker holds: kind active (it serves it; not ready until "
    "0) or standby (a warm copy for failover); 0 once recovered.",
    ["table", "partition", "kind"],
)
TABLE_KEYS = Gauge(
    "riskstream_table_keys",
    "Keys this worker holds per table (active and standby partitions; memory:// store only).",
    ["table"],
)


def observe_batch(size: int, seconds: float) -> None:
    BATCH_SIZE.observe(size)
    BATCH_LATENCY.observe(seconds)


def _initialise_label_series() -> None:
    """Every known label value starts at 0, so dashboards and alert rules see a series (a rate
    of 0) before the first event of its kind, not a missing one."""
    from typing import get_args

    from stream.core.codec import DeadLetterReason
    from stream.topics import INPUT_TOPICS

    for topic in INPUT_TOPICS:
        EVENTS_CONSUMED.labels(topic)
    for event_type in ("review", "chat", "transaction"):
        SCORED_EVENTS.labels(event_type)
    for reason in get_args(DeadLetterReason):
        DEAD_LETTERS.labels(reason)
    for stage in ("edge", "member", "surge", "surge_flush"):
        PROCESSING_ERRORS.labels(stage)
    for alert_type in ("negative_review", "scam_chat", "fraud_risk", "opinion_surge"):
        ALERTS.labels(alert_type)
    for reason in ("behind", "loading", "error"):
        SHADOW_DROPPED.labels(reason)
    for route in ("english", "multilingual"):
        for outcome in (*CHAMPION_OUTCOMES, *CHALLENGER_OUTCOMES):
            CHAMPION_SWITCHES.labels(route, outcome)
    from stream.core.labels import HEAD_VALUES

    for head, values in HEAD_VALUES.items():
        for value in values:
            LABELS_RECEIVED.labels(head, value)


_initialise_label_series()
