"""The worker follows the model registry: it serves each route's champion and switches to a new
one without a restart.

Every worker reads every ``model-registry`` record (its own consumer with ``assign``, no
group). At startup, before the model loads, it reads the registry up to its end (a bounded
wait: an absent topic or a broker that does not answer leaves the configured builds, with one
log line), so a restarted worker serves the promoted build from its first batch. Then it keeps
reading; when a route's champion changes it materialises the build from the record's bundle if
this machine lacks it, builds and loads the handler for the new pair of builds off the event
loop, and swaps it into the micro-batcher between two batches (``MicroBatcher.swap``): texts
already in a batch finish on the old build, every later batch uses the new one. A build that
cannot be materialised or loaded is logged and counted, and the old one goes on serving: a
bad promotion never stops scoring. Builds are made in ``RISKSTREAM_BUILDS_DIR`` where it is set
(the image's model cache is read-only under Kubernetes' ``readOnlyRootFilesystem``), and the
builds there that no registry record, served or shadowed pair names any longer are removed.

It follows each route's challenger the same way (``riskstream models shadow``): the challenger's
handler is the champions' pair with the challenger's build in its route, loaded off the loop
and scored beside the champion by shadow scoring (``stream/worker/shadow.py``), started if the
worker had none, swapped in if it had. When the registry clears the challenger (unshadow, or
its promotion) shadow scoring stops, or goes back to the challenger the worker was started with
(``RISKSTREAM_SHADOW_*``). Challengers are followed in their own task, so loading one never
delays a new champion, and one that fails is logged and counted, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from models.serving import artefacts
from models.serving.adapted import AdaptedBuildError
from models.serving.base import ModelHandler
from stream.config import Settings
from stream.core.registry import ROUTES, RegistryRecord, fold
from stream.core.rules import TextThresholds
from stream.ops.admin import bootstrap_servers
from stream.ops.registry import read_to_end
from stream.security import KafkaSecurity
from stream.topics import MODEL_REGISTRY
from stream.worker import metrics
from stream.worker.batcher import MicroBatcher
from stream.worker.shadow import ShadowScoring

logger = logging.getLogger("riskstream.champion")

#: ``(english build, multilingual build or None) -> handler`` (not loaded).
HandlerFactory = Callable[[str, "str | None"], ModelHandler[Any]]
#: ``materialise(bundle) -> build folder``: makes an adapted build from its bundle if missing.
Materialise = Callable[[dict[str, Any]], Any]
#: (english, multilingual) builds served together.
Pair = tuple[str, "str | None"]
#: ``send(topic, key, value)`` without a delivery guarantee: where shadow comparisons go.
SendBestEffort = Callable[[str, "bytes | None", bytes], Awaitable[Any]]


def _materialise(bundle: dict[str, Any]) -> Any:
    from models.serving.adapted import materialise

    return materialise(bundle)


def configured_builds(settings: Settings) -> Pair:
    """The builds a worker serves when the registry names none: the settings' (or the
    committed student) and the Chinese route's build (None: no routing)."""
    from models.serving.artefacts import model_version

    return settings.model_version or model_version(), settings.chinese_build()


