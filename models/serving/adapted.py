"""Adapted builds: a served build's encoder with heads refitted on an operator's own labels.

``riskstream adapt`` (:mod:`models.training.adapt`) fits two new ``Linear(384, 1)`` heads and an
isotonic map per head on top of an installed build's frozen encoder. What it produces is a
*bundle*: a small JSON document (about 20 KB) with the heads, the calibration, the alert
thresholds it chose per language and its report. The bundle is the build: its version is a
hash of everything that changes a score, the model registry carries it (``model-registry``),
and any worker that lacks the build makes it from the bundle and the base build it already
serves (:func:`materialise`): the base's ONNX graphs with the four head tensors replaced
(fp32 and INT8), no torch, no training code. TensorRT builds its engine from that ONNX file.
A worker whose model cache is read-only (an image's, under Kubernetes' ``readOnlyRootFilesystem``)
makes it in ``RISKSTREAM_BUILDS_DIR`` instead (:func:`artefacts.use_builds_dir`).

Served scores of an adapted build are the heads' probabilities mapped through the isotonic
calibration (:class:`CalibratedHandler`), so a threshold means the precision the adapt report
measured on the operator's own held-out labels.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from models.serving import artefacts
from models.serving.base import HEAD_NAMES, ModelHandler, PredictionResult, TextScores
from models.serving.tokenizer import TOKENIZER_FILE

ADAPTED_FILE = artefacts.ADAPTED_FILE
BUNDLE_FORMAT = 1
#: Which route of the language router a base build serves (``models.serving.router``).
ROUTES = ("english", "multilingual")
#: The width of the pooled, L2-normalised sentence vector both students' heads read.
HIDDEN = 384


class AdaptedBuildError(ValueError):
    """A bundle that does not fit its base build, or is malformed."""


def family_of(base_version: str) -> str:
    """``minilm-l6-student-71847b5b1f`` -> ``minilm-l6``; adapted builds keep the family."""
    for family in (artefacts.STUDENT_FAMILY, artefacts.MULTILINGUAL_FAMILY, artefacts.MODEL_FAMILY):
        if base_version.startswith(family):
            return family.rsplit("-", 1)[0]
    if "-adapted-" in base_version:
        return base_version.split("-adapted-")[0]
    return base_version.rsplit("-", 1)[0]


def route_of(base_version: str) -> str:
    """The router route a base build serves: the multilingual student reads Chinese."""
    return "multilingual" if base_version.startswith(artefacts.MULTILINGUAL_FAMILY) else "english"


def _scoring_part(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """What changes a score or an alert: the version is its hash (the report is not)."""
    return {
        "format": bundle["format"],
        "base_version": bundle["base_version"],
        "heads": bundle["heads"],
        "calibration": bundle["calibration"],
        "thresholds": bundle["thresholds"],
    }


def bundle_version(bundle: Mapping[str, Any]) -> str:
    canonical = json.dumps(_scoring_part(bundle), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:10]
    return f"{family_of(bundle['base_version'])}-adapted-{digest}"


def make_bundle(
    base_version: str,
    heads: Mapping[str, tuple[Sequence[float], float]],
    calibration: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    thresholds: Mapping[str, float | None],
    report: Mapping[str, Any],
) -> dict[str, Any]:
    """A bundle with its version. ``heads``: head name -> (weight, bias); ``calibration``:
    head name -> isotonic breakpoints (x, y), increasing x; ``thresholds``: alert type ->
    threshold on the calibrated score (None: the worker's setting)."""
    bundle: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "base_version": base_version,
        "route": route_of(base_version),
        "heads": {
            name: {"weight": [round(float(w), 8) for w in weight], "bias": round(float(bias), 8)}
            for name, (weight, bias) in heads.items()
        },
        "calibration": {
            name: {"x": [round(float(v), 8) for v in x], "y": [round(float(v), 8) for v in y]}
            for name, (x, y) in calibration.items()
        },
        "thresholds": {name: value for name, value in sorted(thresholds.items())},
        "report": dict(report),
    }
    check_bundle(bundle)
    bundle["model_version"] = bundle_version(bundle)
    return bundle


