"""The agents: edge agents (decode -> micro-batch -> score -> re-key by member), the member
agent (profile table -> scored events, alerts, profiles) and the surge agent.

Delivery: every agent reads through ``stream.delivery.admitted`` (each record once, in offset
order per partition) and marks a record done in the ledger only after its outputs were handed
to the producer; Faust flushes the producer before it commits the ledger's offsets.

Errors, per event (``stream/errors.py`` has the policy): bad input is dead-lettered by the
edge; an exception while processing one event is dead-lettered as ``processing_error`` (or
stops the worker, ``RISKSTREAM_PROCESSING_ERROR_POLICY=fail``); a failure that is not about
the event (producer or broker, a whole model batch, the table) stops the worker before it
commits. Edge agents keep admitting events while the model runs (the micro-batcher bounds what
is in flight), so batching never waits on one agent's batch to finish."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import orjson
from faust import StreamT
from faust.types import TP, EventT
from prometheus_client import generate_latest

from models.serving.base import TextScores
from stream import metrics
from stream.app import app, ledger, settings
from stream.codec import encode
from stream.delivery import Admission, admitted
from stream.errors import FailurePolicy, fatal
from stream.member import Output, member_step
from stream.profiles import expired
from stream.scoring import batcher, fraud_scorer, handler
from stream.steps import (
    InvalidEvent,
    RawRecord,
    ValidEvent,
    dead_letter,
    dead_letter_key,
    decode_record,
    member_event,
    processing_error,
    text_to_score,
    utc_now,
)
from stream.surge import REORDER, flush_due, flush_pending, hold_mention
from stream.tables import member_to_profile, subject_to_surge
from stream.topics import (
    INPUT_TOPICS,
    OUTPUT_TOPICS,
    alerts_topic,
    dead_letter_topic,
    member_events_topic,
    subject_events_topic,
)
from stream.watchdog import Observation, Watchdog

logger = logging.getLogger("riskstream.agents")
THRESHOLDS = settings.thresholds()
PROFILE_THROTTLE_MS = int(settings.profile_throttle_s * 1000)
EDGE_LIMITS = settings.edge_limits()
POLICY = FailurePolicy(settings.processing_error_policy)


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


async def resync_partition(tp: TP) -> None:
    """A record of an assigned partition the ledger does not know (no seek told it where to
    start): seek every partition back to its committed offset, which teaches the ledger."""
    if tp in app.consumer.assignment() and not app.rebalancing:
        await app.consumer.perform_seek()


def delivered(stream: StreamT):
    """``stream``'s records each once, in order, through the ledger (see stream/delivery.py)."""
    return admitted(stream, ledger, app.consumer.seek, resync_partition)


async def publish_dead_letter(invalid: InvalidEvent) -> None:
    body = dead_letter(
        invalid,
        failed_at=utc_now(),
        max_original_bytes=EDGE_LIMITS.max_dead_letter_bytes,
        raw_dead_letters=settings.raw_dead_letters,
    )
    await dead_letter_topic.send(
        key=dead_letter_key(invalid.record), value=encode(body, "dead-letter")
    )
    metrics.DEAD_LETTERS.labels(invalid.error.reason).inc()


async def on_processing_error(record: RawRecord, stage: str, exc: Exception) -> None:
    """One event failed inside a stage: dead-letter it and go on, or stop (the policy)."""
    metrics.PROCESSING_ERRORS.labels(stage).inc()
    where = f"{record.topic}[{record.partition}] offset {record.offset}"
    if POLICY is FailurePolicy.FAIL:
        fatal(exc, f"{stage} stage, {where}")
    logger.exception("processing_error in the %s stage at %s: dead-lettered", stage, where)
    await publish_dead_letter(processing_error(record, stage, exc))


async def send_all(outputs: list[Output]) -> None:
    for output in outputs:
        await OUTPUT_TOPICS[output.topic].send(key=output.key, value=output.value)


@dataclass(slots=True)
class InFlight:
    """An input event between admission and publication; acked only once its output is sent."""

    stream: StreamT
    event: EventT
    admission: Admission
    decoded: ValidEvent | InvalidEvent
    scores: asyncio.Future[TextScores] | None


#: Admitted events in consumption order. Bounded: a full queue stalls the edge agents.
in_flight: asyncio.Queue[InFlight] = asyncio.Queue(maxsize=batcher.max_pending)
metrics.IN_FLIGHT.set_function(in_flight.qsize)


