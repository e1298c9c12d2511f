"""``build_app``: the Faust application, its topics, tables, agents, tasks and pages, built in
one function from settings. Importing this module creates nothing, reads no file and loads no
model; the text model and the fraud booster load in a startup task.

The agents here only wire: records come in through the delivery ledger (each once, in offset
order per partition: ``stream/core/delivery.py``), ``Stages`` (``stream/worker/stages.py``) does the
work, and delivery is decided in one place: a record is marked done in the ledger after its
outputs were handed to the producer, a failure that is not about the event is ``fatal``.
Edge agents keep admitting events while the model runs (the micro-batcher bounds what is in
flight), so batching never waits on one agent's batch to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import faust
from faust import StreamT
from faust.exceptions import ConsumerNotStarted
from faust.streams import _current_event
from faust.types import TP, EventT
from mode import Service

from models.serving.base import ModelHandler
from stream.config import Settings
from stream.core.delivery import DeliveryLedger, admitted
from stream.core.errors import fatal
from stream.core.steps import RawRecord
from stream.core.surge import REORDER
from stream.core.watchdog import Observation, Watchdog, WatchdogPolicy
from stream.security import KafkaSecurity
from stream.topics import (
    INPUT_TOPICS,
    INTERNAL_TOPICS,
    LABELS,
    MEMBER_EVENTS,
    MEMBER_TABLE,
    OUTPUT_TOPICS,
    SUBJECT_EVENTS,
    SURGE_TABLE,
)
from stream.worker import faust_fixes, metrics
from stream.worker.outbox import Outbox
from stream.worker.shadow import ShadowScoring
from stream.worker.stages import SURGE_TICK, FraudScorerT, HopRecord, Stages
from stream.worker.tables import JsonValues

logger = logging.getLogger("riskstream.worker")

WATCHDOG_INTERVAL_S = 5.0


def _default_handler(settings: Settings) -> ModelHandler[Any]:
    from models.serving.factory import create_handler

    return create_handler(
        settings.backend,
        settings.model_version,
        max_batch_tokens=settings.max_batch_tokens,
        torch_compile=settings.torch_compile,
        require_cuda=settings.require_cuda,
        chinese_model_version=settings.chinese_build(),
        intra_op_threads=settings.model_threads,
    )


def _default_fraud_scorer() -> FraudScorerT:
    from stream.worker.scoring import FraudScorer

    return FraudScorer()


@dataclass
class Worker:
    """What ``build_app`` made: the Faust app and the objects its agents share."""

    settings: Settings
    app: faust.App
    ledger: DeliveryLedger
    stages: Stages
    topics: dict[str, faust.TopicT] = field(default_factory=dict)
    #: The watchdog's current finding (``/readyz`` reports it), set once it runs.
    watchdog: Watchdog | None = None

    def raw_record(self, logical_topic: str, event: EventT) -> RawRecord:
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

    def delivered(self, stream: StreamT):
        """``stream``'s records each once, in order, through the ledger."""
        return admitted(stream, self.ledger, self.app.consumer.seek, self.resync_partition)

    async def resync_partition(self, tp: TP) -> None:
        """A record of an assigned partition the ledger does not know (no seek told it where
        to start): seek every partition back to its committed offset, which teaches it."""
        if tp in self.app.consumer.assignment() and not self.app.rebalancing:
            await self.app.consumer.perform_seek()

    # -- health ---------------------------------------------------------------------------

    def readiness(self) -> dict[str, bool]:
        """What ``/readyz`` requires: the models loaded, table recovery done, no rebalance
        under way, and this worker holding partitions."""
        app = self.app
        try:
            assigned = bool(app.consumer.assignment())
        except ConsumerNotStarted:  # asked before the consumer started
            assigned = False
        return {
            "model_loaded": self.stages.models_ready.is_set(),
            "recovery_done": app.tables.recovery.completed.is_set(),
            "not_rebalancing": not app.rebalancing,
            "partitions_assigned": assigned,
        }

    def update_lag(self) -> tuple[int, dict[str, int]]:
        """Lag per consumed partition: the last fetch's high-water mark minus the ledger's
        position (what was admitted), read when /metrics is scraped; -> the total, and the
        ledger's position of each partition with records waiting (named "reviews[3]")."""
        metrics.CONSUMER_LAG.clear()
        total, lagging = 0, {}
        for (topic, partition), position in self.ledger.positions().items():
            if _is_changelog(topic):
                continue  # table changelogs are read by recovery, not consumed
            high = self.app.consumer.highwater(TP(topic, partition))
            if high is not None:
                logical = topic.removeprefix(self.settings.topic_prefix)
                lag = max(high - position, 0)
                metrics.CONSUMER_LAG.labels(logical, str(partition)).set(lag)
                total += lag
                if lag:
                    lagging[f"{logical}[{partition}]"] = position
        return total, lagging

    def fetch_state(self, name: str) -> str:
        """Where partition ``name`` ("reviews[3]") stands in Faust, aiokafka and the ledger:
        one line, logged when a partition stalls, so the next stall says why."""
        logical, _, partition = name.rstrip("]").partition("[")
        tp = TP(self.settings.topic(logical), int(partition))
        consumer = self.app.consumer
        facts = [
            f"faust active={tp in (consumer._active_partitions or ())}",
            f"paused={tp in consumer._paused_partitions}",
            f"buffered={tp in consumer._buffered_partitions}",
            f"flow_active={consumer.flow_active}",
        ]
        try:
            kafka = consumer._thread._ensure_consumer()
            state = kafka._subscription.subscription.assignment.state_value(tp)
            fetched = kafka._fetcher._records.get(tp)
            facts += [
                f"aiokafka assigned={state is not None}",
                f"paused={getattr(state, 'paused', None)}",
                f"position={getattr(state, '_position', None)}",
                f"holds fetched records={fetched is not None}",
            ]
        except Exception as exc:  # a diagnostic: never the reason to fail
            facts.append(f"aiokafka state unreadable ({exc!r})")
        key = (tp.topic, tp.partition)
        facts += [
            f"ledger next={self.ledger.positions().get(key)}",
            f"committable={self.ledger.assigned().get(key)}",
            f"highwater={consumer.highwater(tp)}",
        ]
        try:
            facts += [
                faust_fixes.TRACE.line(key),
                self.ledger.seen_line(key),
                self.conductor_state(tp),
            ]
        except Exception as exc:  # a diagnostic: never the reason to fail
            facts.append(f"hand-offs unreadable ({exc!r})")
        return f"{name}: " + ", ".join(facts)

    def conductor_state(self, tp: TP) -> str:
        """Between the fetch loop and the agents: app-wide flow control and generations, and
        the channels Faust's conductor hands ``tp``'s records to (queued, and whether an
        agent's stream reads that channel)."""
        app = self.app
        readers = {  # channel -> whether the agent task reading it still runs
            id(actor.stream.channel): actor.actor_task is not None and not actor.actor_task.done()
            for agent in app.agents.values()
            for actor in list(getattr(agent, "_actors", ()))
            if getattr(actor, "stream", None) is not None
        }
        conductor = app.topics
        channels = [
            f"{_reader(readers.get(id(chan)))} with {chan.queue.qsize()} queued"
            for chan in conductor._tp_index.get(tp, ())
        ]
        return (
            f"app flow control active={app.flow_control.is_active()}, generation "
            f"{app.consumer_generation_id}, conductor handler={tp in conductor._tp_to_callback}, "
            f"channels: {'; '.join(channels) or 'none'}"
        )

    def partitions_unknown_to_the_ledger(self) -> set[TP]:
        """Assigned input partitions (not changelogs) the ledger has no start offset for."""
        known = self.ledger.positions()
        return {
            tp
            for tp in self.app.consumer.assignment()
            if not _is_changelog(tp.topic) and (tp.topic, tp.partition) not in known
        }

    async def resync_delivery(self, why: str) -> None:
        """Seek every assigned partition back to its committed offset (teaching the ledger
        where each starts) and resume fetching: what Faust's recovery does when a rebalance
        ends."""
        app = self.app
        if app.rebalancing:
            return
        logger.warning("%s: seeking to the committed offsets and resuming fetches", why)
        consumer = app.consumer
        consumer.resume_partitions(
            {tp for tp in consumer.assignment() if not _is_changelog(tp.topic)}
        )
        await consumer.perform_seek()
        if app.rebalancing:
            return  # one began during the seek: its recovery resumes the flow, not this
        app.flow_control.resume()
        consumer.resume_flow()

    def remember_group_member(self) -> None:
        """This process's member id in the group, in its data folder: if it is killed, the
        next start removes that member at once (``leave_for_a_killed_worker``)."""
        from stream.ops.admin import group_member_file

        try:
            coordinator = self.app.consumer._thread._ensure_consumer()._coordinator
            path = group_member_file(self.settings)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{os.getpid()} {coordinator.member_id}")
        except Exception as exc:  # only a slower restart
            logger.debug("could not remember the group member id: %r", exc)

    def why_not_ready(self) -> str | None:
        """What the watchdog found wrong (lost broker data, a stalled recovery), else the
        checks that fail, or None when ready."""
        if self.watchdog is not None and self.watchdog.finding:
            return self.watchdog.finding
        failing = [name for name, ok in self.readiness().items() if not ok]
        return "not yet: " + ", ".join(failing) if failing else None

    def offsets_beyond_the_log(self) -> list[str]:
        """Consumed partitions whose fetch position aiokafka found out of range (and reset),
        or whose ledger position lies past the last fetch's high-water mark: their log was
        lost or recreated under the worker (``faust_fixes`` fix 6). Once seen, kept until the
        partition is sought again: the new log soon grows past the old position, and then
        its first records would be skipped as repeats without a word."""
        lost = faust_fixes.OFFSETS_LOST
        for (topic, partition), position in self.ledger.positions().items():
            if _is_changelog(topic) or (topic, partition) in lost:
                continue
            high = self.app.consumer.highwater(TP(topic, partition))
            if high is not None and position > high:  # kept: the log may grow past it soon
                lost[(topic, partition)] = f"at {position}, its log ends at {high}"
        return [f"{topic}[{partition}] {what}" for (topic, partition), what in sorted(lost.items())]

    async def broker_data_lost(self, admin: Any) -> tuple[bool | None, tuple[str, ...]]:
        """(whether the input topics exist, signs that the broker lost data this worker knew):
        topics it had at start now missing, topics it owns with another partition count,
        offsets beyond the log. Raises when the broker does not answer (no verdict)."""
        from stream.ops.admin import co_partitioned, wanted_topics

        settings = self.settings
        present = set(await asyncio.wait_for(admin.list_topics(), 10))
        lost: list[str] = []
        missing = sorted(set(wanted_topics(settings)) - present)
        if missing:
            lost.append("missing topics: " + ", ".join(missing))
        owned = sorted(co_partitioned(settings) & present)
        described = await asyncio.wait_for(admin.describe_topics(owned), 10) if owned else []
        relaid = [
            f"{d['topic']} has {len(d['partitions'])} partitions, not {settings.partitions}"
            for d in described
            if d.get("partitions") and len(d["partitions"]) != settings.partitions
        ]
        lost.extend(relaid)
        try:
            beyond = self.offsets_beyond_the_log()
        except ConsumerNotStarted:
            beyond = []
        if beyond:
            lost.append("offsets out of range: " + ", ".join(beyond))
        inputs_exist = {settings.topic(name) for name in INPUT_TOPICS} <= present
        return inputs_exist, tuple(lost)

    def update_recovery_metrics(self) -> None:
        """Records left per table partition this worker holds (active and standby; 0 once
        recovered), and keys held per table: why a worker is not ready yet, and how much state
        a failover moves."""
        recovery = self.app.tables.recovery
        changelog_prefix = self.settings.topic(self.settings.app_id) + "-"
        metrics.RECOVERY_REMAINING.clear()
        for kind, held, remaining in (
            ("active", recovery.active_tps, recovery.active_remaining()),
            ("standby", recovery.standby_tps, recovery.standby_remaining()),
        ):
            for tp in held:
                table = tp.topic.removeprefix(changelog_prefix).removesuffix("-changelog")
                left = max(remaining.get(tp) or 0, 0)
                metrics.RECOVERY_REMAINING.labels(table, str(tp.partition), kind).set(left)
        if self.settings.store == "memory://":
            for table in self.app.tables.values():
                metrics.TABLE_KEYS.labels(table.name).set(len(table.data))

    def recovery_progress(self) -> tuple[bool, int]:
        """(table recovery under way, changelog offsets read so far, summed). Faust holds None
        for a partition it has not read from yet (the watchdog once crashed the worker on it,
        in the scale-out test)."""
        recovery = self.app.tables.recovery
        offsets = (*recovery.active_offsets.values(), *recovery.standby_offsets.values())
        read = sum(offset for offset in offsets if offset is not None)
        return bool(recovery.in_recovery), int(read)

    def oldest_hole(self) -> tuple[str, float] | None:
        hole = self.ledger.oldest_hole()
        if hole is None:
            return None
        (topic, partition), offset, open_s = hole
        return f"{topic}[{partition}] at {offset}", open_s

    async def watch(self) -> None:
        """Exit, so the supervisor starts a fresh worker, when the broker lost data this worker
        knew, table recovery makes no progress, nothing moves while records wait, or the worker
        never gets ready; resync once first when delivery looks stuck
        (``stream/core/watchdog.py``). Runs from the start, table recovery included."""
        from aiokafka.admin import AIOKafkaAdminClient

        from stream.ops.admin import bootstrap_servers, data_loss_marker

        settings = self.settings
        dog = self.watchdog = Watchdog(
            WatchdogPolicy(
                data_loss_s=settings.broker_data_loss_s,
                recovery_stalled_s=settings.recovery_stalled_s,
            ),
            started_s=time.monotonic(),
        )
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers(settings.kafka_broker),
            request_timeout_ms=10_000,
            **KafkaSecurity.from_env().aiokafka_kwargs(),
        )
        started = False
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            inputs_exist: bool | None = None
            data_lost: tuple[str, ...] = ()
            try:
                if not started:
                    await asyncio.wait_for(admin.start(), 10)
                    started = True
                inputs_exist, data_lost = await self.broker_data_lost(admin)
            except Exception:  # an unreachable broker is Faust's to retry; not a verdict
                pass
            recovering, recovery_read = self.recovery_progress()
            try:
                lag_total, lagging = self.update_lag()
                unknown = len(self.partitions_unknown_to_the_ledger())
            except ConsumerNotStarted:
                lag_total, lagging, unknown = 0, {}, 0
            seen = Observation(
                now_s=time.monotonic(),
                inputs_exist=inputs_exist,
                ready=all(self.readiness().values()),
                admitted_total=self.ledger.admitted,
                lag_total=lag_total,
                unknown_partitions=unknown,
                data_lost=data_lost,
                recovering=recovering,
                recovery_read=recovery_read,
                oldest_hole=self.oldest_hole(),
                lagging=lagging,
            )
            reason = dog.observe(seen)
            if reason is not None:
                if seen.data_lost or inputs_exist is False:
                    # the next start recreates what this worker owns, once it writes no more
                    with contextlib.suppress(OSError):
                        marker = data_loss_marker(settings)
                        marker.parent.mkdir(parents=True, exist_ok=True)
                        marker.write_text(reason)
                fatal(RuntimeError(reason), "the watchdog")
            why = dog.resync_due(seen)
            if why is not None:
                try:  # diagnostics: never the reason the watchdog stops
                    if dog.stalled_partition is not None:
                        logger.warning("stalled: %s", self.fetch_state(dog.stalled_partition))
                    logger.warning("stalled: %s", self.stages.pipeline_state())
                except Exception as exc:
                    logger.warning("stalled: state unreadable (%r)", exc)
                await self.resync_delivery(why)


