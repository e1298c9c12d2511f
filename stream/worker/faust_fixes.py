"""Nine targeted fixes for Faust 0.15, applied once when the app is created.

1. Fetch wait. Faust hard-codes ``fetch_max_wait_ms=1500`` for its consumers. A broker answers
   a fetch at once when it has data, so the wait costs nothing on Apache Kafka, but a broker
   that holds every fetch until the wait runs out (the embedded Tansu broker does) adds up to
   1.5 s per consumer hop. ``RISKSTREAM_FETCH_MAX_WAIT_MS`` sets it (default 100 ms).

2. Delivery gap.

What goes wrong: when a worker joins, aiokafka may fetch records of the input partitions before
Faust pauses them for table recovery; Faust drops records that arrive while its flow is
suspended but still advances its read offset. After recovery, Faust seeks each partition to its
committed offset, but aiokafka's ``seek_to_committed`` only seeks when that offset is > 0, so a
partition with no commit (or commit 0) is never rewound: its leading records are never processed,
and Faust's commit bookkeeping (contiguous runs of acked offsets, starting at the lowest acked
one) then commits past them. Observed here as lost events after a restart
(tests/stream/test_restart.py, docs/benchmarks.md "Delivery").

The fix: after Faust's seek, partitions without a positive committed offset are sought to the
beginning, which is what ``consumer_auto_offset_reset="earliest"`` means for them anyway.

3. Commit offsets. Faust commits offsets it never processed (records it skipped during a
   rebalance are acked into the next generation's list; a jump in read offsets is committed as
   a "gap"; its head check is off by one). The commit offset now comes from
   ``stream.core.delivery.DeliveryLedger`` alone, and Faust's read-offset filter, which drops
   records re-read after a seek and manufactures those gaps, is switched off: the ledger skips
   repeats itself. Measured: 12 of 5,000 events lost over five SIGKILLs before, none after
   (``tests/stream/test_restart_multikill.py``).

4. Changelog flush. Table writes go to the changelog through Faust's producer *buffer*, and
   before a commit Faust "flushes" it with ``flush_atmost(None)``, which returns as soon as no
   message left the buffer for 0.1 s, and counts a message as sent once it is handed on, not
   once the broker has it. A busy worker then commits input offsets whose table writes were
   still buffered; a crash loses them and the member state undercounts (measured: 4 profiles
   one transaction short in one of three five-kill runs). The flush now waits until every
   buffered message has been acknowledged (at most ``CHANGELOG_FLUSH_TIMEOUT_S``; past that the
   commit fails and the worker stops, so it never commits past an unwritten state).

5. Recovery high-water marks. Table recovery reads each changelog up to the end offset the
   broker lists. The embedded broker lists the base offset of the last record batch instead
   of the end (measured: 436 listed for a partition whose records end at 522), so a restarted
   worker stopped recovery one batch short and its state missed the newest writes. The end is
   now also read from a fetch response's high-water mark, and the larger of the two is used
   (on Apache Kafka the two agree).

6. Offsets beyond the log. A committed offset past the end of its partition (the topic was
   deleted and recreated, or the broker lost its data but not the group) made aiokafka reset
   the fetch position to the earliest offset while the ledger, told to start at the committed
   offset, skipped every record below it as a repeat: silently, until the new log grew past
   the old offset. After the seek, a partition whose committed offset lies beyond its end
   (the end read by a fetch, fix 5) is now read from its earliest offset, with one warning
   line naming it; that is the documented reset policy (README, "When the broker loses its
   data"). And a running worker whose partition's log shrank under it (aiokafka reset a fetch
   position it found out of range, which it logs at INFO only, or the ledger is past the
   log's end) commits nothing more there, and ``OFFSETS_LOST`` tells the watchdog: measured
   before, the old worker committed its old offsets onto the recreated topics, and its
   successor skipped the new records below them (119 of 1,300 events).

7. Four tasks per record. Faust's fetch loop hands every record to the stream with
   ``wait_first(callback(record), suspend_flow.wait())``: four tasks (the callback, the
   suspend-flow, stop and crash waits), an ``asyncio.wait`` and three cancellations per record,
   though the callback almost never waits (it puts the record on its stream's queue). The
   callback now runs at once; only when it has to wait (a full queue, flow control, the
   producer's buffer) or the flow is suspended does the record take Faust's way, the callback
   resumed where it stopped. Same records, same order, same drops on a suspended flow.

8. Seeks from the wrong thread. aiokafka runs in Faust's consumer thread, on that thread's
   event loop, but ``Consumer.seek`` (the delivery ledger's seek back to a hole) called
   aiokafka's ``seek`` from the main thread: it deletes the fetcher's buffered records and
   resolves one of its futures while the consumer thread may be iterating them, and a future
   resolved from another thread does not wake that loop. Found while tracing a scale-out
   wedge in CI (which was a hung inference call: ``stream/worker/batcher.py``); no failure
   was traced to this race alone. The seek now runs on the consumer thread (``call_thread``),
   as Faust's own ``seek_to_committed`` does.

9. A seek and the ledger's start in one step. The seek (fixes 2 and 6) let aiokafka seek each
   partition first and told the ledger the starts only after more broker round trips (the
   fix-6 check reads the log's end with a second client: up to seconds), while the fetch loop
   went on fetching from the new positions. Records fetched in between met a ledger that did
   not know the partition (skipped as unknown: a rebalance had revoked it) or still held the
   old start (skipped as repeats, or admitted under the old assignment, whose completions no
   longer count); then the ledger took the committed offset as its start while aiokafka sat
   at the log's end. Nothing re-read them until the watchdog's resync, whose seek could race
   the same way. Caught by the stall lines in a two-lane loop of the multi-kill and scale-out
   tests (``reviews[2]: … position=515, … ledger next=21, … fetched 988, yielded 988, …
   streams handed the ledger process 0, repeat 0, hole 0, unassigned 988``): the CI failures
   of stops 27 and 28. Every broker answer is now read first; then, with no wait between,
   the ledger learns each start and aiokafka seeks there (``seek_and_teach_the_ledger``).

Besides the fixes, ``TRACE`` counts each consumed partition's records at the hand-offs between
aiokafka and the agents (returned by a fetch, yielded by ``getmany``, dropped on a suspended
flow); with the ledger's count of what the streams handed it, a stall's log line says where a
partition's records stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING, Consumer, ThreadDelegateConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.producer import ProducerBuffer

from stream.core.delivery import DeliveryLedger, partition_key

logger = logging.getLogger("riskstream.faust_fixes")
_original_seek_to_committed = AIOKafkaConsumerThread.seek_to_committed


async def _seek_to_committed_then_rewind_uncommitted(
    self: AIOKafkaConsumerThread,
) -> Mapping[Any, int]:
    consumer = self._ensure_consumer()
    return await self.call_thread(lambda: seek_and_teach_the_ledger(consumer, _ledger))


async def seek_and_teach_the_ledger(consumer: Any, ledger: DeliveryLedger) -> Mapping[Any, int]:
    """Every assigned partition to its start (its commit; its earliest offset without one or
    past the log's end), the ledger told each start in the same step as aiokafka: first every
    answer from the broker, then, with no wait between them, the ledger's starts and the
    seeks. -> the committed offsets (0 where the commit lies beyond the log's end).

    Measured before: aiokafka sought first and the ledger learned the starts after the
    fix-6 check (a fetch by a second client, up to seconds), while the fetch loop went on:
    every record of the partition was fetched in between and skipped (the ledger did not
    know it yet, or judged it by the old start), so the partition sat at the log's end with
    nothing admitted, again after every resync (multi-kill and scale-out CI failures: "988
    unassigned" of 988 fetched, ledger at 21, aiokafka at 515)."""
    assigned = list(consumer.assignment())
    committed = {tp: await consumer.committed(tp) for tp in assigned}
    beyond = await _committed_beyond_the_end(consumer, committed)
    if beyond:
        logger.warning(
            "committed offsets beyond the end of their partitions (topic recreated or "
            "broker data lost): reading from the earliest offset: %s",
            ", ".join(
                f"{tp.topic}[{tp.partition}] at {at} > end {end}"
                for tp, (at, end) in beyond.items()
            ),
        )
        committed = {tp: (0 if tp in beyond else offset) for tp, offset in committed.items()}
    uncommitted = [tp for tp, offset in committed.items() if not offset]
    earliest = await consumer.beginning_offsets(uncommitted) if uncommitted else {}
    starts = {tp: offset if offset else earliest[tp] for tp, offset in committed.items()}
    # no await from here on: records fetched after a seek meet the ledger's new start
    still = consumer.assignment()  # a rebalance may have moved some while the broker answered
    starts = {tp: start for tp, start in starts.items() if tp in still}
    ledger.assign({partition_key(tp): start for tp, start in starts.items()})
    for tp, start in starts.items():
        consumer.seek(tp, start)
        OFFSETS_LOST.pop(partition_key(tp), None)  # sought again: the ledger knows its start
    if uncommitted:
        logger.debug("rewound partitions without a commit: %s", uncommitted)
    return committed


async def _committed_beyond_the_end(consumer: Any, committed: Mapping[Any, int]) -> dict:
    """Partitions whose committed offset lies past the end of their log -> (committed, end).
    The listed end first; only where it is below the commit (the embedded broker lists the
    last batch's base offset, fix 5) is the end read by a fetch."""
    positive = {tp: offset for tp, offset in committed.items() if offset}
    if not positive:
        return {}
    try:
        listed = await consumer.end_offsets(list(positive))
        suspects = [tp for tp, offset in positive.items() if offset > (listed.get(tp) or 0)]
        if not suspects:
            return {}
        fetched = await fetched_highwaters(consumer, suspects, listed)
    except Exception as exc:  # no verdict: the seek stands, the watchdog still looks
        logger.warning("could not compare committed offsets with the log ends: %r", exc)
        return {}
    ends = {tp: max(listed.get(tp) or 0, fetched.get(tp) or 0) for tp in suspects}
    return {tp: (positive[tp], end) for tp, end in ends.items() if positive[tp] > end}


#: Consumed partitions whose log shrank under the worker, (topic, partition) -> what was seen
#: (fix 6): aiokafka reset a fetch position it found out of range, or the shell saw the ledger
#: past the log's end. Kept until the partition is sought again (a rebalance), for the
#: watchdog: a running worker's partitions do not shrink on their own.
OFFSETS_LOST: dict[tuple[str, int], str] = {}


class _RecordOutOfRange(logging.Filter):
    """aiokafka's fetcher logs each out-of-range reset ("Fetch offset %s is out of range for
    partition %s, resetting offset") at INFO: record it, and pass on only what the root
    logger's level lets through (the fetcher's level is lowered to see these)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message, args = record.msg, record.args
        if (
            isinstance(message, str)
            and message.startswith("Fetch offset %s is out of range")
            and isinstance(args, tuple)
            and len(args) == 2
        ):
            offset, tp = args
            OFFSETS_LOST[(tp.topic, tp.partition)] = f"fetched at {offset}, out of range"
            return False  # the watchdog says it once, with what it means
        return record.levelno >= logging.getLogger().getEffectiveLevel()


def _record_out_of_range() -> None:
    fetcher_log = logging.getLogger("aiokafka.consumer.fetcher")
    if not any(isinstance(f, _RecordOutOfRange) for f in fetcher_log.filters):
        fetcher_log.addFilter(_RecordOutOfRange())
    fetcher_log.setLevel(min(fetcher_log.getEffectiveLevel(), logging.INFO))


_ledger = DeliveryLedger()


@dataclass
class RecordTrace:
    """Per consumed partition, (topic, partition) -> records counted at each hand-off between
    aiokafka and the agents' streams, since start: a stalled partition's log line compares them
    with what the ledger saw, so it says at which hand-off its records stop (a CI stall:
    records fetched to the log's end, none reaching the ledger, again after every seek)."""

    #: Returned by aiokafka's fetch to Faust's ``getmany``.
    fetched: Counter = field(default_factory=Counter)
    #: Yielded by ``getmany`` to the fetch loop (it drops records of partitions it holds
    #: inactive, and the rest of a fetch when the consumer generation changes).
    yielded: Counter = field(default_factory=Counter)
    #: Handed to the conductor and never delivered: the flow was suspended first.
    suspended: Counter = field(default_factory=Counter)

    def line(self, key: tuple[str, int]) -> str:
        return (
            f"fetched {self.fetched[key]}, yielded {self.yielded[key]}, "
            f"dropped on a suspended flow {self.suspended[key]}"
        )


#: The one trace of this process's consumer (diagnostics only: decides nothing).
TRACE = RecordTrace()

#: How long a commit waits for buffered table writes to be acknowledged before it fails.
CHANGELOG_FLUSH_TIMEOUT_S = 60.0
_original_buffer_put = ProducerBuffer.put
_original_buffer_flush = ProducerBuffer.flush


def _put_tracked(self: ProducerBuffer, fut: Any) -> None:
    """Remember each buffered message until the broker has acknowledged it."""
    unsettled = self.__dict__.setdefault("_unsettled", set())
    unsettled.add(fut)
    fut.add_done_callback(unsettled.discard)
    _original_buffer_put(self, fut)


async def _flush_until_acknowledged(self: ProducerBuffer) -> None:
    await _original_buffer_flush(self)
    unsettled = self.__dict__.get("_unsettled")
    if unsettled:
        _, pending = await asyncio.wait(list(unsettled), timeout=CHANGELOG_FLUSH_TIMEOUT_S)
        if pending:
            raise RuntimeError(
                f"{len(pending)} buffered table writes not acknowledged within "
                f"{CHANGELOG_FLUSH_TIMEOUT_S:.0f} s: not committing past them"
            )


_original_consumer_init = Consumer.__init__


class _NoReadOffsets(dict):
    """Faust's per-partition read offset, always unknown: its drain loop then neither drops
    records re-read after a seek nor records jumps as committable gaps."""

    def __getitem__(self, key: Any) -> None:
        return None

    def get(self, key: Any, default: Any = None) -> None:
        return None


def _init_without_read_offsets(self: Consumer, *args: Any, **kwargs: Any) -> None:
    _original_consumer_init(self, *args, **kwargs)
    self._read_offset = _NoReadOffsets()


def _new_offset_from_the_ledger(self: Consumer, tp: Any) -> int | None:
    """The offset Faust may commit for ``tp``: the ledger's, never Faust's ack list."""
    self._acked[tp].clear()
    self._acked_index[tp].clear()
    self._gap.pop(tp, None)
    key = partition_key(tp)
    committable = _ledger.committable(key)
    if committable is None or key in OFFSETS_LOST:
        return None  # its log shrank under the worker: commit nothing there (fix 6)
    try:
        high = self.highwater(tp)
    except Exception:  # no fetch yet: nothing known against the commit
        high = None
    if high is not None and committable > high:
        OFFSETS_LOST[key] = f"at {committable}, its log ends at {high}"
        return None
    return committable


_original_highwaters = AIOKafkaConsumerThread._highwaters


async def _highwaters_seen_by_a_fetch(self: AIOKafkaConsumerThread, partitions: list) -> Any:
    listed = await _original_highwaters(self, partitions)
    if self.consumer.in_transaction or not partitions:
        return listed
    try:
        fetched = await fetched_highwaters(self._ensure_consumer(), partitions, listed)
    except Exception as exc:  # the listed offsets are still an answer
        logger.warning("could not read high-water marks by fetch: %r", exc)
        return listed
    return {tp: max(listed.get(tp) or 0, fetched.get(tp) or 0) for tp in partitions}


async def fetched_highwaters(consumer: Any, partitions: list, listed: Mapping) -> dict:
    """High-water marks from fetch responses of a short-lived client with the consumer's
    connection settings, reading from the listed end (so only the last batch travels)."""
    import aiokafka

    client = consumer._client
    probe = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=client._bootstrap_servers,
        security_protocol=client._security_protocol,
        ssl_context=client._ssl_context,
        sasl_mechanism=client._sasl_mechanism,
        sasl_plain_username=client._sasl_plain_username,
        sasl_plain_password=client._sasl_plain_password,
        sasl_oauth_token_provider=client._sasl_oauth_token_provider,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await probe.start()
    try:
        tps = [aiokafka.TopicPartition(tp.topic, tp.partition) for tp in partitions]
        probe.assign(tps)
        for tp in tps:
            probe.seek(tp, max(listed.get(tp) or 0, 0))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while loop.time() < deadline and any(probe.highwater(tp) is None for tp in tps):
            await probe.getmany(timeout_ms=200)
        return {
            tp: probe.highwater(aiokafka.TopicPartition(tp.topic, tp.partition))
            for tp in partitions
        }
    finally:
        await probe.stop()


_original_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer
_fetch_max_wait_ms = 1500


def _create_worker_consumer_with_fetch_wait(self: AIOKafkaConsumerThread, transport: Any) -> Any:
    consumer = _original_create_worker_consumer(self, transport)
    consumer._fetch_max_wait_ms = _fetch_max_wait_ms  # read when the consumer starts
    return consumer


class _Resumed:
    """The rest of a coroutine already run up to its first wait (``first``, what it yielded):
    awaiting this hands ``first`` to the awaiting task and drives the coroutine on from there,
    as if the task had run it from its start."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro, self.first = coro, first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation: into the coroutine, where it waits
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _resume(coro: Coroutine[Any, Any, Any], first: Any) -> Any:
    return await _Resumed(coro, first)


async def _drain_messages_without_tasks(self: Consumer, fetcher: Any) -> None:
    """``Consumer._drain_messages`` of Faust 0.15 (the fetch loop), with fix 7: a record's
    callback runs at once, and takes ``wait_first`` only if it has to wait or the flow is
    suspended. (Unit-tested with a fake consumer; the reliability tests against the broker
    run it.)"""
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    suspended = self.suspend_flow.is_set
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    yield_every, since_yield = 100, 0
    yielded, suspended_drops = TRACE.yielded, TRACE.suspended
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            records = getmany(timeout=1.0)
            await self.sleep(0)  # getmany may return at once, loop after loop
            if not self.should_stop:
                async for tp, message in records:
                    yielded[tp.topic, tp.partition] += 1
                    since_yield += 1
                    if since_yield > yield_every:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is not None and offset < r_offset:
                        continue  # a repeat (fix 3 turns this filter off: the ledger skips)
                    gap = offset - (r_offset or 0)
                    if gap > 1 and r_offset and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    handling = callback(message)
                    if suspended():
                        waited = await self.wait_first(handling, self.suspend_flow.wait())
                        if handling not in waited.done:
                            suspended_drops[tp.topic, tp.partition] += 1
                    else:
                        try:
                            waits_on = handling.send(None)
                        except StopIteration:
                            pass  # done without waiting: the common case
                        else:
                            resumed = _resume(handling, waits_on)
                            waited = await self.wait_first(resumed, self.suspend_flow.wait())
                            if resumed not in waited.done:
                                suspended_drops[tp.topic, tp.partition] += 1
                    set_read_offset(tp, offset)
                unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


_original_delegate_getmany = ThreadDelegateConsumer._getmany


async def _getmany_counted(self: ThreadDelegateConsumer, active_partitions: Any, timeout: float):
    """``ThreadDelegateConsumer._getmany``, counting what aiokafka returned (``TRACE``)."""
    records = await _original_delegate_getmany(self, active_partitions, timeout)
    fetched = TRACE.fetched
    for tp, batch in records.items():
        fetched[tp.topic, tp.partition] += len(batch)
    return records


_original_delegate_seek = ThreadDelegateConsumer._seek


async def _seek_on_the_consumer_thread(
    self: ThreadDelegateConsumer, partition: Any, offset: int
) -> None:
    """``ThreadDelegateConsumer._seek``, run where aiokafka lives (fix 8)."""
    thread = self._thread

    async def seek() -> None:
        thread.seek(partition, offset)

    await thread.call_thread(seek)


def aiokafka_producer(app: Any) -> Callable[[], Any]:
    """Faust's own aiokafka producer, for ``stream.worker.outbox.Outbox``: the producer Faust
    flushes before every commit (fix 4 waits for its acknowledgements), so record batches sent
    through it are covered by that flush like any other send. Faust has no public accessor;
    its aiokafka ``Producer._ensure_producer`` (0.15) is it. Checked when the app is built, so
    a Faust without it fails at start with this line, not at the first batch."""
    ensure = getattr(app.producer, "_ensure_producer", None)
    if not callable(ensure):
        raise RuntimeError(
            f"faust-streaming {faust.__version__}: its producer "
            f"({type(app.producer).__name__}) has no _ensure_producer(); the outbox needs "
            "Faust's aiokafka producer (faust-streaming 0.15, aiokafka transport)"
        )
    return ensure


def apply(
    fetch_max_wait_ms: int = 1500,
    ledger: DeliveryLedger | None = None,
    *,
    drain_without_tasks: bool = True,
) -> DeliveryLedger:
    """Install the fixes (idempotent); returns the ledger that decides commits.
    ``drain_without_tasks=False`` leaves out fix 7 (a speed fix; the bare Faust app of
    ``bench/worker_cost.py`` keeps Faust's own record path as its baseline)."""
    global _fetch_max_wait_ms, _ledger
    _fetch_max_wait_ms = fetch_max_wait_ms
    if ledger is not None:
        _ledger = ledger
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed_then_rewind_uncommitted
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer_with_fetch_wait
    Consumer.__init__ = _init_without_read_offsets
    Consumer._new_offset = _new_offset_from_the_ledger
    AIOKafkaConsumerThread._highwaters = _highwaters_seen_by_a_fetch
    ProducerBuffer.put = _put_tracked
    ProducerBuffer.flush = _flush_until_acknowledged
    ThreadDelegateConsumer._seek = _seek_on_the_consumer_thread
    ThreadDelegateConsumer._getmany = _getmany_counted
    if drain_without_tasks:
        Consumer._drain_messages = _drain_messages_without_tasks
    _record_out_of_range()
    return _ledger
