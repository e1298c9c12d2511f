"""Time one event cannot bend (issue 20 part 4), through the worker's stages in-process.

An event counts in its member's and its subjects' state at ``min(event time, wall clock)``
(``stream.core.member.counted_time``); the partition's expiry clock is capped the same way
(``MemberExpiry``). And what reaches the edge: event times in ASCII digits only, ids without
a trailing newline, each dead-lettered with its reason."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.config import Settings
from stream.core.codec import parse_event_time
from stream.core.delivery import DeliveryLedger
from stream.core.member import counted_time, member_step
from stream.core.rules import AlertThresholds
from stream.core.steps import RawRecord, rfc3339_from_ms
from stream.core.surge import DEFAULT, apply_subject_event, hop_start
from stream.topics import DEAD_LETTER
from stream.worker.batcher import MicroBatcher
from stream.worker.stages import MemberExpiry, Stages
from tests.fakes import FakeModelHandler
from tests.fixtures import pseudonym
from tests.stream.test_worker_stages import Recorder, fraud_scorer

MINUTE, DAY = 60_000, 86_400_000
#: The wall clock of these tests: now, to the minute (the edge checks the future bound against
#: the real clock; the member stage is given this one).
WALL_MS = int(time.time()) // 60 * 60_000
Y2099_MS = parse_event_time("2099-01-01T00:00:00Z")


def make_stages(tmp_path: Path, wall_ms: int = WALL_MS, **overrides: Any) -> Stages:
    """One partition (every record is on its member's partition: the member stage runs in the
    edge), no profile throttle, the member stage's wall clock fixed at ``wall_ms``."""
    settings = Settings(
        KAFKA_BROKER="kafka://127.0.0.1:1",
        data_dir=tmp_path,
        profile_throttle_s=0,
        partitions=1,
        **{"state_flush_ms": 0, **overrides},  # states written per batch, read back here
    )
    handler = FakeModelHandler()
    recorder = Recorder()
    built = Stages(
        settings,
        handler=handler,
        batcher=MicroBatcher(handler, max_batch_size=8, max_wait_s=0.001),
        ledger=DeliveryLedger(),
        member_table={},
        surge_table={},
        send=recorder.send,
        fraud_scorer=fraud_scorer,
    )
    built.recorder = recorder
    built.models_ready.set()
    built.expiry.clock = lambda: wall_ms / 1000
    built.offsets = {}
    return built


async def feed(stages: Stages, topic: str, bodies: list[dict]) -> None:
    """Admit ``bodies`` on ``topic``[0] through the edge and publish them, in batches of 16
    (the in-flight queue is bounded)."""
    await stages.batcher.start()
    start = stages.offsets.get(topic, 0)
    stages.ledger.assign({(topic, 0): start})
    for first in range(0, len(bodies), 16):
        for offset, body in enumerate(bodies[first : first + 16], start + first):
            admission = stages.ledger.admit((topic, 0), offset).admission
            record = RawRecord(topic, 0, offset, b"m", orjson.dumps(body), WALL_MS)
            await stages.admit(stages.recorder, record, f"{topic}-{offset}", admission)
        items = []
        while not stages.in_flight.empty():
            items.append(stages.in_flight.get_nowait())
        await stages.publish_batch(items)
    stages.offsets[topic] = start + len(bodies)
    await stages.batcher.stop()


def transaction(event_id: str, member: str, at_ms: int) -> dict:
    return {
        "event_id": event_id,
        "member_id": member,
        "event_time": rfc3339_from_ms(at_ms),
        "amount": 20.0,
        "currency": "EUR",
        "merchant_id": "mer-1",
        "channel": "web",
        "device_id": "d1",
        "country": "DE",
    }


def review(event_id: str, member: str, at_ms: int, product: str = "p1") -> dict:
    return {
        "event_id": event_id,
        "member_id": member,
        "event_time": rfc3339_from_ms(at_ms),
        "product_id": product,
        "text": "fine",
    }


def last_profile(stages: Stages, member: str) -> dict:
    named = pseudonym("member_id", member)
    return [p for p in stages.recorder.on("member-profiles") if p["member_id"] == named][-1]


# ------------------------------------------------------------------- member expiry (2099)


