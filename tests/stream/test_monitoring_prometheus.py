"""The monitoring config against real Prometheus parts (Debian's `prometheus` package, which
.ci/run installs): promtool checks the scrape config and the rules and runs the rules' unit
tests (stream/ops/monitoring/alerts_test.yml); a real prometheus binary, configured by
prometheus_config_for(), scrapes a fake worker exporting every metric the worker exports and a
fake Kafka exporter (the broker-side lag), and answers every dashboard and alert query.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import start_http_server

from stream.ops.monitoring import (
    ALERTS_PATH,
    ALERTS_TEST_PATH,
    DASHBOARD_PATH,
    EXPORTER_JOB,
    EXPORTER_METRICS,
    JOB,
    PROMETHEUS_CONFIG_PATH,
    WORKER_METRICS,
    Metric,
    prometheus_config_for,
)
from stream.ops.monitoring.dashboard import DEFAULT_GROUP

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus; .ci/run does)"
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (apt-get install prometheus; .ci/run does)"
)


def promtool(*args: str, cwd: Path | None = None) -> str:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{output}"
    return output


@needs_promtool
def test_promtool_check_config(tmp_path: Path):
    # from a copy, as compose mounts them: the config and its rule file side by side
    for path in (PROMETHEUS_CONFIG_PATH, ALERTS_PATH):
        shutil.copy(path, tmp_path / path.name)
    output = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert "SUCCESS" in output and "rules found" in output


@needs_promtool
def test_promtool_check_rules():
    output = promtool("check", "rules", str(ALERTS_PATH))
    assert "SUCCESS: 9 rules found" in output


@needs_promtool
def test_promtool_test_rules():
    """Every alert fires on its synthetic failure and stays quiet on healthy series."""
    output = promtool("test", "rules", ALERTS_TEST_PATH.name, cwd=ALERTS_TEST_PATH.parent)
    assert "SUCCESS" in output


@needs_promtool
def test_promtool_checks_prometheus_config_for(tmp_path: Path):
    config = tmp_path / "prometheus.json"
    config.write_text(prometheus_config_for(["127.0.0.1:6066", "worker:6066"], ALERTS_PATH))
    output = promtool("check", "config", str(config))
    assert "SUCCESS" in output and "9 rules found" in output


# ---------------------------------------------------------------- a live Prometheus


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


LABEL_VALUES = {
    "topic": ["reviews", "chats", "transactions"],
    "partition": ["0", "1"],
    "event_type": ["review", "chat", "transaction"],
    "reason": ["schema_violation", "invalid_json"],
    "stage": ["edge", "member"],
    "alert_type": ["negative_review", "scam_chat"],
    "backend": ["onnx-cpu"],
    "version": ["minilm-l6-heads-test"],
    "precision": ["int8"],
    "head": ["sentiment_negative", "scam_risk"],
    "decision": ["label", "alert"],
    "agree": ["true", "false"],
    "value": ["negative", "scam"],
    "route": ["english", "multilingual"],
    "outcome": ["switched", "shadowed"],
    "table": ["member-to-profile", "subject-to-surge"],
    "kind": ["active", "standby"],
    # the Kafka exporter's: the group the dashboard shows by default
    "consumergroup": [DEFAULT_GROUP],
}


class FakeWorker:
    """An exporter of every metric in WORKER_METRICS (as prometheus_client writes them), with
    values that keep moving, in place of a worker; of ``metrics`` instead (the Kafka
    exporter's), in place of that."""

    def __init__(self, metrics: tuple[Metric, ...] = WORKER_METRICS) -> None:
        self.registry = CollectorRegistry()
        if metrics is WORKER_METRICS:
            ProcessCollector(registry=self.registry)  # process_start_time_seconds
        self.metrics = []
        for m in metrics:
            if m.name.startswith("process_"):
                continue
            unknown = set(m.labels) - set(LABEL_VALUES)
            assert not unknown, f"{m.name}: add values for labels {unknown} to LABEL_VALUES"
            if m.kind == "counter":
                metric = Counter(
                    m.name.removesuffix("_total"), m.help, m.labels, registry=self.registry
                )
            elif m.kind == "gauge":
                metric = Gauge(m.name, m.help, m.labels, registry=self.registry)
            else:
                metric = Histogram(m.name, m.help, m.labels, registry=self.registry)
            self.metrics.append((m, metric))
        self.port = _free_port()
        self._stop = threading.Event()
        self._server = None

    def _children(self, m, metric):
        if not m.labels:
            return [metric]
        combos = [[]]
        for label in m.labels:
            combos = [[*c, v] for c in combos for v in LABEL_VALUES[label]]
        return [metric.labels(*c) for c in combos]

    def _tick(self) -> None:
        rng = random.Random(7)
        while not self._stop.wait(0.05):
            for m, metric in self.metrics:
                for child in self._children(m, metric):
                    if m.kind == "counter":
                        child.inc(rng.randint(1, 5))
                    elif m.kind == "histogram":
                        child.observe(
                            rng.uniform(0.01, 2.0) if "seconds" in m.name else rng.randint(1, 64)
                        )
                    elif m.name == "riskstream_model_max_batch_size":
                        child.set(64)
                    elif m.name in ("riskstream_worker_ready", "riskstream_model_info"):
                        child.set(1)
                    else:
                        child.set(rng.randint(0, 500))

    def __enter__(self) -> FakeWorker:
        self._server, _ = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.shutdown()
        self._server.server_close()


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def prometheus_scraping(
    targets: list[str], tmp_path: Path, exporter_targets: list[str] | None = None
) -> Iterator[str]:
    """A real Prometheus scraping the workers at ``targets`` (and a Kafka exporter at
    ``exporter_targets``) every second with the alert rules; -> its URL."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        prometheus_config_for(
            targets, ALERTS_PATH, scrape_interval="1s", exporter_targets=exporter_targets
        )
    )
    port = _free_port()
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "prometheus not ready in 60 s"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def live_prometheus(tmp_path: Path) -> Iterator[tuple[str, FakeWorker, FakeWorker]]:
    with (
        FakeWorker() as worker,
        FakeWorker(EXPORTER_METRICS) as exporter,
        prometheus_scraping(
            [f"127.0.0.1:{worker.port}"], tmp_path, [f"127.0.0.1:{exporter.port}"]
        ) as base,
    ):
        yield base, worker, exporter


def empty_dashboard_queries(base: str, job: str | None = None) -> list[str]:
    """The dashboard's queries (of ``job`` only, if given) that return no series."""
    dashboard = json.loads(DASHBOARD_PATH.read_text())
    return [
        f"{panel['title']}/{t['refId']}: {t['expr']}"
        for panel in dashboard["panels"]
        for t in panel.get("targets", [])
        if (job is None or f'job="{job}"' in t["expr"])
        and not _query(base, _grafana_to_promql(t["expr"]))
    ]


def _query(base: str, expr: str) -> list[dict]:
    answer = _get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]["result"]


