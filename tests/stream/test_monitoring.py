"""The monitoring stack as code (stream/ops/monitoring/): the generated dashboard is the committed
one, the dashboard and the alert rules only query metrics the worker exports, the compose
services point at files that exist, and the README documents every alert.

The real-Prometheus checks (promtool, a live prometheus binary) are in
test_monitoring_prometheus.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from stream.ops.monitoring import (
    ALERTS_PATH,
    ALERTS_TEST_PATH,
    DASHBOARD_PATH,
    DATASOURCE_UID,
    EXPORTER_JOB,
    EXPORTER_PORT,
    JOB,
    JOB_METRICS,
    MONITORING_DIR,
    PROMETHEUS_CONFIG_PATH,
    WORKER_METRICS,
    WORKER_PORT,
    known_series,
    prometheus_config_for,
)
from stream.ops.monitoring.dashboard import render

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
GRAFANA = MONITORING_DIR / "grafana"

# PromQL words that are not metric names.
_KEYWORDS = {
    "and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "start", "end",
}  # fmt: skip
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.$])([A-Za-z_:][A-Za-z0-9_:]*)(?![A-Za-z0-9_:]|\s*\()")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, aggregations,
    keywords, label names (in matchers and grouping clauses), durations or strings."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    return {m.group(1) for m in _IDENT.finditer(text) if m.group(1).lower() not in _KEYWORDS}


def test_promql_metric_names_parser():
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(riskstream_x_bucket{job="a", '
        'instance=~"$instance", le!="riskstream_not_a_metric"}[$__rate_interval])))'
        " / on(instance) group_left(version) max without (pod) (riskstream_y offset 10m)"
        " and deriv(sum(riskstream_z)[10m:1m]) > 0 or vector(0) unless absent(up)"
    )
    assert promql_metric_names(expr) == {
        "riskstream_x_bucket",
        "riskstream_y",
        "riskstream_z",
        "up",
    }


def _dashboard() -> dict:
    return json.loads(DASHBOARD_PATH.read_text())


def _panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _dashboard_exprs(dashboard: dict) -> dict[str, str]:
    """Every PromQL expression of the dashboard, keyed by where it is."""
    exprs = {
        f"{p['title']}/{t['refId']}": t["expr"] for p in _panels(dashboard) for t in p["targets"]
    }
    for var in dashboard["templating"]["list"]:
        match = re.fullmatch(r"label_values\((.*),\s*\w+\)", var["query"])
        assert match, f"variable {var['name']}: unexpected query {var['query']!r}"
        exprs[f"variable {var['name']}"] = match.group(1)
    return exprs


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS_PATH.read_text())["groups"] for r in g["rules"]]


def _jobs(expr: str) -> set[str]:
    """The scrape jobs an expression selects."""
    return set(re.findall(r'\bjob="([^"]+)"', expr))


def _scrape_jobs() -> set[str]:
    """The jobs the compose Prometheus scrapes, but its own."""
    config = yaml.safe_load(PROMETHEUS_CONFIG_PATH.read_text())
    return {j["job_name"] for j in config["scrape_configs"]} - {"prometheus"}


def test_the_queried_jobs_are_the_scraped_ones():
    """The worker and the Kafka exporter: each with the series it exports (JOB_METRICS)."""
    assert _scrape_jobs() == set(JOB_METRICS) == {JOB, EXPORTER_JOB}


def test_committed_dashboard_is_the_generated_one():
    assert DASHBOARD_PATH.read_text() == render(), (
        "stream/ops/monitoring/grafana/dashboards/riskstream.json differs from the generator: edit "
        "stream/ops/monitoring/dashboard.py and run "
        "`python -m stream.ops.monitoring.dashboard > "
        "stream/ops/monitoring/grafana/dashboards/riskstream.json`"
    )


def test_dashboard_has_the_panels():
    dashboard = _dashboard()
    titles = {p["title"] for p in _panels(dashboard)}
    assert titles >= {
        "Throughput in / out",
        "Consumer lag",
        "Consumer lag (broker)",
        "End-to-end latency",
        "Batch size",
        "Batch fill",
        "Inference time per batch",
        "Alerts by type",
        "Dead letters by reason",
        "Processing errors by stage",
        "Worker restarts",
        "Model",
        "Ready",
    }
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == DATASOURCE_UID
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}
            jobs = _jobs(target["expr"])  # every selector names its job, a scraped one
            assert jobs and jobs <= _scrape_jobs(), (panel["title"], target["expr"])
    exprs = " ".join(_dashboard_exprs(dashboard).values())
    assert "histogram_quantile(0.5, " in exprs and "histogram_quantile(0.99, " in exprs
    # the broker's view of the group's lag: from the exporter alone, so it outlives the workers
    broker = next(p for p in _panels(dashboard) if p["title"] == "Consumer lag (broker)")
    assert {j for t in broker["targets"] for j in _jobs(t["expr"])} == {EXPORTER_JOB}
    assert all("kafka_consumergroup_lag" in t["expr"] for t in broker["targets"])
    model = next(p for p in _panels(dashboard) if p["title"] == "Model")
    assert all(
        label in model["targets"][0]["expr"] for label in ("backend", "version", "precision")
    )


def test_dashboard_and_rules_query_only_exported_metrics():
    """Each query only series that the jobs it selects export (the worker's, the exporter's)."""
    known = known_series()
    queried: dict[str, set[str]] = {}
    exprs = {f"dashboard {where}": expr for where, expr in _dashboard_exprs(_dashboard()).items()}
    exprs |= {f"alert {rule['alert']}": rule["expr"] for rule in _rules()}
    unknown = {}
    for where, expr in exprs.items():
        queried[where] = promql_metric_names(expr)
        jobs = _jobs(expr)
        assert jobs and jobs <= set(JOB_METRICS), f"{where}: selects jobs {jobs or 'none'}"
        exported = set().union(*(known_series(job) for job in jobs))
        if queried[where] - exported:
            unknown[where] = queried[where] - exported
    assert not unknown, f"queries of metrics their job does not export: {unknown}"
    assert all(queried.values()), [where for where, names in queried.items() if not names]
    # riskstream_* by its own pattern as well, whatever the parser above makes of the syntax
    exprs = [*_dashboard_exprs(_dashboard()).values(), *(r["expr"] for r in _rules())]
    assert set(re.findall(r"\briskstream_[a-z0-9_]+", _STRING.sub("", " ".join(exprs)))) <= known


def test_dashboard_shows_every_exported_metric():
    used = set().union(*map(promql_metric_names, _dashboard_exprs(_dashboard()).values()))
    exported = [m for metrics in JOB_METRICS.values() for m in metrics]
    assert set(WORKER_METRICS) <= set(exported)
    missing = [m.name for m in exported if not set(m.series()) & used]
    assert not missing, f"metrics the dashboard does not show: {missing}"


def test_alert_rules_are_documented_and_unit_tested():
    rules = _rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    assert set(names) >= {
        "RiskstreamConsumerLagGrowing",
        "RiskstreamDeadLetterRateHigh",
        "RiskstreamWorkerDown",
        "RiskstreamNoOutput",
        "RiskstreamProcessingErrors",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
    # alerts_test.yml: each alert is expected to fire somewhere and to stay quiet somewhere
    checks = [
        c
        for t in yaml.safe_load(ALERTS_TEST_PATH.read_text())["tests"]
        for c in t["alert_rule_test"]
    ]
    for name in names:
        mine = [c for c in checks if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name}: no case where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{name}: no case where it is quiet"
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Monitoring\n", 1)[1].split("\n## ", 1)[0]
    for name in names:
        assert f"`{name}`" in section, f"README Monitoring: alert {name} not in the table"
    assert "python -m stream.ops.monitoring.dashboard" in section


def test_prometheus_config_scrapes_the_compose_workers():
    config = yaml.safe_load(PROMETHEUS_CONFIG_PATH.read_text())
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_CONFIG_PATH.parent / rule_file).is_file(), rule_file
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    for sd in job["dns_sd_configs"]:
        assert sd["type"] == "A" and sd["port"] == WORKER_PORT
        for name in sd["names"]:
            # a compose service (plain compose answers its name with every container's address)
            service = services[name]
            # no host port: replicas scale (docker compose up --scale worker=N)
            assert "ports" not in service
            # the worker binds 127.0.0.1 unless told otherwise: Prometheus could not reach it
            assert service["environment"]["RISKSTREAM_WEB_BIND"] == "0.0.0.0"
    assert {n for sd in job["dns_sd_configs"] for n in sd["names"]} >= {"worker"}
    # the Kafka exporter: a compose service on the broker's internal listener, no host port
    (exporter,) = [j for j in config["scrape_configs"] if j["job_name"] == EXPORTER_JOB]
    ((target,),) = [c["targets"] for c in exporter["static_configs"]]
    host, port = target.rsplit(":", 1)
    service = services[host]
    assert int(port) == EXPORTER_PORT and "ports" not in service
    assert re.search(r":v\d+\.\d+\.\d+$", service["image"]), service["image"]
    assert any(arg.startswith("--kafka.server=broker:") for arg in service["command"])


def _bind_mounts(service: dict) -> dict[str, tuple[Path, str]]:
    """container path -> (host path, options) of a service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *options = volume.split(":")
        if source.startswith((".", "/")):
            mounts[target] = ((COMPOSE.parent / source).resolve(), ",".join(options))
    return mounts


