"""The worker's stages in-process, no broker: dict tables, a recording ``send``, the fake model.

Edge (decode, micro-batch, publish in order, done only after the send), member stage (table,
outputs, error policy, expiry) and surge stage (hold, flush on a tick), plus ``build_app``
itself: it registers every agent and loads no model."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import orjson
import pytest

from stream.config import Settings
from stream.core.delivery import DeliveryLedger
from stream.core.errors import FailurePolicy
from stream.core.member import PACKED_MENTIONS_KEY
from stream.core.steps import RawRecord, decode_record
from stream.core.surge import REORDER, subject_key
from stream.topics import ALERTS, DEAD_LETTER, MEMBER_EVENTS, SUBJECT_EVENTS
from stream.worker.batcher import MicroBatcher
from stream.worker.stages import (
    SURGE_TICK,
    HopRecord,
    InFlight,
    MemberExpiry,
    Stages,
    subject_partition,
)
from tests.fakes import FakeModelHandler
from tests.fixtures import pseudonym
from tests.test_import_rules import run_python

ROOT = Path(__file__).resolve().parents[2]


class Recorder:
    """Stands in for the producer (``send``) and a noack stream (``ack``)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, int | None]] = []
        self.acked: list[object] = []

    async def send(self, topic: str, key, value: bytes, partition: int | None = None) -> None:
        self.sent.append((topic, key, value, partition))

    async def ack(self, event: object) -> None:
        self.acked.append(event)

    def on(self, topic: str) -> list[dict]:
        return [orjson.loads(value) for t, _, value, _ in self.sent if t == topic]


def fraud_scorer(txn: dict) -> None:
    return None  # rules alone


@pytest.fixture
def stages(tmp_path: Path):
    settings = Settings(
        KAFKA_BROKER="kafka://127.0.0.1:1",
        data_dir=tmp_path,
        profile_throttle_s=0,
        member_ttl_days=100,
        state_flush_ms=0,  # per-batch writes; the write-behind has tests of its own
        partitions=2,
    )
    handler = FakeModelHandler()
    batcher = MicroBatcher(handler, max_batch_size=8, max_wait_s=0.001)
    recorder = Recorder()
    ledger = DeliveryLedger()
    built = Stages(
        settings,
        handler=handler,
        batcher=batcher,
        ledger=ledger,
        member_table={},
        surge_table={},
        send=recorder.send,
        fraud_scorer=fraud_scorer,
    )
    built.models_ready.set()
    stopped: list[tuple[Exception, str]] = []
    built.fatal = lambda exc, where: stopped.append((exc, where))
    built.recorder, built.stopped = recorder, stopped
    return built


def review(event_id: str, text: str, member: str = "m1", product: str = "p1") -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "member_id": member,
            "event_time": "2026-11-23T10:00:00Z",
            "product_id": product,
            "brand_id": "b1",
            "rating": 1,
            "text": text,
        }
    )


async def edge(stages: Stages, values: list[bytes]) -> None:
    """Admit ``values`` as reviews[0] offsets 0.., then publish everything queued."""
    await stages.batcher.start()
    stages.ledger.assign({("reviews", 0): 0})
    for offset, value in enumerate(values):
        admission = stages.ledger.admit(("reviews", 0), offset).admission
        record = RawRecord("reviews", 0, offset, b"m1", value, 1_795_428_000_000)
        await stages.admit(stages.recorder, record, f"event-{offset}", admission)
    items = []
    while not stages.in_flight.empty():
        items.append(stages.in_flight.get_nowait())
    await stages.publish_batch(items)
    await stages.batcher.stop()


