"""The agents: edge agents (decode -> micro-batch -> score -> re-key by member) and the member
agent (profile table -> scored events, alerts, profiles). Each agent handles errors per event:
bad input is dead-lettered, anything else stops the worker before its offsets are committed.

Edge agents ack manually: an event is acked by the in-order publisher only after its output was
handed to the producer, and Faust flushes the producer before it commits an offset. Agents keep
admitting events while the model runs (the micro-batcher bounds what is in flight), so batching
never waits on one agent's batch to finish."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import orjson
from faust import StreamT
from faust.types import EventT
from prometheus_client import generate_latest

from models.base import TextScores
from stream import metrics
from stream.app import app, settings
from stream.codec import encode
from stream.errors import fatal
from stream.fraud import assess_transaction_event
from stream.profiles import apply_member_event, mark_published, public_profile, should_publish
from stream.rules import evaluate_rules, rate_limit
from stream.scoring import batcher, fraud_scorer, handler
from stream.steps import (
    InvalidEvent,
    RawRecord,
    ValidEvent,
    dead_letter,
    dead_letter_key,
    decode_record,
    member_event,
    scored_event,
    text_to_score,
    utc_now,
)
from stream.surge import (
    REORDER,
    flush_due,
    flush_pending,
    hold_mention,
    subject_events,
    subject_key,
)
from stream.tables import member_to_profile, subject_to_surge
from stream.topics import (
    INPUT_TOPICS,
    alerts_topic,
    dead_letter_topic,
    member_events_topic,
    member_profiles_topic,
    scored_events_topic,
    subject_events_topic,
)

logger = logging.getLogger("riskstream.agents")
THRESHOLDS = settings.thresholds()
PROFILE_THROTTLE_MS = int(settings.profile_throttle_s * 1000)


def raw_record(logical_topic: str, event: EventT) -> RawRecord:
    message = event.message
    timestamp = message.timestamp
    return RawRecord(
        topic=logical_topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp_ms=int(timestamp * 1000) if timestamp else None,
    )


async def publish_dead_letter(invalid: InvalidEvent) -> None:
    body = dead_letter(invalid, failed_at=utc_now())
    await dead_letter_topic.send(
        key=dead_letter_key(invalid.record), value=encode(body, "dead-letter")
    )
    metrics.DEAD_LETTERS.labels(invalid.error.reason).inc()


@dataclass(slots=True)
class InFlight:
    """An input event between admission and publication; acked only once its output is sent."""

    stream: StreamT
    event: EventT
    decoded: ValidEvent | InvalidEvent
    scores: asyncio.Future[TextScores] | None


#: Admitted events in consumption order. Bounded: a full queue stalls the edge agents.
in_flight: asyncio.Queue[InFlight] = asyncio.Queue(maxsize=batcher.max_pending)


async def admit(stream: StreamT, logical_topic: str, event: EventT) -> None:
    """decode -> hand the text to the shared micro-batcher -> queue for publication."""
    metrics.EVENTS_CONSUMED.labels(logical_topic).inc()
    decoded = decode_record(raw_record(logical_topic, event), max_bytes=settings.max_event_bytes)
    text = text_to_score(decoded) if isinstance(decoded, ValidEvent) else None
    scores = await batcher.submit(text) if text is not None else None
    await in_flight.put(InFlight(stream, event, decoded, scores))


async def publish(item: InFlight) -> None:
    """Dead letter, or member event (re-keyed by member) -> then, and only then, ack."""
    if isinstance(item.decoded, InvalidEvent):
        await publish_dead_letter(item.decoded)
    else:
        scores = (await item.scores).as_dict() if item.scores is not None else None
        body = member_event(item.decoded, scores, handler.model_version if scores else None)
        await member_events_topic.send(
            key=item.decoded.member_id.encode(), value=orjson.dumps(body)
        )
    await item.stream.ack(item.event)


def _edge_agent(logical_topic: str):
    async def agent(stream: StreamT) -> None:
        manual = stream.noack()  # acked by `publish`, after the output is sent
        async for event in manual.events():
            try:
                await admit(manual, logical_topic, event)
            except Exception as exc:
                fatal(exc, f"{logical_topic} {event.message.tp} offset {event.message.offset}")

    agent.__name__ = agent.__qualname__ = f"score_{logical_topic}"
    return app.agent(INPUT_TOPICS[logical_topic], name=f"score_{logical_topic}")(agent)


score_reviews = _edge_agent("reviews")
score_chats = _edge_agent("chats")
score_transactions = _edge_agent("transactions")


@app.task
async def publish_in_order() -> None:
    """One publisher keeps outputs in consumption order (replays stay deterministic)."""
    while True:
        item = await in_flight.get()
        try:
            await publish(item)
        except Exception as exc:
            fatal(exc, f"publishing {item.event.message.tp} offset {item.event.message.offset}")


async def handle_member_event(key: bytes, value: bytes) -> None:
    """Member state -> fraud score (transactions), scored event, alerts, throttled profile.

    Outputs are keyed, so a replay overwrites rather than duplicates."""
    evt = orjson.loads(value)
    member_id = evt["event"]["member_id"]
    previous = member_to_profile.get(member_id)
    if evt["event_type"] == "transaction":
        evt = assess_transaction_event(previous, evt, fraud_scorer(evt["event"]))
    state, changed = apply_member_event(
        previous, evt, negative_threshold=THRESHOLDS.negative_review
    )
    event_ms = evt["event_time_ms"]
    alerts, alert_log, suppressed = rate_limit(
        state.get("alert_log", {}),
        evaluate_rules(evt, THRESHOLDS),
        event_ms,
        evt["event"]["event_id"],
        redelivered=not changed,
    )
    if changed:
        state = {**state, "alert_log": alert_log}
    metrics.ALERTS_SUPPRESSED.inc(suppressed)
    # a redelivered event re-publishes its profile: the first copy may not have gone out
    publish = not changed or should_publish(state, event_ms, PROFILE_THROTTLE_MS, bool(alerts))
    if changed:
        if publish:
            state = mark_published(state, event_ms)
        member_to_profile[member_id] = state
    else:
        metrics.DUPLICATES_SKIPPED.inc()
    await scored_events_topic.send(key=key, value=encode(scored_event(evt), "scored-events"))
    metrics.SCORED_EVENTS.labels(evt["event_type"]).inc()
    for alert in alerts:
        await alerts_topic.send(key=alert["alert_id"].encode(), value=encode(alert, "alerts"))
        metrics.ALERTS.labels(alert["alert_type"]).inc()
    if publish:
        await member_profiles_topic.send(
            key=key, value=encode(public_profile(state), "member-profiles")
        )
        metrics.PROFILES_PUBLISHED.inc()
    for mention in subject_events(evt, THRESHOLDS.surge_negative):
        await subject_events_topic.send(key=subject_key(mention), value=orjson.dumps(mention))


#: Key of the tick records that flush held mentions when a subject goes quiet.
SURGE_TICK = b"__tick__"
#: Subject-events partition -> subject key -> when its oldest held mention arrived.
held_since: dict[int, dict[str, float]] = {}


def _held_in(partition: int) -> dict[str, float]:
    """This partition's subjects with held mentions (after a restart: found in the table)."""
    if partition not in held_since:
        held_since[partition] = {
            key: min(p["arrived_s"] for p in state["pending"])
            for key, state in subject_to_surge.items()
            if state.get("pending") and state.get("partition") == partition
        }
    return held_since[partition]