def _is_changelog(topic: str) -> bool:
    """A table's changelog: read by recovery, never consumed by an agent."""
    return topic.endswith("-changelog")


def _optional(**options: float | None) -> dict[str, float]:
    """Only the options that are set, so unset ones keep Faust's defaults."""
    return {name: value for name, value in options.items() if value is not None}


def make_faust_app(settings: Settings) -> faust.App:
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the leaf folder
    return faust.App(
        settings.topic(settings.app_id),
        broker=settings.kafka_broker,
        # SASL/TLS from RISKSTREAM_KAFKA_* (stream/security.py); None for PLAINTEXT
        broker_credentials=KafkaSecurity.from_env().faust_credentials(),
        store=settings.store,
        datadir=str(settings.data_dir / "{conf.name}-data"),
        topic_partitions=settings.partitions,
        # unset: 1 here; `riskstream worker` resolves it first (admin.with_replication)
        topic_replication_factor=settings.replication_factor or 1,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,  # all in-sync replicas: an acked output survives a broker loss
        # Several outputs per input event: a short linger sends them in one request.
        producer_linger_ms=settings.producer_linger_ms,
        producer_max_request_size=settings.producer_max_request_bytes,
        consumer_max_fetch_size=settings.consumer_max_fetch_bytes,
        web_bind=settings.web_bind,
        web_host=settings.web_host,
        web_port=settings.web_port,
        # Faust's table and router endpoints serve member state (devices, countries,
        # merchants, recent event ids) to anyone who can reach the port: off. Only /metrics,
        # /healthz and /readyz are served.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_in_thread=False,
        autodiscover=False,
        # static membership: a restarted pod rejoins as itself, no rebalance (None: dynamic)
        consumer_group_instance_id=settings.group_instance_id,
        # warm copies of other workers' table partitions, kept up to date from the changelog
        table_standby_replicas=settings.standby_replicas_in_effect,
        **_optional(
            broker_rebalance_timeout=settings.rebalance_timeout_s,
            broker_session_timeout=settings.session_timeout_s,
        ),
    )


