"""Adapted builds on the serving side: bundles, ONNX head surgery, calibration, the factory."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from models.serving import adapted, artefacts
from models.serving.base import HEAD_NAMES, PredictionResult, TextScores
from models.serving.factory import create_handler
from tests.unprivileged import as_unprivileged, open_folder, read_only, writable

TEXTS = ["Terrible, it broke after a day.", "Lovely taste, will buy again!", "WIN a prize now!!"]


def base_heads(onnx_file: Path) -> dict[str, tuple[np.ndarray, float]]:
    return adapted.heads_of_build(onnx_file.parent)


IDENTITY = {h: ([0.0, 1.0], [0.0, 1.0]) for h in HEAD_NAMES}


@pytest.fixture(scope="module")
def cache(tmp_path_factory, built_model: Path) -> Path:
    """A model cache holding a copy of the served student's build (so tests write freely)."""
    root = tmp_path_factory.mktemp("cache")
    shutil.copytree(built_model, artefacts.artefact_dir(built_model.name, root))
    return root


def test_bundle_version_is_a_hash_of_what_scores(built_model: Path) -> None:
    heads = base_heads(built_model / artefacts.ONNX_FILE)
    one = adapted.make_bundle(built_model.name, heads, IDENTITY, {"negative_review": 0.8}, {})
    two = adapted.make_bundle(built_model.name, heads, IDENTITY, {"negative_review": 0.8}, {"n": 1})
    three = adapted.make_bundle(built_model.name, heads, IDENTITY, {"negative_review": 0.7}, {})
    assert one["model_version"] == two["model_version"]  # the report does not score
    assert one["model_version"] != three["model_version"]
    assert one["model_version"].startswith("minilm-l6-adapted-")
    assert one["route"] == "english"
    tampered = {**one, "thresholds": {"negative_review": 0.1}}
    with pytest.raises(adapted.AdaptedBuildError, match="hash"):
        adapted.check_bundle(tampered)


def test_bad_bundles_are_refused(built_model: Path) -> None:
    heads = base_heads(built_model / artefacts.ONNX_FILE)
    short = {**heads, HEAD_NAMES[0]: (heads[HEAD_NAMES[0]][0][:10], 0.0)}
    with pytest.raises(adapted.AdaptedBuildError, match="384"):
        adapted.make_bundle(built_model.name, short, IDENTITY, {}, {})
    falling = {HEAD_NAMES[0]: ([0.0, 1.0], [1.0, 0.0])}
    with pytest.raises(adapted.AdaptedBuildError, match="monotone"):
        adapted.make_bundle(built_model.name, heads, falling, {}, {})


