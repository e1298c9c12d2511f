"""The Kubernetes manifests (``stream/ops/kubernetes/``): both overlays rendered, checked offline.

Rendered by ``kubectl kustomize`` (kubectl's built-in kustomize: CI's machine has kubectl and
no helm, which is why the manifests are a kustomize base and overlays, not a chart). Then:

- **Core objects** (StatefulSet, Service, PodDisruptionBudget, ...) are validated by
  ``kubernetes-validate`` against the Kubernetes OpenAPI schemas it bundles, for
  each of ``K8S_VERSIONS``, strict (an unknown field is an error), offline.
- **Custom resources** (KEDA's ScaledObject and TriggerAuthentication, the Prometheus
  Operator's ServiceMonitor): no registry package ships their schemas as data, so their CRDs
  are vendored verbatim from the upstream releases (``stream/ops/kubernetes/crds/``, the tag and
  commit in each file's header) and each object is validated against its CRD's
  ``openAPIV3Schema``, turned into a JSON Schema here the way the API server reads it: unknown
  fields rejected (its strict field validation) unless ``x-kubernetes-preserve-unknown-fields``,
  ``x-kubernetes-int-or-string`` and ``nullable`` honoured. Not checked: the CRDs' CEL rules
  (``x-kubernetes-validations``: ScaledObject's min <= max is asserted below instead), string
  formats, and ``metadata`` beyond its being an object.
- **What the worker needs**, structurally, with names read from the code, so a renamed setting
  or topic fails here: every variable is one that ``stream/config.py`` or ``stream/security.py``
  reads, and the settings load; the state volume per replica; the probes on the paths the
  worker serves; one pseudonymisation key Secret for all replicas; static membership; KEDA on
  the group's lag of the input topics, bounded by the partitions; non-root; the Service that
  Prometheus's job and alert rules name.
"""

from __future__ import annotations

import base64
import copy
import datetime
import os
import re
import shutil
import subprocess
import typing
from functools import cache
from pathlib import Path, PurePosixPath

import jsonschema
import kubernetes_validate
import pytest
import yaml

from stream import config, security, topics
from stream.config import Settings
from stream.ops.admin import bootstrap_servers
from stream.security import KafkaSecurity

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "stream" / "ops" / "kubernetes"
OVERLAYS = ("dev", "production")
#: The Kubernetes versions whose schemas the core objects are validated against: the oldest
#: minor the manifests are for (StatefulSet's PVC retention policy is on by default from 1.27)
#: and kubectl's here and in CI.
K8S_VERSIONS = ("1.30", "1.32")
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl (with its built-in kustomize) is not installed"
)

# --------------------------------------------------------------------------- rendering