async def flush_subject(key: str, partition: int) -> None:
    state, alerts = flush_pending(subject_to_surge[key])
    subject_to_surge[key] = state
    _held_in(partition).pop(key, None)
    for alert in alerts:
        await alerts_topic.send(key=alert["alert_id"].encode(), value=encode(alert, "alerts"))
        metrics.ALERTS.labels(alert["alert_type"]).inc()


@app.agent(subject_events_topic, name="detect_opinion_surges")
async def detect_opinion_surges(stream: StreamT) -> None:
    """Per product/brand surge state -> ``opinion_surge`` alerts (keyed by window: idempotent).

    Mentions are held briefly and folded in event-time order (``stream.surge.ReorderPolicy``);
    tick records flush subjects that went quiet."""
    async for event in stream.events():
        try:
            partition, now = event.message.partition, time.time()
            held = _held_in(partition)
            mentioned = None
            if event.key != SURGE_TICK:
                mentioned = event.key.decode()
                state = hold_mention(
                    subject_to_surge.get(mentioned), orjson.loads(event.value), now
                )
                if state is not None:
                    subject_to_surge[mentioned] = {**state, "partition": partition}
                    held.setdefault(mentioned, now)
            # due by age (the held map knows each subject's oldest arrival), or by count
            due = [k for k, since in held.items() if now - since >= REORDER.hold_s]
            current = subject_to_surge.get(mentioned) if mentioned else None
            if current and mentioned not in due and flush_due(current, now):
                due.append(mentioned)
            for key in due:
                state = subject_to_surge.get(key)
                if not state or not state.get("pending"):
                    held.pop(key, None)  # flushed elsewhere before a rebalance
                else:
                    await flush_subject(key, partition)
            metrics.SURGE_HELD.set(sum(len(h) for h in held_since.values()))
            metrics.SUBJECT_EVENTS_DONE.inc()
        except Exception as exc:
            fatal(exc, f"subject event at {event.message.tp} offset {event.message.offset}")


@app.on_partitions_revoked.connect
async def forget_held_mentions(app, revoked, **kwargs) -> None:
    """Held mentions live in the table; whoever owns a partition next finds them there."""
    held_since.clear()


@app.timer(interval=REORDER.hold_s / 2)
async def tick_held_surge_partitions() -> None:
    """A tick into each partition holding mentions, so quiet subjects are flushed too."""
    for partition, held in list(held_since.items()):
        if held:
            await subject_events_topic.send(key=SURGE_TICK, value=b"{}", partition=partition)


@app.agent(member_events_topic, name="track_member_activity")
async def track_member_activity(stream: StreamT) -> None:
    async for event in stream.events():
        try:
            await handle_member_event(event.key, event.value)
            metrics.MEMBER_EVENTS_DONE.inc()
        except Exception as exc:
            fatal(exc, f"member event at {event.message.tp} offset {event.message.offset}")


@app.task
async def load_model() -> None:
    await batcher.start()
    metrics.MODEL_LOAD_SECONDS.set(batcher.model_load_seconds or 0.0)
    metrics.MODEL_INFO.labels(type(handler).__name__, handler.model_version).set(1)
    logger.info("model %s loaded in %.2fs", handler.model_version, batcher.model_load_seconds)


@app.page("/metrics")
async def metrics_page(web, request):
    # aiohttp refuses a charset inside content_type; Prometheus reads plain text as 0.0.4.
    return web.bytes(generate_latest(), content_type="text/plain")
