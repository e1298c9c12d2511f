"""The catalogue of topics and tables: every logical (un-prefixed) name, in one place.

Prefixed names come from ``Settings.topic``; the Faust topic objects are made by the worker
(``stream/worker/app.py``). Importing this module does nothing else.
"""

from __future__ import annotations

#: What platforms produce: one topic per event type.
INPUT_TOPICS: tuple[str, ...] = ("reviews", "chats", "transactions")

#: What analysts decide about scored events and alerts (``schemas/labels.v1.schema.json``),
#: keyed ``<event_id>|<head>`` and compacted, so re-labelling an event keeps the latest.
LABELS = "labels"
#: The champion build per route (English, multilingual), with its history: keyed by route and
#: compacted; every worker reads all of it (``stream/core/registry.py``).
MODEL_REGISTRY = "model-registry"

#: Valid events (text already scored) re-keyed by member, co-partitioned with the member table.
MEMBER_EVENTS = "riskstream-member-events"
#: Review and chat mentions re-keyed by product or brand, for the surge detector.
SUBJECT_EVENTS = "riskstream-subject-events"
INTERNAL_TOPICS: tuple[str, ...] = (MEMBER_EVENTS, SUBJECT_EVENTS)

SCORED_EVENTS = "scored-events"
ALERTS = "alerts"
MEMBER_PROFILES = "member-profiles"
DEAD_LETTER = "dead-letter"
#: A challenger build's scores beside the champion's (shadow scoring; empty when it is off).
SHADOW_SCORES = "shadow-scores"
OUTPUT_TOPICS: tuple[str, ...] = (
    SCORED_EVENTS,
    ALERTS,
    MEMBER_PROFILES,
    DEAD_LETTER,
    SHADOW_SCORES,
)

#: Tables (Faust names their changelogs ``<app id>-<table>-changelog``).
MEMBER_TABLE = "member-to-profile"
SURGE_TABLE = "subject-to-surge"
TABLES: tuple[str, ...] = (MEMBER_TABLE, SURGE_TABLE)

#: Every topic the worker reads or writes -> extra topic configs on creation.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    **{name: {} for name in INPUT_TOPICS + INTERNAL_TOPICS},
    **{name: {} for name in OUTPUT_TOPICS},
    MEMBER_PROFILES: {"cleanup.policy": "compact"},
    LABELS: {"cleanup.policy": "compact"},
    MODEL_REGISTRY: {"cleanup.policy": "compact"},
}
