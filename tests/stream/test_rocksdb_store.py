"""The RocksDB table store (compose's default): a worker processes events with it, and after a
restart on the same local store its profiles still count every event exactly once."""

from __future__ import annotations

from collections import Counter, defaultdict

import orjson
import pytest

from stream.ops.simulate import DemoCorpus, DemoTraffic
from tests.fixtures import pseudonym
from tests.kafka_io import collect, produce

pytestmark = pytest.mark.integration

KINDS = ("review", "chat", "transaction")


async def test_rocksdb_store_survives_a_restart(kafka_broker, make_worker, topic_prefix, tmp_path):
    env = {"RISKSTREAM_STORE": "rocksdb://", "RISKSTREAM_DATA_DIR": str(tmp_path / "state")}
    traffic = DemoTraffic(DemoCorpus.load(), seed=8, members=25, malformed_ratio=0.0)
    records = [traffic.next_record() for _ in range(300)]
    expected: dict[str, Counter] = defaultdict(Counter)
    for record in records:
        expected[pseudonym("member_id", orjson.loads(record.value)["member_id"])][
            record.topic.rstrip("s")
        ] += 1
    profiles = topic_prefix + "member-profiles"

    def exact(upto: int):
        counts: dict[str, Counter] = defaultdict(Counter)
        for record in records[:upto]:
            counts[pseudonym("member_id", orjson.loads(record.value)["member_id"])][
                record.topic.rstrip("s")
            ] += 1

        def check(found) -> bool:
            latest = {m.key.decode(): orjson.loads(m.value)["counts"] for m in found[profiles]}
            return all(latest.get(m) == {k: c.get(k, 0) for k in KINDS} for m, c in counts.items())

        return check

    first = await make_worker(**env)
    await produce(
        kafka_broker.bootstrap, [(topic_prefix + r.topic, r.key, r.value) for r in records[:200]]
    )
    found = await collect(kafka_broker.bootstrap, [profiles], exact(200), 120, first.alive)
    assert exact(200)(found), first.log_tail()
    first.stop()  # SIGTERM: a clean stop; the store stays on disk
    second = await make_worker(**env)
    await produce(
        kafka_broker.bootstrap, [(topic_prefix + r.topic, r.key, r.value) for r in records[200:]]
    )
    found = await collect(kafka_broker.bootstrap, [profiles], exact(300), 120, second.alive)
    assert exact(300)(found), second.log_tail()
    assert any((tmp_path / "state").rglob("*.sst")) or any((tmp_path / "state").rglob("CURRENT"))
