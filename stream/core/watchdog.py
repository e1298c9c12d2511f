"""When the worker should give up and exit, so its supervisor starts a fresh one: never hang.

Measured before: after the embedded broker was killed and came back empty under load, the
worker stayed alive with /metrics answering and its consumed counter frozen for 11.5 minutes
(about 20,850 ``OffsetCommit failed ... UnknownTopicOrPartitionError`` lines), and a fresh
worker hung in changelog recovery for over 4 minutes. Faust retries such states forever.

Before exiting, it tries once to unstick delivery in place (a *resync*: seek every partition back
to its committed offset, which also teaches the delivery ledger partitions it missed, and resume
fetching). Seen once in CI (scale-out test, a worker left alone after two peers left): records of
partitions the ledger did not know arrived during a rebalance, were skipped as they must be, and
then nothing more arrived for 180 s while the worker reported ready with 2,027 records waiting.
The watchdog is a pure policy over what the worker observes every few seconds; the Faust shell
(``stream/worker/app.py``) feeds it and exits with its reason.

Broker data loss (issue 20): a broker that comes back empty is not always *missing* the input
topics, because producers auto-create them, and the worker's own writes auto-create its internal
topics and table changelogs (with the broker's default partition count). Measured before: 0 of
6,052 new events scored in 300 s with no line saying why, as the ledger skipped the records at
the recreated topics' (lower) offsets as repeats. So the shell reports every sign of lost data
it sees (topics missing, owned topics with another partition count, fetch offsets out of range
or beyond the log's end) and the worker exits, with one line naming them, once they persist for
``data_loss_s``; ``finding`` says the same meanwhile (``/readyz``). And the watchdog runs from
the start: table recovery that reads nothing for ``recovery_stalled_s`` is an exit too (measured
before: a restart sat in recovery for 15 minutes, and the watchdog only started after it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class WatchdogPolicy:
    #: Input topics missing from the broker this long: it lost its data (restarted empty).
    topics_missing_s: float = 15.0
    #: Records waiting but none admitted this long: stuck.
    stalled_s: float = 180.0
    #: Not ready (model, assignment, table recovery) this long after start or a rebalance.
    not_ready_s: float = 600.0
    #: Records waiting but none admitted this long (while ready): resync, once per stall.
    resync_after_s: float = 30.0
    #: A partition's hole (records it must re-read) open this long: resync, then again after
    #: as long if it is still open.
    hole_resync_after_s: float = 10.0
    #: Signs that the broker lost data this worker knew, seen this long: exit.
    data_loss_s: float = 10.0
    #: Table recovery under way and reading nothing this long: exit (None: no bound).
    recovery_stalled_s: float | None = 120.0


@dataclass(frozen=True, slots=True)
class Observation:
    now_s: float
    #: Whether every input topic exists on the broker (None: the broker did not answer).
    inputs_exist: bool | None
    ready: bool
    admitted_total: int
    lag_total: int
    #: Assigned input partitions the delivery ledger has no start offset for.
    unknown_partitions: int = 0
    #: Signs that the broker lost data this worker knew, one phrase each ("missing topics:
    #: a, b", "offsets out of range: reviews[0] at 512"); empty when none (or no answer).
    data_lost: tuple[str, ...] = ()
    #: Table recovery under way, and the changelog offsets it has read so far (all summed).
    recovering: bool = False
    recovery_read: int = 0
    #: The hole open longest, as "reviews[3] at 57", and for how many seconds (None: none).
    oldest_hole: tuple[str, float] | None = None
    #: Partitions with records waiting, as "reviews[3]" -> the ledger's next offset to admit.
    lagging: Mapping[str, int] = field(default_factory=dict)


class Watchdog:
    """Feed it an ``Observation`` every few seconds; it answers why to exit, or None."""

    def __init__(self, policy: WatchdogPolicy = WatchdogPolicy(), *, started_s: float) -> None:
        self.policy = policy
        self._missing_since: float | None = None
        self._progress_at = started_s
        self._admitted = -1
        self._ready_since_check = started_s
        self._resynced_for: float | None = None  # the stall a resync was already tried for
        self._hole_resynced_at = started_s
        self._unknown_seen = 0
        self._loss_since: float | None = None
        self._recovery_read = -1
        self._recovery_progress_at = started_s
        #: Lagging partition -> (the furthest offset it admitted, when it last got further).
        self._furthest: dict[str, tuple[int, float]] = {}
        self._partition_resynced_for: dict[str, float] = {}
        self._stall_resynced_at = float("-inf")
        #: The lagging partition stuck longest at the last ``resync_due`` (None: none lags).
        self.stalled_partition: str | None = None
        #: What is wrong now, before it is a verdict (``/readyz`` reports it), or None.
        self.finding: str | None = None

    def observe(self, seen: Observation) -> str | None:
        policy = self.policy
        self.finding = None
        if seen.data_lost:
            self._loss_since = seen.now_s if self._loss_since is None else self._loss_since
            lasted = seen.now_s - self._loss_since
            what = "; ".join(seen.data_lost)
            self.finding = f"the broker lost data this worker knew ({what}), for {lasted:.0f} s"
            if lasted >= policy.data_loss_s:
                return (
                    f"the broker lost data this worker knew ({what}; restarted empty or "
                    "recreated?): exiting so a fresh worker recreates its topics and reads the "
                    "inputs from their earliest offsets"
                )
        else:
            self._loss_since = None
        if not seen.recovering or seen.recovery_read != self._recovery_read:
            self._recovery_read = seen.recovery_read if seen.recovering else -1
            self._recovery_progress_at = seen.now_s
        elif policy.recovery_stalled_s is not None:
            stalled = seen.now_s - self._recovery_progress_at
            self.finding = self.finding or (
                f"table recovery has read nothing for {stalled:.0f} s "
                f"(changelog positions at {seen.recovery_read}, summed)"
            )
            if stalled >= policy.recovery_stalled_s:
                return (
                    f"table recovery made no progress for {stalled:.0f} s "
                    f"(changelog positions at {seen.recovery_read}, summed): exiting"
                )
        if seen.inputs_exist is False:
            self._missing_since = self._missing_since or seen.now_s
            if seen.now_s - self._missing_since >= policy.topics_missing_s:
                return (
                    f"the input topics have been missing from the broker for "
                    f"{seen.now_s - self._missing_since:.0f} s (was it restarted without its "
                    "data?): exiting so a fresh worker recreates them"
                )
        else:
            self._missing_since = None
        if seen.ready:
            self._ready_since_check = seen.now_s
        elif seen.now_s - self._ready_since_check >= policy.not_ready_s:
            return (
                f"not ready for {seen.now_s - self._ready_since_check:.0f} s "
                "(model, partition assignment or table recovery): exiting"
            )
        if seen.admitted_total != self._admitted or seen.lag_total == 0 or not seen.ready:
            self._admitted = seen.admitted_total
            self._progress_at = seen.now_s
        elif seen.now_s - self._progress_at >= policy.stalled_s:
            return (
                f"no record admitted for {seen.now_s - self._progress_at:.0f} s while "
                f"{seen.lag_total} wait: exiting"
            )
        self._track_partitions(seen)
        stuck = self._stuck_since() if seen.ready else []
        if stuck and seen.now_s - stuck[0][1] >= policy.stalled_s:
            name, since = stuck[0]
            return (
                f"no record of {name} admitted for {seen.now_s - since:.0f} s while its records "
                f"wait (other partitions moved): exiting"
            )
        return None

    def _track_partitions(self, seen: Observation) -> None:
        """Per lagging partition, its furthest admitted offset and since when. Per partition,
        because a worker's other partitions can move while one is stuck (seen in CI: after
        each resync the others re-admitted their uncommitted records, which kept the total
        moving, so the stall never ended in an exit). Progress is a partition's furthest
        admitted offset growing: a resync moves its position back to its commit. While not
        ready, every partition's clock starts again."""
        if not seen.ready:
            self._furthest = {name: (at, seen.now_s) for name, at in seen.lagging.items()}
            return
        furthest: dict[str, tuple[int, float]] = {}
        for name, at in seen.lagging.items():
            best, since = self._furthest.get(name, (at, seen.now_s))
            furthest[name] = (at, seen.now_s) if at > best else (best, since)
        self._furthest = furthest

    def _stuck_since(self) -> list[tuple[str, float]]:
        """Lagging partitions and when each last admitted something new, longest stuck first."""
        return sorted(
            ((name, since) for name, (_, since) in self._furthest.items()),
            key=lambda entry: entry[1],
        )

    def resync_due(self, seen: Observation) -> str | None:
        """Why to resync now, or None: ready, and either partitions unknown to the ledger in two
        observations in a row, a hole no seek has filled for ``hole_resync_after_s``, no
        record admitted for ``resync_after_s`` while records wait, or none of one lagging
        partition's. A resync moves every partition back to its commit and drops what is in
        flight, so the stall resyncs (total or one partition) come once per stall and at most
        one per ``resync_after_s``: one a partition, every 5 s, kept a slow worker from ever
        finishing a batch (both failures of a CI run). ``stalled_partition`` names the partition
        stuck longest, for the log. Call after :meth:`observe`, which tracks progress."""
        stuck = self._stuck_since()
        self.stalled_partition = stuck[0][0] if stuck else None
        self._unknown_seen = self._unknown_seen + 1 if seen.unknown_partitions else 0
        if not seen.ready:
            return None
        if self._unknown_seen >= 2:
            self._unknown_seen = 0
            return f"{seen.unknown_partitions} assigned partitions unknown to the delivery ledger"
        if seen.oldest_hole is not None:
            where, open_s = seen.oldest_hole
            if (
                open_s >= self.policy.hole_resync_after_s
                and seen.now_s - self._hole_resynced_at >= self.policy.hole_resync_after_s
            ):
                self._hole_resynced_at = seen.now_s
                return f"the records of {where} not re-read after {open_s:.0f} s"
        if seen.now_s - self._stall_resynced_at < self.policy.resync_after_s:
            return None
        stalled_for = seen.now_s - self._progress_at
        if (
            seen.lag_total
            and stalled_for >= self.policy.resync_after_s
            and self._resynced_for != self._progress_at
        ):
            self._resynced_for, self._stall_resynced_at = self._progress_at, seen.now_s
            return f"no record admitted for {stalled_for:.0f} s while {seen.lag_total} wait"
        for name, since in stuck:
            if (
                seen.now_s - since >= self.policy.resync_after_s
                and self._partition_resynced_for.get(name) != since
            ):
                self._partition_resynced_for[name] = since
                self._stall_resynced_at = seen.now_s
                return f"no record of {name} admitted for {seen.now_s - since:.0f} s"
        return None
