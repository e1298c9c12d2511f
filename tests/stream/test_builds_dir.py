"""A promotion under a read-only model cache (Kubernetes' ``readOnlyRootFilesystem``): the worker
makes the adapted build in ``RISKSTREAM_BUILDS_DIR``, serves it from there, and removes the
builds there that nothing names any longer; without that folder it says so in one line and goes
on serving the build it had. The cache is made read-only with ``chmod`` (as root, the steps that
write run as ``nobody``: ``tests/unprivileged.py``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from models.serving import adapted, artefacts
from models.serving.base import HEAD_NAMES
from models.serving.factory import create_handler
from stream.config import Settings, SettingsError, load_settings
from stream.core.registry import entry, promote
from stream.core.rules import AlertThresholds
from stream.worker.batcher import MicroBatcher
from stream.worker.champion import ChampionFollower, from_settings_factory
from tests.fakes import FakeModelHandler
from tests.unprivileged import as_unprivileged, open_folder, read_only, writable

AT = "2026-11-23T10:15:00Z"
IDENTITY = {h: ([0.0, 1.0], [0.0, 1.0]) for h in HEAD_NAMES}
TEXTS = ["Terrible, it broke after a day.", "WIN a prize now!! click here"]


@pytest.fixture
def image(built_model: Path, monkeypatch) -> Iterator[SimpleNamespace]:
    """A worker image's model cache (RISKSTREAM_CACHE_DIR: what serving reads of the student,
    read-only), a writable builds folder, a folder nobody may write, and two adapted bundles
    over the student."""
    monkeypatch.setattr(artefacts, "_builds_dir", None)  # restored whatever the follower sets
    with open_folder("riskstream-ro-image-") as root:
        cache = root / "cache"
        artefacts.copy_served(built_model.parents[1], cache, [built_model.name])
        (root / "locked").mkdir()
        read_only(cache)
        read_only(root / "locked")
        monkeypatch.setenv("RISKSTREAM_CACHE_DIR", str(cache))
        heads = adapted.heads_of_build(built_model)
        flipped = {h: (-w, -b) for h, (w, b) in heads.items()}  # P -> 1 - P
        yield SimpleNamespace(
            cache=cache,
            builds=writable(root / "builds"),
            locked=root / "locked",
            base=built_model.name,
            same=adapted.make_bundle(built_model.name, heads, IDENTITY, {}, {}),
            flipped=adapted.make_bundle(built_model.name, flipped, IDENTITY, {}, {}),
        )


def settings(**values: object) -> Settings:
    # no pseudonymisation key: the unprivileged step may not read the test key's folder
    return Settings(
        KAFKA_BROKER="kafka://127.0.0.1:1", chinese_model_version="none", **values
    ).model_copy(update={"pseudonym_key_file": None})


def follower(
    config: Settings, base: str, factory=None
) -> tuple[ChampionFollower, MicroBatcher, SimpleNamespace]:
    batcher = MicroBatcher(FakeModelHandler(version=base), max_batch_size=4, max_wait_s=0.001)
    stages = SimpleNamespace(thresholds=AlertThresholds(), handler=batcher.handler)
    champions = ChampionFollower(
        config,
        batcher,
        stages,
        factory or (lambda english, multilingual: FakeModelHandler(version=english)),
        configured=(base, None),
        startup_timeout_s=0.5,
    )
    return champions, batcher, stages


def champion(bundle: dict, current=None):
    made = entry(bundle["model_version"], by="ops", at=AT, why="test", bundle=bundle)
    return promote(current, made, route="english")


def test_the_setting_refuses_a_folder_the_worker_cannot_write(image) -> None:
    def step() -> list[str]:
        lines = []
        for path in (image.locked, image.locked / "builds"):
            try:
                load_settings(builds_dir=str(path), pseudonym_key_file="none")
            except SettingsError as exc:
                lines.append(str(exc))
        load_settings(builds_dir=str(image.builds / "new" / "x"), pseudonym_key_file="none")
        return lines

    refused = as_unprivileged(step)
    assert refused == [
        f"RISKSTREAM_BUILDS_DIR={str(image.locked)!r}: Value error, {image.locked} is not a "
        "writable folder (the worker writes adapted builds there)",
        f"RISKSTREAM_BUILDS_DIR={str(image.locked / 'builds')!r}: Value error, "
        f"{image.locked / 'builds'} cannot be made in {image.locked} (the worker writes adapted "
        "builds there)",
    ]
    assert load_settings(builds_dir="none").builds_dir is None


def test_a_promotion_without_a_builds_dir_fails_in_one_line_and_keeps_serving(image) -> None:
    def step() -> tuple[bool, tuple, list[tuple[str, str, bool]]]:
        seen: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = seen.append  # type: ignore[method-assign]
        logging.getLogger("riskstream.champion").addHandler(handler)
        import asyncio

        champions, _, _ = follower(settings(), image.base)
        champions.registry["english"] = champion(image.flipped)
        switched = asyncio.run(champions.reconcile())
        logs = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in seen]
        return switched, champions.serving, logs

    switched, serving, logs = as_unprivileged(step)
    assert not switched and serving == (image.base, None)
    ((level, message, traceback),) = logs
    version = image.flipped["model_version"]
    assert level == "ERROR" and not traceback and "\n" not in message
    assert f"cannot make adapted build {version}: {image.cache / 'models'} is not writable" in (
        message
    )
    assert message.endswith("set RISKSTREAM_BUILDS_DIR to a writable folder")
    assert not (image.cache / "models" / version).exists()


def test_a_promotion_is_made_in_the_builds_dir_under_a_read_only_cache(image) -> None:
    """Unprivileged: the follower makes the champion's build in RISKSTREAM_BUILDS_DIR and the
    factory is handed its version; the read-only cache is untouched."""
    before = sorted(p.relative_to(image.cache) for p in image.cache.rglob("*"))

    def step() -> tuple[bool, tuple, str]:
        import asyncio

        import onnx  # noqa: F401 (materialise imports it)

        found: list[Path] = []

        def factory(english: str, multilingual: str | None) -> FakeModelHandler:
            found.append(artefacts.artefact_dir(english))
            return FakeModelHandler(version=english)

        champions, _, _ = follower(settings(builds_dir=image.builds), image.base, factory)
        champions.registry["english"] = champion(image.flipped)
        switched = asyncio.run(champions.reconcile())
        return switched, champions.serving, str(found[0])

    switched, serving, found = as_unprivileged(step)
    version = image.flipped["model_version"]
    assert switched and serving == (version, None)
    assert Path(found) == artefacts.models_root(image.builds) / version
    assert artefacts.is_built(Path(found))
    assert sorted(p.relative_to(image.cache) for p in image.cache.rglob("*")) == before


async def test_the_worker_serves_the_promoted_build_and_prunes_the_one_before(image) -> None:
    """The real factory (``build_app``'s, over create_handler) finds the builds folder's build
    by version and scores with it; the next promotion's build replaces it there."""

    def make(config: Settings):
        return create_handler("onnx-cpu", config.model_version, chinese_model_version=None)

    config = settings(builds_dir=image.builds)
    champions, batcher, stages = follower(config, image.base, from_settings_factory(config, make))
    await batcher.start()
    try:
        champions.registry["english"] = champion(image.same)
        assert await champions.reconcile()
        same = await batcher.score(TEXTS)
        champions.registry["english"] = champion(image.flipped, champions.registry["english"])
        assert await champions.reconcile()
        flipped = await batcher.score(TEXTS)
    finally:
        await batcher.stop()
    version = image.flipped["model_version"]
    assert {r.model_id for r in same} == {image.same["model_version"]}
    assert {r.model_id for r in flipped} == {version}
    for a, b in zip(same, flipped, strict=True):
        assert b.inference.scam_risk == pytest.approx(1 - a.inference.scam_risk, abs=2e-3)
    assert stages.handler.model_version == version
    # the first adapted build is no champion, challenger nor served any longer: removed
    assert [p.name for p in artefacts.models_root(image.builds).iterdir()] == [version]
    assert [p.name for p in (image.cache / "models").iterdir()] == [image.base]