def test_compose_monitoring_services():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        service = services[name]
        _, _, tag = service["image"].partition(":")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), service["image"]
        assert all(p.startswith("127.0.0.1:") for p in service["ports"]), service["ports"]
        mounts = _bind_mounts(service)
        assert mounts, name
        for target, (source, options) in mounts.items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) is not in the repo"
            assert source.is_relative_to(ROOT), source
            assert "ro" in options.split(","), f"{name}: {target} not read-only"
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name}: named volume {source} not declared"

    prom = _bind_mounts(services["prometheus"])
    assert prom["/etc/prometheus/prometheus.yml"][0] == PROMETHEUS_CONFIG_PATH
    config = yaml.safe_load(PROMETHEUS_CONFIG_PATH.read_text())
    for rule_file in config["rule_files"]:  # relative to the config, inside the container too
        assert prom[f"/etc/prometheus/{rule_file}"][0] == (MONITORING_DIR / rule_file).resolve()

    grafana = services["grafana"]
    mounts = _bind_mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"][0]
    assert provisioning == GRAFANA / "provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["uid"] == DATASOURCE_UID and datasource["type"] == "prometheus"
    host, port = re.fullmatch(r"http://([\w-]+):(\d+)", datasource["url"]).groups()
    assert host in services and services[host]["ports"][0].endswith(f":{port}")
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "riskstream.yml").read_text())[
        "providers"
    ]
    dashboards_in_container = provider["options"]["path"]
    assert mounts[dashboards_in_container][0] == DASHBOARD_PATH.parent
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_in_container}/{DASHBOARD_PATH.name}"