async def test_a_2099_transaction_with_the_bound_lifted_expires_no_other_member(
    tmp_path: Path,
) -> None:
    stages = make_stages(tmp_path, event_time_max_future_s=None, member_ttl_days=30)
    stages.expiry.every = 1  # sweep after every event
    members = [f"m{i}" for i in range(200)]
    await feed(
        stages,
        "transactions",
        [transaction(f"t-{m}", m, WALL_MS - 20 * DAY + i * MINUTE) for i, m in enumerate(members)],
    )
    await feed(stages, "transactions", [transaction("t-2099", "m-future", Y2099_MS)])
    await feed(stages, "transactions", [transaction("t-next", "m-next", WALL_MS - DAY)])
    assert not stages.recorder.on(DEAD_LETTER)  # the bound is lifted: it passed the edge
    table = {m: stages.member_table.get(pseudonym("member_id", m)) for m in members}
    assert None not in table.values(), "members were expired by one event dated 2099"
    assert all(table[m]["counts"]["transaction"] == 1 for m in members)
    assert all(len(table[m]["txn_times_ms"]) == 1 for m in members)
    # the 2099 transaction itself is scored and published with its own time ...
    scored = [e for e in stages.recorder.on("scored-events") if e["event_id"] == "t-2099"]
    assert scored[0]["event_time"] == "2099-01-01T00:00:00Z"
    # ... but counts in its member's state at the wall clock
    assert stages.member_table[pseudonym("member_id", "m-future")]["last_seen_ms"] == WALL_MS


async def test_members_inactive_past_the_ttl_still_expire(tmp_path: Path) -> None:
    stages = make_stages(tmp_path, event_time_max_future_s="none", member_ttl_days=30)
    stages.expiry.every = 1
    await feed(stages, "transactions", [transaction("t-old", "m-old", WALL_MS - 40 * DAY)])
    await feed(stages, "transactions", [transaction("t-2099", "m-future", Y2099_MS)])
    await feed(stages, "transactions", [transaction("t-now", "m-now", WALL_MS)])
    held = set(stages.member_table)
    assert pseudonym("member_id", "m-old") not in held  # 40 days behind the (capped) clock
    assert {pseudonym("member_id", "m-future"), pseudonym("member_id", "m-now")} <= held


def test_the_partition_clock_never_passes_the_wall_clock() -> None:
    table = {
        "recent": {"partition": 0, "last_seen_ms": WALL_MS - 10 * DAY},
        "old": {"partition": 0, "last_seen_ms": WALL_MS - 200 * DAY},
    }
    expiry = MemberExpiry(table, ttl_days=100, every=1, clock=lambda: WALL_MS / 1000)
    expiry.saw(0, Y2099_MS)
    assert expiry.sweep(0) == 1
    assert set(table) == {"recent"}


def test_old_data_expires_on_event_time_alone() -> None:
    """A backtest of 2015: the wall clock (years later) neither expires nor keeps anyone."""
    base = parse_event_time("2015-06-01T00:00:00Z")
    table = {
        "recent": {"partition": 0, "last_seen_ms": base - 10 * DAY},
        "old": {"partition": 0, "last_seen_ms": base - 200 * DAY},
    }
    expiry = MemberExpiry(table, ttl_days=100, every=1, clock=lambda: WALL_MS / 1000)
    expiry.saw(0, base)
    assert expiry.sweep(0) == 1
    assert set(table) == {"recent"}


# ------------------------------------------------------------- velocity (50 minutes ahead)


@pytest.mark.parametrize(("early", "velocity"), [("transaction", 6), ("review", 5)])
async def test_an_event_50_minutes_ahead_does_not_empty_the_velocity_window(
    tmp_path: Path, early: str, velocity: int
) -> None:
    """Before: the early event set the member's clock 50 minutes ahead, and five ordinary
    transactions 20..16 minutes behind the wall clock counted as a 1-hour velocity of 1 (the
    early event alone, when it was a transaction). Now the early event counts at the wall
    clock: the five count, plus the early transaction itself (at its arrival)."""
    stages = make_stages(tmp_path)  # the default 1-hour future bound
    ahead = WALL_MS + 50 * MINUTE
    if early == "transaction":
        await feed(stages, "transactions", [transaction("t-early", "m1", ahead)])
    else:
        await feed(stages, "reviews", [review("r-early", "m1", ahead)])
    ordinary = [transaction(f"t{i}", "m1", WALL_MS - (20 - i) * MINUTE) for i in range(5)]
    await feed(stages, "transactions", ordinary)
    assert not stages.recorder.on(DEAD_LETTER)
    profile = last_profile(stages, "m1")
    assert profile["transactions_last_1h"] == velocity
    assert profile["transactions_last_24h"] == velocity
    assert profile["last_seen"] == rfc3339_from_ms(WALL_MS)
    # the fifth ordinary transaction's own velocity feature saw the four before it
    fifth = next(e for e in stages.recorder.on("scored-events") if e["event_id"] == "t4")
    assert "rule: 5 transactions in 1 h (x5 odds)" not in fifth["fraud"]["rules_fired"]


