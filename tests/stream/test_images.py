"""The images and compose file, checked statically (no Docker engine here): dependencies in
their own layer, a non-root user, a health check on /readyz, every COPY source present and not
excluded by .dockerignore, every compose build target defined, workers scalable (no host port),
the GPU worker in its own profile, Kafka with a volume and a fixed cluster id."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import tempfile
from pathlib import Path

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


def test_the_cpu_worker_image_installs_only_what_serving_needs() -> None:
    """No torch and no extras in the worker image: its models are built in a stage of their
    own and copied in (the import rules keep serving free of them: tests/test_import_rules.py)."""
    cpu = stages()["cpu"]
    installs = [line for line in cpu.splitlines() if "pip install" in line]
    assert installs and not [line for line in installs if "torch" in line or ".[" in line]
    assert re.search(r"^COPY --from=artefacts\b.*/var/cache/riskstream", cpu, flags=re.M)
    assert "python -m models build" in stages()["artefacts"]


def test_dependencies_before_code_non_root_and_health_checked() -> None:
    for name in ("cpu", "gpu"):
        body = stages()[name]
        lines = body.splitlines()
        first_code_copy = next(i for i, line in enumerate(lines) if line.startswith("COPY stream"))
        dependency_install = next(
            i
            for i, line in enumerate(lines)
            if "pip install" in line and "uninstall" in "".join(lines[i : i + 3])
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