class ChampionFollower:
    """Which builds this worker serves, and the registry reader that changes them."""

    def __init__(
        self,
        settings: Settings,
        batcher: MicroBatcher,
        stages: Any,
        factory: HandlerFactory,
        *,
        materialise: Materialise = _materialise,
        security: KafkaSecurity | None = None,
        startup_timeout_s: float = 10.0,
        retry_s: float = 10.0,
        configured: Pair | None = None,
        send_best_effort: SendBestEffort | None = None,
    ) -> None:
        self.settings = settings
        self.batcher = batcher
        #: What the member stage reads thresholds from (``Stages.thresholds``).
        self.stages = stages
        self.factory = factory
        self.materialise = materialise
        #: Builds made here go to RISKSTREAM_BUILDS_DIR (and are looked up there first) in this
        #: process: the factory finds them by version (``artefacts.artefact_dir``).
        artefacts.use_builds_dir(settings.builds_dir)
        self.security = security
        self.startup_timeout_s = startup_timeout_s
        self.retry_s = retry_s
        self.topic = settings.topic(MODEL_REGISTRY)
        self.configured: Pair = configured or configured_builds(settings)
        #: The builds the batcher serves now.
        self.serving: Pair = self.configured
        #: Route -> its latest registry record.
        self.registry: dict[str, RegistryRecord] = {}
        #: Set once the startup read finished (or gave up): readiness waits for it.
        self.ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._failed: Pair | None = None  # a pair that failed: not retried until it changes
        self._ignored: set[tuple[str, int]] = set()
        #: Where shadow comparisons go; None: registry challengers are not followed.
        self.send_best_effort = send_best_effort
        #: The shadow scoring the worker was started with (``RISKSTREAM_SHADOW_*``), if any;
        #: ``stages.shadow`` is what runs now.
        self.configured_shadow: ShadowScoring | None = getattr(stages, "shadow", None)
        self._configured_handler: ModelHandler[Any] | None = None  # swapped out for a challenger
        #: The registry challenger pair shadow scoring serves now (None: none).
        self.shadowing: Pair | None = None
        self.shadowing_routes: list[str] = []
        self._shadow_failed: Pair | None = None
        #: Set once the configured shadow scoring started (``load_models``): challengers wait.
        self.shadow_ready = asyncio.Event()
        self._registry_changed = asyncio.Event()
        self._challengers: asyncio.Task[None] | None = None

    # -- what to serve --------------------------------------------------------------------

    def wanted(self) -> Pair:
        """The registry's champions, the configured builds where a route has none. The
        multilingual route counts only where routing is on (``RISKSTREAM_CHINESE_MODEL_VERSION``
        is not ``none``)."""
        english, multilingual = self.configured
        if "english" in self.registry:
            english = self.registry["english"].champion.model_version
        record = self.registry.get("multilingual")
        if record is not None:
            if multilingual is None:
                if ("multilingual", record.seq) not in self._ignored:
                    self._ignored.add(("multilingual", record.seq))
                    metrics.CHAMPION_SWITCHES.labels("multilingual", "ignored").inc()
                    logger.warning(
                        "registry names %s as multilingual champion, but this worker routes no "
                        "text to a multilingual build (RISKSTREAM_CHINESE_MODEL_VERSION=none)",
                        record.champion.model_version,
                    )
            else:
                multilingual = record.champion.model_version
        return english, multilingual

    def _changed_routes(self, pair: Pair) -> list[str]:
        return [
            r
            for r, old, new in zip(("english", "multilingual"), self.serving, pair, strict=True)
            if old != new
        ]

    async def _prepare(
        self, pair: Pair, bundles: list[dict[str, Any]] | None = None
    ) -> tuple[ModelHandler[Any], Any, float]:
        """Materialise what the registry's bundles describe (the changed routes' champions',
        or ``bundles``), build the handler for ``pair`` and load it, all off the event loop;
        -> (handler, model, load seconds)."""
        if bundles is None:
            bundles = []
            for route in self._changed_routes(pair):
                record = self.registry.get(route)
                if record is not None and record.champion.bundle is not None:
                    bundles.append(record.champion.bundle)
        for bundle in bundles:
            await asyncio.to_thread(self.materialise, bundle)
        handler = await asyncio.to_thread(self.factory, *pair)
        started = time.perf_counter()
        model = await asyncio.to_thread(handler.load_model)
        return handler, model, time.perf_counter() - started

    def _adopt_thresholds(self) -> None:
        """Each champion's own text thresholds (from its bundle) for the events it scores."""
        current = self.stages.thresholds
        by_build = dict(current.by_build)
        for record in self.registry.values():
            wanted = (record.champion.bundle or {}).get("thresholds") or {}
            own = TextThresholds(wanted.get("negative_review"), wanted.get("scam_chat"))
            if own != TextThresholds():
                by_build[record.champion.model_version] = own
        if by_build != dict(current.by_build):
            self.stages.thresholds = replace(current, by_build=by_build)

    def _served(self, pair: Pair, handler: ModelHandler[Any], load_seconds: float) -> None:
        from stream.worker.scoring import show_model_info

        for route in self._changed_routes(pair):
            metrics.CHAMPION_SWITCHES.labels(route, "switched").inc()
        self.serving = pair
        self._failed = None
        if hasattr(self.stages, "handler"):
            self.stages.handler = handler
        show_model_info(metrics.MODEL_INFO, handler)
        metrics.MODEL_LOAD_SECONDS.set(load_seconds)

    async def reconcile(self) -> bool:
        """Serve what the registry says, if that is not what is served; -> whether it
        switched. Never raises: a build that fails stays failed until the registry changes."""
        pair = self.wanted()
        if pair == self.serving or pair == self._failed:
            return False
        routes = self._changed_routes(pair)
        try:
            handler, model, seconds = await self._prepare(pair)
        except Exception as exc:
            self._failed = pair
            for route in routes:
                metrics.CHAMPION_SWITCHES.labels(route, "failed").inc()
            _log_failure(
                exc, "could not serve %s (routes %s): keeping %s", pair, routes, self.serving
            )
            return False
        self._adopt_thresholds()
        if self.batcher.loaded:
            self.batcher.swap(handler, model)
        else:
            self.batcher.use(handler, model, seconds)
        logger.info("now serving %s (routes %s; loaded in %.2fs)", pair, ", ".join(routes), seconds)
        self._served(pair, handler, seconds)
        self._registry_changed.set()  # a challenger pair holds the other route's champion
        await self._prune()
        return True

    # -- what to shadow -------------------------------------------------------------------

    def wanted_challenger(self) -> Pair | None:
        """The pair to shadow: the served champions with each route's registry challenger in
        its route's place; None where no route this worker serves has one."""
        english, multilingual = self.serving
        found = False
        for route in ROUTES:
            record = self.registry.get(route)
            if record is None or record.challenger is None:
                continue
            if route == "english":
                english, found = record.challenger.model_version, True
            elif multilingual is not None:  # no routing: no multilingual build to shadow
                multilingual, found = record.challenger.model_version, True
        if not found or (english, multilingual) == self.serving:
            return None
        return english, multilingual

    def _challenger_bundles(self) -> list[dict[str, Any]]:
        return [
            record.challenger.bundle
            for record in self.registry.values()
            if record.challenger is not None and record.challenger.bundle is not None
        ]

    def _challenger_routes(self, pair: Pair) -> list[str]:
        """The routes where ``pair`` has another build than the served champions."""
        return [r for r, old, new in zip(ROUTES, self.serving, pair, strict=True) if old != new]

    async def reconcile_shadow(self) -> bool:
        """Shadow what the registry says, if that is not what is shadowed; -> whether shadow
        scoring changed. Never raises: a challenger that fails is logged and counted, and
        stays failed until the registry (or the champion) changes."""
        if self.send_best_effort is None:
            return False
        pair = self.wanted_challenger()
        if pair == self.shadowing or (pair is not None and pair == self._shadow_failed):
            return False
        routes = self.shadowing_routes if pair is None else self._challenger_routes(pair)
        try:
            if pair is None:
                await self._unshadow()
            else:
                handler, model, seconds = await self._prepare(pair, self._challenger_bundles())
                await self._shadow(handler, model, seconds)
        except Exception as exc:
            self._shadow_failed = pair
            for route in routes:
                metrics.CHAMPION_SWITCHES.labels(route, "shadow_failed").inc()
            _log_failure(exc, "could not shadow %s (routes %s)", pair, routes)
            if pair is not None and self.shadowing is not None:
                await self._stop_replaced()
            return False
        self.shadowing, self._shadow_failed = pair, None
        self.shadowing_routes = routes if pair is not None else []
        for route in routes:
            metrics.CHAMPION_SWITCHES.labels(route, "shadowed" if pair else "unshadowed").inc()
        await self._prune()
        return True

    def _named(self) -> set[str]:
        """Every build this worker serves, shadows or may be told to: the registry's champions
        and challengers, the served and shadowed pairs, the configured ones."""
        named = {b for pair in (self.serving, self.shadowing, self.configured) for b in pair or ()}
        if self.configured_shadow is not None:
            named.add(self.configured_shadow.version)
        for record in self.registry.values():
            named.add(record.champion.model_version)
            if record.challenger is not None:
                named.add(record.challenger.model_version)
        return {b for b in named if b}

    async def _prune(self) -> None:
        """Remove the builds in RISKSTREAM_BUILDS_DIR that nothing names any longer (never the
        model cache's): the folder holds what is served and shadowed, not every build ever."""
        if self.settings.builds_dir is None:
            return
        from models.serving.adapted import prune

        try:
            removed = await asyncio.to_thread(prune, self.settings.builds_dir, self._named())
        except OSError as exc:
            logger.warning("could not prune %s: %s", self.settings.builds_dir, exc)
            return
        if removed:
            logger.info("removed builds no longer named: %s", ", ".join(removed))

    async def _stop_replaced(self) -> None:
        """The registry replaced the challenger shadowed now, and its successor failed: stop
        shadowing the replaced one (its comparisons would pass for evidence it no longer
        needs), back to the configured challenger or none."""
        try:
            await self._unshadow()
        except Exception:
            logger.exception("could not stop shadowing %s", self.shadowing)
        else:
            self.shadowing, self.shadowing_routes = None, []

    async def _shadow(self, handler: ModelHandler[Any], model: Any, seconds: float) -> None:
        """Shadow ``handler`` (its ``model`` loaded): swapped into the running shadow scoring,
        or a new one started."""
        from stream.worker.scoring import make_batcher, model_precision

        precisions = (model_precision(self.batcher.handler), model_precision(handler))
        running: ShadowScoring | None = getattr(self.stages, "shadow", None)
        if running is not None and not running.failed and running.batcher.loaded:
            if running is self.configured_shadow and self._configured_handler is None:
                self._configured_handler = running.batcher.handler
            running.batcher.swap(handler, model)
            running.precisions = precisions
            logger.info("shadowing %s now (loaded in %.2fs)", handler.model_version, seconds)
        else:
            assert self.send_best_effort is not None
            running = ShadowScoring(
                make_batcher(self.settings, handler),
                self.send_best_effort,
                self.settings.thresholds(),
                precisions=precisions,
            )
            running.batcher.use(handler, model, seconds)
            if not await running.start():
                raise RuntimeError(f"shadow scoring of {handler.model_version} did not start")
            self.stages.shadow = running
        self._shadow_info(running)

    async def _unshadow(self) -> None:
        """No registry challenger: back to the configured one, or no shadow scoring."""
        from stream.worker.scoring import model_precision

        running: ShadowScoring | None = getattr(self.stages, "shadow", None)
        configured, handler = self.configured_shadow, self._configured_handler
        if running is not None and running is configured and handler is not None:
            try:
                model = await asyncio.to_thread(handler.load_model)  # it was swapped out
            except Exception:
                self.stages.shadow = None  # not the cleared challenger any longer
                metrics.SHADOW_MODEL_INFO.clear()
                await running.stop()
                raise
            running.batcher.swap(handler, model)
            running.precisions = (model_precision(self.batcher.handler), model_precision(handler))
            self._configured_handler = None
            logger.info("shadowing the configured challenger %s again", handler.model_version)
            self._shadow_info(running)
            return
        if running is not None and running is not configured:
            self.stages.shadow = None
            await running.stop()
        if configured is not None and not configured.failed and configured.batcher.loaded:
            self.stages.shadow = configured
            logger.info("shadowing the configured challenger %s again", configured.version)
            self._shadow_info(configured)
            return
        logger.info("no challenger in the registry: shadow scoring is off")
        metrics.SHADOW_MODEL_INFO.clear()

    @staticmethod
    def _shadow_info(shadow: ShadowScoring) -> None:
        from stream.worker.scoring import show_model_info

        show_model_info(metrics.SHADOW_MODEL_INFO, shadow.batcher.handler)

    async def follow_challengers(self) -> None:
        """Shadow each new challenger (a task of its own: a challenger loading never delays
        a champion). Waits for the configured shadow scoring to have started."""
        await self.shadow_ready.wait()
        while True:
            await self._registry_changed.wait()
            self._registry_changed.clear()
            await self.reconcile_shadow()

    # -- reading the registry -------------------------------------------------------------

    async def _connect(self) -> bool:
        """Assign every partition of the registry topic from the beginning and read up to
        the current end; -> False if the topic does not exist (yet)."""
        if self._consumer is None:
            security = self.security or KafkaSecurity.from_env()
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=bootstrap_servers(self.settings.kafka_broker),
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=500,
                **security.aiokafka_kwargs(),
            )
            await self._consumer.start()
        consumer = self._consumer
        if consumer.assignment():
            return True
        if self.topic not in await consumer.topics():
            return False
        tps = [TopicPartition(self.topic, p) for p in consumer.partitions_for_topic(self.topic)]
        consumer.assign(tps)
        await read_to_end(consumer, tps, self._fold_one)
        return True

    def _fold_one(self, message: Any) -> None:
        problem = fold(self.registry, message.key, message.value)
        if problem is not None:
            where = f"{self.topic}[{message.partition}] offset {message.offset}"
            logger.warning("%s: %s (ignored)", where, problem)

    def _fold(self, batches: dict[Any, list[Any]]) -> None:
        for messages in batches.values():
            for message in messages:
                self._fold_one(message)
        self._registry_changed.set()

    async def adopt(self) -> None:
        """At startup, before the batcher starts: read the registry (bounded) and, if it names
        other builds than the configured ones, load them so the batcher starts on them."""
        try:
            async with asyncio.timeout(self.startup_timeout_s):
                present = await self._connect()
            if not present:
                logger.info(
                    "no %s topic: serving the configured builds %s", self.topic, self.serving
                )
        except Exception as exc:  # a timeout or an unreachable broker: not a reason to stop
            logger.warning(
                "could not read %s at startup (%r): serving the configured builds %s; "
                "following it from now on",
                self.topic,
                exc,
                self.serving,
            )
            await self._drop_consumer()
        else:
            await self.reconcile()
        finally:
            self.ready.set()

    async def _drop_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception:
                logger.debug("stopping the registry consumer failed", exc_info=True)

    async def follow(self) -> None:
        """Keep reading the registry and serve each new champion (an app task)."""
        await self.ready.wait()
        if self.send_best_effort is not None and self._challengers is None:
            self._challengers = asyncio.create_task(
                self.follow_challengers(), name="follow-challengers"
            )
        try:
            while True:
                try:
                    if not await self._connect():
                        await asyncio.sleep(self.retry_s)
                        continue
                    self._registry_changed.set()
                    await self.reconcile()
                    while True:
                        batches = await self._consumer.getmany(timeout_ms=1000)  # type: ignore[union-attr]
                        if batches:
                            self._fold(batches)
                            await self.reconcile()
                except asyncio.CancelledError:
                    await self._drop_consumer()
                    raise
                except Exception:
                    logger.exception(
                        "reading %s failed: retrying in %.0fs", self.topic, self.retry_s
                    )
                    await self._drop_consumer()
                    await asyncio.sleep(self.retry_s)
        finally:
            await self._stop_challengers()

    async def _stop_challengers(self) -> None:
        task, self._challengers = self._challengers, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop(self) -> None:
        await self._stop_challengers()
        await self._drop_consumer()


#: Failures the operator fixes (a read-only model cache, a missing base build, a bad bundle):
#: logged in one line; anything else with its traceback.
_ONE_LINE_FAILURES = (artefacts.NotWritableError, artefacts.ModelNotBuiltError, AdaptedBuildError)


def _log_failure(exc: Exception, what: str, pair: Pair, routes: list[str], *rest: Any) -> None:
    args = (pair, ", ".join(routes), *rest)
    if isinstance(exc, _ONE_LINE_FAILURES):
        logger.error(what + ": %s", *args, exc)
    else:
        logger.exception(what, *args)


def from_settings_factory(
    settings: Settings, make: Callable[[Settings], ModelHandler[Any]]
) -> HandlerFactory:
    """A pair factory over the worker's settings-based one (``build_app``'s
    ``handler_factory``): the same backend and options, with the pair's builds in place."""

    def factory(english: str, multilingual: str | None) -> ModelHandler[Any]:
        builds = {"model_version": english, "chinese_model_version": multilingual or "none"}
        return make(settings.model_copy(update=builds))

    return factory