def check_bundle(bundle: Mapping[str, Any]) -> None:
    """Raise :class:`AdaptedBuildError` naming the first thing wrong with ``bundle``."""
    if bundle.get("format") != BUNDLE_FORMAT:
        raise AdaptedBuildError(f"bundle format {bundle.get('format')!r}, expected {BUNDLE_FORMAT}")
    if set(bundle.get("heads", {})) != set(HEAD_NAMES):
        raise AdaptedBuildError(f"bundle heads {sorted(bundle.get('heads', {}))} != {HEAD_NAMES}")
    for name, head in bundle["heads"].items():
        if len(head["weight"]) != HIDDEN or not np.isfinite(head["weight"]).all():
            raise AdaptedBuildError(f"head {name}: weight is not {HIDDEN} finite numbers")
    for name, curve in bundle.get("calibration", {}).items():
        x, y = np.asarray(curve["x"], float), np.asarray(curve["y"], float)
        if name not in HEAD_NAMES or len(x) != len(y) or len(x) < 2 or np.any(np.diff(x) < 0):
            raise AdaptedBuildError(f"calibration of {name}: need >= 2 increasing breakpoints")
        if np.any(np.diff(y) < 0) or y.min() < 0 or y.max() > 1:
            raise AdaptedBuildError(f"calibration of {name}: not a monotone map into [0, 1]")
    if "model_version" in bundle and bundle["model_version"] != bundle_version(bundle):
        raise AdaptedBuildError(
            f"bundle names {bundle['model_version']} but its contents hash to "
            f"{bundle_version(bundle)}"
        )


def is_adapted(version: str) -> bool:
    return "-adapted-" in version