def test_prometheus_config_for():
    rules = Path("stream/ops/monitoring/alerts.yml")
    text = prometheus_config_for(["127.0.0.1:6066", "worker-2:7000", "[::1]:6066"], rules)
    config = yaml.safe_load(text)
    assert config["rule_files"] == [str(ALERTS_PATH)]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB and job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["127.0.0.1:6066", "worker-2:7000", "[::1]:6066"]}]
    assert config["global"]["scrape_interval"] == "5s"
    both = yaml.safe_load(
        prometheus_config_for(["127.0.0.1:6066"], rules, exporter_targets=["127.0.0.1:9308"])
    )
    assert [(j["job_name"], j["static_configs"]) for j in both["scrape_configs"]] == [
        (JOB, [{"targets": ["127.0.0.1:6066"]}]),
        (EXPORTER_JOB, [{"targets": ["127.0.0.1:9308"]}]),
    ]
    with pytest.raises(ValueError):
        prometheus_config_for(["127.0.0.1:6066"], rules, exporter_targets=["exporter"])
    for bad in ([], ["localhost"], ["http://localhost:6066"], ["host:0"], ["host:70000"]):
        with pytest.raises(ValueError):
            prometheus_config_for(bad, rules)


def test_live_view_quantile_over_the_last_interval() -> None:
    from stream.ops.live import E2E, parse_metrics, quantile

    def snap(at: float, counts: dict[str, int]):
        lines = [f'{E2E}{{le="{le}"}} {c}' for le, c in counts.items()]
        return parse_metrics("\n".join(lines) + "\n", at)

    before = snap(0, {"0.1": 10, "0.5": 10, "1.0": 10, "+Inf": 10})
    now = snap(1, {"0.1": 60, "0.5": 108, "1.0": 110, "+Inf": 110})
    assert quantile(now, before, E2E, 0.5) == 0.1  # 50 of the 100 new ones at or below 0.1 s
    assert quantile(now, before, E2E, 0.99) == 1.0
    assert quantile(before, before, E2E, 0.99) is None


def test_model_info_names_the_backend_of_each_route_not_a_class() -> None:
    """Before: ``riskstream_model_info{backend="RoutedHandler"}``."""
    from models.serving.backends.stub import StubHandler
    from models.serving.router import RoutedHandler
    from stream.worker import metrics
    from stream.worker.scoring import show_model_info

    show_model_info(metrics.MODEL_INFO, RoutedHandler(StubHandler("en-1"), StubHandler("zh-1")))
    series = {
        (s.labels["route"], s.labels["backend"], s.labels["version"])
        for metric in metrics.MODEL_INFO.collect()
        for s in metric.samples
    }
    assert series == {("english", "stub", "en-1"), ("multilingual", "stub", "zh-1")}
    show_model_info(metrics.MODEL_INFO, StubHandler("one"))  # a new build replaces the old
    assert [s.labels["route"] for m in metrics.MODEL_INFO.collect() for s in m.samples] == ["all"]
