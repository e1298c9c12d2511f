"""No record can stop a partition, through the real broker and a real worker.

The six records that each put the worker into a crash loop before (issue 9), each followed by
20 valid events on its partition, plus generated malformed records: the worker never exits,
every malformed record is in ``dead-letter`` with the reason it must carry, and every valid
one is in ``scored-events`` (matched by source position). A larger run of the same is
``python bench/soak.py fuzz --malformed 12000``."""

from __future__ import annotations

import base64
import hashlib
import os
import random

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.kafka_io import collect
from tests.poison import PoisonRecord, malformed, six_records, valid_after

pytestmark = pytest.mark.integration

MALFORMED = int(os.environ.get("RISKSTREAM_TEST_FUZZ_MALFORMED", "2000"))


def fuzz_records(count: int, seed: int) -> list[PoisonRecord]:
    rng = random.Random(seed)
    records: list[PoisonRecord] = []
    for poison in six_records():
        records.append(poison)
        records.extend(valid_after(poison.name, 20, poison.topic))
    records.extend(malformed(rng, i) for i in range(count))
    return records


async def produce_all(
    bootstrap: str, prefix: str, records: list[PoisonRecord]
) -> dict[tuple[str, int, int], PoisonRecord]:
    """Produce in order; -> source position (logical topic, partition, offset) -> record."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        futures = [await producer.send(prefix + r.topic, r.value, key=r.key) for r in records]
        positions = {}
        for record, future in zip(records, futures, strict=True):
            meta = await future
            positions[(record.topic, meta.partition, meta.offset)] = record
        return positions
    finally:
        await producer.stop()


def source_of(body: dict) -> tuple[str, int, int]:
    s = body["source"]
    return (s["topic"], s["partition"], s["offset"])


async def test_no_record_stops_a_partition(kafka_broker, make_worker, topic_prefix) -> None:
    records = fuzz_records(MALFORMED, seed=9)
    worker = await make_worker()
    positions = await produce_all(kafka_broker.bootstrap, topic_prefix, records)
    valid = {pos for pos, r in positions.items() if r.reason is None}
    bad = {pos: r for pos, r in positions.items() if r.reason is not None}
    scored_topic, dead_topic = topic_prefix + "scored-events", topic_prefix + "dead-letter"

    def complete(found) -> bool:
        scored = {source_of(orjson.loads(m.value)) for m in found[scored_topic]}
        dead = {source_of(orjson.loads(m.value)) for m in found[dead_topic]}
        return scored >= valid and dead >= set(bad)

    found = await collect(
        kafka_broker.bootstrap, [scored_topic, dead_topic], complete, timeout_s=240
    )
    assert worker.alive() and worker.restarts == 0, worker.log_tail()
    scored = {source_of(orjson.loads(m.value)) for m in found[scored_topic]}
    letters = {source_of(b): b for b in (orjson.loads(m.value) for m in found[dead_topic])}
    missing_scored = valid - scored
    assert not missing_scored, f"{len(missing_scored)} valid events never scored"
    missing_dead = set(bad) - set(letters)
    assert not missing_dead, [bad[p].name for p in sorted(missing_dead)][:10]
    assert not (set(letters) & valid), "a valid event was dead-lettered"
    wrong = [
        (bad[pos].name, bad[pos].reason, letters[pos]["reason"], letters[pos]["detail"][:120])
        for pos in bad
        if letters[pos]["reason"] != bad[pos].reason
    ]
    assert not wrong, wrong[:10]
    # oversized originals keep a prefix, their size and sha256: identifiable, never too large
    for pos, record in bad.items():
        letter = letters[pos]
        for name, raw in (("key", record.key), ("value", record.value)):
            if raw is not None and len(raw) > 65536:
                assert letter[f"original_{name}_truncated"] == {
                    "bytes": len(raw),
                    "sha256": hashlib.sha256(raw).hexdigest(),
                }
                assert len(base64.b64decode(letter[f"original_{name}_b64"])) == 65536
    assert max(len(m.value) for m in found[dead_topic]) < 1_000_000
