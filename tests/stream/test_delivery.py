"""The delivery ledger: records are admitted once each, in offset order per partition; a hole
is re-read, not skipped; completions from an earlier assignment move no commit."""

from __future__ import annotations

import asyncio

from stream.core.delivery import DeliveryLedger, Verdict, admitted
from tests.fakes import FakeClock

P = ("reviews", 0)


def process(ledger: DeliveryLedger, offset: int) -> None:
    decision = ledger.admit(P, offset)
    assert decision.verdict is Verdict.PROCESS, (offset, decision)
    assert ledger.complete(decision.admission)


def test_commit_offset_follows_completions_in_order() -> None:
    ledger = DeliveryLedger()
    ledger.assign({P: 10})
    assert ledger.committable(P) == 10
    first = ledger.admit(P, 10).admission
    second = ledger.admit(P, 11).admission
    assert ledger.committable(P) == 10  # admitted is not done
    ledger.complete(first)
    assert ledger.committable(P) == 11
    ledger.complete(second)
    assert ledger.committable(P) == 12


def test_repeats_are_skipped() -> None:
    ledger = DeliveryLedger()
    ledger.assign({P: 0})
    process(ledger, 0)
    assert ledger.admit(P, 0).verdict is Verdict.REPEAT


def test_a_hole_is_read_again_not_committed_past() -> None:
    """Records 1..2 were dropped by the client (a rebalance): 3 is not processed, the
    partition is sought back to 1 once, and again only after ``reseek_after_s``."""
    clock = FakeClock()
    ledger = DeliveryLedger(reseek_after_s=1.0, clock=clock)
    ledger.assign({P: 0})
    process(ledger, 0)
    hole = ledger.admit(P, 3)
    assert (hole.verdict, hole.seek_to, hole.admission) == (Verdict.HOLE, 1, None)
    assert ledger.admit(P, 4).seek_to is None  # the seek is under way
    clock.advance(1.5)
    assert ledger.admit(P, 4).seek_to == 1  # still missing: seek again
    assert ledger.committable(P) == 1
    for offset in (1, 2, 3, 4):  # the re-read
        process(ledger, offset)
    assert ledger.committable(P) == 5


def test_a_real_gap_is_accepted_after_repeated_reads() -> None:
    """Offsets that do not exist (compaction, transaction markers) stop nothing for long."""
    clock = FakeClock()
    ledger = DeliveryLedger(reseek_after_s=1.0, accept_gap_after=3, clock=clock)
    ledger.assign({P: 0})
    seeks = 0
    for _ in range(3):
        seeks += ledger.admit(P, 5).seek_to == 0
        clock.advance(1.0)
    assert seeks == 3
    decision = ledger.admit(P, 5)
    assert decision.verdict is Verdict.PROCESS
    ledger.complete(decision.admission)
    assert ledger.committable(P) == 6 and ledger.gaps_accepted == 1


def test_completions_of_an_earlier_assignment_move_nothing() -> None:
    """Events still in flight when a rebalance re-assigns the partition must not commit."""
    ledger = DeliveryLedger()
    ledger.assign({P: 0})
    stale = [ledger.admit(P, offset).admission for offset in range(5)]
    ledger.assign({P: 0})  # the same partition again, restarting at its commit
    assert not any(ledger.complete(a) for a in stale)
    assert ledger.committable(P) == 0


def test_unassigned_partitions_are_skipped() -> None:
    ledger = DeliveryLedger()
    assert ledger.admit(P, 0).verdict is Verdict.UNASSIGNED
    ledger.assign({P: 0})
    ledger.revoke([P])
    assert ledger.admit(P, 0).verdict is Verdict.UNASSIGNED


class Message:
    def __init__(self, offset: int) -> None:
        self.tp = type("TP", (), {"topic": P[0], "partition": P[1]})()
        self.offset = offset


class Event:
    def __init__(self, offset: int) -> None:
        self.message = Message(offset)


class FakeStream:
    """A noack stream: yields events, records which ones were acked (released)."""

    def __init__(self, offsets: list[int]) -> None:
        self.offsets = offsets
        self.acked: list[int] = []

    async def events(self):
        for offset in self.offsets:
            await asyncio.sleep(0)  # let spawned seeks run, as a real stream's awaits do
            yield Event(offset)

    async def ack(self, event: Event) -> bool:
        self.acked.append(event.message.offset)
        return True


async def test_admitted_yields_each_record_once_and_seeks_back_over_a_hole() -> None:
    ledger = DeliveryLedger()
    ledger.assign({P: 0})
    # what a client might deliver around a rebalance: 0, 1, then 2..3 dropped, a stale
    # repeat of 1, then the re-read after the seek
    stream = FakeStream([0, 1, 4, 1, 5, 2, 3, 4, 5])
    seeks: list[int] = []

    async def seek(tp, offset):
        seeks.append(offset)

    processed = []
    async for event, admission in admitted(stream, ledger, seek):
        processed.append(event.message.offset)
        ledger.complete(admission)
    await asyncio.sleep(0)
    assert processed == [0, 1, 2, 3, 4, 5]
    assert seeks == [2]
    assert stream.acked == [4, 1, 5]  # skipped ones are released at once
    assert ledger.committable(P) == 6


async def test_records_of_an_unknown_partition_ask_for_a_resync() -> None:
    """The ledger learns partitions from the seek after an assignment; records of one it does
    not know are skipped and the shell is asked (once a second) to seek to the commits; the
    re-read records are then processed."""
    ledger = DeliveryLedger()
    stream = FakeStream([0, 1, 0, 1])  # the second 0, 1: re-read after the resync's seek
    asked: list[object] = []

    async def seek(tp, offset):
        raise AssertionError("no hole here")

    async def resync(tp):
        asked.append(tp)
        ledger.assign({P: 0})

    processed = []
    async for event, admission in admitted(stream, ledger, seek, resync):
        processed.append(event.message.offset)
        ledger.complete(admission)
    assert len(asked) == 1
    assert stream.acked == [0, 1] and processed == [0, 1]
    assert ledger.committable(P) == 2
