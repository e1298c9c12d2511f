"""A real Prometheus scrapes a real worker on the embedded broker: every query of the dashboard
and every alert rule of the worker's job returns data (the Kafka exporter's, the broker-side
lag, are fed a fake exporter in test_monitoring_prometheus.py), and the worker's /healthz and
/readyz answer. The worker runs with shadow scoring (the INT8 export as challenger of the fp32
champion), as ``riskstream run`` does with ``RISKSTREAM_SHADOW_BACKEND`` set."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from stream.ops.monitoring import JOB, known_series
from stream.ops.simulate import DemoCorpus, DemoTraffic
from tests.kafka_io import collect, produce
from tests.stream.test_monitoring import promql_metric_names
from tests.stream.test_monitoring_prometheus import (
    _query,
    empty_dashboard_queries,
    needs_prometheus,
    prometheus_scraping,
)

pytestmark = [pytest.mark.integration, needs_prometheus]


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.timeout(300)
async def test_prometheus_scrapes_every_queried_metric_from_a_real_worker(
    kafka_broker, make_worker, topic_prefix, tmp_path
) -> None:
    worker = await make_worker(RISKSTREAM_SHADOW_BACKEND="onnx-cpu-int8")
    port = int(worker.env["RISKSTREAM_WEB_PORT"])
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:  # alive first, ready once the model is loaded and partitions are recovered
        try:
            status, body = get(f"{base_url}/readyz")
            alive = get(f"{base_url}/healthz")
        except OSError:
            status, body, alive = None, {}, (None, {})
        if status == 200:
            break
        assert status in (None, 503), body
        assert time.monotonic() < deadline and worker.alive(), worker.log_tail()
        time.sleep(0.5)
    assert alive == (200, {"alive": True})
    assert body["ready"] and body["model_loaded"] and body["partitions_assigned"]

    traffic = DemoTraffic(DemoCorpus.load(), seed=11, members=30, malformed_ratio=0.1)
    records = [traffic.next_record() for _ in range(300)]
    await produce(
        kafka_broker.bootstrap, [(topic_prefix + r.topic, r.key, r.value) for r in records]
    )
    scored, shadow = topic_prefix + "scored-events", topic_prefix + "shadow-scores"
    valid = sum(r.malformed is None for r in records)
    texts = sum(r.malformed is None and r.topic != "transactions" for r in records)
    found = await collect(
        kafka_broker.bootstrap,
        [scored, shadow],
        lambda f: len(f[scored]) >= valid and len(f[shadow]) >= texts // 2,
        timeout_s=120,
    )
    champion = {
        e["event_id"]: e
        for e in (json.loads(m.value) for m in found[scored])
        if e["event_type"] != "transaction"
    }
    for message in found[shadow]:
        record = json.loads(message.value)
        assert record["champion"]["scores"] == champion[record["event_id"]]["scores"]
        assert record["challenger"]["precision"] == "int8", record
        assert record["challenger"]["model_version"] == record["champion"]["model_version"]

    with prometheus_scraping([f"127.0.0.1:{port}"], tmp_path) as prometheus:
        deadline = time.monotonic() + 60
        probe = f'rate(riskstream_stream_events_consumed_total{{job="{JOB}"}}[20s]) >= 0'
        while len(_query(prometheus, probe)) < 3:
            assert time.monotonic() < deadline, "no rates from the worker after 60 s"
            time.sleep(0.5)
        time.sleep(2)
        # the worker's part: the broker-side lag comes from the Kafka exporter, not run here
        # (test_monitoring_prometheus.py feeds those queries a fake one)
        assert not empty_dashboard_queries(prometheus, JOB)
        # every series the dashboard and the rules may query of the worker exists with data
        missing = [name for name in sorted(known_series(JOB)) if not _query(prometheus, name)]
        assert not missing, missing
        rules = json.loads(urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=5).read())[
            "data"
        ]["groups"]
        for group in rules:
            for rule in group["rules"]:
                assert rule["health"] == "ok", rule
                if f'job="{JOB}"' not in rule["query"]:
                    continue
                for name in promql_metric_names(rule["query"]):
                    assert _query(prometheus, name), (rule["name"], name)
        info = _query(prometheus, "riskstream_model_info")
        assert {(i["metric"]["route"], i["metric"]["backend"]) for i in info} == {
            ("english", "onnx-cpu"),
            ("multilingual", "onnx-cpu"),
        }  # the backend, as RISKSTREAM_BACKEND names it, per route: not a class name
        assert {i["metric"]["precision"] for i in info} == {"fp32"}
        challenger = _query(prometheus, "riskstream_shadow_model_info")
        assert {i["metric"]["backend"] for i in challenger} == {"onnx-cpu-int8"}
        assert {i["metric"]["precision"] for i in challenger} == {"int8"}
        agreement = _query(
            prometheus,
            'sum by (head, decision) (riskstream_shadow_decisions_total{agree="true"}) / '
            "sum by (head, decision) (riskstream_shadow_decisions_total)",
        )
        assert len(agreement) == 4 and all(0 <= float(a["value"][1]) <= 1 for a in agreement)
        compared = float(_query(prometheus, "sum(riskstream_shadow_scored_total)")[0]["value"][1])
        skipped = float(_query(prometheus, "sum(riskstream_shadow_dropped_total)")[0]["value"][1])
        assert compared + skipped == texts and compared >= texts // 2
        lag = _query(prometheus, "riskstream_stream_consumer_lag")
        assert {m["metric"]["topic"] for m in lag} >= {"reviews", "chats", "transactions"}
