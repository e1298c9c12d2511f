"""Switching the champion in a running worker, in-process with fake handlers: the micro-batcher
scores every text exactly once, by the build named in its result, while the build changes under
a continuous stream; the registry follower loads the new build off the loop, adopts its
thresholds, and keeps the old build when the new one fails; it shadows the registry's challenger
(started, swapped, back to the configured one, stopped) and a failing challenger changes
nothing else."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from stream.config import Settings
from stream.core.registry import entry, promote, shadow, stop_shadow
from stream.core.rules import AlertThresholds, TextThresholds
from stream.topics import SHADOW_SCORES
from stream.worker import metrics
from stream.worker.batcher import MicroBatcher
from stream.worker.champion import ChampionFollower, from_settings_factory
from stream.worker.shadow import ShadowScoring
from tests.fakes import FakeModelHandler
from tests.stream.test_worker_stages import edge, review
from tests.stream.test_worker_stages import stages as live  # noqa: F401 (a fixture)

AT = "2026-11-23T10:15:00Z"


def switches(route: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "riskstream_model_champion_switches_total", {"route": route, "outcome": outcome}
    )
    return value or 0.0


def model_info() -> set[str]:
    return {
        sample.labels["version"]
        for metric in metrics.MODEL_INFO.collect()
        for sample in metric.samples
        if sample.value == 1
    }


async def test_a_swap_mid_stream_scores_every_text_once_by_the_build_it_names() -> None:
    old, new = FakeModelHandler(version="old"), FakeModelHandler(version="new")
    batcher = MicroBatcher(old, max_batch_size=8, max_wait_s=0.001, max_pending=64)
    await batcher.start()
    texts = [f"text {i}" for i in range(600)]
    futures: list[asyncio.Future] = []

    async def stream() -> None:
        for i, text in enumerate(texts):
            futures.append(await batcher.submit(text))
            if i % 16 == 0:
                await asyncio.sleep(0)  # let batches run between submissions
            if i == 300:
                batcher.swap(new, new.load_model())

    try:
        await asyncio.wait_for(stream(), 20)
        results = await asyncio.wait_for(asyncio.gather(*futures), 20)
    finally:
        await batcher.stop()
    assert [r.example for r in results] == texts  # none lost, each its own result
    ids = [r.model_id for r in results]
    assert set(ids) == {"old", "new"}
    switched = ids.index("new")
    assert ids[:switched] == ["old"] * switched and ids[switched:] == ["new"] * (600 - switched)
    # every text went through exactly one build, the one its result names
    scored_old = [t for batch in old.batches for t in batch]
    scored_new = [t for batch in new.batches for t in batch]
    assert scored_old == texts[:switched] and scored_new == texts[switched:]
    assert batcher.model_version == "new"


async def test_a_batch_under_way_finishes_on_the_old_build() -> None:
    gate = threading.Event()
    old = FakeModelHandler(version="old", block=gate)
    new = FakeModelHandler(version="new")
    batcher = MicroBatcher(old, max_batch_size=4, max_wait_s=0.001)
    await batcher.start()
    try:
        first = [await batcher.submit(f"a{i}") for i in range(4)]
        while batcher._pending:  # until the first batch is taken: it waits in the old build
            await asyncio.sleep(0.005)
        batcher.swap(new, new.load_model())
        later = [await batcher.submit(f"b{i}") for i in range(4)]
        gate.set()
        done = await asyncio.wait_for(asyncio.gather(*first, *later), 10)
    finally:
        gate.set()
        await batcher.stop()
    assert [r.model_id for r in done] == ["old"] * 4 + ["new"] * 4


class FailingLoad(FakeModelHandler):
    def load_model(self) -> str:
        raise RuntimeError("no such build here")


def follower(
    made: list[tuple[str, str | None]],
    *,
    fail: set[str] = frozenset(),
    materialised: list[dict] | None = None,
) -> tuple[ChampionFollower, MicroBatcher, Any]:
    settings = Settings(KAFKA_BROKER="kafka://127.0.0.1:1", topic_prefix="t.")

    def factory(english: str, multilingual: str | None) -> FakeModelHandler:
        made.append((english, multilingual))
        kind = FailingLoad if english in fail else FakeModelHandler
        return kind(version=english)

    def materialise(bundle: dict) -> None:
        assert threading.current_thread() is not threading.main_thread()  # off the loop
        (materialised if materialised is not None else []).append(bundle)

    batcher = MicroBatcher(FakeModelHandler(version="base"), max_batch_size=4, max_wait_s=0.001)
    stages = SimpleNamespace(thresholds=AlertThresholds(), handler=batcher.handler)
    champions = ChampionFollower(
        settings,
        batcher,
        stages,
        factory,
        materialise=materialise,
        configured=("base", "zh-base"),
        startup_timeout_s=0.5,
    )
    return champions, batcher, stages


def record_for(version: str, route: str = "english", bundle: dict | None = None, current=None):
    return promote(current, entry(version, by="ops", at=AT, why="test", bundle=bundle), route=route)


async def test_the_follower_swaps_in_a_new_champion_with_its_thresholds() -> None:
    made: list[tuple[str, str | None]] = []
    materialised: list[dict] = []
    champions, batcher, stages = follower(made, materialised=materialised)
    await batcher.start()
    before = switches("english", "switched")
    try:
        bundle = {
            "model_version": "adapted-1",
            "route": "english",
            "thresholds": {"negative_review": 0.7, "scam_chat": None},
        }
        champions.registry["english"] = record_for("adapted-1", bundle=bundle)
        assert await champions.reconcile()
        assert champions.serving == ("adapted-1", "zh-base") and made == [("adapted-1", "zh-base")]
        assert materialised == [bundle]
        assert (await batcher.score(["hello"]))[0].model_id == "adapted-1"
        assert stages.thresholds.by_build["adapted-1"] == TextThresholds(0.7, None)
        assert stages.handler.model_version == "adapted-1"
        assert switches("english", "switched") == before + 1
        assert model_info() == {"adapted-1"}
        assert not await champions.reconcile()  # nothing new: nothing done
        assert len(made) == 1
    finally:
        await batcher.stop()


async def test_a_build_that_fails_to_load_keeps_the_old_champion() -> None:
    made: list[tuple[str, str | None]] = []
    champions, batcher, _ = follower(made, fail={"broken"})
    await batcher.start()
    before = switches("english", "failed")
    try:
        champions.registry["english"] = record_for("broken")
        assert not await champions.reconcile()
        assert champions.serving == ("base", "zh-base")
        assert (await batcher.score(["still scored"]))[0].model_id == "base"
        assert switches("english", "failed") == before + 1
        assert not await champions.reconcile()  # the same failed pair is not retried
        assert len(made) == 1
        # a later promotion is tried again
        champions.registry["english"] = record_for("fixed", current=champions.registry["english"])
        assert await champions.reconcile()
        assert (await batcher.score(["x"]))[0].model_id == "fixed"
    finally:
        await batcher.stop()


async def test_a_multilingual_champion_is_ignored_where_nothing_is_routed() -> None:
    made: list[tuple[str, str | None]] = []
    champions, _, _ = follower(made)
    champions.configured = champions.serving = ("base", None)
    before = switches("multilingual", "ignored")
    champions.registry["multilingual"] = record_for("zh-2", route="multilingual")
    assert not await champions.reconcile()
    assert made == [] and switches("multilingual", "ignored") == before + 1


async def test_at_startup_the_champion_is_loaded_before_the_batcher_starts() -> None:
    made: list[tuple[str, str | None]] = []
    champions, batcher, _ = follower(made)
    configured = batcher.handler
    champions.registry["multilingual"] = record_for("zh-2", route="multilingual")
    assert await champions.reconcile()  # what adopt() does after reading the registry
    await batcher.start()
    try:
        assert made == [("base", "zh-2")] and batcher.handler is not configured
        assert batcher.handler.loads == 1 and configured.loads == 0  # loaded once, not twice
    finally:
        await batcher.stop()


async def test_an_unreachable_registry_at_startup_keeps_the_configured_builds() -> None:
    champions, batcher, _ = follower([])
    await asyncio.wait_for(champions.adopt(), 10)
    assert champions.ready.is_set() and champions.serving == ("base", "zh-base")
    assert batcher.handler.model_version == "base"
    await champions.stop()


def test_the_pair_factory_reuses_the_settings_factory() -> None:
    seen: list[Settings] = []

    def make(settings: Settings) -> FakeModelHandler:
        seen.append(settings)
        return FakeModelHandler(version=settings.model_version or "?")

    settings = Settings(KAFKA_BROKER="kafka://127.0.0.1:1", backend="stub")
    factory = from_settings_factory(settings, make)
    assert factory("en-2", None).model_version == "en-2"
    assert seen[0].chinese_build() is None and seen[0].backend == "stub"
    factory("en-2", "zh-2")
    assert seen[1].chinese_build() == "zh-2"


def shadow_info() -> set[str]:
    return {
        sample.labels["version"]
        for metric in metrics.SHADOW_MODEL_INFO.collect()
        for sample in metric.samples
        if sample.value == 1
    }


def shadowing(version: str, current=None):
    """The english record with ``version`` as its challenger (champion: fake-1)."""
    current = current or record_for("fake-1")
    return shadow(current, entry(version, by="ops", at=AT, why="try", action="shadow"))


def challenger_follower(
    stages_: Any, made: list[tuple[str, str | None]], fail: set[str] = frozenset()
) -> ChampionFollower:
    """A follower over the in-process stages (champion fake-1), its comparisons to the
    recorder."""

    def factory(english: str, multilingual: str | None) -> FakeModelHandler:
        made.append((english, multilingual))
        return (FailingLoad if english in fail else FakeModelHandler)(version=english)

    return ChampionFollower(
        stages_.settings,
        stages_.batcher,
        stages_,
        factory,
        configured=("fake-1", None),
        send_best_effort=lambda topic, key, value: stages_.recorder.send(topic, key, value),
    )


async def settled(shadow_: ShadowScoring) -> None:
    while shadow_._in_flight:
        await asyncio.sleep(0.01)


def challengers(stages_: Any) -> list[str]:
    return [r["challenger"]["model_version"] for r in stages_.recorder.on(SHADOW_SCORES)]


async def test_a_registry_challenger_is_shadowed_and_cleared_without_a_restart(live) -> None:  # noqa: F811
    stages = live
    made: list[tuple[str, str | None]] = []
    champions = challenger_follower(stages, made)
    assert stages.shadow is None and not await champions.reconcile_shadow()  # none named
    champions.registry["english"] = shadowing("cand-2")
    assert not await champions.reconcile()  # the champion is what it was
    assert await champions.reconcile_shadow()
    running = stages.shadow
    assert running is not None and running.version == "cand-2" and made == [("cand-2", None)]
    assert shadow_info() == {"cand-2"}
    await edge(stages, [review("r1", "awful"), review("r2", "fine")])
    await settled(running)
    assert challengers(stages) == ["cand-2", "cand-2"]
    assert {r["champion"]["model_version"] for r in stages.recorder.on(SHADOW_SCORES)} == {"fake-1"}
    # another challenger: swapped into the running shadow scoring
    champions.registry["english"] = shadowing("cand-3", champions.registry["english"])
    assert await champions.reconcile_shadow()
    assert stages.shadow is running and running.version == "cand-3"
    assert shadow_info() == {"cand-3"}
    # cleared: shadow scoring stops, comparisons stop
    champions.registry["english"] = stop_shadow(champions.registry["english"], "ops", AT, "done")
    assert await champions.reconcile_shadow()
    assert stages.shadow is None and not running.batcher.loaded and shadow_info() == set()
    stages.recorder.sent.clear()
    await edge(stages, [review("r3", "awful")])
    assert challengers(stages) == []
    assert not await champions.reconcile_shadow()


async def test_promoting_the_challenger_ends_its_shadowing(live) -> None:  # noqa: F811
    stages = live
    champions = challenger_follower(stages, [])
    champions.registry["english"] = shadowing("cand-2")
    assert await champions.reconcile_shadow()
    running = stages.shadow
    promoted = promote(
        champions.registry["english"], entry("cand-2", by="ops", at=AT, why="better")
    )
    assert promoted.challenger is None
    champions.registry["english"] = promoted
    assert await champions.reconcile()  # the champion switches
    assert await champions.reconcile_shadow()  # and nothing is shadowed any more
    assert stages.shadow is None and not running.batcher.loaded
    await stages.batcher.stop()


async def test_a_configured_challenger_comes_back_when_the_registry_clears_its_own(live) -> None:  # noqa: F811
    stages = live
    configured = FakeModelHandler(version="configured-int8")
    stages.shadow = ShadowScoring(
        MicroBatcher(configured, max_batch_size=4, max_wait_s=0.001),
        stages.recorder.send,
        stages.thresholds,
    )
    await stages.shadow.start()
    champions = challenger_follower(stages, [])
    try:
        champions.registry["english"] = shadowing("cand-2")
        assert await champions.reconcile_shadow()
        assert stages.shadow is champions.configured_shadow and stages.shadow.version == "cand-2"
        champions.registry["english"] = stop_shadow(champions.registry["english"], "o", AT, "x")
        assert await champions.reconcile_shadow()
        assert stages.shadow is champions.configured_shadow
        assert stages.shadow.version == "configured-int8" and configured.loads == 2
        assert shadow_info() == {"configured-int8"}
        await edge(stages, [review("r1", "fine")])
        await settled(stages.shadow)
        assert challengers(stages) == ["configured-int8"]
    finally:
        await stages.shadow.stop()


async def test_a_failing_challenger_is_counted_and_changes_nothing_else(live) -> None:  # noqa: F811
    stages = live
    made: list[tuple[str, str | None]] = []
    champions = challenger_follower(stages, made, fail={"broken"})
    before = switches("english", "shadow_failed")
    champions.registry["english"] = shadowing("broken")
    assert not await champions.reconcile_shadow()
    assert stages.shadow is None and switches("english", "shadow_failed") == before + 1
    assert not await champions.reconcile_shadow() and len(made) == 1  # not retried
    # a working challenger, then a broken successor: the replaced one is not shadowed on
    champions.registry["english"] = shadowing("cand-2", champions.registry["english"])
    assert await champions.reconcile_shadow() and stages.shadow.version == "cand-2"
    running = stages.shadow
    champions.registry["english"] = shadowing("broken", champions.registry["english"])
    assert not await champions.reconcile_shadow()
    assert stages.shadow is None and not running.batcher.loaded and shadow_info() == set()
    await edge(stages, [review("r1", "awful")])  # the champion goes on
    assert len(stages.recorder.on("scored-events")) == 1 and not stages.stopped


@pytest.fixture(autouse=True)
def _clean_model_info():
    yield
    metrics.MODEL_INFO.clear()
    metrics.SHADOW_MODEL_INFO.clear()
