"""The error policy as the agents apply it, in-process (no broker): an event that fails inside
a stage is dead-lettered and the worker goes on, or, with the ``fail`` policy, stops."""

from __future__ import annotations

import orjson
import pytest

from stream.errors import FailurePolicy
from stream.steps import RawRecord


@pytest.fixture
def agents(monkeypatch):
    import stream.agents as agents

    letters, sent, stopped = [], [], []

    async def publish_dead_letter(invalid) -> None:
        letters.append(invalid)

    async def send_all(outputs) -> None:
        sent.extend(outputs)

    monkeypatch.setattr(agents, "publish_dead_letter", publish_dead_letter)
    monkeypatch.setattr(agents, "send_all", send_all)
    monkeypatch.setattr(agents, "member_to_profile", {})
    monkeypatch.setattr(agents, "fatal", lambda exc, where: stopped.append((exc, where)))
    agents.letters, agents.sent, agents.stopped = letters, sent, stopped
    return agents


def member_record(value: bytes) -> RawRecord:
    return RawRecord("riskstream-member-events", 1, 42, b"m1", value)


GOOD = {
    "event_type": "review",
    "event": {
        "event_id": "r1",
        "member_id": "m1",
        "event_time": "2026-11-23T10:00:00Z",
        "product_id": "p1",
        "text": "fine",
    },
    "event_time_ms": 1_795_428_000_000,
    "scores": {"sentiment_negative": 0.1, "sentiment_polarity": 0.8, "scam_risk": 0.0},
    "model_version": "v1",
    "source": {"topic": "reviews", "partition": 0, "offset": 7},
}


async def test_a_failing_event_is_dead_lettered_and_the_next_one_processed(agents) -> None:
    broken = {**GOOD, "event_type": "refund"}  # no such event type: the member step raises
    await agents.handle_member_event(member_record(orjson.dumps(broken)))
    await agents.handle_member_event(member_record(orjson.dumps(GOOD)))
    assert [letter.error.reason for letter in agents.letters] == ["processing_error"]
    assert agents.letters[0].stage == "member"
    assert agents.letters[0].record.offset == 42
    assert "scored-events" in {output.topic for output in agents.sent}
    assert agents.member_to_profile["m1"]["counts"]["review"] == 1
    assert not agents.stopped


async def test_fail_policy_stops_instead(agents, monkeypatch) -> None:
    monkeypatch.setattr(agents, "POLICY", FailurePolicy.FAIL)
    await agents.handle_member_event(member_record(b"not json"))
    assert agents.stopped and "member stage" in agents.stopped[0][1]


def test_inactive_members_expire_by_event_time(agents, monkeypatch) -> None:
    day = 86_400_000
    table = {
        "old": {"partition": 0, "last_seen_ms": 0},
        "recent": {"partition": 0, "last_seen_ms": 300 * day},
        "other-partition": {"partition": 1, "last_seen_ms": 0},
    }
    monkeypatch.setattr(agents, "member_to_profile", table)
    expiry = agents.MemberExpiry(ttl_days=100, every=1)
    expiry.saw(0, 301 * day)
    assert expiry.sweep(0) == 1
    assert set(table) == {"recent", "other-partition"}  # only keys of the event's partition