async def test_edge_scores_in_order_and_marks_done_only_after_the_send(stages) -> None:
    stages.settings = stages.settings.model_copy(update={"member_stage": "hop"})
    await edge(stages, [review("r1", "awful, broke"), b"{not json", review("r2", "fine")])
    sent = stages.recorder.sent
    # a dead letter goes out at once; the batch's outputs (hop records too) at its end
    assert [t for t, *_ in sent] == [DEAD_LETTER, MEMBER_EVENTS, MEMBER_EVENTS]
    first = orjson.loads(sent[1][2])
    assert sent[1][1] == pseudonym("member_id", "m1").encode()  # re-keyed by member
    assert first["scores"]["sentiment_negative"] == 0.99 and first["model_version"] == "fake-1"
    assert orjson.loads(sent[2][2])["event"]["event_id"] != first["event"]["event_id"]
    letter = orjson.loads(sent[0][2])
    assert letter["reason"] == "invalid_json"
    assert stages.recorder.acked == ["event-0", "event-1", "event-2"]
    assert stages.ledger.committable(("reviews", 0)) == 3
    assert stages.handler.batches == [["awful, broke", "fine"]]  # one batch for both texts


async def test_an_event_on_its_member_partition_skips_the_hop(stages) -> None:
    """m1 hashes to partition 0 of 2 (murmur2, as the hop's producer would send it), m2 to 1:
    read from partition 0, m1's review goes through the member stage at once, inside its input
    event (so table writes go to partition 0); m2's takes the member-events hop."""
    entered: list[str] = []

    @contextlib.contextmanager
    def within_event(event):
        entered.append(event)
        yield

    stages.within_event = within_event
    await edge(stages, [review("r1", "awful, broke", member="m1"), review("r2", "ok", member="m2")])
    topics = [t for t, *_ in stages.recorder.sent]
    assert MEMBER_EVENTS not in topics[: topics.index(ALERTS)]  # m1: no hop
    m1, m2 = pseudonym("member_id", "m1"), pseudonym("member_id", "m2")
    hops = [(orjson.loads(v), p) for t, _, v, p in stages.recorder.sent if t == MEMBER_EVENTS]
    # the hop is keyed by m2's pseudonym but sent to m2's partition (1), not the pseudonym's
    assert [(body["event"]["member_id"], p) for body, p in hops] == [(m2, 1)]
    assert entered == ["event-0", "event-0"]  # the step, then the state write after it
    assert stages.member_table[m1]["counts"]["review"] == 1 and m2 not in stages.member_table
    assert stages.member_table[m1]["partition"] == 0
    assert stages.ledger.committable(("reviews", 0)) == 2


async def test_a_batch_packs_its_mentions_one_record_per_partition(stages) -> None:
    await edge(
        stages,
        [
            review("r1", "awful, broke", member="m1", product="p1"),
            review("r2", "awful again", member="m3", product="p1"),
            review("r3", "fine", member="m4", product="p2"),
        ],
    )  # m1, m3 and m4 all live on partition 0: all fused
    packed = [(k, p, orjson.loads(v)) for t, k, v, p in stages.recorder.sent if t == SUBJECT_EVENTS]
    expected: dict[int, list[tuple[str, str]]] = {}
    for subject, event_id in (("p1", "r1"), ("p1", "r2"), ("p2", "r3")):
        partition = subject_partition(f"product:{subject}".encode(), 2)
        expected.setdefault(partition, []).append((subject, event_id))
    assert len(packed) == len(expected) and all(k == PACKED_MENTIONS_KEY for k, _, _ in packed)
    assert {p: [(m["id"], m["event_id"]) for m in v["mentions"]] for _, p, v in packed} == expected
    assert stages.recorder.sent[-1][0] == SUBJECT_EVENTS  # after every other output...
    assert stages.ledger.committable(("reviews", 0)) == 3  # ...and before the events are done
    import msgspec

    from stream.core.events import TOPIC_TYPES

    for value in (v for t, _, v, _ in stages.recorder.sent if t == SUBJECT_EVENTS):
        packed_mentions = msgspec.json.decode(value, type=TOPIC_TYPES[SUBJECT_EVENTS])
        # the score the surge detector weighs each mention by travels with it, typed
        assert all(m.p_negative is not None for m in packed_mentions.mentions)


async def test_an_input_topic_of_another_size_always_takes_the_hop(stages) -> None:
    stages.partitions_of = lambda topic: 4  # settings say 2: not co-partitioned with the table
    await edge(stages, [review("r1", "awful, broke", member="m1")])
    assert [t for t, *_ in stages.recorder.sent] == [MEMBER_EVENTS]


def member_record(value: bytes, offset: int = 42) -> RawRecord:
    return RawRecord(MEMBER_EVENTS, 1, offset, b"m1", value)


