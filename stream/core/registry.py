"""The model registry as pure functions: which build is the champion of each route, and how it
got there (``model-registry``, ``schemas/model-registry.v1.schema.json``).

A promotion is an event, readable by every worker and reversible (MLflow's aliases, kept in a
compacted topic keyed by route). Compaction keeps only the latest record per key, so every
record carries the whole (bounded) history: the latest record alone says who is champion, who
was before, what a rollback restores, and which build (if any) is being shadowed against the
champion (its ``challenger``: workers score with it off the critical path, to
``shadow-scores``). Nothing here reads or writes Kafka
(``stream/ops/registry.py`` does; ``stream/worker/champion.py`` follows it in the worker).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

#: The routes a worker serves: the main (English) build, and the build the language router
#: sends Chinese text to.
Route = Literal["english", "multilingual"]
ROUTES: tuple[str, ...] = ("english", "multilingual")
Action = Literal["promote", "rollback", "shadow"]

#: Earlier champions kept per record: enough to roll back a bad week, small enough that a
#: record (bundles included) stays far below the broker's message size.
MAX_HISTORY = 20

#: RFC 3339 in UTC, as ``stream.core.steps.utc_now`` writes it.
RFC3339_UTC = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$"

Version = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Timestamp = Annotated[str, msgspec.Meta(pattern=RFC3339_UTC)]


class RegistryError(ValueError):
    """A registry action that cannot be done, or a record that cannot be read; one line."""


class RegistryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One champion (or challenger): the build, who made it champion (or shadowed it), when and
    why, and what a worker needs to serve it (``bundle``: the adapted build's bundle, from which
    any worker materialises it)."""

    model_version: Version
    action: Action
    by: Name
    at: Timestamp
    why: str
    report: dict[str, Any] | None = None
    bundle: dict[str, Any] | None = None


class RegistryRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A route's registry state: its champion and the earlier ones, newest first, and the build
    being shadowed against the champion (``challenger``; None: none, and in records written
    before challengers existed). ``seq`` counts the records of the route (1 for the first)."""

    route: Route
    seq: Annotated[int, msgspec.Meta(ge=1)]
    champion: RegistryEntry
    history: Annotated[list[RegistryEntry], msgspec.Meta(max_length=MAX_HISTORY)]
    challenger: RegistryEntry | None = None


def entry(
    model_version: str,
    *,
    by: str,
    at: str,
    why: str,
    action: Action = "promote",
    report: dict[str, Any] | None = None,
    bundle: dict[str, Any] | None = None,
) -> RegistryEntry:
    """A registry entry, checked like a decoded one (so a bad ``by`` fails here, not later)."""
    made = RegistryEntry(
        model_version=model_version,
        action=action,
        by=by,
        at=at,
        why=why,
        report=report,
        bundle=bundle,
    )
    try:
        return msgspec.convert(msgspec.to_builtins(made), RegistryEntry)
    except msgspec.ValidationError as exc:
        raise RegistryError(f"bad registry entry: {exc}") from None


def promote(
    current: RegistryRecord | None, new: RegistryEntry, *, route: Route | None = None
) -> RegistryRecord:
    """``new`` becomes the champion; the old champion goes to the head of the history (the
    oldest entries beyond ``MAX_HISTORY`` drop off). Promoting the challenger's build ends its
    shadowing; another build leaves the challenger as it is. ``route``: required for a
    route's first record, and must match ``current`` otherwise."""
    if current is None:
        if route is None:
            raise RegistryError("the first record of a route needs its route")
        return RegistryRecord(
            route=route, seq=1, champion=msgspec.structs.replace(new, action="promote"), history=[]
        )
    if route is not None and route != current.route:
        raise RegistryError(f"record of route {current.route!r} given for route {route!r}")
    if new.model_version == current.champion.model_version:
        raise RegistryError(f"{new.model_version} is already the {current.route} champion")
    return RegistryRecord(
        route=current.route,
        seq=current.seq + 1,
        champion=msgspec.structs.replace(new, action="promote"),
        history=[current.champion, *current.history][:MAX_HISTORY],
        challenger=_unless(current.challenger, new.model_version),
    )


def _unless(challenger: RegistryEntry | None, champion: str) -> RegistryEntry | None:
    """The challenger, unless its build is (now) the champion: a build never shadows itself."""
    if challenger is not None and challenger.model_version == champion:
        return None
    return challenger


