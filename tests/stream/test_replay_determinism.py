"""Two workers over the same input raise the same alerts: every window, rate and score runs on
event time, alert ids are derived from their content, and surge mentions arriving from
different member partitions are folded in event-time order."""

from __future__ import annotations

import orjson
import pytest

from stream.ops.simulate import DemoCorpus, DemoTraffic
from tests.kafka_io import collect, produce
from tests.stream.test_integration import (
    ULB_FRAUD,
    ULB_LEGIT,
    planted_transaction,
    surge_burst,
    surge_history,
)

pytestmark = pytest.mark.integration


async def run_once(kafka_broker, make_worker, prefix: str, records) -> dict[str, tuple]:
    worker = await make_worker(prefix=prefix)
    await produce(kafka_broker.bootstrap, [(prefix + t, k, v) for t, k, v in records])
    expected = {orjson.loads(v)["event_id"] for _, _, v in records}
    scored, alerts = prefix + "scored-events", prefix + "alerts"

    def done(found) -> bool:
        ids = {orjson.loads(m.value)["event_id"] for m in found[scored]}
        surges = {
            orjson.loads(m.value)["subject"]["kind"]
            for m in found[alerts]
            if b'"opinion_surge"' in m.value
        }
        return ids >= expected and surges >= {"product", "brand"}

    found = await collect(kafka_broker.bootstrap, [scored, alerts], done, 120, alive=worker.alive)
    assert done(found), worker.log_tail()
    worker.stop()
    bodies = [orjson.loads(m.value) for m in found[alerts]]
    return {a["alert_id"]: a for a in bodies}  # whole bodies: scores, windows, samples


async def test_two_runs_over_the_same_input_raise_identical_alerts(
    kafka_broker, make_worker, topic_prefix
) -> None:
    traffic = DemoTraffic(DemoCorpus.load(), seed=5, members=25, malformed_ratio=0.0)
    records = surge_history()
    records += [(r.topic, r.key, r.value) for r in (traffic.next_record() for _ in range(150))]
    records += surge_burst()
    records += [
        ("transactions", b"m-fraud", planted_transaction("tx-ok", 0, ULB_LEGIT, 63.48)),
        ("transactions", b"m-fraud", planted_transaction("tx-fraud", 5, ULB_FRAUD, 316.06)),
    ]
    first = await run_once(kafka_broker, make_worker, f"{topic_prefix}a.", records)
    second = await run_once(kafka_broker, make_worker, f"{topic_prefix}b.", records)
    assert first == second
    kinds = {alert["alert_type"] for alert in first.values()}
    assert {"opinion_surge", "fraud_risk"} <= kinds
