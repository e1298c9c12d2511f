"""The member stage as one pure function: (state before, scored event) -> (state after, outputs).

A redelivered event (at-least-once: the state may already hold it after a crash) must change
nothing. The shell writes a member's state only after every output of the events it holds was
delivered (``Stages`` in ``stream/worker/stages.py``: outputs first, then the table), so a state
that counts an event proves the event's outputs are in their topics: a redelivery is recognised
by its event id in the state's ring of recent ids (:data:`RECENT_EVENTS`, kept as 48-bit digests)
and publishes nothing. An event whose state write was lost is applied again to the same state
before it, so its outputs come out the same.

Before, the state itself was the replay record: it kept what its last 64 events were published
with, to re-publish a redelivery exactly whatever had reached the topics. That map was most of
every changelog write (about 8.7 of 10.6 KB per write once a member's horizon was full,
``bench/member_state_size.py``) and of the memory a member costs; the ring is 0.5 KB. States
written before still carry ``recent_outputs``: an event found there is re-published as then.

The Faust shell (``stream/worker/stages.py``) reads the table, calls :func:`member_step`, writes the
table and sends the outputs; it has no logic of its own.

**Time that one event cannot bend.** The member's state runs on event time (velocity windows,
scam-signal age, alert cooldowns, the profile throttle, expiry), and surge mentions carry it on.
Each event counts in that state at ``min(its event time, the wall clock when the member stage
runs)`` (:func:`counted_time`): it is still applied, scored and published with its own
``event_time``, but an event ahead of the wall clock is placed at the wall clock. Measured
before, with ``RISKSTREAM_EVENT_TIME_MAX_FUTURE_S`` lifted, one transaction dated 2099 set its
partition's expiry clock to 2099 and dropped 486 of 2,000 other members; and inside the default
1-hour bound, one event 50 minutes ahead set its member's clock ahead, so the next five ordinary
transactions, 20 minutes behind the wall clock, counted as a 1-hour velocity of 1, not 5
(``tests/stream/test_untrusted_time.py``: now 5, or 6 when the early event is a transaction).

Why the wall clock, with no allowance: it is the only reference one event cannot move (a
partition watermark is moved by whatever share of the partition is wrong, and a record
timestamp can be set by the same producer as the event time); data from the past, a 2015 backtest
or a replay of last week, is never capped, so such replays give the same outputs whenever they
run; only events that are ahead of the wall clock when they are processed, which the edge's
future bound already treats by the wall clock, depend on when they arrive. An early event is
counted at its arrival rather than kept at its own time: kept ahead, it would either stay out
of every window until the clock caught up (dating transactions ahead would hide a burst) or,
counted ahead of the window, sit in it for good (a 2099 transaction, forever).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream.core.codec import encode
from stream.core.fraud import ModelOutput, assess_transaction_event
from stream.core.profiles import (
    apply_member_event,
    empty_state,
    mark_published,
    public_profile,
    should_publish,
)
from stream.core.rules import AlertThresholds, evaluate_rules, rate_limit, text_sentiment
from stream.core.steps import scored_event
from stream.core.surge import subject_events, subject_key

#: Event ids a member's state remembers, to skip redeliveries. A crash redelivers what came
#: after the last commit (Faust commits every 2.8 s): far fewer than this per member. An older
#: redelivery, if any, is applied again.
RECENT_EVENTS = 64
#: Bytes of an event id's digest in the ring: a false "seen" is 64 in 2^48 per event.
DIGEST_BYTES = 6

FraudScorer = Callable[[Mapping[str, Any]], ModelOutput | None]


@dataclass(frozen=True, slots=True)
class Output:
    """One record for a logical output topic (un-prefixed name)."""

    topic: str
    key: bytes
    value: bytes
    #: Its partition, where the producer must not pick it from the key.
    partition: int | None = None


@dataclass(slots=True)
class MemberOutcome:
    """What the shell must do for one member event."""

    #: The new table value, or None when the state is unchanged (a redelivery).
    state: dict[str, Any] | None
    outputs: list[Output] = field(default_factory=list)
    alert_types: list[str] = field(default_factory=list)
    suppressed_alerts: int = 0
    redelivered: bool = False
    profile_published: bool = False


def _remembered(state: Mapping[str, Any] | None, event_id: str) -> list | dict | None:
    """What a state written by the previous release recorded for ``event_id``, if anything."""
    return ((state or {}).get("recent_outputs") or {}).get(event_id)


def id_digest(event_id: str) -> bytes:
    return hashlib.blake2b(event_id.encode(), digest_size=DIGEST_BYTES).digest()


def _ring(state: Mapping[str, Any] | None) -> bytes:
    """The state's recent ids, newest last, as concatenated digests (older states: rebuilt
    from the ids they listed)."""
    state = state or {}
    text = state.get("seen")
    if text is not None:
        return base64.b64decode(text)
    legacy = [*(state.get("recent_event_ids") or ()), *(state.get("recent_outputs") or {})]
    return b"".join(id_digest(i) for i in dict.fromkeys(legacy))[-RECENT_EVENTS * DIGEST_BYTES :]


def has_seen(state: Mapping[str, Any] | None, event_id: str) -> bool:
    ring, digest = _ring(state), id_digest(event_id)
    at = ring.find(digest)
    while at >= 0 and at % DIGEST_BYTES:  # a match across two digests is no match
        at = ring.find(digest, at + 1)
    return at >= 0


def _seen_with(state: Mapping[str, Any] | None, event_id: str) -> str:
    """The ring with ``event_id`` added (the oldest falls out), as stored: base64 text (the
    C codec; base85 is pure Python and was 10 % of the worker's CPU)."""
    ring = (_ring(state) + id_digest(event_id))[-RECENT_EVENTS * DIGEST_BYTES :]
    return base64.b64encode(ring).decode()


#: Text score keys and fraud block keys, stored as lists in this order (in a member's state the
#: keys would cost more bytes than the values).
TEXT_SCORES = ("sentiment_negative", "sentiment_polarity", "scam_risk")
FRAUD_FIELDS = ("score", "model_probability", "rules_fired", "reasons", "model_version")


def _from_dict_entry(entry: Mapping[str, Any]) -> list:
    """An entry written before the compact form: ``{"f": block, "v": ..}`` or ``{"s": ..}``."""
    version = entry.get("v")
    if "f" in entry:
        return ["f", *(entry["f"][k] for k in FRAUD_FIELDS), version]
    if isinstance(entry["s"], list):
        return ["t", *entry["s"], version]
    return ["s", entry["s"], version]


def _as_first_published(member_evt: Mapping[str, Any], first: list | Mapping[str, Any]) -> dict:
    """The event with the scores (and fraud assessment) its first delivery was published with."""
    if isinstance(first, Mapping):
        first = _from_dict_entry(first)
    restored = dict(member_evt)
    tag = first[0]
    if tag == "f":  # a transaction: its fraud block carries its score
        fraud = dict(zip(FRAUD_FIELDS, first[1:6], strict=True))
        restored["scores"] = {**member_evt["scores"], "fraud_risk": fraud["score"]}
        restored["fraud"] = fraud
    elif tag == "t":
        restored["scores"] = dict(zip(TEXT_SCORES, first[1:4], strict=True))
    else:
        restored["scores"] = dict(first[1])
    restored["model_version"] = first[-1]
    return restored


def counted_time(event_ms: int, now_ms: int | None) -> int:
    """When an event counts in its member's (and its subjects') state: its event time, or the
    wall clock ``now_ms`` when that is earlier (None: not capped). See the module docstring."""
    return event_ms if now_ms is None else min(event_ms, now_ms)


def member_step(
    previous: Mapping[str, Any] | None,
    member_evt: Mapping[str, Any],
    *,
    thresholds: AlertThresholds,
    profile_throttle_ms: int,
    fraud_scorer: FraudScorer,
    now_ms: int | None = None,
) -> MemberOutcome:
    """Member state -> fraud score (transactions), scored event, alerts, throttled profile,
    surge mentions. Outputs are keyed, so a redelivery overwrites rather than duplicates.

    ``now_ms``: the wall clock; the event counts in the state at :func:`counted_time` (its
    ``event_time_ms`` is replaced by that for everything here, its ``event_time`` is kept)."""
    counted = counted_time(member_evt["event_time_ms"], now_ms)
    if counted != member_evt["event_time_ms"]:
        member_evt = {**member_evt, "event_time_ms": counted}
    event_id = member_evt["event"]["event_id"]
    first = _remembered(previous, event_id)
    if first is None and has_seen(previous, event_id):
        # applied, and (the shell writes states after their outputs) published: nothing to do
        return MemberOutcome(None, redelivered=True)
    changed = first is None
    if first is not None:  # known to a state of the previous release: re-published as then
        evt = _as_first_published(member_evt, first)
    elif member_evt["event_type"] == "transaction":
        evt = assess_transaction_event(previous, member_evt, fraud_scorer(member_evt["event"]))
    else:
        evt = dict(member_evt)
    if changed:
        own = thresholds.for_event(evt)
        state = apply_member_event(
            previous, evt, negative_threshold=own.negative_review, neutral_band=own.neutral_band
        )
    else:
        state = {**empty_state(member_evt["event"]["member_id"]), **(previous or {})}
    event_ms = evt["event_time_ms"]
    alerts, alert_log, suppressed = rate_limit(
        state.get("alert_log", {}),
        evaluate_rules(evt, thresholds),
        event_ms,
        event_id,
        redelivered=not changed,
    )
    # a redelivery the previous release recorded re-publishes its profile too
    publish = not changed or should_publish(state, event_ms, profile_throttle_ms, bool(alerts))
    new_state = None
    if changed:
        new_state = {**state, "alert_log": alert_log, "seen": _seen_with(state, event_id)}
        for legacy in ("recent_outputs", "recent_event_ids"):
            new_state.pop(legacy, None)
        if publish:
            new_state = mark_published(new_state, event_ms)
    key = evt["event"]["member_id"].encode()
    outcome = MemberOutcome(new_state, suppressed_alerts=suppressed, redelivered=not changed)
    scored = scored_event(evt, sentiment=text_sentiment(evt, thresholds.for_event(evt)))
    outcome.outputs.append(Output("scored-events", key, encode(scored, "scored-events")))
    for alert in alerts:
        outcome.outputs.append(
            Output("alerts", alert["alert_id"].encode(), encode(alert, "alerts"))
        )
        outcome.alert_types.append(alert["alert_type"])
    if publish:
        profile = public_profile(new_state or state)
        outcome.outputs.append(Output("member-profiles", key, encode(profile, "member-profiles")))
        outcome.profile_published = True
    for mention in subject_events(evt, thresholds.surge_negative):
        outcome.outputs.append(
            Output("riskstream-subject-events", subject_key(mention), orjson.dumps(mention))
        )
    return outcome


#: Key of packed mention records. It is the surge tick's key, which workers released before
#: packing per partition skip: during a rolling upgrade an old worker ignores these records
#: (its surge counts miss them) instead of folding every subject's mentions into one subject.
PACKED_MENTIONS_KEY = b"__tick__"


def pack_mentions(outputs: list[Output], partition_of: Callable[[bytes], int]) -> list[Output]:
    """Surge mentions, one record per subject-events partition: ``{"mentions": [...]}`` in the
    order given, each on its subject's partition (``partition_of(subject key)``, the shell's
    partitioner; the surge stage splits them by subject,
    dedups by event id and folds in event-time order, so packing changes no alert). One record
    per subject was 0.78 writes per input event; one per partition is one per batch at most."""
    by_partition: dict[int, list[bytes]] = {}
    for output in outputs:
        partition = partition_of(output.key)
        by_partition.setdefault(partition, []).append(output.value)
    return [
        Output(
            "riskstream-subject-events",
            PACKED_MENTIONS_KEY,
            b'{"mentions":[' + b",".join(values) + b"]}",
            partition,
        )
        for partition, values in sorted(by_partition.items())
    ]