@cache
def _render(overlay: str) -> tuple[dict, ...]:
    out = subprocess.run(
        [KUBECTL, "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, f"kubectl kustomize {overlay}: {out.stderr.strip()}"
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


class Rendered:
    """One overlay's objects, with the worker pod's settings resolved."""

    def __init__(self, overlay: str) -> None:
        self.overlay = overlay
        self.docs = copy.deepcopy(list(_render(overlay)))

    def all(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str) -> dict:
        found = self.all(kind)
        assert len(found) == 1, f"{self.overlay}: {len(found)} {kind} objects"
        return found[0]

    @property
    def statefulset(self) -> dict:
        return self.one("StatefulSet")

    @property
    def pod(self) -> dict:
        return self.statefulset["spec"]["template"]["spec"]

    @property
    def container(self) -> dict:
        (worker,) = [c for c in self.pod["containers"] if c["name"] == "worker"]
        return worker

    def env(self) -> dict[str, str | dict]:
        """Variable -> literal value, or the ``valueFrom`` source; ``env`` over ``envFrom``."""
        values: dict[str, str | dict] = {}
        for source in self.container.get("envFrom", []):
            name = source["configMapRef"]["name"]
            (cm,) = [c for c in self.all("ConfigMap") if c["metadata"]["name"] == name]
            values.update(cm.get("data", {}))
        for item in self.container.get("env", []):
            values[item["name"]] = item["value"] if "value" in item else item["valueFrom"]
        return values

    def literal(self, name: str, default: object = None) -> str | None:
        value = self.env().get(name)
        assert not isinstance(value, dict), f"{name} should be a literal value"
        return default if value is None else value

    def setting(self, field: str) -> typing.Any:
        """A ``Settings`` field's value in the pod (its default when unset)."""
        info = Settings.model_fields[field]
        value = self.literal(config.env_name(field))
        if value is None:
            return info.get_default(call_default_factory=True)
        return value

    def volume_behind(self, path: str) -> tuple[dict, dict]:
        """The volume mount that holds ``path`` (the longest mount path above it), its volume."""
        mounts = [
            m
            for m in self.container["volumeMounts"]
            if PurePosixPath(path).is_relative_to(m["mountPath"])
        ]
        assert mounts, f"{path} is on no volume"
        mount = max(mounts, key=lambda m: len(m["mountPath"]))
        volumes = {v["name"]: v for v in self.pod.get("volumes", [])}
        return mount, volumes.get(mount["name"], {})


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> Rendered:
    return Rendered(request.param)


# --------------------------------------------------------------------------- schemas


def _crd_json_schema(node: dict) -> dict:
    """A CRD's structural OpenAPI v3 schema -> JSON Schema, read as the API server does."""
    out: dict = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _crd_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "not") or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = _crd_json_schema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [_crd_json_schema(sub) for sub in value]
        elif key.startswith("x-kubernetes-") or key in ("description", "nullable", "format"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if out.get("type") == "object" and "properties" in out and not preserve:
        out.setdefault("additionalProperties", False)
    return out


@cache
def _crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> JSON Schema, for every served version of the vendored CRDs."""
    schemas = {}
    for path in sorted((KUBERNETES / "crds").glob("*.yaml")):
        (crd,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
        spec = crd["spec"]
        for version in spec["versions"]:
            if version.get("served"):
                api_version = f"{spec['group']}/{version['name']}"
                schema = _crd_json_schema(version["schema"]["openAPIV3Schema"])
                schemas[(api_version, spec["names"]["kind"])] = schema
    return schemas


def _crd_errors(doc: dict) -> list[str]:
    schema = _crd_schemas()[(doc["apiVersion"], doc["kind"])]
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def _core_error(doc: dict, version: str = K8S_VERSIONS[0]) -> str | None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{'.'.join(map(str, exc.path))}: {exc.message}"
    return None


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_objects_validate_against_the_kubernetes_schemas(rendered, version):
    core = [d for d in rendered.docs if (d["apiVersion"], d["kind"]) not in _crd_schemas()]
    assert {"StatefulSet", "Service", "PodDisruptionBudget", "ConfigMap"} <= {
        d["kind"] for d in core
    }
    problems = {}
    for doc in core:
        try:
            error = _core_error(doc, version)
        except kubernetes_validate.SchemaNotFoundError as exc:
            error = f"no schema, neither core nor a vendored CRD: {exc.message}"
        if error:
            problems[f"{doc['kind']}/{doc['metadata']['name']}"] = error
    assert not problems, f"{rendered.overlay}, Kubernetes {version}: {problems}"


def test_custom_resources_validate_against_their_crds(rendered):
    custom = [d for d in rendered.docs if (d["apiVersion"], d["kind"]) in _crd_schemas()]
    assert {"ScaledObject", "ServiceMonitor"} <= {d["kind"] for d in custom}
    problems = {f"{d['kind']}/{d['metadata']['name']}": _crd_errors(d) for d in custom}
    assert not any(problems.values()), f"{rendered.overlay}: {problems}"


def test_the_validators_reject_broken_objects():
    """The checks above can fail: a typo, a wrong type, a field the CRD does not have."""
    docs = Rendered("production")
    statefulset = docs.statefulset
    statefulset["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert "readinesProbe" in (_core_error(statefulset) or "")
    pdb = docs.one("PodDisruptionBudget")
    pdb["spec"]["maxUnavailable"] = [1]
    assert _core_error(pdb)

    scaled = docs.one("ScaledObject")
    scaled["spec"]["maxReplicaCount"] = "twelve"
    scaled["spec"]["triggers"][0]["metdata"] = {}
    errors = " ".join(_crd_errors(scaled))
    assert "maxReplicaCount" in errors and "metdata" in errors
    monitor = docs.one("ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = 15  # a duration string
    assert _crd_errors(monitor)
    auth = docs.one("TriggerAuthentication")
    del auth["spec"]["secretTargetRef"][0]["key"]  # required
    assert _crd_errors(auth)


# --------------------------------------------------------------------------- settings


def _read_variables() -> set[str]:
    """Every variable the product reads: the settings, Kafka security, the model cache's."""
    names = {config.env_name(field) for field in Settings.model_fields}
    return names | set(security.env_names()) | set(config.OTHER_VARIABLES)


def test_every_variable_is_one_the_worker_reads(rendered):
    unknown = set(rendered.env()) - _read_variables()
    assert not unknown, f"{rendered.overlay}: not read by stream/config.py or security.py"


def _names_a_path(annotation: typing.Any) -> bool:
    if annotation is Path:
        return True
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        return _names_a_path(args[0])
    return any(_names_a_path(arg) for arg in args)


#: Settings that name a folder the worker writes (on a volume), not a file it reads.
_FOLDER_FIELDS = ("data_dir", "builds_dir")


def _file_fields() -> dict[str, str]:
    """Variable -> field of every setting that names a file (a secret, mounted read-only)."""
    fields = {}
    for cls, name_of in ((Settings, config.env_name), (KafkaSecurity, security.env)):
        for field, info in cls.model_fields.items():
            if field not in _FOLDER_FIELDS and _names_a_path(info.annotation):
                fields[name_of(field)] = field
    return fields


def _test_certificate() -> bytes:
    """A self-signed CA certificate (PEM), for a CA file that must parse."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "riskstream test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_the_worker_accepts_the_settings(rendered, tmp_path, monkeypatch):
    """The pod's environment loads as the worker loads it, each file a Secret's item (a real
    key, CA or password put in its place here)."""
    environ: dict[str, str] = {}
    for name, value in rendered.env().items():
        if isinstance(value, str):
            environ[name] = value
        elif "fieldRef" in value:
            assert value["fieldRef"]["fieldPath"] == "metadata.name", name
            environ[name] = f"{rendered.statefulset['metadata']['name']}-0"
        else:
            ref = value["secretKeyRef"]
            assert not ref.get("optional"), f"{name}: a pod without the Secret must not start"
            environ[name] = "riskstream"
    files = _file_fields()
    for name, path in list(environ.items()):
        if name not in files:
            continue
        mount, volume = rendered.volume_behind(path)
        assert "secret" in volume and mount.get("readOnly"), f"{name}={path}: not from a Secret"
        item = str(PurePosixPath(path).relative_to(mount["mountPath"]))
        items = volume["secret"].get("items")
        assert items is None or item in {i["path"] for i in items}, f"{name}: no item {item}"
        local = tmp_path / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        if files[name] in ("ssl_cafile", "ssl_certfile"):
            local.write_bytes(_test_certificate())
        elif files[name].endswith("key_file"):
            local.write_bytes(base64.b64encode(os.urandom(32)))
        else:
            local.write_text("secret\n")
        environ[name] = str(local)
    for field in _FOLDER_FIELDS:  # a folder the worker writes: here, one it can write
        name = config.env_name(field)
        if name in environ:
            environ[name] = str(tmp_path / environ[name].lstrip("/"))
    for name in list(os.environ):
        if name.startswith("RISKSTREAM_") or name == "KAFKA_BROKER":
            monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    settings = Settings()
    kafka = KafkaSecurity.from_env()
    assert settings.store.startswith("rocksdb://")
    assert settings.web_bind == "0.0.0.0"  # probes and Prometheus come from outside the pod
    assert kafka.security_protocol == environ.get("RISKSTREAM_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")


# --------------------------------------------------------------------------- the worker's needs


def test_table_state_has_a_volume_per_replica(rendered):
    assert rendered.setting("store").startswith("rocksdb://")
    data_dir = str(rendered.setting("data_dir"))
    mount, volume = rendered.volume_behind(data_dir)
    assert not volume, "the data dir must be on a volumeClaimTemplate, not a pod volume"
    (claim,) = [
        t
        for t in rendered.statefulset["spec"]["volumeClaimTemplates"]
        if t["metadata"]["name"] == mount["name"]
    ]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    assert not mount.get("readOnly")


def test_probes_ask_the_paths_the_worker_serves(rendered):
    app_source = (ROOT / "stream" / "worker" / "app.py").read_text()
    served = set(re.findall(r'@app\.page\("(/[a-z]+)"\)', app_source))
    assert {"/healthz", "/readyz", "/metrics"} <= served
    container = rendered.container
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    web_port = int(rendered.setting("web_port"))
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz"}
    for probe, path in {**expected, "readinessProbe": "/readyz"}.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports.get(get["port"], get["port"]) == web_port, probe
    assert rendered.setting("web_bind") == "0.0.0.0"


def test_one_pseudonymisation_key_for_every_replica(rendered):
    """From one Secret in the pod template, so every replica reads the same key: never the
    per-pod default file (each pod would make its own, and pseudonyms would differ)."""
    path = rendered.literal("RISKSTREAM_PSEUDONYM_KEY_FILE")
    assert path and path != str(config.default_pseudonym_key_file())
    _, volume = rendered.volume_behind(path)
    assert volume.get("secret", {}).get("secretName"), "the key must come from a Secret"
    assert not volume["secret"].get("optional")
    dead_letter_key = rendered.literal("RISKSTREAM_DEAD_LETTER_KEY_FILE")
    if dead_letter_key:
        _, other = rendered.volume_behind(dead_letter_key)
        assert other["secret"]["secretName"] != volume["secret"]["secretName"]


def test_static_membership_from_the_pod_name(rendered):
    (item,) = [e for e in rendered.container["env"] if e["name"] == "RISKSTREAM_GROUP_INSTANCE_ID"]
    assert item["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # a restarted pod must be back within the session timeout to keep its partitions
    assert float(rendered.setting("session_timeout_s")) >= 60
    assert rendered.statefulset["spec"]["updateStrategy"]["type"] == "RollingUpdate"


def test_runs_as_the_images_non_root_user(rendered):
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = int(re.search(r"useradd .*--uid (\d+) riskstream", dockerfile).group(1))
    pod, container = rendered.pod, rendered.container
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["automountServiceAccountToken"] is False
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    _, tmp = rendered.volume_behind("/tmp")
    assert "emptyDir" in tmp, "/tmp must be writable with a read-only root"
    assert container["args"] == ["worker"]


#: An adapted build on disk (ONNX fp32 + INT8, tokenizer, bundle): 158 MB over the English
#: student, about 175 MB over the multilingual one (``du`` of ``riskstream adapt``'s builds).
ADAPTED_BUILD_BYTES = 200 * 2**20


def test_a_promoted_adapted_build_has_a_writable_folder(rendered):
    """The root filesystem, and so the image's model cache, is read-only: a promotion's build
    is made in RISKSTREAM_BUILDS_DIR (``models.serving.adapted.materialise``), a pod volume
    with room for both routes' champion and challenger and the one being made, inside the
    container's ephemeral-storage limit (an emptyDir counts against it)."""
    assert rendered.container["securityContext"]["readOnlyRootFilesystem"] is True
    builds = rendered.setting("builds_dir")
    assert builds, "RISKSTREAM_BUILDS_DIR unset: a promotion would write into the read-only image"
    dockerfile = (ROOT / "Dockerfile").read_text()
    cache = re.search(r"RISKSTREAM_CACHE_DIR=(\S+)", dockerfile).group(1)
    assert not PurePosixPath(builds).is_relative_to(cache)
    mount, volume = rendered.volume_behind(str(builds))
    assert mount["mountPath"] != "/tmp" and not mount.get("readOnly")
    if volume:  # a pod volume: an emptyDir on disk, large enough
        assert "emptyDir" in volume and volume["emptyDir"].get("medium") != "Memory"
        assert _bytes(volume["emptyDir"]["sizeLimit"]) >= 5 * ADAPTED_BUILD_BYTES
    on_disk = sum(
        _bytes(v["emptyDir"]["sizeLimit"])
        for v in rendered.pod["volumes"]
        if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory"
    )
    limit = rendered.container["resources"]["limits"]["ephemeral-storage"]
    assert _bytes(limit) > on_disk, "the emptyDirs can outgrow the ephemeral-storage limit"


def _bytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", quantity).groups()
    return float(number) * units.get(unit, 1)


def test_resources(rendered):
    resources = rendered.container["resources"]
    assert resources["requests"]["cpu"]
    assert _bytes(resources["limits"]["memory"]) >= _bytes(resources["requests"]["memory"])


def test_disruption_budget_covers_the_workers(rendered):
    pdb = rendered.one("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == rendered.statefulset["spec"]["selector"]


def test_service_and_monitor_give_the_job_the_alerts_select(rendered):
    service, statefulset = rendered.one("Service"), rendered.statefulset
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["name"] == port["targetPort"] == "metrics"
    # Prometheus Operator names the job after the Service; the rules and dashboard use it
    monitoring = ROOT / "stream" / "ops" / "monitoring"
    prometheus = yaml.safe_load((monitoring / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    job = service["metadata"]["name"]
    assert jobs[job]["metrics_path"] == "/metrics"
    assert f'job="{job}"' in (monitoring / "alerts.yml").read_text()
    monitor = rendered.one("ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")


#: The trigger metadata KEDA's kafka scaler reads (v2.20.2, pkg/scalers/kafka_scaler.go, the
#: ``order=triggerMetadata`` fields): the CRD lets any string through, so a misspelt key would
#: be ignored silently.
_KEDA_KAFKA_METADATA = frozenset(
    [
        "bootstrapServers",
        "consumerGroup",
        "topic",
        "partitionLimitation",
        "lagThreshold",
        "activationLagThreshold",
        "offsetResetPolicy",
        "allowIdleConsumers",
        "excludePersistentLag",
        "scaleToZeroOnInvalidOffset",
        "limitToPartitionsWithLag",
        "ensureEvenDistributionOfPartitions",
        "version",
        "tls",
        "unsafeSsl",
        "sasl",
        "saslTokenProvider",
        "awsRegion",
    ]
)
_KEDA_SASL = {
    "PLAIN": "plaintext",
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
    "OAUTHBEARER": "oauthbearer",
}


def test_autoscaling_on_lag_bounded_by_the_partitions(rendered):
    scaled = rendered.one("ScaledObject")["spec"]
    statefulset = rendered.statefulset
    assert scaled["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": statefulset["metadata"]["name"],
    }
    partitions = int(rendered.setting("partitions"))
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= partitions
    assert scaled["minReplicaCount"] <= statefulset["spec"]["replicas"] <= partitions

    prefix = rendered.setting("topic_prefix")
    group = prefix + rendered.setting("app_id")
    brokers = bootstrap_servers(rendered.setting("kafka_broker"))
    protocol = rendered.literal("RISKSTREAM_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    triggers = scaled["triggers"]
    assert {t["type"] for t in triggers} == {"kafka"}
    assert sorted(t["metadata"]["topic"] for t in triggers) == sorted(
        prefix + name for name in topics.INPUT_TOPICS
    )
    for trigger in triggers:
        meta = trigger["metadata"]
        assert set(meta) <= _KEDA_KAFKA_METADATA, set(meta) - _KEDA_KAFKA_METADATA
        assert meta["consumerGroup"] == group
        assert meta["bootstrapServers"] == brokers
        assert int(meta["lagThreshold"]) > 0
        assert meta["offsetResetPolicy"] == "earliest"  # as the worker's consumer
        assert meta.get("allowIdleConsumers", "false") == "false"
        assert meta.get("tls", "disable") == ("enable" if "SSL" in protocol else "disable")
        if protocol.startswith("SASL_"):
            mechanism = rendered.literal("RISKSTREAM_KAFKA_SASL_MECHANISM")
            assert meta["sasl"] == _KEDA_SASL[mechanism]
            _assert_same_kafka_secret(rendered, trigger)
        else:
            assert "sasl" not in meta and "authenticationRef" not in trigger


def _assert_same_kafka_secret(rendered: Rendered, trigger: dict) -> None:
    """KEDA reads the lag with the worker's own Kafka credentials."""
    name = trigger["authenticationRef"]["name"]
    (auth,) = [a for a in rendered.all("TriggerAuthentication") if a["metadata"]["name"] == name]
    keda_secrets = {ref["name"] for ref in auth["spec"]["secretTargetRef"]}
    password = rendered.literal("RISKSTREAM_KAFKA_SASL_PASSWORD_FILE")
    _, volume = rendered.volume_behind(password)
    assert keda_secrets == {volume["secret"]["secretName"]}
    parameters = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
    assert {"username", "password"} <= parameters
    if rendered.literal("RISKSTREAM_KAFKA_SSL_CAFILE"):
        assert "ca" in parameters


def test_the_two_value_sets():
    """dev: one plaintext worker under a topic prefix; production: SASL_SSL, replicated
    topics, sealed dead letters, at least three workers."""
    dev, production = Rendered("dev"), Rendered("production")
    assert dev.setting("topic_prefix") and not production.setting("topic_prefix")
    assert dev.literal("RISKSTREAM_KAFKA_SECURITY_PROTOCOL") is None
    assert production.literal("RISKSTREAM_KAFKA_SECURITY_PROTOCOL") == "SASL_SSL"
    assert int(production.setting("replication_factor")) >= 3
    assert production.literal("RISKSTREAM_DEAD_LETTER_KEY_FILE")
    assert production.one("ScaledObject")["spec"]["minReplicaCount"] >= 3
    assert {d["metadata"].get("namespace") for d in dev.docs} == {"riskstream-dev"}
    assert {d["metadata"].get("namespace") for d in production.docs} == {"riskstream"}
