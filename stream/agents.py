"""The agents: edge agents (decode -> micro-batch -> score -> re-key by member) and the member
agent (profile table -> scored events, alerts, profiles). Each agent handles errors per event:
bad input is dead-lettered, anything else stops the worker before its offsets are committed."""

from __future__ import annotations

import logging

import orjson
from faust import StreamT
from faust.types import EventT
from prometheus_client import generate_latest

from stream import metrics
from stream.app import app, settings
from stream.codec import encode
from stream.errors import fatal
from stream.profiles import apply_member_event, public_profile
from stream.rules import evaluate_rules
from stream.scoring import batcher, handler
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
from stream.tables import member_to_profile
from stream.topics import (
    INPUT_TOPICS,
    alerts_topic,
    dead_letter_topic,
    member_events_topic,
    member_profiles_topic,
    scored_events_topic,
)

logger = logging.getLogger("riskstream.agents")
THRESHOLDS = settings.thresholds()


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


async def handle_input_batch(logical_topic: str, events: list[EventT]) -> None:
    """decode -> score texts in one micro-batch -> re-key valid events by member."""
    decoded = [
        decode_record(raw_record(logical_topic, e), max_bytes=settings.max_event_bytes)
        for e in events
    ]
    metrics.EVENTS_CONSUMED.labels(logical_topic).inc(len(events))
    valid = [d for d in decoded if isinstance(d, ValidEvent)]
    to_score = [v for v in valid if text_to_score(v) is not None]
    scores = await batcher.score([text_to_score(v) for v in to_score]) if to_score else []
    scores_of = {id(v): s.as_dict() for v, s in zip(to_score, scores, strict=True)}
    for item in decoded:
        if isinstance(item, InvalidEvent):
            await publish_dead_letter(item)
            continue
        text_scores = scores_of.get(id(item))
        body = member_event(item, text_scores, handler.model_version if text_scores else None)
        await member_events_topic.send(key=item.member_id.encode(), value=orjson.dumps(body))


def _edge_agent(logical_topic: str):
    async def agent(stream: StreamT) -> None:
        async for events in stream.take_events(batcher.max_batch_size, within=batcher.max_wait_s):
            try:
                await handle_input_batch(logical_topic, list(events))
            except Exception as exc:
                fatal(exc, f"{logical_topic} batch of {len(events)} at {events[0].message.tp}")

    agent.__name__ = agent.__qualname__ = f"score_{logical_topic}"
    return app.agent(INPUT_TOPICS[logical_topic], name=f"score_{logical_topic}")(agent)


score_reviews = _edge_agent("reviews")
score_chats = _edge_agent("chats")
score_transactions = _edge_agent("transactions")


async def handle_member_event(key: bytes, value: bytes) -> None:
    """Member state -> scored event, alerts, profile. Outputs are keyed, so a replay overwrites."""
    evt = orjson.loads(value)
    member_id = evt["event"]["member_id"]
    state, changed = apply_member_event(
        member_to_profile.get(member_id), evt, negative_threshold=THRESHOLDS.negative_review
    )
    if changed:
        member_to_profile[member_id] = state
    else:
        metrics.DUPLICATES_SKIPPED.inc()
    await scored_events_topic.send(key=key, value=encode(scored_event(evt), "scored-events"))
    metrics.SCORED_EVENTS.labels(evt["event_type"]).inc()
    for alert in evaluate_rules(evt, THRESHOLDS):
        await alerts_topic.send(key=alert["alert_id"].encode(), value=encode(alert, "alerts"))
        metrics.ALERTS.labels(alert["alert_type"]).inc()
    await member_profiles_topic.send(
        key=key, value=encode(public_profile(state), "member-profiles")
    )
    metrics.PROFILES_PUBLISHED.inc()


@app.agent(member_events_topic, name="track_member_activity")
async def track_member_activity(stream: StreamT) -> None:
    async for event in stream.events():
        try:
            await handle_member_event(event.key, event.value)
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
