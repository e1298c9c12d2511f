"""Member state bytes over demo traffic: the member stage alone (``member_step``), seeded fake
text scores and a fake fraud model with one reason, 150 members, 20,000 events.

    .venv/bin/python bench/member_state_size.py

Reports the JSON size of the state written per member event (medians over the second half,
when most members' recent-event horizon is full), of its ring of recent event ids (``seen``),
and the memory of a member's state in a ``memory://`` table: as stored (JSON bytes) and as the
nested dicts and lists Faust held before (``sys.getsizeof`` over the containers).
"""

from __future__ import annotations

import random
import statistics
import sys

import orjson

from stream.core import member
from stream.core.rules import AlertThresholds
from stream.core.steps import RawRecord, ValidEvent, decode_record, member_event
from stream.ops.simulate import DemoCorpus, DemoTraffic

THRESHOLDS = AlertThresholds(negative_review=0.85, scam_chat=0.9, fraud_risk=0.15)


def fake_scores(rng: random.Random) -> dict[str, float]:
    return {
        "sentiment_negative": round(rng.random(), 6),
        "sentiment_polarity": round(rng.uniform(-1, 1), 6),
        "scam_risk": round(rng.random(), 6),
    }


def demo_member_states(
    events: int = 20_000, members: int = 150
) -> tuple[dict[str, dict], list[int]]:
    """Each member's state after ``events`` demo events of ``members`` members, and the JSON
    size of every state written on the way (``bench/state_recovery.py`` takes its members
    from here)."""
    rng = random.Random(1)
    traffic = DemoTraffic(DemoCorpus.load(), seed=3, members=members, malformed_ratio=0.0)
    states: dict[str, dict] = {}
    sizes: list[int] = []
    for offset in range(events):
        record = traffic.next_record()
        event = decode_record(RawRecord(record.topic, 0, offset, record.key, record.value))
        if not isinstance(event, ValidEvent):
            continue
        text = event.event_type != "transaction"
        evt = member_event(event, fake_scores(rng) if text else None, "bert-v1" if text else None)
        outcome = member.member_step(
            states.get(event.member_id),
            evt,
            thresholds=THRESHOLDS,
            profile_throttle_ms=0,
            fraud_scorer=lambda _txn: (0.01, [("amount_z", 1.0, 0.2)], "fraud-v1"),
        )
        if outcome.state is not None:
            states[event.member_id] = outcome.state
            sizes.append(len(orjson.dumps(outcome.state)))
    return states, sizes


def main(events: int = 20_000, members: int = 150) -> None:
    states, sizes = demo_member_states(events, members)
    tail = sorted(sizes[len(sizes) // 2 :])
    ring = [len(orjson.dumps(s.get("seen"))) for s in states.values()]
    memory = [deep_size(s) for s in states.values()]
    stored = [sys.getsizeof(orjson.dumps(s)) for s in states.values()]
    print(
        f"RECENT_EVENTS={member.RECENT_EVENTS}: state bytes per write median "
        f"{statistics.median(tail):.0f}, p99 {tail[int(len(tail) * 0.99)]}, max {tail[-1]}; "
        f"seen median {statistics.median(ring):.0f}; "
        f"memory per member median {statistics.median(stored) / 1024:.1f} KiB as stored (JSON "
        f"bytes, stream/worker/tables.py), {statistics.median(memory) / 1024:.1f} KiB as dicts"
    )


def deep_size(value: object) -> int:
    """Bytes of a JSON-like value in memory, containers and their items."""
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(deep_size(k) + deep_size(v) for k, v in value.items())
    elif isinstance(value, list):
        size += sum(deep_size(v) for v in value)
    return size


if __name__ == "__main__":
    main()