async def admit(stream: StreamT, logical_topic: str, event: EventT, admission: Admission) -> None:
    """decode -> hand the text to the shared micro-batcher -> queue for publication."""
    metrics.EVENTS_CONSUMED.labels(logical_topic).inc()
    decoded = decode_record(
        raw_record(logical_topic, event),
        limits=EDGE_LIMITS,
        now_ms=int(time.time() * 1000),
        email_shaped_ids=settings.email_shaped_ids,
    )
    text = text_to_score(decoded) if isinstance(decoded, ValidEvent) else None
    scores = await batcher.submit(text) if text is not None else None
    await in_flight.put(InFlight(stream, event, admission, decoded, scores))


async def publish(item: InFlight) -> None:
    """Dead letter, or member event (re-keyed by member) -> then, and only then, done."""
    if isinstance(item.decoded, InvalidEvent):
        await publish_dead_letter(item.decoded)
    else:
        # a model failure fails the whole batch: not about this event, so it is fatal
        scores = (await item.scores).as_dict() if item.scores is not None else None
        try:
            body = orjson.dumps(
                member_event(item.decoded, scores, handler.model_version if scores else None)
            )
        except Exception as exc:
            await on_processing_error(item.decoded.record, "edge", exc)
        else:
            await member_events_topic.send(key=item.decoded.member_id.encode(), value=body)
    ledger.complete(item.admission)
    await item.stream.ack(item.event)


def _edge_agent(logical_topic: str):
    async def agent(stream: StreamT) -> None:
        manual = stream.noack()  # done in `publish`, after the output is sent
        async for event, admission in delivered(manual):
            try:
                await admit(manual, logical_topic, event, admission)
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


async def handle_member_event(record: RawRecord) -> None:
    """Table -> ``member_step`` (pure) -> table and outputs. An exception inside the step is
    about this event (dead-lettered); one reading the table or sending is not (fatal)."""
    try:
        evt = orjson.loads(record.value)
        member_id = evt["event"]["member_id"]
    except Exception as exc:
        await on_processing_error(record, "member", exc)
        return
    previous = member_to_profile.get(member_id)
    try:
        outcome = member_step(
            previous,
            evt,
            thresholds=THRESHOLDS,
            profile_throttle_ms=PROFILE_THROTTLE_MS,
            fraud_scorer=fraud_scorer,
        )
    except Exception as exc:
        await on_processing_error(record, "member", exc)
        return
    if outcome.state is not None:
        member_to_profile[member_id] = {**outcome.state, "partition": record.partition}
        expiry.saw(record.partition, evt["event_time_ms"])
    if outcome.redelivered:
        metrics.DUPLICATES_SKIPPED.inc()
    if outcome.recomputed:
        metrics.REDELIVERIES_RECOMPUTED.inc()
    metrics.ALERTS_SUPPRESSED.inc(outcome.suppressed_alerts)
    await send_all(outcome.outputs)
    metrics.SCORED_EVENTS.labels(evt["event_type"]).inc()
    if evt.get("input_timestamp_ms"):
        metrics.E2E_LATENCY.observe(max(time.time() - evt["input_timestamp_ms"] / 1000, 0.0))
    for alert_type in outcome.alert_types:
        metrics.ALERTS.labels(alert_type).inc()
    if outcome.profile_published:
        metrics.PROFILES_PUBLISHED.inc()


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


async def flush_subject(key: str, partition: int, trigger: RawRecord) -> None:
    """Fold a subject's held mentions. If that fails, the held mentions are dead-lettered
    together (the subject's state is kept without them), so one bad subject cannot fail again
    on every tick."""
    held_state = subject_to_surge[key]
    try:
        state, alerts = flush_pending(held_state)
    except Exception as exc:
        pending = orjson.dumps({"subject": key, "pending": held_state.get("pending")})
        await on_processing_error(
            RawRecord(trigger.topic, trigger.partition, trigger.offset, key.encode(), pending),
            "surge_flush",
            exc,
        )
        state, alerts = {**held_state, "pending": []}, []
    subject_to_surge[key] = state
    _held_in(partition).pop(key, None)
    for alert in alerts:
        await alerts_topic.send(key=alert["alert_id"].encode(), value=encode(alert, "alerts"))
        metrics.ALERTS.labels(alert["alert_type"]).inc()


