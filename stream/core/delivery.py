"""Delivery: which records are done, and so which offsets may be committed, in one place.

At-least-once means: an offset is committed only after the record at it, and every record
before it since the partition was assigned, was processed and its outputs were handed to the
producer (Faust flushes the producer before it commits). Faust's own bookkeeping breaks that
in three ways, each of which loses events after crashes and rebalances:

1. Its stream *acks* the records it skips: those of a stale consumer generation and those that
   arrive while flow is stopped for a rebalance (``faust/streams.py``, "ack the filtered out
   message"). Those acks land in the ack list the next generation commits from.
2. A jump between two read offsets (records fetched, then dropped while a partition was paused
   or the flow stopped) is recorded as a "gap" and committed as if it had been acked: meant for
   compacted topics, it turns dropped records into committed ones.
3. Its check that the ack list starts at the committed offset is off by one
   (``min(acked) - committed > 1``), and is skipped when nothing was committed yet.

Measured before this ledger: 12 of 5,000 events never scored after five SIGKILLs (and 3 more
in a second run, at chats[3] offsets 175-177, committed past at 443). So the commit offset of
every agent-consumed partition comes from :class:`DeliveryLedger` alone. Per partition it knows
where processing (re)started when the partition was assigned, admits records strictly in offset
order (a repeat is skipped, a hole is re-read by seeking back), and moves the commit offset
only when an admitted record completes. Faust's acks still release its records but decide
nothing. The ledger is pure bookkeeping (no I/O); ``stream/worker/faust_fixes.py`` connects it to
Faust's consumer and :func:`admitted` to an agent's stream.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass

logger = logging.getLogger("riskstream.delivery")

#: (topic, partition): Faust's ``TP`` and aiokafka's ``TopicPartition`` both reduce to it.
PartitionKey = tuple[str, int]


class Verdict(enum.Enum):
    PROCESS = "process"  # the next record of its partition: process it, then complete it
    REPEAT = "repeat"  # already admitted since the assignment (a re-read): skip it
    HOLE = "hole"  # records before it were not seen: skip it; they are read again first
    UNASSIGNED = "unassigned"  # a partition this worker does not own (now): skip it


@dataclass(frozen=True, slots=True)
class Admission:
    """A record admitted for processing; completing it may move the commit offset."""

    partition: PartitionKey
    offset: int
    epoch: int


@dataclass(slots=True)
class _Cursor:
    epoch: int
    next_offset: int  # the next offset to admit
    committable: int  # every record below it is done
    hole_at: int | None = None  # a hole being re-read, and how often it was sought
    hole_seeks: int = 0
    hole_sought_at: float = 0.0
    hole_high: int = -1  # the highest offset that arrived while the hole was open
    hole_answer: int | None = None  # where the last re-read of the hole started, if past it
    hole_answers: int = 0  # re-reads in a row that started there
    hole_opened_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    admission: Admission | None = None
    #: Offset to seek the partition back to (a hole that must be re-read), or None.
    seek_to: int | None = None


class DeliveryLedger:
    """Per assigned partition: what was admitted and what is done.

    ``reseek_after_s``: a hole still open after this long is sought again (the seek may have
    raced with records already fetched). Missing offsets are taken not to exist (compaction,
    transaction markers) only on evidence, never on time: a re-read of the hole shows up as an
    offset going *back* (records fetched before the seek only ever go forward), and where it
    starts is the first offset that exists. ``accept_gap_after`` re-reads that start at the
    same offset past the hole accept the gap (counted in ``gaps_accepted``); one is not enough,
    because Faust drops the records of a partition it paused for a moment. A slow machine only
    makes a hole wait longer: taking a hole for a gap after three seconds lost 117 events
    behind a busy agent in a CI run (scale-out test)."""

    def __init__(
        self,
        *,
        reseek_after_s: float = 1.0,
        accept_gap_after: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reseek_after_s = reseek_after_s
        self.accept_gap_after = accept_gap_after
        self._clock = clock
        self._cursors: dict[PartitionKey, _Cursor] = {}
        self._epochs = 0
        self.gaps_accepted = 0
        self.holes_sought = 0
        #: Records admitted since start (progress, for the watchdog).
        self.admitted = 0
        #: (partition, verdict) -> records of the agents' streams that got it, since start
        #: (counted by :func:`admitted`; a stalled partition's log line shows them).
        self.seen: Counter[tuple[PartitionKey, Verdict]] = Counter()

    def assign(self, starts: Mapping[PartitionKey, int]) -> None:
        """Processing of these partitions (re)starts at these offsets: what was admitted
        before and is still in flight no longer counts towards a commit."""
        for key, start in starts.items():
            self._epochs += 1
            self._cursors[key] = _Cursor(self._epochs, start, start)

    def revoke(self, keys: Iterable[PartitionKey]) -> None:
        for key in keys:
            self._cursors.pop(key, None)

    def assigned(self) -> dict[PartitionKey, int]:
        """Partition -> offset that may be committed."""
        return {key: cursor.committable for key, cursor in self._cursors.items()}

    def positions(self) -> dict[PartitionKey, int]:
        """Partition -> the next offset to admit (for lag)."""
        return {key: cursor.next_offset for key, cursor in self._cursors.items()}

    def admit(self, key: PartitionKey, offset: int) -> Decision:
        cursor = self._cursors.get(key)
        if cursor is None:
            return Decision(Verdict.UNASSIGNED)
        if offset < cursor.next_offset:
            return Decision(Verdict.REPEAT)
        if offset > cursor.next_offset:
            return self._hole(key, cursor, offset)
        cursor.next_offset = offset + 1
        cursor.hole_at, cursor.hole_seeks = None, 0
        self.admitted += 1
        return Decision(Verdict.PROCESS, Admission(key, offset, cursor.epoch))

    def _hole(self, key: PartitionKey, cursor: _Cursor, offset: int) -> Decision:
        now = self._clock()
        if cursor.hole_at != cursor.next_offset:
            cursor.hole_at, cursor.hole_seeks, cursor.hole_sought_at = cursor.next_offset, 0, 0.0
            cursor.hole_high, cursor.hole_answer, cursor.hole_answers = offset, None, 0
            cursor.hole_opened_at = now
        elif cursor.hole_seeks and offset <= cursor.hole_high:
            # back to an offset already seen: a re-read of the hole starts here
            if offset == cursor.hole_answer:
                cursor.hole_answers += 1
            else:
                cursor.hole_answer, cursor.hole_answers = offset, 1
            if cursor.hole_answers >= self.accept_gap_after:
                logger.warning(
                    "offsets %d..%d do not exist (%d re-reads began at %d): a real gap",
                    cursor.next_offset,
                    offset - 1,
                    cursor.hole_answers,
                    offset,
                )
                self.gaps_accepted += 1
                cursor.next_offset = offset
                return self.admit(key, offset)
            cursor.hole_high = offset  # the next re-read goes back below this one
            return self._seek_hole(cursor, now)
        cursor.hole_high = max(cursor.hole_high, offset)
        if cursor.hole_seeks == 0 or now - cursor.hole_sought_at >= self.reseek_after_s:
            return self._seek_hole(cursor, now)
        return Decision(Verdict.HOLE)

    def _seek_hole(self, cursor: _Cursor, now: float) -> Decision:
        cursor.hole_seeks += 1
        cursor.hole_sought_at = now
        self.holes_sought += 1
        return Decision(Verdict.HOLE, seek_to=cursor.next_offset)

    def complete(self, admission: Admission) -> bool:
        """The admitted record is done (outputs handed to the producer). Completions come in
        admission order per partition; one from an earlier assignment counts for nothing."""
        cursor = self._cursors.get(admission.partition)
        if cursor is None or cursor.epoch != admission.epoch:
            return False
        cursor.committable = max(cursor.committable, admission.offset + 1)
        return True

    def current(self, admission: Admission) -> bool:
        """Whether ``admission``'s partition is still assigned here since it was admitted (a
        revoked partition's new owner processes the record again)."""
        cursor = self._cursors.get(admission.partition)
        return cursor is not None and cursor.epoch == admission.epoch

    def oldest_hole(self) -> tuple[PartitionKey, int, float] | None:
        """(partition, first missing offset, seconds open) of the hole open longest, or None.
        A hole no seek fills (its partition paused, a fetch lost) waits for the watchdog's
        resync of every partition rather than being skipped."""
        holes = [
            (key, cursor.hole_at, cursor.hole_opened_at)
            for key, cursor in self._cursors.items()
            if cursor.hole_at is not None
        ]
        if not holes:
            return None
        key, offset, opened = min(holes, key=lambda hole: hole[2])
        return key, offset, self._clock() - opened

    def seen_line(self, key: PartitionKey) -> str:
        """What the agents' streams handed the ledger for ``key``: records per verdict."""
        counts = ", ".join(f"{v.value} {self.seen[key, v]}" for v in Verdict)
        return f"streams handed the ledger {counts}"

    def committable(self, key: PartitionKey) -> int | None:
        cursor = self._cursors.get(key)
        return None if cursor is None else cursor.committable


