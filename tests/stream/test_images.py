"""The images and compose file, checked statically (no Docker engine here): a digest-pinned
base, dependencies in their own layer from the lock files (tests/test_lock.py), a non-root user,
a health check on /readyz, every COPY source present and not excluded by .dockerignore, the
worker image holding only what serving reads (and that being enough to serve), every compose
build target defined, workers scalable (no host port), the GPU worker in its own profile, Kafka
with a volume and a fixed cluster id, broker-side lag and a Kafka UI on loopback, pinned image
tags."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from stream.core.sealing import load_key

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def stages() -> dict[str, str]:
    """Stage name -> its instructions."""
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", DOCKERFILE, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def ignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return any(
        fnmatch.fnmatch(path, p.rstrip("/")) or path.startswith(p.rstrip("/") + "/")
        for p in patterns
    )


def test_every_copy_source_exists_and_is_sent_to_the_build() -> None:
    for sources in re.findall(r"^COPY\s+(.+)\s+\S+\s*$", DOCKERFILE, flags=re.M):
        stage = dict(re.findall(r"--(\w+)=(\S+)", sources)).get("from")
        if stage:
            assert stage in stages(), f"COPY --from={stage}: no such stage"
            continue  # copied from another stage, not from the build context
        for source in sources.split():
            if source.startswith("--"):
                continue
            assert (ROOT / source).exists(), source
            assert not ignored(source), f"{source} is excluded by .dockerignore"


def test_the_base_image_is_pinned_by_digest() -> None:
    """A floating tag rebuilds on whatever the registry has that day."""
    froms = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, flags=re.M)
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", DOCKERFILE, flags=re.M))
    for image in froms:
        if image in stages():
            continue  # another stage of this file
        image = args.get(image.strip("${}"), image)
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), image


def test_the_cpu_worker_image_installs_only_what_serving_needs() -> None:
    """No torch and no extras in the worker image: the base install from its lock, then the
    project without dependencies; its models are built in a stage of their own and only what
    serving reads of them is copied in (the import rules keep serving free of the rest:
    tests/test_import_rules.py)."""
    cpu = stages()["cpu"]
    installs = [line for line in cpu.splitlines() if "pip install" in line]
    assert installs and not [line for line in installs if "torch" in line or ".[" in line]
    assert any("--require-hashes -r requirements/worker.lock" in line for line in installs)
    assert all("--require-hashes" in line or "--no-deps" in line for line in installs)
    # the serving subset of the model cache, not the cache (downloaded wheels, safetensors)
    assert re.search(
        r"^COPY --from=artefacts\b.* /opt/serving-cache /var/cache/riskstream$", cpu, flags=re.M
    )
    assert not re.search(r"^COPY --from=artefacts\b.* /var/cache/riskstream /", cpu, flags=re.M)
    artefacts = stages()["artefacts"].replace("\\\n", " ")
    assert re.search(
        r"python -m models build\s.*python -m models serving-cache /opt/serving-cache", artefacts
    )
    # of models/, the serving code and the fraud booster: not training, not the student weights
    copied = re.findall(r"^COPY (models\S*)", cpu, flags=re.M)
    assert sorted(copied) == ["models/__init__.py", "models/fraud_booster", "models/serving"]


def image_tree(stage: str, target: Path) -> Path:
    """The files ``stage`` and the stages it is built FROM copy from the build context (COPY
    without --from), laid out under ``target`` as under the images' WORKDIR."""
    parent = {
        name: image for image, name in re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", DOCKERFILE, re.M)
    }
    chain = []
    while stage in parent:
        chain.insert(0, stage)
        stage = parent[stage]
    for name in chain:
        for line in re.findall(r"^COPY\s+(.+)$", stages()[name], flags=re.M):
            *sources, destination = [word for word in line.split() if not word.startswith("--")]
            if "--from=" in line:
                continue
            for source in sources:
                into = target / destination
                into = into / Path(source).name if destination.endswith("/") else into
                into.parent.mkdir(parents=True, exist_ok=True)
                if (ROOT / source).is_dir():
                    shutil.copytree(
                        ROOT / source, into, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy2(ROOT / source, into)
    return target


def run_in(tree: Path, code: str, **env: str) -> dict:
    """``code`` in a fresh interpreter whose ``stream`` and ``models`` are those of ``tree``;
    it prints one JSON value last."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tree,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.usefixtures("built_model")
def test_what_the_worker_image_holds_is_enough_to_serve(tmp_path: Path) -> None:
    """The cpu image's files (its COPY lines) and ``python -m models serving-cache``'s subset
    of the model cache (no safetensors, no encoder folder, no wheels): the worker's own handler
    (onnx-cpu, English and Chinese routes) loads and scores from them, the fraud booster loads,
    and neither torch nor a file outside them is needed."""
    from models.serving import artefacts
    from models.serving.tokenizer import TOKENIZER_FILE

    assert TOKENIZER_FILE in artefacts.SERVED_FILES
    cache = tmp_path / "cache"
    committed = (artefacts.model_version(), artefacts.multilingual_version())
    copied = artefacts.copy_served(artefacts.riskstream_cache_dir(), cache, committed)
    assert {path.parent.name for path in copied} == set(committed)
    assert {path.name for path in copied} <= set(artefacts.SERVED_FILES)
    assert not [p for p in cache.rglob("*") if p.suffix in {".safetensors", ".whl"}]
    tree = image_tree("cpu", tmp_path / "app")
    assert (
        not (tree / "models" / "training").exists() and not (tree / "models" / "distilled").exists()
    )
    code = """
import json, sys
import models, stream
from models.serving.fraud import FraudModel
from stream.config import load_settings
from stream.worker.app import _default_handler
import stream.ops.cli
handler = _default_handler(load_settings())
model = handler.load_model()
texts = ["Great taste, arrived fresh.", "WIN a FREE prize text 8000", "质量很差退不了货"]
scores = [r.inference.as_dict() for r in handler.run_inference(texts, model)]
FraudModel.load()
print(json.dumps({"scores": scores, "torch": "torch" in sys.modules,
                  "from": [models.__file__, stream.__file__]}))
"""
    probe = run_in(tree, code, RISKSTREAM_CACHE_DIR=str(cache), RISKSTREAM_BACKEND="onnx-cpu")
    assert all(Path(path).is_relative_to(tree) for path in probe["from"]), probe["from"]
    assert len(probe["scores"]) == 3 and probe["torch"] is False
    assert probe["scores"][1]["scam_risk"] > probe["scores"][0]["scam_risk"]


def test_dependencies_before_code_non_root_and_health_checked() -> None:
    for name in ("cpu", "gpu"):
        body = stages()[name]
        lines = body.splitlines()
        first_code_copy = next(i for i, line in enumerate(lines) if line.startswith("COPY stream"))
        dependency_install = next(
            i
            for i, line in enumerate(lines)
            if "pip install --require-hashes -r requirements/worker.lock" in line
        )
        assert dependency_install < first_code_copy, name
        assert re.search(r"^USER\s+riskstream", body, flags=re.M), name
        assert "HEALTHCHECK" in body and "/readyz" in body, name


def test_compose_services_build_defined_targets_and_scale() -> None:
    services = COMPOSE["services"]
    for name, service in services.items():
        target = (service.get("build") or {}).get("target")
        if target:
            assert target in stages(), (name, target)
    for name in ("worker", "worker-gpu"):
        assert "ports" not in services[name], f"{name} must publish no host port to scale"
        assert services[name]["environment"]["RISKSTREAM_WEB_BIND"] == "0.0.0.0"
    # the GPU worker replaces the CPU ones: separate profiles, never both in one group
    assert services["worker"]["profiles"] == ["cpu"] and services["worker-gpu"]["profiles"] == [
        "gpu"
    ]
    assert any("engines" in v for v in services["worker-gpu"]["volumes"])
    assert services["simulator"]["build"]["target"] == "simulator"


def test_every_worker_reads_the_one_pseudonymisation_key_the_keys_service_makes() -> None:
    """Workers with different keys would give one member two pseudonyms (split state)."""
    services = COMPOSE["services"]
    keys = services["keys"]
    path = keys["command"][-1]
    volume = next(v for v in keys["volumes"] if v.split(":")[1] == str(Path(path).parent))
    assert set(keys["profiles"]) == {"cpu", "gpu"} and keys["user"] == "riskstream"
    for name in ("worker", "worker-gpu"):
        service = services[name]
        assert service["environment"]["RISKSTREAM_PSEUDONYM_KEY_FILE"] == path
        assert f"{volume.split(':')[0]}:{Path(path).parent}:ro" in service["volumes"]
        assert service["depends_on"]["keys"] == {"condition": "service_completed_successfully"}
    assert "/var/lib/riskstream/keys" in stages()["base"] and "chown riskstream" in stages()["base"]
    # the one-liner makes a key the worker accepts, and keeps an existing one
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "pseudonym.key"
        make = [sys.executable, *keys["command"][1:-1], str(target)]
        subprocess.run(make, check=True)
        first = target.read_bytes()
        subprocess.run(make, check=True)
        assert target.read_bytes() == first
        assert target.stat().st_mode & 0o777 == 0o600
        load_key(target)


def test_kafka_keeps_its_data_and_checks_health_cheaply() -> None:
    broker = COMPOSE["services"]["broker"]
    env = broker["environment"]
    assert env["CLUSTER_ID"] and str(env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"]) == "0"
    assert any(v.startswith("kafka-data:") for v in broker["volumes"])
    assert "kafka-topics.sh" not in " ".join(broker["healthcheck"]["test"])
    for port in (s.get("ports", []) for s in COMPOSE["services"].values()):
        for mapping in port:
            assert mapping.startswith("127.0.0.1:"), mapping


def test_broker_side_lag_and_a_kafka_ui_survive_a_dead_worker() -> None:
    """Lag from the broker (an exporter Prometheus scrapes) and a read-only Kafka UI, neither
    depending on a worker; the UI on the host's loopback only; every image at a pinned tag."""
    from stream.ops.monitoring import PROMETHEUS_CONFIG_PATH

    services = COMPOSE["services"]
    internal = services["broker"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(",")[0]
    broker_address = internal.split("://")[1]  # broker:29092, the containers' listener
    exporter = services["kafka-exporter"]
    assert f"--kafka.server={broker_address}" in exporter["command"]
    assert "ports" not in exporter and "worker" not in exporter.get("depends_on", {})
    config = yaml.safe_load(PROMETHEUS_CONFIG_PATH.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "kafka-exporter"]
    assert job["static_configs"] == [{"targets": ["kafka-exporter:9308"]}]
    ui = services["kafka-ui"]
    assert ui["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == broker_address
    assert ui["environment"]["KAFKA_CLUSTERS_0_READONLY"] == "true"
    assert ui["ports"] and all(p.startswith("127.0.0.1:") for p in ui["ports"])
    for name, service in services.items():
        if "image" in service:
            _, _, tag = service["image"].partition(":")
            assert tag and tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), name


def test_the_simulator_image_holds_what_the_demo_corpus_reads(tmp_path: Path) -> None:
    """The simulator bakes the corpus in at build time: its files (the cpu image's plus its
    own COPY lines) must be enough for DemoCorpus.load()."""
    tree = image_tree("simulator", tmp_path / "app")
    code = """
import json
import models
from stream.ops.simulate import DemoCorpus
DemoCorpus.load()
print(json.dumps(models.__file__))
"""
    assert Path(run_in(tree, code)).is_relative_to(tree)
