"""A promotion racing a rebalance loses nothing and scores nothing twice differently.

Two workers on the stub backend (two "builds" that differ only by name): events flow, a second
worker joins (a rebalance) at the moment the registry names a new champion. Every event comes
out; every copy of an event (at-least-once redeliveries around the rebalance) is the same
record, since a redelivered event is re-published as first published; each was scored by one of
the two builds, and events produced once both workers serve the new build carry it."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from stream.core.registry import encode_record, entry, promote, record_key
from stream.core.steps import utc_now
from tests.kafka_io import collect, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

OLD, NEW = "stub-build-old", "stub-build-new"
STUB = {
    "RISKSTREAM_BACKEND": "stub",
    "RISKSTREAM_MODEL_VERSION": OLD,
    "RISKSTREAM_CHINESE_MODEL_VERSION": "none",
}


def review(prefix: str, i: int) -> tuple[str, bytes, bytes]:
    member = f"m{i % 13}"
    body = {
        "event_id": f"race-{i}",
        "member_id": member,
        "event_time": f"2026-11-23T10:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "product_id": f"p{i % 5}",
        "text": f"Review number {i}: fine.",
    }
    return prefix + "reviews", member.encode(), orjson.dumps(body)


async def test_a_promote_racing_a_rebalance_loses_nothing(
    kafka_broker, make_worker, topic_prefix: str
) -> None:
    bootstrap, scored = kafka_broker.bootstrap, topic_prefix + "scored-events"
    first = await make_worker(**STUB)
    produced = 0

    async def flow(count: int) -> None:
        nonlocal produced
        await produce(bootstrap, [review(topic_prefix, produced + j) for j in range(count)])
        produced += count

    await flow(40)
    await collect(bootstrap, [scored], lambda f: len(f[scored]) >= 40, 120, first.alive)
    # the race: a worker joins while the registry names the new champion, events flowing
    second = await make_worker(**STUB)
    record = promote(None, entry(NEW, by="test", at=utc_now(), why="race"), route="english")
    await produce(
        bootstrap, [(topic_prefix + "model-registry", record_key("english"), encode_record(record))]
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 25
    while loop.time() < deadline:  # through the rebalance (about 5 s on this broker)
        await flow(10)
        await asyncio.sleep(0.5)
    tail_from = produced
    await asyncio.sleep(5)  # both serve the new build by now (each re-reads within a poll)
    await flow(40)

    def ids(found) -> set[str]:
        return {orjson.loads(m.value)["event_id"] for m in found[scored]}

    found = await collect(bootstrap, [scored], lambda f: len(ids(f)) >= produced, 180)
    assert first.alive() and second.alive(), first.log_tail() + second.log_tail()
    copies: dict[str, set[bytes]] = {}
    for message in found[scored]:
        body = orjson.loads(message.value)
        copies.setdefault(body["event_id"], set()).add(message.value)
    assert len(copies) == produced  # none lost
    assert all(len(values) == 1 for values in copies.values())  # redeliveries identical
    versions = {i: orjson.loads(next(iter(v)))["model_version"] for i, v in copies.items()}
    assert set(versions.values()) == {OLD, NEW}
    late = [versions[f"race-{i}"] for i in range(tail_from + 10, produced)]
    assert set(late) == {NEW}