def shadow(
    current: RegistryRecord | None, new: RegistryEntry, *, route: Route | None = None
) -> RegistryRecord:
    """``new``'s build becomes the route's challenger (in place of any other): workers score
    it beside the champion and publish the comparisons, without serving its scores. The
    champion's record is needed (``RegistryError`` for ``None``: the caller records the build
    served before the registry first); ``route``, if given, must match it."""
    if current is None:
        raise RegistryError(
            f"no champion on record for route {route!r}: record the served build first"
        )
    if route is not None and route != current.route:
        raise RegistryError(f"record of route {current.route!r} given for route {route!r}")
    if new.model_version == current.champion.model_version:
        raise RegistryError(
            f"{new.model_version} is the {current.route} champion: nothing to shadow it against"
        )
    if current.challenger is not None and current.challenger.model_version == new.model_version:
        raise RegistryError(f"{new.model_version} is already the {current.route} challenger")
    return msgspec.structs.replace(
        current, seq=current.seq + 1, challenger=msgspec.structs.replace(new, action="shadow")
    )


def stop_shadow(current: RegistryRecord | None, by: str, at: str, why: str) -> RegistryRecord:
    """No challenger on the route any more: workers stop shadowing (or go back to the one
    they were configured with). ``by``, ``at`` and ``why`` are checked like an entry's; the
    record keeps no trace of them (the caller logs them)."""
    if current is None or current.challenger is None:
        route = "this route" if current is None else f"route {current.route}"
        raise RegistryError(f"no challenger to stop: nothing is shadowed on {route}")
    entry(current.challenger.model_version, by=by, at=at, why=why, action="shadow")
    return msgspec.structs.replace(current, seq=current.seq + 1, challenger=None)


def rollback(current: RegistryRecord | None, by: str, at: str, why: str) -> RegistryRecord:
    """The previous champion again (its build, report and bundle; who rolled back, when and
    why), and it leaves the history, so a second rollback goes one further back."""
    if current is None:
        raise RegistryError("no champion to roll back from: nothing was promoted on this route")
    if not current.history:
        raise RegistryError(
            f"nothing to roll back to: {current.champion.model_version} is the only "
            f"{current.route} champion on record"
        )
    previous = current.history[0]
    restored = entry(
        previous.model_version,
        by=by,
        at=at,
        why=why,
        action="rollback",
        report=previous.report,
        bundle=previous.bundle,
    )
    return RegistryRecord(
        route=current.route,
        seq=current.seq + 1,
        champion=restored,
        history=current.history[1:],
        challenger=_unless(current.challenger, restored.model_version),
    )


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(RegistryRecord)


def encode_record(record: RegistryRecord) -> bytes:
    return _ENCODER.encode(record)


def decode_record(raw: bytes | None) -> RegistryRecord:
    """A record's value -> the typed record; ``RegistryError`` (one line) for anything else."""
    if raw is None:
        raise RegistryError("registry record without a value (a tombstone)")
    try:
        return _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RegistryError(f"bad registry record: {exc}") from None


def record_key(route: str) -> bytes:
    """The record's key: the route (compaction keeps the latest record per route)."""
    return route.encode()


def fold(
    registry: dict[str, RegistryRecord], key: bytes | None, value: bytes | None
) -> RegistryError | None:
    """Apply one record read from the topic, in offset order, to ``registry`` (route -> its
    latest record): a tombstone forgets the route; a bad record changes nothing and is
    returned so the reader can log it (the topic may hold what an old or broken tool wrote)."""
    route = (key or b"").decode(errors="replace")
    if value is None:
        registry.pop(route, None)
        return None
    try:
        record = decode_record(value)
    except RegistryError as exc:
        return exc
    if record.route != route:
        return RegistryError(f"record of route {record.route!r} under key {route!r}")
    registry[route] = record
    return None


def describe(record: RegistryRecord) -> list[str]:
    """One line per entry, the champion first, then the challenger if any: what ``riskstream
    models champions`` prints."""

    def line(label: str, e: RegistryEntry) -> str:
        return (
            f"{record.route} {label}: {e.model_version} ({e.action} by {e.by} at {e.at}: {e.why})"
        )

    shadowed = [] if record.challenger is None else [line("challenger", record.challenger)]
    return [
        line(f"champion #{record.seq}", record.champion),
        *shadowed,
        *(line(f"earlier {i}", e) for i, e in enumerate(record.history, 1)),
    ]