async def hold(event: EventT, record: RawRecord, now: float) -> str | None:
    """Hold one mention in its subject's state; the subject key, or None for a tick."""
    if event.key == SURGE_TICK:
        return None
    partition = record.partition
    try:
        mentioned = event.key.decode()
        mention = orjson.loads(event.value)
        state = hold_mention(subject_to_surge.get(mentioned), mention, now)
    except Exception as exc:
        await on_processing_error(record, "surge", exc)
        return None
    if state is not None:
        subject_to_surge[mentioned] = {**state, "partition": partition}
        _held_in(partition).setdefault(mentioned, now)
    return mentioned


@app.agent(subject_events_topic, name="detect_opinion_surges")
async def detect_opinion_surges(stream: StreamT) -> None:
    """Per product/brand surge state -> ``opinion_surge`` alerts (keyed by window: idempotent).

    Mentions are held briefly and folded in event-time order (``stream.surge.ReorderPolicy``);
    tick records flush subjects that went quiet."""
    manual = stream.noack()
    async for event, admission in delivered(manual):
        try:
            partition, now = event.message.partition, time.time()
            record = raw_record("riskstream-subject-events", event)
            held = _held_in(partition)
            mentioned = await hold(event, record, now)
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
                    await flush_subject(key, partition, record)
            metrics.SURGE_HELD.set(sum(len(h) for h in held_since.values()))
            metrics.SUBJECT_EVENTS_DONE.inc()
        except Exception as exc:
            fatal(exc, f"subject event at {event.message.tp} offset {event.message.offset}")
        ledger.complete(admission)
        await manual.ack(event)


@app.on_partitions_revoked.connect
async def forget_held_mentions(app, revoked, **kwargs) -> None:
    """Held mentions live in the table; whoever owns a partition next finds them there.
    Revoked partitions leave the ledger: nothing still in flight for them counts."""
    held_since.clear()
    ledger.revoke((tp.topic, tp.partition) for tp in revoked)


@app.timer(interval=REORDER.hold_s / 2)
async def tick_held_surge_partitions() -> None:
    """A tick into each partition holding mentions, so quiet subjects are flushed too."""
    for partition, held in list(held_since.items()):
        if held:
            await subject_events_topic.send(key=SURGE_TICK, value=b"{}", partition=partition)


class MemberExpiry:
    """Drops members inactive for ``RISKSTREAM_MEMBER_TTL_DAYS`` of event time, a few keys at a
    time, from inside the member agent (a table is written only while processing an event of
    the key's partition, so only keys of that partition are swept)."""

    def __init__(self, ttl_days: float | None, *, every: int = 200, keys_per_sweep: int = 2000):
        self.ttl_ms = None if ttl_days is None else int(ttl_days * 86_400_000)
        self.every, self.keys_per_sweep = every, keys_per_sweep
        self._newest: dict[int, int] = {}
        self._todo: dict[int, list[str]] = {}
        self._seen = 0

    def saw(self, partition: int, event_ms: int) -> None:
        self._newest[partition] = max(self._newest.get(partition, event_ms), event_ms)

    def sweep(self, partition: int) -> int:
        """Check the next keys of ``partition``; -> how many were dropped."""
        self._seen += 1
        if self.ttl_ms is None or self._seen % self.every or partition not in self._newest:
            return 0
        todo = self._todo.get(partition)
        if not todo:
            todo = self._todo[partition] = list(member_to_profile.keys())
        dropped = 0
        for _ in range(min(self.keys_per_sweep, len(todo))):
            key = todo.pop()
            state = member_to_profile.get(key)
            if (
                state is not None
                and state.get("partition") == partition
                and expired(state, self._newest[partition], self.ttl_ms)
            ):
                del member_to_profile[key]
                dropped += 1
        metrics.MEMBERS_EXPIRED.inc(dropped)
        return dropped


expiry = MemberExpiry(settings.member_ttl_days)


@app.agent(member_events_topic, name="track_member_activity")
async def track_member_activity(stream: StreamT) -> None:
    manual = stream.noack()
    async for event, admission in delivered(manual):
        try:
            await handle_member_event(raw_record("riskstream-member-events", event))
            expiry.sweep(event.message.partition)
            metrics.MEMBER_EVENTS_DONE.inc()
        except Exception as exc:
            fatal(exc, f"member event at {event.message.tp} offset {event.message.offset}")
        ledger.complete(admission)
        await manual.ack(event)