def partition_key(tp: object) -> PartitionKey:
    return (tp.topic, tp.partition)  # type: ignore[attr-defined]


async def admitted(
    stream: object,
    ledger: DeliveryLedger,
    seek: Callable[[object, int], object],
    resync: Callable[[object], object] | None = None,
) -> AsyncIterator[tuple[object, Admission]]:
    """The events of a ``noack()`` stream that must be processed now, each once and in offset
    order per partition. Skipped ones are released (acked) at once: acks decide nothing, the
    ledger does. A hole makes ``seek(tp, offset)`` re-read the partition from the hole.

    Records of a partition the ledger does not know (it learns partitions from the seek that
    follows an assignment) are skipped; ``resync(tp)`` is called, at most once a second, so the
    shell can seek back to the committed offsets and teach the ledger where to start."""
    last_resync = 0.0
    seen = ledger.seen
    async for event in stream.events():  # type: ignore[attr-defined]
        message = event.message
        key = partition_key(message.tp)
        decision = ledger.admit(key, message.offset)
        seen[key, decision.verdict] += 1
        if decision.seek_to is not None:
            logger.info("%s: re-reading from offset %d", message.tp, decision.seek_to)
            _spawn(seek(message.tp, decision.seek_to))
        if decision.verdict is Verdict.UNASSIGNED and resync is not None:
            now = time.monotonic()
            if now - last_resync >= 1.0:
                last_resync = now
                logger.warning("%s: records of a partition the ledger does not know", message.tp)
                _spawn(resync(message.tp))
        if decision.admission is None:
            await stream.ack(event)  # type: ignore[attr-defined]
            continue
        yield event, decision.admission


_tasks: set[asyncio.Future] = set()


def _spawn(awaitable: object) -> None:
    task = asyncio.ensure_future(awaitable)  # type: ignore[arg-type]
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
