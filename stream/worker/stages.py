"""The worker's stages over one object that holds its state: no module globals.

``Stages`` is what the Faust agents call (``stream/worker/app.py`` only wires topics, tables and
timers to it). Its collaborators come in through the constructor, so tests run every stage
in-process with dict tables, a recording ``send`` and the fake model (``tests/fakes.py``):

- the edge: decode -> micro-batch -> queue for publication in consumption order;
- the publisher: dead letter, member stage here (fused) or member event (re-keyed by member),
  and the member-events records after the hop, a batch at a time, then mark done;
- the member stage: table -> ``member_step`` (pure) -> outputs, then, once every output of the
  batch was delivered, one table write per member;
- the surge stage: hold mentions, fold them in event-time order, flush quiet subjects.

Delivery: a record is marked done in the ledger (``stream/core/delivery.py``) only after its outputs
were handed to the producer; Faust flushes the producer before it commits the ledger's offsets.
A member's state is written only after the outputs of the events it counts were delivered
(``OutputBatch``), so a state that counts an event proves its outputs are out: a redelivery is
skipped on its id alone (``stream.core.member``), and no replay record is rewritten per event.
Errors (``stream/core/errors.py``): bad input is dead-lettered by the edge; an exception while
processing one event is dead-lettered as ``processing_error`` (or stops the worker with the
``fail`` policy); a failure that is not about the event stops the worker before it commits.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from models.serving.base import ModelHandler, PredictionResult
from stream.config import Settings
from stream.core.codec import ValidationError, encode
from stream.core.delivery import Admission, DeliveryLedger
from stream.core.errors import FailurePolicy, fatal
from stream.core.labels import decode_label
from stream.core.member import Output, counted_time, member_step, pack_mentions
from stream.core.partitioning import default_partition
from stream.core.profiles import expired
from stream.core.steps import (
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
from stream.core.surge import (
    REORDER,
    absorb,
    flush_due,
    flush_pending,
    hold_mentions,
    prior_key,
    subject_key,
)
from stream.topics import ALERTS, DEAD_LETTER, MEMBER_EVENTS, SUBJECT_EVENTS
from stream.worker import metrics
from stream.worker.batcher import MicroBatcher
from stream.worker.shadow import ShadowScoring

logger = logging.getLogger("riskstream.worker")

#: ``send(logical topic, key, value, partition=None)``: hand one record to the producer.
Send = Callable[..., Awaitable[Any]]
#: ``send_many(outputs)``: hand a batch's outputs to the producer; -> their delivery futures
#: (``stream.worker.outbox.Outbox``: one per topic-partition).
SendMany = Callable[[list[Output]], Awaitable[list[Any]]]
FraudScorerT = Callable[[dict], "tuple[float, list, str] | None"]

#: Key of the tick records that flush held mentions when a subject goes quiet.
SURGE_TICK = b"__tick__"
#: Published events waiting for the write-behind of their member states, at most: then it is
#: flushed whatever ``RISKSTREAM_STATE_FLUSH_MS`` says (Faust keeps them unacked meanwhile).
MAX_UNDONE = 4096


class Acker(Protocol):
    async def ack(self, event: Any) -> Any: ...


@dataclass(slots=True)
class InFlight:
    """An input event between admission and publication; acked only once its output is sent."""

    stream: Acker
    event: Any
    admission: Admission
    decoded: ValidEvent | InvalidEvent
    scores: asyncio.Future[PredictionResult] | None

    @property
    def record(self) -> RawRecord:
        return self.decoded.record


@dataclass(slots=True)
class HopRecord:
    """A member-events record (after the hop), queued for the publisher like an input event."""

    stream: Acker
    event: Any
    admission: Admission
    record: RawRecord


@dataclass(slots=True)
class StateWrite:
    """A member's newest state in a batch, written when the batch's outputs are delivered."""

    state: dict[str, Any]
    #: The Faust event it came from: the write goes to its partition (None in tests).
    event: Any
    admission: Admission | None


@dataclass(slots=True)
class OutputBatch:
    """One publisher batch: its outputs go out together at its end (surge mentions packed
    per subject); its member states are written once per member, only after every output
    was delivered (``Stages.finish``)."""

    outputs: list[Output] = field(default_factory=list)
    mentions: list[Output] = field(default_factory=list)
    states: dict[str, StateWrite] = field(default_factory=dict)


class MemberExpiry:
    """Drops members inactive for ``RISKSTREAM_MEMBER_TTL_DAYS`` of event time, a few keys at a
    time, from inside the member agent (a table is written only while processing an event of
    the key's partition, so only keys of that partition are swept).

    It also keeps the member stage's clock: a partition's expiry clock is the newest event time
    seen on it, each taken no later than the wall clock (``stream.core.member.counted_time``),
    and ``now_ms`` is the wall clock the member step caps event times with. One event dated 2099
    (with the future bound lifted) set the clock to 2099 before and dropped 486 of 2,000 other
    members of its partitions; now it moves it to the wall clock at most. Old data (a backtest
    of 2015) is never capped, so its expiry runs on event time alone.

    One key per event on average (``keys_per_sweep`` every ``every`` events): each check decodes
    a state (the table holds JSON bytes), and a pass over 1 M members every 1 M events is far
    quicker than a TTL of days."""

    def __init__(
        self,
        table: MutableMapping[str, Any],
        ttl_days: float | None,
        *,
        every: int = 200,
        keys_per_sweep: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.ttl_ms = None if ttl_days is None else int(ttl_days * 86_400_000)
        self.every, self.keys_per_sweep = every, keys_per_sweep
        self.clock = clock
        self._newest: dict[int, int] = {}
        self._todo: dict[int, list[str]] = {}
        self._seen = 0

    def now_ms(self) -> int:
        """The wall clock, in epoch ms: no event counts later than this."""
        return int(self.clock() * 1000)

    def saw(self, partition: int, event_ms: int) -> None:
        event_ms = counted_time(event_ms, self.now_ms())
        self._newest[partition] = max(self._newest.get(partition, event_ms), event_ms)

    def sweep(self, partition: int) -> int:
        """Check the next keys of ``partition``; -> how many were dropped."""
        self._seen += 1
        if self.ttl_ms is None or self._seen % self.every or partition not in self._newest:
            return 0
        todo = self._todo.get(partition)
        if not todo:
            todo = self._todo[partition] = list(self.table.keys())
        dropped = 0
        for _ in range(min(self.keys_per_sweep, len(todo))):
            key = todo.pop()
            state = self.table.get(key)
            if (
                state is not None
                and state.get("partition") == partition
                and expired(state, self._newest[partition], self.ttl_ms)
            ):
                del self.table[key]
                dropped += 1
        metrics.MEMBERS_EXPIRED.inc(dropped)
        return dropped


def subject_partition(key: bytes, partitions: int) -> int:
    """The partition of a subject's surge state: Kafka's default partitioner over its key
    ``kind:id`` (where the records keyed by subject went before mentions were packed)."""
    return default_partition(key, partitions)


def member_partition(event: ValidEvent, partitions: int) -> int:
    """The partition a member's state lives on: Kafka's default partitioner over the member id
    as the producer sent it (``ValidEvent.partition_key``), not over its pseudonym."""
    return default_partition(event.partition_key, partitions)


def _scored(item: InFlight | HopRecord) -> bool:
    """Whether publishing ``item`` can go on without waiting for the model."""
    return isinstance(item, HopRecord) or item.scores is None or item.scores.done()


class Stages:
    """One worker's stages and the state they share (tables, queue, held-mention index)."""

    def __init__(
        self,
        settings: Settings,
        *,
        handler: ModelHandler[Any],
        batcher: MicroBatcher,
        ledger: DeliveryLedger,
        member_table: MutableMapping[str, Any],
        surge_table: MutableMapping[str, Any],
        send: Send,
        send_many: SendMany | None = None,
        fraud_scorer: FraudScorerT | None = None,
        shadow: ShadowScoring | None = None,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.batcher = batcher
        self.ledger = ledger
        self.member_table = member_table
        self.surge_table = surge_table
        self.send = send
        #: A batch's outputs (by default ``send`` for each: tests record them one by one).
        self.send_many: SendMany = send_many or self._send_each
        #: A challenger build compared on the same texts (``RISKSTREAM_SHADOW_*``), or None.
        self.shadow = shadow
        #: Loaded in the startup task (``load_models``); the member stage waits for it.
        self.fraud_scorer = fraud_scorer
        self.models_ready = asyncio.Event()
        if fraud_scorer is not None and batcher.loaded:
            self.models_ready.set()
        self.thresholds = settings.thresholds()
        self.profile_throttle_ms = int(settings.profile_throttle_s * 1000)
        self.edge_limits = settings.edge_limits()
        self.pseudonymiser = settings.pseudonymiser()
        self.policy = FailurePolicy(settings.processing_error_policy)
        self.fatal = fatal
        #: ``partitions_of(logical topic)``: its partition count (None: not known yet).
        self.partitions_of: Callable[[str], int | None] = lambda _: settings.partitions
        #: ``within_event(event)``: a context in which table writes belong to ``event``'s
        #: partition (Faust's current event; set by ``build_app``).
        self.within_event: Callable[[Any], AbstractContextManager[Any]] = lambda _: nullcontext()
        #: Admitted events in consumption order. Bounded: a full queue stalls the edge agents.
        self.in_flight: asyncio.Queue[InFlight] = asyncio.Queue(maxsize=batcher.max_pending)
        #: Member-events records after the hop, for the publisher (``publish_in_order``).
        self.hop_queue: asyncio.Queue[HopRecord] = asyncio.Queue(maxsize=batcher.max_pending)
        #: Taken by the publisher from ``in_flight``, their scores not back yet.
        self.waiting: deque[InFlight] = deque()
        #: Write-behind of member states (``RISKSTREAM_STATE_FLUSH_MS``): the newest state
        #: per member not yet written, and the published events (outputs delivered) that are
        #: done once it is, in publication order.
        self.unwritten: dict[str, StateWrite] = {}
        self.undone: list[InFlight | HopRecord] = []
        self.unwritten_since: float | None = None
        self.state_flush_s = settings.state_flush_ms / 1000
        #: Subject-events partition -> subject -> its state with the held mentions.
        self.held: dict[int, dict[str, dict[str, Any]]] = {}
        #: Subject-events partition -> subject -> (offset, arrival) of its oldest held mention.
        self.held_from: dict[int, dict[str, tuple[int, float]]] = {}
        #: Subject-events partition -> admitted records not yet marked done, in offset order.
        self.unfinished: dict[int, deque[Admission]] = {}
        self.expiry = MemberExpiry(member_table, settings.member_ttl_days)
        #: What the publisher awaits now, and since when (for a stall's log line).
        self.publisher_at, self.publisher_since = "not started", time.monotonic()

    # -- errors ---------------------------------------------------------------------------

    async def publish_dead_letter(self, invalid: InvalidEvent) -> None:
        from stream.core.sealing import cached_key

        key_file = self.settings.dead_letter_key_file
        body = dead_letter(
            invalid,
            failed_at=utc_now(),
            max_original_bytes=self.edge_limits.max_dead_letter_bytes,
            raw_dead_letters=self.settings.raw_dead_letters,
            # read once per process (checked when the settings loaded)
            sealing_key=None if key_file is None else cached_key(str(key_file)),
        )
        await self.send(DEAD_LETTER, dead_letter_key(invalid.record), encode(body, "dead-letter"))
        metrics.DEAD_LETTERS.labels(invalid.error.reason).inc()

    async def on_processing_error(self, record: RawRecord, stage: str, exc: Exception) -> None:
        """One event failed inside a stage: dead-letter it and go on, or stop (the policy)."""
        metrics.PROCESSING_ERRORS.labels(stage).inc()
        where = f"{record.topic}[{record.partition}] offset {record.offset}"
        if self.policy is FailurePolicy.FAIL:
            self.fatal(exc, f"{stage} stage, {where}")
            return
        logger.exception("processing_error in the %s stage at %s: dead-lettered", stage, where)
        await self.publish_dead_letter(processing_error(record, stage, exc))

    def send_into(self, batch: OutputBatch, outputs: list[Output]) -> None:
        """Queue ``outputs`` in ``batch``: they go out at its end (``deliver``)."""
        for output in outputs:
            (batch.mentions if output.topic == SUBJECT_EVENTS else batch.outputs).append(output)

    async def _send_each(self, outputs: list[Output]) -> list[Any]:
        return [await self.send(o.topic, o.key, o.value, o.partition) for o in outputs]

    async def finish(self, batch: OutputBatch) -> None:
        """``deliver`` the batch's outputs, then write each member's newest state."""
        await self.deliver(batch)
        self.write_states(batch.states)

    async def deliver(self, batch: OutputBatch) -> None:
        """Send the batch's outputs and its mentions, packed per subject, in order; then wait
        until every one is delivered."""
        partitions = self.partitions_of(SUBJECT_EVENTS) or self.settings.partitions
        packs = pack_mentions(batch.mentions, lambda key: subject_partition(key, partitions))
        if not batch.outputs and not packs:
            return
        sent = await self.send_many([*batch.outputs, *packs])
        deliveries = [delivery for delivery in sent if asyncio.isfuture(delivery)]
        if deliveries:
            self._publisher(f"waiting for {len(deliveries)} deliveries")
            await asyncio.gather(*deliveries)

    def write_states(self, states: dict[str, StateWrite]) -> None:
        """One table write per member. A state whose partition was revoked meanwhile is not
        written: its new owner applies the events."""
        for member_id, write in states.items():
            if self._stale(write):
                continue
            with self.within_event(write.event):
                self.member_table[member_id] = write.state

    def _stale(self, write: StateWrite | None) -> bool:
        return write is not None and self._revoked(write.admission)

    def _revoked(self, admission: Admission | None) -> bool:
        """Whether ``admission``'s partition was revoked since (None: not through the ledger)."""
        return admission is not None and not self.ledger.current(admission)

    async def check_label(self, record: RawRecord) -> None:
        """A ``labels`` record: dead-lettered with its reason when invalid, else counted."""
        try:
            label = decode_label(record.key, record.value)
        except ValidationError as error:
            await self.publish_dead_letter(InvalidEvent(record, error))
            return
        metrics.LABELS_RECEIVED.labels(label.head, label.value).inc()

    # -- edge -----------------------------------------------------------------------------

    async def admit(
        self, stream: Acker, record: RawRecord, event: Any, admission: Admission
    ) -> None:
        """decode -> hand the text to the shared micro-batcher -> queue for publication."""
        metrics.EVENTS_CONSUMED.labels(record.topic).inc()
        decoded = decode_record(
            record,
            limits=self.edge_limits,
            now_ms=int(time.time() * 1000),
            pseudonymiser=self.pseudonymiser,
            pii_in_ids=self.settings.pii_in_ids,
        )
        text = text_to_score(decoded) if isinstance(decoded, ValidEvent) else None
        scores = await self.batcher.submit(text) if text is not None else None
        await self.in_flight.put(InFlight(stream, event, admission, decoded, scores))

    def on_its_member_partition(self, event: ValidEvent) -> bool:
        """Whether the record sits on the partition its member's state lives on (the one the
        member-events hop would send it to), so the member stage can run here."""
        partitions = self.settings.partitions
        if self.settings.member_stage != "fused" or self.partitions_of(event.record.topic) != (
            partitions
        ):
            return False  # an input topic of another size is not co-partitioned with the table
        return member_partition(event, partitions) == event.record.partition

    async def publish(self, item: InFlight | HopRecord, batch: OutputBatch) -> None:
        """Dead letter, or the member stage (here, or after the hop to the member's partition).
        The caller finishes the batch, then marks the event done."""
        if isinstance(item, HopRecord):
            with self.within_event(item.event):
                await self.member_record(item.record, batch, item.event, item.admission)
            return
        if isinstance(item.decoded, InvalidEvent):
            await self.publish_dead_letter(item.decoded)
            return
        # a model failure fails the whole batch: not about this event, so it is fatal
        result = await item.scores if item.scores is not None else None
        scores = result.inference.as_dict() if result is not None else None
        version = result.model_id if result is not None else None  # a router names the build
        if self.shadow is not None and scores is not None:
            self.shadow.offer(item.decoded, scores, version)
        try:
            evt = member_event(item.decoded, scores, version)
            fused = self.on_its_member_partition(item.decoded)
            body = None if fused else orjson.dumps(evt)
        except Exception as exc:
            await self.on_processing_error(item.decoded.record, "edge", exc)
            return
        if body is None:
            with self.within_event(item.event):  # table writes go to its partition
                await self.member_stage(evt, item.decoded.record, batch, item.event, item.admission)
            metrics.MEMBER_STAGE_FUSED.inc()
        else:
            # keyed by the pseudonym, on the partition of the member id the producer sent (as
            # the fused path's state is), so both paths keep one member on one partition
            partition = member_partition(item.decoded, self.settings.partitions)
            key = item.decoded.member_id.encode()
            batch.outputs.append(Output(MEMBER_EVENTS, key, body, partition))

    async def publish_batch(self, items: list[InFlight | HopRecord]) -> None:
        """Publish queued events in consumption order; their surge mentions go out packed,
        one record per subject for the batch (a review names a product and a brand, and
        brands repeat: one record each was 1.0 subject-events write per text event); member
        states once per member after the outputs (``finish``). Then, and only then, those
        events are done. A batch ends early where the next event's scores are not back yet,
        so states and commits do not wait for the model's next batch."""
        self._publisher(f"publishing {len(items)}")
        batch, published = OutputBatch(), []
        for item in items:
            if published and not _scored(item):
                await self._done(batch, published)
                batch, published = OutputBatch(), []
            await self.publish(item, batch)
            published.append(item)
        await self._done(batch, published)

    async def _done(self, batch: OutputBatch, items: list[InFlight | HopRecord]) -> None:
        """The batch's outputs are delivered; its states join the write-behind, and its
        events are done when they are written (at once with ``state_flush_ms`` 0)."""
        await self.deliver(batch)
        self.unwritten.update(batch.states)
        self.undone.extend(items)
        if self.unwritten_since is None:
            self.unwritten_since = time.monotonic()
        if self.flush_in() <= 0:
            await self.flush_states()

    def flush_in(self) -> float:
        """Seconds until the write-behind is due (inf: nothing waits)."""
        if self.unwritten_since is None:
            return float("inf")
        if len(self.undone) >= MAX_UNDONE:
            return 0.0
        return self.unwritten_since + self.state_flush_s - time.monotonic()

    async def flush_states(self) -> None:
        """Write the newest state of every member the events since the last flush changed,
        then mark those events done (complete and ack), in publication order."""
        states, items = self.unwritten, self.undone
        self.unwritten, self.undone, self.unwritten_since = {}, [], None
        self.write_states(states)
        for item in items:  # no await in between: completions stay in order per partition
            self.ledger.complete(item.admission)
        for item in items:
            await item.stream.ack(item.event)

    async def publish_in_order(self, max_batch: int = 256) -> None:
        """One publisher keeps outputs in consumption order (replays stay deterministic) and
        is the member table's only writer. Each batch is what can be published without
        waiting for the model: the queued input events whose scores are back, in order, up to
        ``max_batch``, and the member-events records queued after the hop (these must not wait
        behind texts still at the model: their members' states would lag by seconds)."""
        hops: deque[HopRecord] = deque()  # taken from ``hop_queue``
        while True:
            items = await self._publishable(self.waiting, hops, max_batch)
            try:
                await self.publish_batch(items)
            except Exception as exc:
                record = items[0].record
                where = f"{record.topic}[{record.partition}] offset {record.offset}"
                self.fatal(exc, f"publishing a batch of {len(items)} from {where}")

    def _publisher(self, doing: str) -> None:
        self.publisher_at, self.publisher_since = doing, time.monotonic()

    def pipeline_state(self) -> str:
        """Where events wait inside the worker, for a stall's log line."""
        head = "none"
        if self.waiting:
            item = self.waiting[0]
            scores = item.scores
            how = (
                "no text"
                if scores is None
                else "cancelled"
                if scores.cancelled()
                else ("scored" if scores.done() else "not scored")
            )
            head = f"{item.record.topic}[{item.record.partition}]@{item.record.offset} {how}"
        since = time.monotonic() - self.publisher_since
        return (
            f"publisher {self.publisher_at} for {since:.1f} s; in flight: {self.in_flight.qsize()}"
            f" queued, {len(self.waiting)} taken (head {head}), {self.hop_queue.qsize()} hop"
            f" records; {len(self.undone)} published not done; {self.batcher.state()}"
        )

    def in_flight_count(self) -> int:
        """Events admitted by the edge and not yet published (queued, or held by the
        publisher until their scores are back)."""
        return self.in_flight.qsize() + len(self.waiting)

    async def _publishable(
        self, waiting: deque[InFlight], hops: deque[HopRecord], max_batch: int
    ) -> list[InFlight | HopRecord]:
        """The next batch: the scored head of the input events, then the hop records."""
        while True:
            while len(waiting) < max_batch and not self.in_flight.empty():
                waiting.append(self.in_flight.get_nowait())
            while len(hops) < max_batch and not self.hop_queue.empty():
                hops.append(self.hop_queue.get_nowait())
            items: list[InFlight | HopRecord] = []
            while waiting and len(items) < max_batch and _scored(waiting[0]):
                items.append(waiting.popleft())
            while hops and len(items) < max_batch:
                items.append(hops.popleft())
            if items:
                return items
            # nothing to publish yet: wait for a hop record, and for the head's scores or
            # (none waiting) a new input event, at most until the write-behind is due
            self._publisher("waiting for scores or events")
            flush_in = self.flush_in()
            if flush_in <= 0:
                await self.flush_states()
                continue
            next_hop = asyncio.ensure_future(self.hop_queue.get())
            if waiting:
                head = waiting[0].scores
                assert head is not None  # unscored, so it has a future
                other: asyncio.Future[Any] = asyncio.ensure_future(asyncio.wait([head]))
            else:
                other = asyncio.ensure_future(self.in_flight.get())
            try:
                await asyncio.wait(
                    [next_hop, other],
                    timeout=None if flush_in == float("inf") else flush_in,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                next_hop.cancel()
                other.cancel()
            if next_hop.done() and not next_hop.cancelled():
                hops.append(next_hop.result())  # the queue was empty: it is the oldest
            if not waiting and other.done() and not other.cancelled():
                waiting.append(other.result())

    # -- member ---------------------------------------------------------------------------

    async def handle_member_event(
        self,
        record: RawRecord,
        batch: OutputBatch | None = None,
        event: Any = None,
        admission: Admission | None = None,
    ) -> None:
        """A member-events record (after the hop) -> the member stage (as a batch of its own
        when no batch is given)."""
        own = batch is None
        batch = OutputBatch() if batch is None else batch
        try:
            evt = orjson.loads(record.value)
        except Exception as exc:
            await self.on_processing_error(record, "member", exc)
        else:
            await self.member_stage(evt, record, batch, event, admission)
        if own:
            await self.finish(batch)

    async def member_stage(
        self,
        evt: dict[str, Any],
        record: RawRecord,
        batch: OutputBatch,
        event: Any = None,
        admission: Admission | None = None,
    ) -> None:
        """Table (or the batch's newer state) -> ``member_step`` (pure) -> outputs, and the new
        state for the batch to write. An exception inside the step is about this event
        (dead-lettered); one reading the table or sending is not (fatal). ``record`` is where
        the event was read (for errors, and the state's partition); ``event`` and
        ``admission``, its Faust event and ledger entry."""
        await self.models_ready.wait()
        if self._revoked(admission):
            # its partition moved on while the event waited (in the hop queue, or the batch):
            # the new owner applies it from the committed offset. Applied here, it would read
            # a state this worker no longer keeps and publish a stale profile after the new
            # owner's (seen as miscounted profiles in the scale-out test).
            metrics.MEMBER_EVENTS_LEFT.inc()
            return
        try:
            member_id = evt["event"]["member_id"]
        except Exception as exc:
            await self.on_processing_error(record, "member", exc)
            return
        pending = batch.states.get(member_id) or self.unwritten.get(member_id)
        if self._stale(pending):  # its partition moved and came back: the table is the truth
            pending = None
        previous = pending.state if pending is not None else self.member_table.get(member_id)
        try:
            outcome = member_step(
                previous,
                evt,
                thresholds=self.thresholds,
                profile_throttle_ms=self.profile_throttle_ms,
                fraud_scorer=self.fraud_scorer,
                now_ms=self.expiry.now_ms(),
            )
        except Exception as exc:
            await self.on_processing_error(record, "member", exc)
            return
        if outcome.state is not None:
            state = {**outcome.state, "partition": record.partition}
            batch.states[member_id] = StateWrite(state, event, admission)
            self.expiry.saw(record.partition, evt["event_time_ms"])
        if outcome.redelivered:
            metrics.DUPLICATES_SKIPPED.inc()
        metrics.ALERTS_SUPPRESSED.inc(outcome.suppressed_alerts)
        self.send_into(batch, outcome.outputs)
        metrics.SCORED_EVENTS.labels(evt["event_type"]).inc()
        if evt.get("input_timestamp_ms"):
            metrics.E2E_LATENCY.observe(max(time.time() - evt["input_timestamp_ms"] / 1000, 0.0))
        for alert_type in outcome.alert_types:
            metrics.ALERTS.labels(alert_type).inc()
        if outcome.profile_published:
            metrics.PROFILES_PUBLISHED.inc()
        self.expiry.sweep(record.partition)

    async def member_record(
        self,
        record: RawRecord,
        batch: OutputBatch | None = None,
        event: Any = None,
        admission: Admission | None = None,
    ) -> None:
        """One member-events record, then a few keys of the expiry sweep."""
        await self.handle_member_event(record, batch, event, admission)
        metrics.MEMBER_EVENTS_DONE.inc()

    # -- surge ----------------------------------------------------------------------------
    #
    # Held mentions live in memory and the subject's table entry is written once per flush,
    # not once per mention (each write carried the whole held list: 1.24 changelog writes of
    # ~2 KB per text event, the largest share of the worker's bytes). A subject-events record
    # is marked done only when no mention at or before its offset is still held, so after a
    # crash the held mentions are read again (and the folded ones skipped by the state's
    # recent event ids).

    def held_in(self, partition: int) -> dict[str, dict[str, Any]]:
        """This partition's subjects with held mentions -> their state with ``pending``.
        After an assignment, subjects whose stored state still holds mentions (written by an
        earlier version) are taken up again."""
        if partition not in self.held:
            self.held[partition] = {
                key: dict(state)
                for key, state in self.surge_table.items()
                if state.get("pending") and state.get("partition") == partition
            }
            first = self.held_from.setdefault(partition, {})
            for key, state in self.held[partition].items():  # their records are done already
                first[key] = (sys.maxsize, min(p["arrived_s"] for p in state["pending"]))
        return self.held[partition]

    async def flush_subject(self, key: str, partition: int, trigger: RawRecord) -> None:
        """Fold a subject's held mentions into its stored state. If that fails, the held
        mentions are dead-lettered together (the subject's state is kept without them), so
        one bad subject cannot fail again on every tick."""
        held_state = self.held_in(partition).pop(key)
        self.held_from.get(partition, {}).pop(key, None)
        # the partition's stream prior (``stream.core.surge``): what a new subject leans on
        # until it has history of its own; written here, while this partition's record is
        # processed, so it lives in the partition's changelog and moves with it
        at = prior_key(partition)
        prior = self.surge_table.get(at)
        try:
            state, alerts = flush_pending(held_state, prior=prior)
            if (state.get("contrib") or {}).get("windows"):  # closed windows to pool
                prior, state = absorb(prior, state)
                self.surge_table[at] = prior
        except Exception as exc:
            pending = orjson.dumps({"subject": key, "pending": held_state.get("pending")})
            await self.on_processing_error(
                RawRecord(trigger.topic, trigger.partition, trigger.offset, key.encode(), pending),
                "surge_flush",
                exc,
            )
            state, alerts = {**held_state, "pending": []}, []
        self.surge_table[key] = {**state, "partition": partition}
        for alert in alerts:
            await self.send(ALERTS, alert["alert_id"].encode(), encode(alert, "alerts"))
            metrics.ALERTS.labels(alert["alert_type"]).inc()

    async def hold(self, record: RawRecord, now: float) -> list[str]:
        """Hold a record's mentions in memory; -> the subjects that took a new one (none for
        a tick or repeats). A record carries ``{"mentions": [...]}`` of the subjects of its
        partition (or, as written before, of the one subject it is keyed by, or one mention).
        A subject whose mentions fail is dead-lettered alone, with its mentions."""
        try:
            body = orjson.loads(record.value)
            mentions = body.get("mentions", [body] if body else [])
            by_subject: dict[str, list[dict[str, Any]]] = {}
            for mention in mentions:
                by_subject.setdefault(subject_key(mention).decode(), []).append(mention)
        except Exception as exc:
            await self.on_processing_error(record, "surge", exc)
            return []
        held = self.held_in(record.partition)
        took = []
        for subject, theirs in by_subject.items():
            try:
                new = hold_mentions(held.get(subject) or self.surge_table.get(subject), theirs, now)
            except Exception as exc:
                value = orjson.dumps({"mentions": theirs})
                failed = RawRecord(
                    record.topic, record.partition, record.offset, subject.encode(), value
                )
                await self.on_processing_error(failed, "surge", exc)
                continue
            if new is not None:
                held[subject] = new
                first = self.held_from.setdefault(record.partition, {})
                first.setdefault(subject, (record.offset, now))
                took.append(subject)
        return took

    async def subject_record(self, record: RawRecord, now: float, admission: Admission) -> None:
        """Hold the mention, flush the subjects that are due (by the age of their oldest held
        mention, or by count for the one just mentioned), then mark done every record of the
        partition before the oldest mention still held."""
        partition = record.partition
        self.unfinished.setdefault(partition, deque()).append(admission)
        mentioned = await self.hold(record, now)
        first_held = self.held_from.get(partition, {})
        # subjects in the order their oldest mention arrived (and offsets rise with it): the
        # due ones are a prefix, and the oldest offset still held the first real one
        due = []
        for key, (_, since) in first_held.items():
            if now - since < REORDER.hold_s:
                break
            due.append(key)
        for key in mentioned:
            if key not in due and flush_due(self.held_in(partition)[key], now):
                due.append(key)  # a busy subject: by count
        for key in due:
            await self.flush_subject(key, partition, record)
        oldest_held = next((o for o, _ in first_held.values() if o != sys.maxsize), None)
        unfinished = self.unfinished[partition]
        while unfinished and (oldest_held is None or unfinished[0].offset < oldest_held):
            self.ledger.complete(unfinished.popleft())
        metrics.SURGE_HELD.set(sum(len(h) for h in self.held.values()))
        metrics.SUBJECT_EVENTS_DONE.inc()

    def partitions_holding_mentions(self) -> list[int]:
        return [partition for partition, held in self.held.items() if held]

    def forget_partitions(self) -> None:
        """After a revocation: held mentions are dropped; their records were not marked done,
        so whoever owns the partition next reads them again."""
        self.held.clear()
        self.held_from.clear()
        self.unfinished.clear()
