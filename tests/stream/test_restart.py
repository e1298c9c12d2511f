"""At-least-once across a hard crash: SIGKILL the worker mid-stream, start another one, and
every input event still gets its scored output; member state restored from the changelog
counts each event exactly once."""

from __future__ import annotations

from collections import Counter, defaultdict

import orjson
import pytest

from stream.ops.simulate import DemoCorpus, DemoTraffic
from tests.fixtures import pseudonym
from tests.kafka_io import collect, produce

pytestmark = pytest.mark.integration


async def test_sigkill_mid_stream_loses_nothing(kafka_broker, make_worker, topic_prefix) -> None:
    traffic = DemoTraffic(DemoCorpus.load(), seed=5, members=60, malformed_ratio=0.0)
    demo = [traffic.next_record() for _ in range(1200)]
    events = [orjson.loads(r.value) for r in demo]
    expected_ids = {e["event_id"] for e in events}
    expected_counts: dict[str, Counter] = defaultdict(Counter)
    for record, event in zip(demo, events, strict=True):
        expected_counts[pseudonym("member_id", event["member_id"])][record.topic.rstrip("s")] += 1
    scored_topic = topic_prefix + "scored-events"
    profiles_topic = topic_prefix + "member-profiles"

    first = await make_worker()
    await produce(kafka_broker.bootstrap, [(topic_prefix + r.topic, r.key, r.value) for r in demo])

    def some_scored(found) -> bool:
        return len(found[scored_topic]) >= 150

    partial = await collect(
        kafka_broker.bootstrap, [scored_topic], some_scored, timeout_s=120, alive=first.alive
    )
    assert some_scored(partial), first.log_tail()
    first.kill()
    seen_before_kill = {orjson.loads(m.value)["event_id"] for m in partial[scored_topic]}
    assert seen_before_kill < expected_ids, "worker finished before the kill; nothing was tested"

    second = await make_worker()

    def complete(found) -> bool:
        ids = {orjson.loads(m.value)["event_id"] for m in found[scored_topic]}
        latest = {m.key.decode(): orjson.loads(m.value)["counts"] for m in found[profiles_topic]}
        return ids >= expected_ids and all(
            latest.get(member) == {k: c.get(k, 0) for k in ("review", "chat", "transaction")}
            for member, c in expected_counts.items()
        )

    found = await collect(
        kafka_broker.bootstrap, [scored_topic, profiles_topic], complete, timeout_s=180
    )
    scored_ids = [orjson.loads(m.value)["event_id"] for m in found[scored_topic]]
    missing = expected_ids - set(scored_ids)
    assert not missing, f"{len(missing)} events never scored\n{second.log_tail()}"
    latest = {m.key.decode(): orjson.loads(m.value)["counts"] for m in found[profiles_topic]}
    wrong = {
        member: (latest.get(member), dict(c))
        for member, c in expected_counts.items()
        if latest.get(member) != {k: c.get(k, 0) for k in ("review", "chat", "transaction")}
    }
    assert complete(found), f"profiles miscount after restart: {list(wrong.items())[:3]}"
    print(f"duplicates after restart: {len(scored_ids) - len(set(scored_ids))}")
    # the restored state is the whole state, not just counters: spend statistics (Welford,
    # per currency) and the merchants seen match a fold of the input with no crash
    profiles = {m.key.decode(): orjson.loads(m.value) for m in found[profiles_topic]}
    spend: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    merchants: dict[str, set[str]] = defaultdict(set)
    for record, event in zip(demo, events, strict=True):
        if record.topic == "transactions":
            spend[pseudonym("member_id", event["member_id"])][event["currency"]].append(
                event["amount"]
            )
            merchants[pseudonym("member_id", event["member_id"])].add(event["merchant_id"])
    for member, by_currency in spend.items():
        assert set(profiles[member]["spend"]) == set(by_currency)
        for currency, amounts in by_currency.items():
            stats = profiles[member]["spend"][currency]
            assert stats["count"] == len(amounts)
            assert stats["mean"] == pytest.approx(sum(amounts) / len(amounts), abs=1e-3)
        assert profiles[member]["known_merchants"] == min(len(merchants[member]), 32)
