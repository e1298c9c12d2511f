"""At-least-once under repeated crashes: the worker is SIGKILLed five times at chosen moments
(during start-up, during table recovery, right after a rebalance, mid-stream) while 5,000 valid
events stream in, and restarted each time as a supervisor would. Then every event is scored,
every profile counts each event exactly once, and every duplicate output is identical to its
first copy (a redelivered event is scored against the state before it), but for a transaction
redelivered after a chat of its member that it first beat (topics are read in no fixed order
against each other): counted, and only the scam-chat rule may differ.

Slow (about three minutes on two cores): marked ``slow``; ``make test`` runs it, and
``python bench/soak.py restarts --runs 5`` repeats it with fresh seeds."""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from stream.core.fraud import SCAM_CHAT_RULE
from stream.ops.simulate import DemoCorpus, DemoTraffic
from tests.fixtures import pseudonym
from tests.kafka_io import collect, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

EVENTS = int(os.environ.get("RISKSTREAM_TEST_MULTIKILL_EVENTS", "5000"))
KINDS = ("review", "chat", "transaction")


def log_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


async def wait_for_line(path: Path, marker: str, after: int, timeout_s: float) -> bool:
    """Wait until ``marker`` appears in the log past byte ``after``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if marker in log_text(path)[after:]:
            return True
        await asyncio.sleep(0.02)
    return False


#: Where each kill lands: a log marker of the worker's life (Faust's own lines), then a random
#: delay. "Restoring state" is table recovery; "Worker ready" is right after a rebalance.
KILL_PLAN = (
    # mid-stream, after the first assignment (the model now loads while the worker joins, so
    # "loaded in" may come before any event is processed; a kill then leaves the changelogs
    # empty and the next worker has nothing to restore)
    ("Worker ready", (2.0, 5.0)),
    ("Restoring state from changelog topics", (0.0, 0.3)),  # during table recovery
    ("Worker ready", (0.0, 0.4)),  # right after a rebalance
    ("Executing", (0.5, 2.0)),  # during start-up, before the group join completes
    ("Worker ready", (0.5, 3.0)),  # mid-stream again
)


def differ_only_by_chat_order(first: bytes, again: bytes) -> bool:
    """Two copies of a transaction's output that differ only in whether the member's
    scam-like chat was in its state. Topics are read in no fixed order against each other: a
    chat and a transaction of one member produced together can reach the member stage either
    way round (README, Backtests: Determinism), so a crash can redeliver a transaction after
    the chat it first beat (seen: the chat produced 5 events before it, same millisecond).
    Anything else that differs is a failure."""
    a, b = orjson.loads(first), orjson.loads(again)
    if a.get("event_type") != "transaction" or b.get("event_type") != "transaction":
        return False

    def chat_rule(output: dict) -> bool:
        return any(rule.startswith(SCAM_CHAT_RULE) for rule in output["fraud"]["rules_fired"])

    def without_chat(output: dict) -> tuple:
        rest = {k: v for k, v in output.items() if k not in ("fraud", "scores")}
        rules = [r for r in output["fraud"]["rules_fired"] if not r.startswith(SCAM_CHAT_RULE)]
        return rest, rules

    return chat_rule(a) != chat_rule(b) and without_chat(a) == without_chat(b)


def test_only_a_chat_seen_on_redelivery_may_change_a_duplicate() -> None:
    """The exception above is exactly that: the scam-chat rule in one copy, not the other."""
    base = {
        "event_id": "tx-1",
        "event_type": "transaction",
        "member_id": "m",
        "fraud": {"score": 0.002, "rules_fired": ["first purchase at this merchant"]},
        "scores": {"fraud_risk": 0.002},
    }
    chat = {
        **base,
        "fraud": {
            "score": 0.019,
            "rules_fired": [SCAM_CHAT_RULE + " (0.97)", *base["fraud"]["rules_fired"]],
        },
        "scores": {"fraud_risk": 0.019},
    }
    other_rule = {**chat, "fraud": {**chat["fraud"], "rules_fired": [SCAM_CHAT_RULE, "night"]}}
    other_field = {**chat, "member_id": "n"}
    review = {**chat, "event_type": "review"}
    dump = orjson.dumps
    assert differ_only_by_chat_order(dump(base), dump(chat))
    assert not differ_only_by_chat_order(dump(base), dump(base | {"scores": {"fraud_risk": 1}}))
    assert not differ_only_by_chat_order(dump(base), dump(other_rule))
    assert not differ_only_by_chat_order(dump(base), dump(other_field))
    assert not differ_only_by_chat_order(dump(base | {"event_type": "review"}), dump(review))


async def test_repeated_sigkills_lose_nothing(kafka_broker, make_worker, topic_prefix) -> None:
    seed = int(os.environ.get("RISKSTREAM_TEST_MULTIKILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"multikill seed {seed}")
    traffic = DemoTraffic(DemoCorpus.load(), seed=seed % 1000, members=150, malformed_ratio=0.0)
    demo = [traffic.next_record() for _ in range(EVENTS)]
    events = [orjson.loads(r.value) for r in demo]
    expected_ids = {e["event_id"] for e in events}
    expected_counts: dict[str, Counter] = defaultdict(Counter)
    for record, event in zip(demo, events, strict=True):
        expected_counts[pseudonym("member_id", event["member_id"])][record.topic.rstrip("s")] += 1
    scored_topic, alerts_topic = topic_prefix + "scored-events", topic_prefix + "alerts"
    profiles_topic = topic_prefix + "member-profiles"
    dead_topic = topic_prefix + "dead-letter"

    async def stream_in() -> None:
        """The input arrives over about 40 s, while the worker is killed and restarted."""
        chunk = max(EVENTS // 40, 1)
        for start in range(0, len(demo), chunk):
            part = demo[start : start + chunk]
            await produce(
                kafka_broker.bootstrap, [(topic_prefix + r.topic, r.key, r.value) for r in part]
            )
            await asyncio.sleep(1.0)

    producer = asyncio.create_task(stream_in())
    env = {"RISKSTREAM_LOG_LEVEL": "info"}
    worker = await make_worker(**env)
    kills = []
    for marker, (low, high) in KILL_PLAN:
        seen = await wait_for_line(worker.log_path, marker, 0, timeout_s=90)
        assert seen, f"worker never logged {marker!r}\n{worker.log_tail()}"
        await asyncio.sleep(rng.uniform(low, high))
        assert worker.alive(), worker.log_tail()
        worker.kill()
        kills.append(marker)
        worker = await make_worker(**env)
    await producer

    def complete(found) -> bool:
        ids = {orjson.loads(m.value)["event_id"] for m in found[scored_topic]}
        latest = {m.key.decode(): orjson.loads(m.value)["counts"] for m in found[profiles_topic]}
        return ids >= expected_ids and all(
            latest.get(member) == {k: c.get(k, 0) for k in KINDS}
            for member, c in expected_counts.items()
        )

    found = await collect(
        kafka_broker.bootstrap,
        [scored_topic, profiles_topic, alerts_topic, dead_topic],
        complete,
        timeout_s=240,
        alive=worker.alive,
    )
    scored = [orjson.loads(m.value) for m in found[scored_topic]]
    missing = expected_ids - {s["event_id"] for s in scored}
    assert not missing, f"seed {seed}: {len(missing)} events never scored\n{worker.log_tail()}"
    latest = {m.key.decode(): orjson.loads(m.value)["counts"] for m in found[profiles_topic]}
    wrong = {
        member: (latest.get(member), dict(c))
        for member, c in expected_counts.items()
        if latest.get(member) != {k: c.get(k, 0) for k in KINDS}
    }
    assert not wrong, f"seed {seed}: {len(wrong)} profiles miscount: {list(wrong.items())[:3]}"
    assert not found[dead_topic], "valid events were dead-lettered"
    # every duplicate is byte-for-byte the same record as its first copy, but for a chat that
    # the redelivery saw and the first copy did not (counted)
    first: dict[str, bytes] = {}
    differing, chat_order = [], set()
    for message in found[scored_topic]:
        event_id = orjson.loads(message.value)["event_id"]
        if first.setdefault(event_id, message.value) != message.value:
            if differ_only_by_chat_order(first[event_id], message.value):
                chat_order.add(event_id)
            else:
                differing.append((first[event_id], message.value))
    alerts: dict[bytes, bytes] = {}
    differing_alerts = [
        (alerts[m.key], m.value)
        for m in found[alerts_topic]
        if alerts.setdefault(m.key, m.value) != m.value
        and not set(orjson.loads(m.value)["event_ids"]) <= chat_order
    ]
    duplicates = len(scored) - len(first)
    print(
        f"kills {kills}; duplicates {duplicates}; alerts {len(alerts)}; "
        f"redelivered after a chat they first beat: {len(chat_order)}"
    )
    assert not differing, (
        f"seed {seed}: {len(differing)} redelivered events differ: {differing[:2]}"
    )
    assert not differing_alerts, f"seed {seed}: duplicate alerts differ: {differing_alerts[:2]}"