def member_event(event_id: str = "r1", negative: float = 0.1, **event) -> dict:
    return {
        "event_type": "review",
        "event": {
            "event_id": event_id,
            "member_id": "m1",
            "event_time": "2026-11-23T10:00:00Z",
            "product_id": "p1",
            "brand_id": "b1",
            "text": "fine",
            **event,
        },
        "event_time_ms": 1_795_428_000_000,
        "scores": {
            "sentiment_negative": negative,
            "sentiment_polarity": 1 - 2 * negative,
            "scam_risk": 0.0,
        },
        "model_version": "v1",
        "source": {"topic": "reviews", "partition": 0, "offset": 7},
    }


async def test_member_stage_publishes_and_keeps_state(stages) -> None:
    await stages.member_record(member_record(orjson.dumps(member_event(negative=0.99))))
    topics = {t for t, *_ in stages.recorder.sent}
    assert {"scored-events", "member-profiles", ALERTS} <= topics
    assert stages.member_table["m1"]["counts"]["review"] == 1
    assert [a["alert_type"] for a in stages.recorder.on(ALERTS)] == ["negative_review"]


def deliver_when_told(stages) -> list[asyncio.Future]:
    """Make ``stages.send`` record each output and return a delivery the test resolves."""
    loop = asyncio.get_running_loop()
    deliveries: list[asyncio.Future] = []

    async def send(topic, key, value, partition=None):
        stages.recorder.sent.append((topic, key, value, partition))
        deliveries.append(loop.create_future())
        return deliveries[-1]

    stages.send = send
    return deliveries


async def test_a_state_is_written_once_per_batch_and_only_after_its_outputs_are_delivered(
    stages,
) -> None:
    """Outputs first, then the state: a state that counts an event proves its outputs are out,
    so a redelivery may publish nothing. Three events of one member in one batch: one write."""
    deliveries = deliver_when_told(stages)
    stages.member_table = table = CountingTable()
    stages.ledger.assign({(MEMBER_EVENTS, 1): 0})
    items = []
    for offset in range(3):
        admission = stages.ledger.admit((MEMBER_EVENTS, 1), offset).admission
        value = orjson.dumps(member_event(f"r{offset}", negative=0.99))
        items.append(
            HopRecord(stages.recorder, f"event-{offset}", admission, member_record(value, offset))
        )
    task = asyncio.ensure_future(stages.publish_batch(items))
    await asyncio.sleep(0.05)
    assert deliveries and not task.done()
    assert "m1" not in table and not stages.recorder.acked  # nothing written before delivery
    for delivery in deliveries[:-1]:
        delivery.set_result(None)
    await asyncio.sleep(0.05)
    assert "m1" not in table  # one output still in flight
    deliveries[-1].set_result(None)
    await asyncio.wait_for(task, 1)
    assert table.writes == 1 and table["m1"]["counts"]["review"] == 3
    assert stages.recorder.acked == ["event-0", "event-1", "event-2"]
    assert stages.ledger.committable((MEMBER_EVENTS, 1)) == 3
    # redelivered after a crash before the commit: the state knows them, nothing goes out
    sent = len(stages.recorder.sent)
    await stages.member_record(member_record(orjson.dumps(member_event("r1", negative=0.99)), 1))
    assert len(stages.recorder.sent) == sent and table.writes == 1


async def test_an_event_whose_partition_was_revoked_while_it_waited_is_left_alone(
    stages,
) -> None:
    """Its new owner reads it again from the last commit. Applied here, it would read a state
    this worker no longer keeps and publish a stale profile after the new owner's."""
    stages.ledger.assign({(MEMBER_EVENTS, 1): 0})
    admission = stages.ledger.admit((MEMBER_EVENTS, 1), 0).admission
    item = HopRecord(
        stages.recorder, "event-0", admission, member_record(orjson.dumps(member_event()))
    )
    stages.ledger.revoke([(MEMBER_EVENTS, 1)])
    await stages.publish_batch([item])
    assert not stages.recorder.sent and "m1" not in stages.member_table