def model_precision() -> str:
    """fp32, int8, fp16...: what the backend computes in (a label of ``riskstream_model_info``)."""
    for name in ("precision", "_precision"):
        value = getattr(handler, name, None)
        if isinstance(value, str):
            return value
    dtype = getattr(handler, "_dtype", None)
    if dtype is not None:
        return {"torch.float16": "fp16", "torch.bfloat16": "bf16"}.get(str(dtype), "fp32")
    return "fp32"


@app.task
async def load_model() -> None:
    await batcher.start()
    metrics.MODEL_LOAD_SECONDS.set(batcher.model_load_seconds or 0.0)
    metrics.MODEL_INFO.labels(type(handler).__name__, handler.model_version, model_precision()).set(
        1
    )
    metrics.MODEL_MAX_BATCH_SIZE.set(batcher.max_batch_size)
    logger.info("model %s loaded in %.2fs", handler.model_version, batcher.model_load_seconds)


@app.on_partitions_assigned.connect
async def count_rebalance(app, assigned, **kwargs) -> None:
    metrics.REBALANCES.inc()


def readiness() -> dict[str, bool]:
    """What ``/readyz`` requires: the model loaded, table recovery done, no rebalance under
    way, and this worker holding partitions."""
    recovery = app.tables.recovery
    return {
        "model_loaded": batcher.loaded,
        "recovery_done": recovery.completed.is_set(),
        "not_rebalancing": not app.rebalancing,
        "partitions_assigned": bool(app.consumer.assignment()),
    }


def update_lag() -> int:
    """Lag per consumed partition: the last fetch's high-water mark minus the ledger's
    position (what was admitted), read when /metrics is scraped; -> the total."""
    metrics.CONSUMER_LAG.clear()
    total = 0
    for (topic, partition), position in ledger.positions().items():
        if topic.endswith("-changelog"):
            continue  # table changelogs are read by recovery, not consumed
        high = app.consumer.highwater(TP(topic, partition))
        if high is not None:
            logical = topic.removeprefix(settings.topic_prefix)
            lag = max(high - position, 0)
            metrics.CONSUMER_LAG.labels(logical, str(partition)).set(lag)
            total += lag
    return total


WATCHDOG_INTERVAL_S = 5.0


@app.task
async def watch() -> None:
    """Exit, so the supervisor starts a fresh worker, when the broker lost the input topics,
    nothing moves while records wait, or the worker never gets ready (``stream/watchdog.py``)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from stream.admin import bootstrap_servers
    from stream.security import KafkaSecurity

    dog = Watchdog(started_s=time.monotonic())
    inputs = {settings.topic(name) for name in INPUT_TOPICS}
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers(settings.kafka_broker),
        **KafkaSecurity.from_env().aiokafka_kwargs(),
    )
    started = False
    while True:
        await asyncio.sleep(WATCHDOG_INTERVAL_S)
        try:
            if not started:
                await asyncio.wait_for(admin.start(), 10)
                started = True
            present = set(await asyncio.wait_for(admin.list_topics(), 10))
            inputs_exist: bool | None = inputs <= present
        except Exception:  # an unreachable broker is Faust's to retry; not a verdict here
            inputs_exist = None
        lag_total = update_lag()
        reason = dog.observe(
            Observation(
                now_s=time.monotonic(),
                inputs_exist=inputs_exist,
                ready=all(readiness().values()),
                admitted_total=ledger.admitted,
                lag_total=lag_total,
            )
        )
        if reason is not None:
            fatal(RuntimeError(reason), "the watchdog")


@app.page("/metrics")
async def metrics_page(web, request):
    metrics.READY.set(all(readiness().values()))
    update_lag()
    # aiohttp refuses a charset inside content_type; Prometheus reads plain text as 0.0.4.
    return web.bytes(generate_latest(), content_type="text/plain")


@app.page("/healthz")
async def healthz(web, request):
    """Alive: the event loop answers."""
    return web.json({"alive": True})


@app.page("/readyz")
async def readyz(web, request):
    """Ready to process: 200, or 503 naming what is missing."""
    checks = readiness()
    return web.json(
        {"ready": all(checks.values()), **checks}, status=200 if all(checks.values()) else 503
    )