def _grafana_to_promql(expr: str) -> str:
    """Grafana's variables substituted (all workers; windows wide enough for a slow machine)."""
    return (
        expr.replace("$__rate_interval", "20s")
        .replace("$__range", "5m")
        .replace("$instance", ".*")
        .replace("$group", DEFAULT_GROUP)
    )


@needs_prometheus
@pytest.mark.timeout(180)
def test_live_prometheus_answers_every_dashboard_and_alert_query(live_prometheus):
    base, worker, exporter = live_prometheus
    # until rates have samples from two scrapes
    deadline = time.monotonic() + 60
    probe = f'rate(riskstream_model_batch_size_count{{job="{JOB}"}}[20s]) > 0'
    while not _query(base, probe):
        assert time.monotonic() < deadline, "no rate from the fake worker after 60 s"
        time.sleep(0.5)
    time.sleep(3)

    targets = _get(f"{base}/api/v1/targets")["data"]["activeTargets"]
    assert {(t["labels"]["job"], t["labels"]["instance"], t["health"]) for t in targets} == {
        (JOB, f"127.0.0.1:{worker.port}", "up"),
        (EXPORTER_JOB, f"127.0.0.1:{exporter.port}", "up"),
    }

    dashboard = json.loads(DASHBOARD_PATH.read_text())
    empty = empty_dashboard_queries(base)
    assert not empty, "dashboard queries with no data from a worker exporting every metric:\n" + (
        "\n".join(empty)
    )
    instance, group = dashboard["templating"]["list"]
    values = _get(f'{base}/api/v1/label/instance/values?match[]=up{{job="{JOB}"}}')["data"]
    assert values == [f"127.0.0.1:{worker.port}"], instance["query"]
    match = urllib.parse.quote(f'kafka_consumergroup_lag{{job="{EXPORTER_JOB}"}}')
    values = _get(f"{base}/api/v1/label/consumergroup/values?match[]={match}")["data"]
    assert values == [DEFAULT_GROUP] == [group["current"]["value"]], group["query"]

    # the rules loaded from the file prometheus_config_for() names and evaluate cleanly
    deadline = time.monotonic() + 30
    while True:
        rules = [r for g in _get(f"{base}/api/v1/rules")["data"]["groups"] for r in g["rules"]]
        if rules and all(r["health"] != "unknown" for r in rules):
            break
        assert time.monotonic() < deadline, rules
        time.sleep(0.5)
    assert len(rules) == 9
    bad = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not bad, bad
    # a healthy worker: no alert but the processing-errors one (its counters move here)
    alerts = _get(f"{base}/api/v1/alerts")["data"]["alerts"]
    firing = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
    assert firing <= {"RiskstreamProcessingErrors"}, firing