async def test_a_state_of_a_partition_revoked_during_the_batch_is_not_written(stages) -> None:
    """Revoked while the batch's outputs were being delivered: they stand (the new owner's
    come after them), the state is the new owner's to write."""
    deliveries = deliver_when_told(stages)
    stages.ledger.assign({(MEMBER_EVENTS, 1): 0})
    admission = stages.ledger.admit((MEMBER_EVENTS, 1), 0).admission
    item = HopRecord(
        stages.recorder, "event-0", admission, member_record(orjson.dumps(member_event()))
    )
    task = asyncio.ensure_future(stages.publish_batch([item]))
    await asyncio.sleep(0.05)
    assert "scored-events" in {t for t, *_ in stages.recorder.sent}
    stages.ledger.revoke([(MEMBER_EVENTS, 1)])
    for delivery in deliveries:
        delivery.set_result(None)
    await asyncio.wait_for(task, 1)
    assert "m1" not in stages.member_table


async def test_a_failing_event_is_dead_lettered_and_the_next_one_processed(stages) -> None:
    broken = {**member_event(), "event_type": "refund"}  # no such type: the member step raises
    await stages.handle_member_event(member_record(orjson.dumps(broken)))
    await stages.handle_member_event(member_record(orjson.dumps(member_event())))
    letters = stages.recorder.on(DEAD_LETTER)
    assert [(d["reason"], d["source"]["offset"]) for d in letters] == [("processing_error", 42)]
    assert "scored-events" in {t for t, *_ in stages.recorder.sent}
    assert stages.member_table["m1"]["counts"]["review"] == 1
    assert not stages.stopped


async def test_fail_policy_stops_instead(stages) -> None:
    stages.policy = FailurePolicy.FAIL
    await stages.handle_member_event(member_record(b"not json"))
    assert stages.stopped and "member stage" in stages.stopped[0][1]
    assert not stages.recorder.on(DEAD_LETTER)


async def test_the_member_stage_waits_for_the_models(stages) -> None:
    stages.models_ready.clear()
    task = asyncio.ensure_future(stages.member_record(member_record(orjson.dumps(member_event()))))
    await asyncio.sleep(0.05)
    assert not task.done() and not stages.recorder.sent
    stages.models_ready.set()
    await asyncio.wait_for(task, 1)
    assert stages.recorder.sent


def test_inactive_members_expire_by_event_time() -> None:
    day = 86_400_000
    table = {
        "old": {"partition": 0, "last_seen_ms": 0},
        "recent": {"partition": 0, "last_seen_ms": 300 * day},
        "other-partition": {"partition": 1, "last_seen_ms": 0},
    }
    expiry = MemberExpiry(table, ttl_days=100, every=1)
    expiry.saw(0, 301 * day)
    assert expiry.sweep(0) == 1
    assert set(table) == {"recent", "other-partition"}  # only keys of the event's partition