def build_app(
    settings: Settings,
    *,
    handler_factory: Callable[[Settings], ModelHandler[Any]] = _default_handler,
    fraud_scorer_factory: Callable[[], FraudScorerT] = _default_fraud_scorer,
) -> Worker:
    """The worker: topics, tables, agents, tasks and pages registered on a new Faust app."""
    from prometheus_client import generate_latest

    from stream.worker.scoring import make_batcher, model_precision, show_model_info

    ledger = faust_fixes.apply(
        fetch_max_wait_ms=settings.fetch_max_wait_ms, ledger=DeliveryLedger()
    )
    app = make_faust_app(settings)

    def raw_topic(name: str, **options: object) -> faust.TopicT:
        return app.topic(
            settings.topic(name),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
            **options,
        )

    topics = {name: raw_topic(name) for name in (*INPUT_TOPICS, *OUTPUT_TOPICS, LABELS)}
    topics.update({name: raw_topic(name, internal=True) for name in INTERNAL_TOPICS})
    # Values are JSON bytes, decoded and encoded by orjson (``stream/worker/tables.py``):
    # value_type=dict breaks changelog recovery, and Faust's own JSON codec was 7.9 % of the
    # worker's CPU.
    member_table = app.Table(
        MEMBER_TABLE, default=None, partitions=settings.partitions, key_type=str, value_type=bytes
    )
    surge_table = app.Table(
        SURGE_TABLE, default=None, partitions=settings.partitions, key_type=str, value_type=bytes
    )

    names = {logical: settings.topic(logical) for logical in topics}

    async def send(topic: str, key: bytes | None, value: bytes, partition: int | None = None):
        """Straight to the producer: records are raw bytes already, and Faust's per-message
        ``Topic.send`` path (serialisers, future message, callbacks) was ~2 % of the worker's
        CPU. Faust flushes the producer before every commit, so nothing is committed before
        it was acknowledged; a record the producer could not deliver stops the worker."""
        delivery = await app.producer.send(names[topic], key, value, partition, None, None)
        delivery.add_done_callback(_stop_if_undelivered)  # type: ignore[attr-defined]
        return delivery

    outbox = Outbox(faust_fixes.aiokafka_producer(app), names, _stop_if_undelivered)

    async def send_best_effort(topic: str, key: bytes | None, value: bytes) -> Any:
        """For shadow comparisons: no delivery guarantee, so an undelivered one stops nothing."""
        return await app.producer.send(names[topic], key, value, None, None, None)

    handler = handler_factory(settings)
    batcher = make_batcher(settings, handler)
    shadow, shadow_handler = None, None
    if settings.shadow_enabled:  # a challenger build beside the champion, off the critical path
        challenger = settings.challenger()
        shadow_handler = handler_factory(challenger)
        shadow = ShadowScoring(
            make_batcher(challenger, shadow_handler),
            send_best_effort,
            settings.thresholds(),
            precisions=(model_precision(handler), model_precision(shadow_handler)),
        )
    stages = Stages(
        settings,
        handler=handler,
        batcher=batcher,
        ledger=ledger,
        member_table=JsonValues(member_table),
        surge_table=JsonValues(surge_table),
        send=send,
        send_many=outbox.send_many,
        shadow=shadow,
    )
    stages.within_event = _within_event
    stages.partitions_of = lambda logical: app.consumer.topic_partitions(settings.topic(logical))
    metrics.IN_FLIGHT.set_function(stages.in_flight_count)
    worker = Worker(settings, app, ledger, stages, topics)
    from stream.worker.champion import ChampionFollower, from_settings_factory

    # the registry's champion per route, switched into the batcher without a restart, and its
    # challenger, shadowed (stages.shadow) without a restart
    champions = ChampionFollower(
        settings,
        batcher,
        stages,
        from_settings_factory(settings, handler_factory),
        send_best_effort=send_best_effort,
    )

    def edge_agent(logical_topic: str) -> None:
        async def agent(stream: StreamT) -> None:
            manual = stream.noack()  # done in `Stages.publish`, after the output is sent
            async for event, admission in worker.delivered(manual):
                try:
                    record = worker.raw_record(logical_topic, event)
                    await stages.admit(manual, record, event, admission)
                except Exception as exc:
                    where = f"{logical_topic} {event.message.tp} offset {event.message.offset}"
                    fatal(exc, where)

        name = f"score_{logical_topic}"
        agent.__name__ = agent.__qualname__ = name
        app.agent(topics[logical_topic], name=name)(agent)

    for logical_topic in INPUT_TOPICS:
        edge_agent(logical_topic)

    def record_agent(
        logical_topic: str, name: str, handle: Callable[[RawRecord], Any], what: str
    ) -> None:
        """An agent that hands each record to ``handle`` and marks it done after it returned
        (an exception is not about the record: fatal)."""

        async def agent(stream: StreamT) -> None:
            manual = stream.noack()
            async for event, admission in worker.delivered(manual):
                try:
                    await handle(worker.raw_record(logical_topic, event))
                except Exception as exc:
                    fatal(exc, f"{what} at {event.message.tp} offset {event.message.offset}")
                ledger.complete(admission)
                await manual.ack(event)

        agent.__name__ = agent.__qualname__ = name
        app.agent(topics[logical_topic], name=name)(agent)

    # operator labels: an invalid one goes to dead-letter with its reason, a valid one is
    # counted (``riskstream labels build-set`` reads the topic itself)
    record_agent(LABELS, "check_labels", stages.check_label, "label")

    @app.agent(topics[MEMBER_EVENTS], name="track_member_activity")
    async def track_member_activity(stream: StreamT) -> None:
        """Member-events records (after the hop) go to the publisher, which runs the member
        stage a batch at a time and marks them done."""
        manual = stream.noack()
        async for event, admission in worker.delivered(manual):
            try:
                record = worker.raw_record(MEMBER_EVENTS, event)
                await stages.hop_queue.put(HopRecord(manual, event, admission, record))
            except Exception as exc:
                fatal(exc, f"member event at {event.message.tp} offset {event.message.offset}")

    @app.agent(topics[SUBJECT_EVENTS], name="detect_opinion_surges")
    async def detect_opinion_surges(stream: StreamT) -> None:
        """Per product/brand surge state -> ``opinion_surge`` alerts (keyed by window).

        Mentions are held briefly and folded in event-time order
        (``stream.core.surge.ReorderPolicy``); tick records flush subjects that went quiet."""
        manual = stream.noack()
        async for event, admission in worker.delivered(manual):
            try:
                record = worker.raw_record(SUBJECT_EVENTS, event)
                # marks records done itself: only once no mention up to them is still held
                await stages.subject_record(record, time.time(), admission)
            except Exception as exc:
                where = f"subject event at {event.message.tp} offset {event.message.offset}"
                fatal(exc, where)
            await manual.ack(event)

    @app.task
    async def publish_in_order() -> None:
        await stages.publish_in_order()

    async def load_models() -> None:
        """Both models, off the event loop, before any member event is processed; the text
        model is the registry's champion (read first, bounded) or the configured build."""
        await champions.adopt()
        await batcher.start()
        stages.fraud_scorer = await asyncio.to_thread(fraud_scorer_factory)
        stages.models_ready.set()
        served = batcher.handler
        metrics.MODEL_LOAD_SECONDS.set(batcher.model_load_seconds or 0.0)
        show_model_info(metrics.MODEL_INFO, served)
        metrics.MODEL_MAX_BATCH_SIZE.set(batcher.max_batch_size)
        logger.info("model %s loaded in %.2fs", served.model_version, batcher.model_load_seconds)
        if shadow is not None and await shadow.start():
            show_model_info(metrics.SHADOW_MODEL_INFO, shadow.batcher.handler)
        champions.shadow_ready.set()  # registry challengers from now on

    @app.task
    async def follow_champions() -> None:
        """New champions in model-registry, served from the next batch on."""
        await champions.follow()

    # The watchdog and the model loading start with the app, before the group join and table
    # recovery (Faust starts ``app.task``s only after recovery): a recovery that never ends is
    # an exit too, and a restarted worker loads its models while it joins.
    app.add_dependency(
        _StartsWithTheApp(worker, [worker.watch, load_models], loop=app.loop, beacon=app.beacon)
    )

    @app.timer(interval=REORDER.hold_s / 2)
    async def tick_held_surge_partitions() -> None:
        """A tick into each partition holding mentions, so quiet subjects are flushed too."""
        for partition in stages.partitions_holding_mentions():
            await send(SUBJECT_EVENTS, SURGE_TICK, b"{}", partition)

    @app.on_partitions_revoked.connect
    async def forget_revoked(app, revoked, **kwargs) -> None:
        """Revoked partitions leave the ledger (nothing still in flight for them counts) and
        the held-mention index (the table keeps the mentions)."""
        stages.forget_partitions()
        ledger.revoke((tp.topic, tp.partition) for tp in revoked)

    @app.on_partitions_assigned.connect
    async def count_rebalance(app, assigned, **kwargs) -> None:
        metrics.REBALANCES.inc()
        worker.remember_group_member()

    @app.page("/metrics")
    async def metrics_page(web, request):
        metrics.READY.set(all(worker.readiness().values()))
        worker.update_lag()
        worker.update_recovery_metrics()
        # aiohttp refuses a charset inside content_type; Prometheus reads plain text as 0.0.4.
        return web.bytes(generate_latest(), content_type="text/plain")

    @app.page("/healthz")
    async def healthz(web, request):
        """Alive: the event loop answers."""
        return web.json({"alive": True})

    @app.page("/readyz")
    async def readyz(web, request):
        """Ready to process: 200, or 503 naming what is missing and, in ``reason``, why
        (e.g. the broker lost data this worker knew: the watchdog's finding)."""
        checks = worker.readiness()
        reason = worker.why_not_ready()
        ready = reason is None
        body = {"ready": ready, **checks, "reason": reason}
        return web.json(body, status=200 if ready else 503)

    return worker