def test_int8_quantisation_matches_onnx_runtime(built_model: Path) -> None:
    """Our symmetric per-channel INT8 of the served heads equals what ORT's quantiser wrote."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(built_model / artefacts.INT8_FILE)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for head, (weight, _) in base_heads(built_model / artefacts.ONNX_FILE).items():
        q, scale = adapted.quantize_symmetric(weight)
        assert scale == pytest.approx(float(inits[f"heads.{head}.weight_Transposed_scale"][0]))
        assert (
            np.abs(q.astype(int) - inits[f"heads.{head}.weight_Transposed_quantized"][:, 0]).max()
            <= 1
        )


@pytest.mark.parametrize("backend", ["onnx-cpu", "onnx-cpu-int8"])
def test_materialised_build_scores_like_its_heads(
    cache: Path, built_model: Path, backend: str, monkeypatch
) -> None:
    """Same heads -> same scores as the base; new heads -> the scores those heads give."""
    monkeypatch.setenv("RISKSTREAM_CACHE_DIR", str(cache))
    heads = base_heads(built_model / artefacts.ONNX_FILE)
    same = adapted.make_bundle(built_model.name, heads, IDENTITY, {}, {})
    flipped = {h: (-w, -b) for h, (w, b) in heads.items()}  # P -> 1 - P exactly
    other = adapted.make_bundle(built_model.name, flipped, IDENTITY, {}, {})
    for bundle in (same, other):
        path = adapted.materialise(bundle, cache)
        assert path.name == bundle["model_version"] and artefacts.is_built(path)
        assert adapted.materialise(bundle, cache) == path  # idempotent
        assert adapted.read_bundle(bundle["model_version"], cache)["heads"] == bundle["heads"]
    base = create_handler(backend, built_model.name)
    base_scores = base.run_inference(TEXTS, base.load_model())
    for bundle, expect in ((same, lambda p: p), (other, lambda p: 1 - p)):
        handler = create_handler(backend, bundle["model_version"])
        results = handler.run_inference(TEXTS, handler.load_model())
        assert {r.model_id for r in results} == {bundle["model_version"]}
        for got, want in zip(results, base_scores, strict=True):
            assert got.inference.sentiment_negative == pytest.approx(
                expect(want.inference.sentiment_negative), abs=2e-3
            )
            assert got.inference.scam_risk == pytest.approx(
                expect(want.inference.scam_risk), abs=2e-3
            )


def test_calibration_maps_served_scores(cache: Path, built_model: Path, monkeypatch) -> None:
    monkeypatch.setenv("RISKSTREAM_CACHE_DIR", str(cache))
    heads = base_heads(built_model / artefacts.ONNX_FILE)
    squash = {HEAD_NAMES[0]: ([0.0, 0.5, 1.0], [0.0, 0.0, 0.25])}  # scam head left raw
    bundle = adapted.make_bundle(built_model.name, heads, squash, {}, {})
    adapted.materialise(bundle, cache)
    handler = create_handler("onnx-cpu", bundle["model_version"])
    assert isinstance(handler, adapted.CalibratedHandler)
    raw = create_handler("onnx-cpu", built_model.name)
    for got, want in zip(
        handler.run_inference(TEXTS, handler.load_model()),
        raw.run_inference(TEXTS, raw.load_model()),
        strict=True,
    ):
        p = want.inference.sentiment_negative
        assert got.inference.sentiment_negative == pytest.approx(max(p - 0.5, 0) / 2, abs=1e-4)
        assert got.inference.scam_risk == pytest.approx(want.inference.scam_risk, abs=1e-6)


def test_materialise_needs_the_base(tmp_path: Path, built_model: Path) -> None:
    heads = base_heads(built_model / artefacts.ONNX_FILE)
    bundle = adapted.make_bundle(built_model.name, heads, IDENTITY, {}, {})
    with pytest.raises(artefacts.ModelNotBuiltError, match="needs its base"):
        adapted.materialise(bundle, tmp_path)
    with pytest.raises(artefacts.ModelNotBuiltError, match="no adapted build"):
        adapted.read_bundle(bundle["model_version"], tmp_path)


def test_calibration_object() -> None:
    calibration = adapted.Calibration({HEAD_NAMES[1]: {"x": [0.2, 0.8], "y": [0.0, 1.0]}})
    out = calibration.scores(TextScores(0.3, 0.5))
    assert out.sentiment_negative == 0.3 and out.scam_risk == pytest.approx(0.5)
    assert calibration.apply(HEAD_NAMES[1], 0.1) == 0.0
    assert json.dumps(PredictionResult("t", out, "v").model_id) == '"v"'


def test_the_multilingual_build_adapts_too(tmp_path: Path, built_model: Path, monkeypatch) -> None:
    """An adapted multilingual build (its own tokenizer) scores Chinese as its heads say."""
    base_dir = artefacts.artefact_dir(artefacts.multilingual_version())
    root = tmp_path / "cache"
    shutil.copytree(base_dir, artefacts.artefact_dir(base_dir.name, root))
    monkeypatch.setenv("RISKSTREAM_CACHE_DIR", str(root))
    heads = {h: (-w, -b) for h, (w, b) in adapted.heads_of_build(base_dir).items()}
    bundle = adapted.make_bundle(base_dir.name, heads, IDENTITY, {"negative_review": 0.7}, {})
    assert bundle["route"] == "multilingual" and bundle["model_version"].startswith(
        "e5-l6-adapted-"
    )
    adapted.materialise(bundle, root)
    texts = ["质量很差再也不买了", "非常好用物流也快"]
    base = create_handler("onnx-cpu", base_dir.name)
    new = create_handler("onnx-cpu", bundle["model_version"])
    for got, want in zip(
        new.run_inference(texts, new.load_model()),
        base.run_inference(texts, base.load_model()),
        strict=True,
    ):
        assert got.inference.sentiment_negative == pytest.approx(
            1 - want.inference.sentiment_negative, abs=2e-3
        )


# ------------------------------------------------- a read-only model cache (Kubernetes' pods)


@pytest.fixture
def read_only_cache(built_model: Path, monkeypatch) -> Iterator[tuple[Path, Path]]:
    """(a model cache holding what serving reads of the student's build, made read-only as an
    image's is under readOnlyRootFilesystem; an empty builds folder, writable)."""
    monkeypatch.setattr(artefacts, "_builds_dir", None)  # restored whatever a test sets
    with open_folder("riskstream-ro-cache-") as root:
        cache = root / "cache"
        artefacts.copy_served(built_model.parents[1], cache, [built_model.name])
        read_only(cache)
        yield cache, writable(root / "builds")


def test_a_read_only_cache_materialises_into_the_builds_dir(
    read_only_cache: tuple[Path, Path], built_model: Path
) -> None:
    """The image's cache cannot be written (chmod; as root, the step runs as nobody): without
    a builds folder, one line naming RISKSTREAM_BUILDS_DIR and nothing written; with one, the
    build is made there, found there by version, and scores as its heads say."""
    import onnx  # noqa: F401 (imported before the unprivileged step, which may be a fork)

    cache, builds = read_only_cache
    flipped = {h: (-w, -b) for h, (w, b) in base_heads(built_model / artefacts.ONNX_FILE).items()}
    bundle = adapted.make_bundle(built_model.name, flipped, IDENTITY, {}, {})
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))

    def step() -> tuple[str, str, str]:
        try:
            adapted.materialise(bundle, cache)
        except artefacts.NotWritableError as exc:
            refused = str(exc)
        else:
            refused = "materialised into the read-only cache"
        made = adapted.materialise(bundle, cache, builds_dir=builds)
        again = adapted.materialise(bundle, cache, builds_dir=builds)
        return refused, str(made), str(again)

    refused, made, again = as_unprivileged(step)
    version = bundle["model_version"]
    assert "\n" not in refused and "RISKSTREAM_BUILDS_DIR" in refused, refused
    assert f"cannot make adapted build {version}: {artefacts.models_root(cache)}" in refused
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before  # nothing written
    assert Path(made) == Path(again) == artefacts.models_root(builds) / version
    assert [p.name for p in artefacts.models_root(builds).iterdir()] == [version]  # no staging

    artefacts.use_builds_dir(builds)  # what the worker does with RISKSTREAM_BUILDS_DIR
    assert artefacts.artefact_dir(version) == Path(made)
    assert artefacts.artefact_dir(built_model.name, cache) == cache / "models" / built_model.name
    assert adapted.read_bundle(version)["heads"] == bundle["heads"]
    assert adapted.materialise(bundle, cache) == Path(made)  # found, not made again
    base, new = create_handler("onnx-cpu", built_model.name), create_handler("onnx-cpu", version)
    for got, want in zip(
        new.run_inference(TEXTS, new.load_model()),
        base.run_inference(TEXTS, base.load_model()),
        strict=True,
    ):
        assert got.model_id == version
        assert got.inference.scam_risk == pytest.approx(1 - want.inference.scam_risk, abs=2e-3)


def test_prune_removes_only_unnamed_adapted_builds(tmp_path: Path) -> None:
    for name in ("minilm-l6-adapted-aaaa", "minilm-l6-adapted-bbbb", "minilm-l6-student-cccc"):
        (artefacts.models_root(tmp_path) / name).mkdir(parents=True)
    (artefacts.models_root(tmp_path) / ".staging-minilm-l6-adapted-dddd-1234").mkdir()
    assert adapted.prune(tmp_path, {"minilm-l6-adapted-bbbb"}) == ["minilm-l6-adapted-aaaa"]
    assert sorted(p.name for p in artefacts.models_root(tmp_path).iterdir()) == [
        ".staging-minilm-l6-adapted-dddd-1234",
        "minilm-l6-adapted-bbbb",
        "minilm-l6-student-cccc",
    ]
    assert adapted.prune(tmp_path / "absent", set()) == []