class CountingTable(dict):
    """A table that counts writes (a changelog record each in Faust)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def __setitem__(self, key, value) -> None:
        self.writes += 1
        super().__setitem__(key, value)


async def test_surge_holds_mentions_in_memory_and_commits_only_what_was_folded(stages) -> None:
    for i in range(3):
        await stages.member_record(
            member_record(orjson.dumps(member_event(f"r{i}", negative=0.99)), offset=i)
        )
    mentions = [(k, v) for t, k, v, _ in stages.recorder.sent if t == SUBJECT_EVENTS]
    assert len(mentions) == 3
    stages.surge_table = table = CountingTable()
    ledger, tp = stages.ledger, (SUBJECT_EVENTS, 0)
    ledger.assign({tp: 0})

    async def feed(offset: int, key: bytes, value: bytes, now: float) -> None:
        admission = ledger.admit(tp, offset).admission
        await stages.subject_record(
            RawRecord(SUBJECT_EVENTS, 0, offset, key, value), now, admission
        )

    subjects = [subject_key(m).decode() for _, v in mentions for m in orjson.loads(v)["mentions"]]
    for offset, (key, value) in enumerate(mentions):
        await feed(offset, key, value, now=100.0)
    assert stages.partitions_holding_mentions() == [0]
    assert table.writes == 0  # held in memory, not written per mention
    assert ledger.committable(tp) == 0  # nothing done while its mentions are only held
    await feed(len(mentions), SURGE_TICK, b"{}", now=100.0 + REORDER.hold_s)
    assert table.writes == len(set(subjects))  # once per subject
    assert {k: len(s["recent_event_ids"]) for k, s in table.items()} == {
        k: subjects.count(k) for k in set(subjects)
    }
    assert stages.partitions_holding_mentions() == []
    assert ledger.committable(tp) == len(mentions) + 1  # all folded: all done


async def test_a_revoked_partition_forgets_held_mentions_and_commits_none_of_them(stages) -> None:
    await stages.member_record(member_record(orjson.dumps(member_event("r1", negative=0.99))))
    key, value = next((k, v) for t, k, v, _ in stages.recorder.sent if t == SUBJECT_EVENTS)
    ledger, tp = stages.ledger, (SUBJECT_EVENTS, 0)
    ledger.assign({tp: 10})
    admission = ledger.admit(tp, 10).admission
    await stages.subject_record(RawRecord(SUBJECT_EVENTS, 0, 10, key, value), 5.0, admission)
    stages.forget_partitions()
    ledger.assign({tp: 10})  # the next owner starts again at the committed offset
    assert ledger.committable(tp) == 10 and stages.partitions_holding_mentions() == []
    assert not stages.surge_table


def test_build_app_registers_every_agent_and_loads_no_model(tmp_path: Path) -> None:
    from stream.worker.app import build_app

    handler = FakeModelHandler()
    loaded: list[str] = []

    def scorer_factory():
        loaded.append("fraud")
        return fraud_scorer

    settings = Settings(KAFKA_BROKER="kafka://127.0.0.1:1", data_dir=tmp_path, topic_prefix="x.")
    worker = build_app(
        settings, handler_factory=lambda s: handler, fraud_scorer_factory=scorer_factory
    )
    assert set(worker.app.agents) == {
        "score_reviews",
        "score_chats",
        "score_transactions",
        "track_member_activity",
        "detect_opinion_surges",
        "check_labels",
    }
    assert {t.get_topic_name() for t in worker.topics.values()} >= {
        "x.reviews",
        "x.alerts",
        "x.labels",
    }
    assert handler.loads == 0 and not loaded  # both load in the startup task
    assert set(worker.readiness()) == {
        "model_loaded",
        "recovery_done",
        "not_rebalancing",
        "partitions_assigned",
    }


def imported_after(code: str) -> set[str]:
    """Heavy modules in sys.modules after running ``code`` in a fresh interpreter whose
    settings would fail to load (so a module reading them at import fails the test)."""
    heavy = ("torch", "onnxruntime", "transformers", "pandas", "pyarrow", "matplotlib")
    script = (
        f"import json, sys\n{code}\nprint(json.dumps(sorted(set({heavy!r}) & set(sys.modules))))"
    )
    env = {"PATH": "/usr/bin:/bin", "RISKSTREAM_BACKEND": "not-a-backend"}
    return set(run_python(script, env))


def test_importing_any_stream_module_loads_no_model() -> None:
    """Every module of ``stream`` imports without reading settings, building an app or loading
    a model (backtest modules may bring pandas and matplotlib, never a model runtime)."""
    code = (
        "import importlib, pkgutil, stream\n"
        "names = [m.name for m in pkgutil.walk_packages(stream.__path__, 'stream.')]\n"
        "assert len(names) > 20, names\n"
        "for name in names:\n"
        "    if not name.endswith('__main__'): importlib.import_module(name)"
    )
    assert not imported_after(code) & {"torch", "onnxruntime", "transformers"}


def test_the_worker_imports_no_training_or_backtest_libraries() -> None:
    code = "import stream.worker.app, stream.worker.scoring, stream.worker.stages, stream.ops.cli"
    assert imported_after(code) == set()


async def test_a_packed_record_holds_each_subject_and_dead_letters_a_bad_one_alone(stages) -> None:
    good = {**orjson.loads(stages_mention("r1")), "kind": "product", "id": "p1"}
    bad = {**good, "id": "p2"}
    del bad["event_id"]  # holding it fails
    stages.ledger.assign({(SUBJECT_EVENTS, 0): 0})
    admission = stages.ledger.admit((SUBJECT_EVENTS, 0), 0).admission
    value = orjson.dumps({"mentions": [good, bad]})
    record = RawRecord(SUBJECT_EVENTS, 0, 0, PACKED_MENTIONS_KEY, value)
    await stages.subject_record(record, 100.0, admission)
    await stages.subject_record(
        RawRecord(SUBJECT_EVENTS, 0, 1, SURGE_TICK, b"{}"),
        100.0 + REORDER.hold_s,
        stages.ledger.admit((SUBJECT_EVENTS, 0), 1).admission,
    )
    assert stages.surge_table["product:p1"]["recent_event_ids"] == ["r1"]
    letters = stages.recorder.on(DEAD_LETTER)
    assert len(letters) == 1 and letters[0]["reason"] == "processing_error"
    assert "product:p2" not in stages.surge_table


def stages_mention(event_id: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "event_time": "2026-11-23T10:00:00Z",
            "event_time_ms": 1_795_428_000_000,
            "negative": True,
            "model_version": "v1",
        }
    )


async def test_hop_records_do_not_wait_behind_texts_still_at_the_model(stages) -> None:
    """The publisher takes what it can publish now: a member-events record goes out while an
    input event ahead of it in time still waits for its scores (its state would lag by the
    model's backlog: seconds on a CPU)."""
    loop = asyncio.get_running_loop()
    stages.ledger.assign({("reviews", 0): 0, (MEMBER_EVENTS, 1): 0})
    text = stages.ledger.admit(("reviews", 0), 0).admission
    record = RawRecord("reviews", 0, 0, b"m1", review("r0", "slow"), 1_795_428_000_000)

    at_the_model = InFlight(
        stages.recorder, "text-0", text, decode_record(record), loop.create_future()
    )
    await stages.in_flight.put(at_the_model)
    hop = stages.ledger.admit((MEMBER_EVENTS, 1), 0).admission
    value = orjson.dumps(member_event("r1", negative=0.99))
    await stages.hop_queue.put(HopRecord(stages.recorder, "hop-0", hop, member_record(value, 0)))
    publisher = asyncio.ensure_future(stages.publish_in_order())
    try:
        for _ in range(100):
            if stages.recorder.acked:
                break
            await asyncio.sleep(0.01)
        assert stages.recorder.acked == ["hop-0"]  # the text is still at the model
        assert stages.member_table["m1"]["counts"]["review"] == 1
        # the publisher holds the text: the in-flight gauge still counts it
        assert stages.in_flight.empty() and stages.in_flight_count() == 1
    finally:
        publisher.cancel()


async def test_the_surge_stage_keeps_the_partitions_stream_prior_in_the_table(stages) -> None:
    """A subject's closed windows are pooled into its partition's stream prior, stored under a
    key no subject has, so a new subject of that partition has a prior to lean on."""
    from stream.core.surge import prior_key

    hour = 3_600_000
    mentions = [
        {
            **orjson.loads(stages_mention(f"r{i}")),
            "event_time_ms": 1_795_428_000_000 + i * hour // 2,
            "p_negative": 0.2,
            "negative": False,
            "kind": "product",
            "id": "p1",
        }
        for i in range(12)
    ]
    stages.ledger.assign({(SUBJECT_EVENTS, 0): 0})
    for offset, mention in enumerate(mentions):
        admission = stages.ledger.admit((SUBJECT_EVENTS, 0), offset).admission
        value = orjson.dumps({"mentions": [mention]})
        record = RawRecord(SUBJECT_EVENTS, 0, offset, PACKED_MENTIONS_KEY, value)
        await stages.subject_record(record, 100.0 + offset * REORDER.hold_s, admission)
    assert prior_key(0) in stages.surge_table
    assert "pending" not in stages.surge_table[prior_key(0)]
    assert "r0" in stages.surge_table["product:p1"]["recent_event_ids"]


def hops(stages, offsets: range, partition: int = 1) -> list[HopRecord]:
    """Member-events records of member m1 at ``offsets``, admitted through the ledger."""
    items = []
    for offset in offsets:
        admission = stages.ledger.admit((MEMBER_EVENTS, partition), offset).admission
        value = orjson.dumps(member_event(f"r{offset}", negative=0.99))
        items.append(
            HopRecord(stages.recorder, f"event-{offset}", admission, member_record(value, offset))
        )
    return items


async def test_the_write_behind_writes_a_member_once_per_flush_and_commits_after_it(
    stages,
) -> None:
    """Three publisher batches of one member within the flush interval: outputs go out at
    once, each batch counts on the state the one before left (not yet in the table), and the
    state is written once; the events are done only after that write."""
    stages.state_flush_s = 60.0
    stages.member_table = table = CountingTable()
    stages.ledger.assign({(MEMBER_EVENTS, 1): 0})
    for batch in range(3):
        await stages.publish_batch(hops(stages, range(batch * 2, batch * 2 + 2)))
    profiles = [orjson.loads(v) for t, _, v, _ in stages.recorder.sent if t == "member-profiles"]
    assert [p["counts"]["review"] for p in profiles] == [1, 2, 3, 4, 5, 6]
    assert table.writes == 0 and not stages.recorder.acked
    assert stages.ledger.committable((MEMBER_EVENTS, 1)) == 0
    await stages.flush_states()
    assert table.writes == 1 and table["m1"]["counts"]["review"] == 6
    assert stages.recorder.acked == [f"event-{i}" for i in range(6)]
    assert stages.ledger.committable((MEMBER_EVENTS, 1)) == 6


async def test_an_idle_publisher_flushes_the_write_behind_when_it_is_due(stages) -> None:
    stages.state_flush_s = 0.2
    stages.ledger.assign({(MEMBER_EVENTS, 1): 0})
    for item in hops(stages, range(2)):
        await stages.hop_queue.put(item)
    publisher = asyncio.ensure_future(stages.publish_in_order())
    try:
        await asyncio.sleep(0.1)
        assert stages.recorder.sent and not stages.recorder.acked  # published, not yet done
        for _ in range(100):
            if stages.recorder.acked:
                break
            await asyncio.sleep(0.01)
        assert stages.recorder.acked == ["event-0", "event-1"]  # nothing new arrived
        assert stages.member_table["m1"]["counts"]["review"] == 2
    finally:
        publisher.cancel()


async def test_the_write_behind_of_a_partition_revoked_and_assigned_again_is_dropped(
    stages,
) -> None:
    """Revoked before the flush: its states are not written and its events not committed,
    so they are read again from the commit; and when the partition comes back, the member
    stage counts on the table, not on the state of the lost assignment."""
    stages.state_flush_s = 60.0
    stages.ledger.assign({(MEMBER_EVENTS, 1): 0})
    await stages.publish_batch(hops(stages, range(2)))
    stages.ledger.revoke([(MEMBER_EVENTS, 1)])
    stages.ledger.assign({(MEMBER_EVENTS, 1): 0})  # back, from the committed offset
    await stages.publish_batch(hops(stages, range(2)))  # read again
    await stages.flush_states()
    assert stages.member_table["m1"]["counts"]["review"] == 2  # each event counted once
    assert stages.ledger.committable((MEMBER_EVENTS, 1)) == 2


async def test_a_stall_line_says_where_events_wait(stages) -> None:
    """What the watchdog logs when nothing moves: the publisher's wait, the queue, the head
    of the taken events and whether its scores are back, and the batcher's state."""
    assert "publisher not started" in stages.pipeline_state()
    assert "batcher not started, 0 queued, none at the model, room 32" in stages.pipeline_state()
    await stages.batcher.start()
    stages.ledger.assign({("reviews", 0): 0})
    admission = stages.ledger.admit(("reviews", 0), 0).admission
    record = RawRecord("reviews", 0, 0, b"m1", review("r1", "awful"), 1_795_428_000_000)
    await stages.admit(stages.recorder, record, "event-0", admission)
    stages.waiting.append(stages.in_flight.get_nowait())
    line = stages.pipeline_state()
    assert "0 queued, 1 taken (head reviews[0]@0 " in line, line
    assert "batcher running" in line
    await stages.batcher.stop()
    assert "head reviews[0]@0 cancelled" in stages.pipeline_state()