async def test_in_range_data_gives_the_same_outputs_whatever_the_wall_clock(
    tmp_path: Path,
) -> None:
    """Determinism: events at or behind the wall clock are never capped, so replaying them an
    hour or ten years later publishes the same records."""
    bodies = [transaction(f"t{i}", f"m{i % 3}", WALL_MS - (30 - i) * MINUTE) for i in range(30)]
    outputs = []
    for wall in (WALL_MS, WALL_MS + 3_600_000, WALL_MS + 3650 * DAY):
        stages = make_stages(tmp_path, wall_ms=wall)
        await feed(stages, "transactions", bodies)
        outputs.append(stages.recorder.sent)
    assert outputs[0] == outputs[1] == outputs[2]


# ----------------------------------------------------------------------- surge (2099)


def test_a_mention_dated_2099_counts_in_the_hop_it_arrived_in() -> None:
    """Before: the mention opened the 2099 hop (every window up to it closed into the baseline,
    decayed), and every later mention was late. Now the subject's clock stays at the wall."""
    state = None
    for i in range(8):
        at = WALL_MS - (120 - 15 * i) * MINUTE
        evt = member_event_of(review(f"r{i}", "m1", at), at)
        state, _ = apply_subject_event(state, subject_mention(evt, WALL_MS))
    windows = state["windows"]
    future = member_event_of(review("r-2099", "m1", Y2099_MS), Y2099_MS)
    mention = subject_mention(future, WALL_MS)
    assert mention["event_time_ms"] == WALL_MS
    assert mention["event_time"] == "2099-01-01T00:00:00Z"
    state, _ = apply_subject_event(state, mention)
    assert state["hop"] == hop_start(WALL_MS, DEFAULT.hop_ms)
    assert state["windows"] - windows <= 15 * MINUTE // DEFAULT.hop_ms  # since the last review
    state, _ = apply_subject_event(
        state, subject_mention(member_event_of(review("r-next", "m1", WALL_MS), WALL_MS), WALL_MS)
    )
    assert state["late"] == 0


def member_event_of(body: dict, at_ms: int) -> dict:
    return {
        "event_type": "review",
        "event": body,
        "event_time_ms": at_ms,
        "scores": {"sentiment_negative": 0.9, "sentiment_polarity": -0.8, "scam_risk": 0.0},
        "model_version": "v1",
        "source": {"topic": "reviews", "partition": 0, "offset": 0},
        "input_timestamp_ms": None,
    }


def subject_mention(member_evt: dict, now_ms: int) -> dict:
    """The product mention the member step writes for ``member_evt`` at wall clock ``now_ms``."""
    outcome = member_step(
        None,
        member_evt,
        thresholds=AlertThresholds(),
        profile_throttle_ms=0,
        fraud_scorer=lambda _: None,
        now_ms=now_ms,
    )
    mentions = [o for o in outcome.outputs if o.topic == "riskstream-subject-events"]
    return orjson.loads(mentions[0].value)


def test_counted_time() -> None:
    assert counted_time(5, None) == 5
    assert counted_time(5, 9) == 5
    assert counted_time(9, 5) == 5


# --------------------------------------------------------------------------- the edge

ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x0660 + d) for d in range(10)))
FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + d) for d in range(10)))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"event_time": "2026-11-23T10:00:00Z".translate(ARABIC_INDIC)}, "invalid_event_time"),
        ({"event_time": "2026-11-23T10:00:00Z".translate(FULLWIDTH)}, "invalid_event_time"),
        ({"event_time": "2026-11-23T1\u0660:00:00Z"}, "invalid_event_time"),
        ({"event_id": "t1\n"}, "schema_violation"),
        ({"member_id": "m1\n"}, "schema_violation"),
        ({"merchant_id": "mer-1\n"}, "schema_violation"),
        ({"device_id": "d1\r"}, "schema_violation"),
        ({"currency": "EUR\n"}, "schema_violation"),
    ],
)
async def test_bad_digits_and_trailing_newlines_are_dead_lettered(
    tmp_path: Path, change: dict, reason: str
) -> None:
    stages = make_stages(tmp_path, event_time_max_future_s=None)
    await feed(stages, "transactions", [{**transaction("t1", "m1", WALL_MS - DAY), **change}])
    letters = stages.recorder.on(DEAD_LETTER)
    assert [d["reason"] for d in letters] == [reason]
    assert not stages.recorder.on("scored-events")