def read_bundle(version: str, cache_dir: Path | None = None) -> dict[str, Any]:
    """The bundle of an installed adapted build; ``ModelNotBuiltError`` when it is not here."""
    path = artefacts.artefact_dir(version, cache_dir)
    if not (path / ADAPTED_FILE).is_file() or not artefacts.is_built(path):
        raise artefacts.ModelNotBuiltError(
            f"no adapted build {version} in {path.parent} (`riskstream adapt` makes one)"
        )
    return json.loads((path / ADAPTED_FILE).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- ONNX surgery

#: Initializer names the export gives the heads (``models.training.export``): fp32 graph, and
#: the INT8 graph's per-channel quantised weights (ONNX Runtime's dynamic quantisation).
_FP32_WEIGHT, _BIAS = "heads.{}.weight", "heads.{}.bias"
_INT8_WEIGHT = "heads.{}.weight_Transposed_quantized"
_INT8_SCALE, _INT8_ZERO = (
    "heads.{}.weight_Transposed_scale",
    "heads.{}.weight_Transposed_zero_point",
)


def quantize_symmetric(weight: np.ndarray) -> tuple[np.ndarray, float]:
    """Symmetric INT8 for one output channel, as ONNX Runtime quantises weights:
    ``scale = max|w| / 127``, zero point 0."""
    peak = float(np.abs(weight).max())
    scale = peak / 127.0 if peak > 0 else 1.0
    return np.clip(np.round(weight / scale), -127, 127).astype(np.int8), scale


def replace_heads_in_onnx(source: Path, target: Path, bundle: Mapping[str, Any]) -> None:
    """Copy ``source`` (the base build's fp32 or INT8 graph) with the bundle's heads."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    by_name = {init.name: init for init in model.graph.initializer}
    quantised = _INT8_WEIGHT.format(HEAD_NAMES[0]) in by_name

    def put(name: str, value: np.ndarray) -> None:
        if name not in by_name:
            raise AdaptedBuildError(f"{source} has no initializer {name}: not a head this knows")
        old = by_name[name]
        new = numpy_helper.from_array(value.astype(numpy_helper.to_array(old).dtype), name)
        if tuple(new.dims) != tuple(old.dims):
            raise AdaptedBuildError(f"{name}: shape {tuple(new.dims)} != {tuple(old.dims)}")
        old.CopyFrom(new)

    for head in HEAD_NAMES:
        weight = np.asarray(bundle["heads"][head]["weight"], dtype=np.float32)
        put(_BIAS.format(head), np.array([bundle["heads"][head]["bias"]], dtype=np.float32))
        if quantised:
            q, scale = quantize_symmetric(weight)
            put(_INT8_WEIGHT.format(head), q.reshape(-1, 1))
            put(_INT8_SCALE.format(head), np.array([scale], dtype=np.float32))
            put(_INT8_ZERO.format(head), np.zeros(1, dtype=np.int8))
        else:
            put(_FP32_WEIGHT.format(head), weight.reshape(1, -1))
    onnx.save(model, str(target))


def heads_of_build(path: Path) -> dict[str, tuple[np.ndarray, float]]:
    """head name -> (weight, bias) as a build's fp32 ONNX graph holds them (any family)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(artefacts.onnx_path(path))).graph
    found = {
        i.name: numpy_helper.to_array(i) for i in graph.initializer if i.name.startswith("heads.")
    }
    return {
        head: (
            found[_FP32_WEIGHT.format(head)].reshape(-1).astype(np.float32),
            float(found[_BIAS.format(head)].reshape(-1)[0]),
        )
        for head in HEAD_NAMES
    }


def materialise(
    bundle: Mapping[str, Any], cache_dir: Path | None = None, *, builds_dir: Path | None = None
) -> Path:
    """The build folder of ``bundle``, made from its base build if missing (idempotent;
    concurrent makers race safely through :func:`artefacts.publish`). The base is read from the
    model cache (``cache_dir``, default ``RISKSTREAM_CACHE_DIR``); the build is written into
    ``builds_dir`` (default: the worker's ``RISKSTREAM_BUILDS_DIR``,
    :func:`artefacts.use_builds_dir`), else into the model cache. Where that is not writable
    (an image's cache under a read-only root filesystem): :class:`artefacts.NotWritableError`,
    one line naming the setting."""
    check_bundle(bundle)
    version = bundle.get("model_version") or bundle_version(bundle)
    builds_dir = builds_dir or artefacts.builds_dir()
    for found in (
        artefacts.models_root(builds_dir) / version if builds_dir else None,
        artefacts.artefact_dir(version, cache_dir),
    ):
        if found is not None and artefacts.is_built(found) and (found / ADAPTED_FILE).is_file():
            return found
    base = artefacts.artefact_dir(bundle["base_version"], cache_dir)
    if not artefacts.is_built(base) or not (base / artefacts.ONNX_FILE).is_file():
        raise artefacts.ModelNotBuiltError(
            f"adapted build {version} needs its base {bundle['base_version']} installed "
            f"(`{artefacts.BUILD_COMMAND}`)"
        )
    final = artefacts.models_root(builds_dir or cache_dir) / version
    staging = final.with_name(f".staging-{final.name}-{uuid.uuid4().hex[:8]}")
    try:
        staging.mkdir(parents=True)
    except OSError as exc:  # EACCES, EPERM; EROFS on a read-only root filesystem
        raise artefacts.NotWritableError(
            f"cannot make adapted build {version}: {final.parent} is not writable "
            f"({exc.strerror}); set RISKSTREAM_BUILDS_DIR to a writable folder"
        ) from None
    try:
        for name in (artefacts.ONNX_FILE, artefacts.INT8_FILE):
            if (base / name).is_file():
                replace_heads_in_onnx(base / name, staging / name, bundle)
        tokenizer = base / TOKENIZER_FILE
        if not tokenizer.is_file():
            tokenizer = base / artefacts.ENCODER_DIR / TOKENIZER_FILE
        shutil.copyfile(tokenizer, staging / TOKENIZER_FILE)
        body = {**bundle, "model_version": version}
        (staging / ADAPTED_FILE).write_text(json.dumps(body, sort_keys=True), encoding="utf-8")
        base_card = artefacts.read_card(base)
        artefacts.write_card(
            staging,
            {
                "model_version": version,
                "family": f"{family_of(bundle['base_version'])}-adapted",
                "base_version": bundle["base_version"],
                "route": bundle["route"],
                "head_names": list(HEAD_NAMES),
                "languages": base_card.get("languages", ["en"]),
                "thresholds": bundle["thresholds"],
                "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        artefacts.publish(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def prune(builds_dir: Path, keep: set[str]) -> list[str]:
    """Remove the adapted builds in ``builds_dir`` (a worker's ``RISKSTREAM_BUILDS_DIR``, never
    the model cache) that ``keep`` does not name; -> the versions removed. A removed build is
    made again from its registry bundle if it is named again (about 1.5 s), so a long-lived
    worker's folder holds what it serves and shadows, not every build it ever served."""
    root = artefacts.models_root(builds_dir)
    removed = []
    for build in sorted(root.iterdir()) if root.is_dir() else []:
        if build.name.startswith(".") or not is_adapted(build.name) or build.name in keep:
            continue  # a staging or retired folder (its maker removes it), or wanted
        shutil.rmtree(build, ignore_errors=True)
        removed.append(build.name)
    return removed


# ----------------------------------------------------------------------------- calibration


class Calibration:
    """Isotonic maps per head as piecewise-linear interpolation between breakpoints."""

    def __init__(self, curves: Mapping[str, Mapping[str, Sequence[float]]]) -> None:
        self.curves = {
            name: (np.asarray(c["x"], dtype=np.float64), np.asarray(c["y"], dtype=np.float64))
            for name, c in curves.items()
        }

    def __bool__(self) -> bool:
        return bool(self.curves)

    def apply(self, head: str, p: float) -> float:
        curve = self.curves.get(head)
        return p if curve is None else float(np.interp(p, *curve))

    def scores(self, raw: TextScores) -> TextScores:
        return TextScores(
            sentiment_negative=self.apply(HEAD_NAMES[0], raw.sentiment_negative),
            scam_risk=self.apply(HEAD_NAMES[1], raw.scam_risk),
        )


def calibration_of(path: Path) -> Calibration | None:
    """The calibration of the build at ``path`` (an adapted build's bundle), else None."""
    file = path / ADAPTED_FILE
    if not file.is_file():
        return None
    return Calibration(json.loads(file.read_text(encoding="utf-8")).get("calibration", {}))


class CalibratedHandler(ModelHandler[Any]):
    """A backend's heads, then the build's isotonic maps: what an adapted build serves."""

    def __init__(self, inner: ModelHandler[Any], calibration: Calibration) -> None:
        self.inner = inner
        self.calibration = calibration

    @property
    def model_version(self) -> str:
        return self.inner.model_version

    @property
    def precision(self) -> str | None:
        return getattr(self.inner, "precision", None)

    @property  # type: ignore[override]
    def backend(self) -> str:
        return self.inner.backend

    @property
    def max_batch_tokens(self) -> int | None:
        return getattr(self.inner, "max_batch_tokens", None)

    def load_model(self) -> Any:
        return self.inner.load_model()

    def run_inference(
        self, batch: Sequence[str], model: Any, inference_args: Mapping[str, Any] | None = None
    ) -> list[PredictionResult]:
        return [
            PredictionResult(r.example, self.calibration.scores(r.inference), r.model_id)
            for r in self.inner.run_inference(batch, model, inference_args)
        ]

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return self.inner.batch_elements_kwargs()

    def get_metrics_namespace(self) -> str:
        return self.inner.get_metrics_namespace()