def _reader(running: bool | None) -> str:
    return "NOT READ" if running is None else "read" if running else "its agent ENDED"


class _StartsWithTheApp(Service):
    """Runs ``tasks`` from the app's start: a dependency of the app starts before its
    consumer joins the group and before table recovery (``app.task`` functions start after
    recovery). First, a member of the group that a killed worker left behind is removed."""

    def __init__(
        self, worker: Worker, tasks: list[Callable[[], Awaitable[None]]], **kwargs: Any
    ) -> None:
        self.worker = worker
        self.tasks = tasks
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        from stream.ops.admin import leave_for_a_killed_worker

        try:
            await asyncio.wait_for(leave_for_a_killed_worker(self.worker.settings), 8)
        except Exception as exc:  # the join then waits for its session timeout, as before
            logger.warning("could not remove the member a killed worker left: %r", exc)
        for task in self.tasks:
            self.add_future(task())


def _stop_if_undelivered(delivery: asyncio.Future) -> None:
    """An output the producer gave up on (after its retries): stop before anything commits
    past the event that produced it; the restarted worker reads that event again."""
    if not delivery.cancelled() and delivery.exception() is not None:
        fatal(delivery.exception(), "delivering an output")  # type: ignore[arg-type]


@contextmanager
def _within_event(event: EventT) -> Iterator[None]:
    """Faust's current event while the publisher runs the member stage for ``event``: table
    writes (changelog partition, rocksdb column) follow the event being processed."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
