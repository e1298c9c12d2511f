"""The model registry against the real embedded broker: promotion refused without the build or
without shadow evidence, a promotion read back, a rollback restoring the previous champion,
shadowing a build and stopping, the ``riskstream models`` commands, and a running worker
switching champion, and starting to shadow a challenger, without a restart."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from models.serving import artefacts
from stream.config import Settings
from stream.core.registry import (
    RegistryError,
    encode_record,
    entry,
    promote,
    record_key,
    shadow,
)
from stream.core.steps import utc_now
from stream.ops.admin import ensure_topics
from stream.ops.registry import (
    promote_build,
    read_registry,
    rollback_route,
    shadow_build,
    shadowed_count,
    stop_shadow_route,
)
from tests.kafka_io import collect, produce

pytestmark = pytest.mark.integration

BUILD = "minilm-l6-adapted-0123456789"
BASE = "minilm-l6-student-71847b5b1f"
BUNDLE = {
    "model_version": BUILD,
    "base_version": BASE,
    "route": "english",
    "thresholds": {"negative_review": 0.8, "scam_chat": None},
    "report": {"examples": 10},
}


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """The builds ``read_bundle`` finds in the (stubbed) model cache."""
    from models.serving import adapted

    builds: dict[str, dict[str, Any]] = {BUILD: BUNDLE}

    def read_bundle(version: str, cache_dir: Any = None) -> dict[str, Any]:
        if version not in builds:
            raise artefacts.ModelNotBuiltError(f"no adapted build {version} here")
        return dict(builds[version])

    monkeypatch.setattr(adapted, "read_bundle", read_bundle)
    return builds


def shadow_record(i: int, challenger: str) -> bytes:
    side = {"precision": "fp32", "scores": {"sentiment_negative": 0.1, "scam_risk": 0.0}}
    head = {"abs_diff": 0.0, "label_agrees": True, "alert_agrees": True}
    return orjson.dumps(
        {
            "event_id": f"e{i}",
            "event_type": "review",
            "event_time": "2026-11-23T10:15:00Z",
            "champion": {"model_version": BASE, **side},
            "challenger": {"model_version": challenger, **side},
            "comparison": {"sentiment_negative": head, "scam_risk": head},
            "source": {"topic": "reviews", "partition": 0, "offset": i},
        }
    )


async def topics_for(broker, prefix: str) -> None:
    await ensure_topics(Settings(KAFKA_BROKER=broker.url, topic_prefix=prefix, partitions=2))


async def test_an_absent_registry_reads_empty(kafka_broker, topic_prefix) -> None:
    assert await read_registry(kafka_broker.url, topic_prefix) == {}
    assert await shadowed_count(kafka_broker.url, topic_prefix, BUILD) == 0


async def test_promotion_is_refused_for_a_missing_or_unshadowed_build(
    kafka_broker, topic_prefix, installed
) -> None:
    await topics_for(kafka_broker, topic_prefix)
    with pytest.raises(RegistryError, match="cannot promote minilm-l6-adapted-missing"):
        await promote_build(
            kafka_broker.url, topic_prefix, "minilm-l6-adapted-missing", by="ops", why="x"
        )
    with pytest.raises(RegistryError, match="shadowed on 0 texts, fewer than 20"):
        await promote_build(kafka_broker.url, topic_prefix, BUILD, by="ops", why="x")
    assert await read_registry(kafka_broker.url, topic_prefix) == {}  # nothing was produced


async def test_promote_read_back_and_roll_back(kafka_broker, topic_prefix, installed) -> None:
    url, prefix = kafka_broker.url, topic_prefix
    await topics_for(kafka_broker, prefix)
    shadow = [
        (prefix + "shadow-scores", f"e{i}".encode(), shadow_record(i, BUILD)) for i in range(3)
    ]
    shadow.append((prefix + "shadow-scores", b"other", shadow_record(9, "someone-else")))
    await produce(kafka_broker.bootstrap, shadow)
    assert await shadowed_count(url, prefix, BUILD) == 3
    with pytest.raises(RegistryError, match="shadowed on 3 texts, fewer than 4"):
        await promote_build(url, prefix, BUILD, by="ops", why="x", min_shadowed=4)

    record = await promote_build(url, prefix, BUILD, by="ops", why="better", min_shadowed=3)
    registry = await read_registry(url, prefix)
    assert registry == {"english": record}
    champion = registry["english"].champion
    assert (champion.model_version, champion.by, champion.why) == (BUILD, "ops", "better")
    assert champion.bundle == BUNDLE and champion.report == BUNDLE["report"]
    # the first promotion records the base build before it, so it can be rolled back
    assert [e.model_version for e in registry["english"].history] == [BASE]
    with pytest.raises(RegistryError, match="already the english champion"):
        await promote_build(url, prefix, BUILD, by="ops", why="again", min_shadowed=3)

    back = await rollback_route(url, prefix, "english", by="oncall", why="false alerts")
    registry = await read_registry(url, prefix)
    assert registry["english"] == back and back.champion.model_version == BASE
    assert back.champion.action == "rollback" and back.history == []
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        await rollback_route(url, prefix, "english", by="oncall", why="again")
    with pytest.raises(RegistryError, match="nothing was promoted"):
        await rollback_route(url, prefix, "multilingual", by="oncall", why="never promoted")


async def test_shadow_a_build_then_stop_or_promote_it(
    kafka_broker, topic_prefix, installed
) -> None:
    url, prefix = kafka_broker.url, topic_prefix
    await topics_for(kafka_broker, prefix)
    with pytest.raises(RegistryError, match="cannot shadow minilm-l6-adapted-missing") as caught:
        await shadow_build(url, prefix, "minilm-l6-adapted-missing", by="ops", why="x")
    assert "\n" not in str(caught.value)
    assert await read_registry(url, prefix) == {}  # nothing was produced
    with pytest.raises(RegistryError, match="no challenger to stop"):
        await stop_shadow_route(url, prefix, "english", by="ops", why="x")

    # a route never promoted: the base build is recorded as champion, the build shadows it
    record = await shadow_build(url, prefix, BUILD, by="ops", why="adapted on 600 labels")
    assert (await read_registry(url, prefix)) == {"english": record}
    assert record.champion.model_version == BASE and record.history == []
    challenger = record.challenger
    assert challenger is not None and (challenger.model_version, challenger.action) == (
        BUILD,
        "shadow",
    )
    assert challenger.bundle == BUNDLE and challenger.why == "adapted on 600 labels"
    with pytest.raises(RegistryError, match="already the english challenger"):
        await shadow_build(url, prefix, BUILD, by="ops", why="again")

    stopped = await stop_shadow_route(url, prefix, "english", by="ops", why="enough")
    assert stopped.challenger is None and stopped.seq == record.seq + 1
    assert (await read_registry(url, prefix))["english"] == stopped

    # shadowed again, then promoted: the promotion ends the shadowing
    await shadow_build(url, prefix, BUILD, by="ops", why="once more")
    promoted = await promote_build(url, prefix, BUILD, by="ops", why="better", min_shadowed=0)
    assert promoted.champion.model_version == BUILD and promoted.challenger is None
    assert [e.model_version for e in promoted.history] == [BASE]
    with pytest.raises(RegistryError, match="is the english champion"):
        await shadow_build(url, prefix, BUILD, by="ops", why="the champion")


def test_the_models_commands(kafka_broker, topic_prefix, installed) -> None:
    from stream.ops.cli import main

    env = {"KAFKA_BROKER": kafka_broker.url, "RISKSTREAM_TOPIC_PREFIX": topic_prefix}
    runner = CliRunner()
    refused = runner.invoke(
        main, ["models", "promote", BUILD, "--by", "ops", "--why", "x"], env=env
    )
    assert refused.exit_code == 1, refused.output
    assert "shadowed on 0 texts" in refused.output
    nothing = runner.invoke(
        main, ["models", "rollback", "--route", "english", "--by", "a", "--why", "b"], env=env
    )
    assert nothing.exit_code == 1 and "nothing was promoted" in nothing.output
    missing = runner.invoke(
        main, ["models", "shadow", "minilm-l6-adapted-missing", "--by", "o", "--why", "x"], env=env
    )
    assert missing.exit_code == 1 and "cannot shadow" in missing.output
    shadowed = runner.invoke(main, ["models", "shadow", BUILD, "--by", "o", "--why", "x"], env=env)
    assert shadowed.exit_code == 0, shadowed.output
    assert f"english challenger is now {BUILD}, shadowing champion {BASE}" in shadowed.output
    listed = runner.invoke(main, ["models", "champions"], env=env)
    assert f"english challenger: {BUILD} (shadow by o" in listed.output, listed.output
    unshadow = ["models", "unshadow", "--route", "english", "--by", "o", "--why", "x"]
    stopped = runner.invoke(main, unshadow, env=env)
    assert stopped.exit_code == 0 and "english has no challenger now" in stopped.output
    again = runner.invoke(main, unshadow, env=env)
    assert again.exit_code == 1 and "no challenger to stop" in again.output
    promoted = runner.invoke(
        main,
        ["models", "promote", BUILD, "--by", "ops", "--why", "x", "--min-shadowed", "0"],
        env=env,
    )
    assert promoted.exit_code == 0, promoted.output
    listed = runner.invoke(main, ["models", "champions"], env=env)
    assert listed.exit_code == 0, listed.output
    lines = listed.output.strip().splitlines()
    assert lines[0].startswith(f"english champion #4: {BUILD} (promote by ops")
    assert lines[1].startswith(f"english earlier 1: {BASE}")
    assert lines[2].startswith("multilingual: no champion")


async def test_a_running_worker_switches_champion_without_a_restart(
    kafka_broker, make_worker, topic_prefix
) -> None:
    """The registry names another installed build (the multilingual student, which also
    scores English) for the English route: scored events after the switch carry it."""
    prefix = topic_prefix
    english, other = artefacts.model_version(), artefacts.multilingual_version()
    worker = await make_worker(RISKSTREAM_CHINESE_MODEL_VERSION="none")
    scored = prefix + "scored-events"

    def review(i: int) -> tuple[str, bytes, bytes]:
        body = {
            "event_id": f"r{i}",
            "member_id": f"m{i % 7}",
            "event_time": "2026-11-23T10:00:00Z",
            "product_id": "B00SWITCH",
            "rating": 4,
            "text": f"Decent product number {i}, arrived on time.",
        }
        return prefix + "reviews", f"m{i % 7}".encode(), orjson.dumps(body)

    def versions(found: dict) -> list[str]:
        return [orjson.loads(m.value)["model_version"] for m in found.get(scored, [])]

    await produce(kafka_broker.bootstrap, [review(i) for i in range(5)])
    found = await collect(
        kafka_broker.bootstrap, [scored], lambda f: len(versions(f)) >= 5, 180, worker.alive
    )
    assert versions(found) == [english] * 5, worker.log_path.read_text()[-3000:]

    record = promote(
        None, entry(other, by="test", at=utc_now(), why="switch test"), route="english"
    )
    await produce(
        kafka_broker.bootstrap,
        [(prefix + "model-registry", record_key("english"), encode_record(record))],
    )
    # events keep flowing while the worker switches; each is scored once, by one build
    loop = asyncio.get_running_loop()
    produced, deadline = 5, loop.time() + 120
    while loop.time() < deadline and worker.alive():
        await produce(kafka_broker.bootstrap, [review(produced + j) for j in range(2)])
        produced += 2
        found = await collect(
            kafka_broker.bootstrap, [scored], lambda f: other in versions(f), 1.0, worker.alive
        )
        if other in versions(found):
            break
    found = await collect(
        kafka_broker.bootstrap,
        [scored],
        lambda f: len({orjson.loads(m.value)["event_id"] for m in f.get(scored, [])}) >= produced,
        60,
        worker.alive,
    )
    assert other in versions(found), worker.log_path.read_text()[-3000:]
    events = [orjson.loads(m.value) for m in found[scored]]
    assert len({e["event_id"] for e in events}) == produced  # none lost
    for partition in {m.partition for m in found[scored]}:  # publish order per partition
        seen = [
            orjson.loads(m.value)["model_version"]
            for m in found[scored]
            if m.partition == partition
        ]
        assert set(seen) <= {english, other}
        assert seen == sorted(seen, key=lambda version: version == other)  # old, then new
    assert worker.alive()


async def test_a_restarted_worker_serves_the_registry_champion_from_the_start(
    kafka_broker, make_worker, topic_prefix
) -> None:
    prefix = topic_prefix
    other = artefacts.multilingual_version()
    await topics_for(kafka_broker, prefix)
    record = promote(None, entry(other, by="test", at=utc_now(), why="restart"), route="english")
    registry = (prefix + "model-registry", record_key("english"), encode_record(record))
    await produce(kafka_broker.bootstrap, [registry])
    worker = await make_worker(RISKSTREAM_CHINESE_MODEL_VERSION="none")
    reviews = [
        (
            prefix + "reviews",
            b"m1",
            orjson.dumps(
                {
                    "event_id": f"s{i}",
                    "member_id": "m1",
                    "event_time": "2026-11-23T10:00:00Z",
                    "product_id": "B00START",
                    "text": f"Works as described, number {i}.",
                }
            ),
        )
        for i in range(3)
    ]
    await produce(kafka_broker.bootstrap, reviews)
    scored = prefix + "scored-events"
    found = await collect(
        kafka_broker.bootstrap, [scored], lambda f: len(f.get(scored, [])) >= 3, 180, worker.alive
    )
    versions = {orjson.loads(m.value)["model_version"] for m in found.get(scored, [])}
    assert versions == {other}, worker.log_path.read_text()[-3000:]


async def test_a_running_worker_starts_shadowing_a_build_without_a_restart(
    kafka_broker, make_worker, topic_prefix
) -> None:
    """On the stub backend any build name is a "build": the registry names a challenger for
    the English route, and the running worker's shadow comparisons name it."""
    prefix = topic_prefix
    champion, candidate = artefacts.model_version(), "stub-candidate-2"
    worker = await make_worker(RISKSTREAM_BACKEND="stub", RISKSTREAM_CHINESE_MODEL_VERSION="none")
    scored, shadowed = prefix + "scored-events", prefix + "shadow-scores"

    def review(i: int) -> tuple[str, bytes, bytes]:
        body = {
            "event_id": f"w{i}",
            "member_id": f"m{i % 5}",
            "event_time": "2026-11-23T10:00:00Z",
            "product_id": "B00SHADOW",
            "rating": 2,
            "text": f"Not what I expected, number {i}.",
        }
        return prefix + "reviews", f"m{i % 5}".encode(), orjson.dumps(body)

    def challengers(found: dict) -> list[str]:
        return [
            orjson.loads(m.value)["challenger"]["model_version"] for m in found.get(shadowed, [])
        ]

    await produce(kafka_broker.bootstrap, [review(i) for i in range(3)])
    found = await collect(
        kafka_broker.bootstrap,
        [scored],
        lambda f: len(f.get(scored, [])) >= 3,
        180,
        worker.alive,
    )
    assert len(found.get(scored, [])) >= 3, worker.log_path.read_text()[-3000:]
    # the champion is the build the worker serves: only the challenger is new
    at = utc_now()
    record = promote(None, entry(champion, by="test", at=at, why="served"), route="english")
    record = shadow(record, entry(candidate, by="test", at=at, why="shadow test", action="shadow"))
    await produce(
        kafka_broker.bootstrap,
        [(prefix + "model-registry", record_key("english"), encode_record(record))],
    )
    loop = asyncio.get_running_loop()
    produced, deadline = 3, loop.time() + 120
    found = {}
    while loop.time() < deadline and worker.alive():
        await produce(kafka_broker.bootstrap, [review(produced + j) for j in range(2)])
        produced += 2
        found = await collect(
            kafka_broker.bootstrap,
            [shadowed],
            lambda f: candidate in challengers(f),
            1.0,
            worker.alive,
        )
        if candidate in challengers(found):
            break
    assert candidate in challengers(found), worker.log_path.read_text()[-3000:]
    assert set(challengers(found)) == {candidate}  # nothing was shadowed before the record
    assert worker.alive()
