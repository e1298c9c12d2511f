"""``riskstream dead-letter list|replay``: what was dead-lettered and why; once the cause is
fixed, re-produce the sealed originals to their input topics so they are processed again.

``replay`` opens ``sealed_original`` (``stream.core.sealing``) with the key files given, by key
id, and re-produces each original's key and value bytes unchanged to its source topic (with
this deployment's prefix). Only the input topics and ``labels`` are replayed: a record of an
internal topic is skipped (its source is the input record, dead-lettered as such when it fails
there). Masked originals (no key was set) are never replayed: they are not the original bytes.
A source position that was dead-lettered twice (a redelivery) is replayed once.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import orjson

from stream.core.codec import ValidationError, parse_event_time
from stream.core.sealing import SealingError, SealingKey, keyring, load_key, open_original
from stream.topics import DEAD_LETTER, INPUT_TOPICS, LABELS

#: The topics whose records ``replay`` re-produces (what the worker reads from outside).
REPLAYABLE = frozenset(INPUT_TOPICS) | {LABELS}
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _cli():  # the CLI's helpers, imported late: stream.ops.cli registers this module
    from stream.ops import cli

    return cli


# ------------------------------------------------------------------------------ pure part


@dataclass(frozen=True)
class Letter:
    """One dead letter as read from the topic (``body`` None: not JSON)."""

    offset: tuple[int, int]  # (partition, offset) in the dead-letter topic
    body: dict[str, Any] | None

    @property
    def failed_at_ms(self) -> int | None:
        try:
            return parse_event_time((self.body or {}).get("failed_at", ""))
        except ValidationError:
            return None

    @property
    def where(self) -> str:
        source = (self.body or {}).get("source") or {}
        return f"{source.get('topic')}[{source.get('partition')}]@{source.get('offset')}"


def parse_letters(records: Iterable[Any]) -> list[Letter]:
    letters = []
    for record in records:
        try:
            body = orjson.loads(record.value) if record.value is not None else None
        except orjson.JSONDecodeError:
            body = None
        letters.append(
            Letter((record.partition, record.offset), body if isinstance(body, dict) else None)
        )
    return letters


def since_ms(text: str, now_ms: int) -> int:
    """``--since``: an RFC 3339 time, or an age (``90s``, ``30m``, ``6h``, ``2d``)."""
    age = _AGE.fullmatch(text.strip())
    if age:
        return now_ms - int(float(age.group(1)) * _SECONDS[age.group(2)] * 1000)
    try:
        return parse_event_time(text.strip())
    except ValidationError:
        raise click.BadParameter(
            f"{text!r}: an RFC 3339 time (2026-11-23T10:00:00Z) or an age (30m, 6h, 2d)"
        ) from None


def select(
    letters: Iterable[Letter],
    *,
    since: int | None = None,
    reason: str | None = None,
    source_topic: str | None = None,
) -> list[Letter]:
    chosen = []
    for letter in letters:
        body = letter.body or {}
        if since is not None and (letter.failed_at_ms or 0) < since:
            continue
        if reason is not None and body.get("reason") != reason:
            continue
        if source_topic is not None and (body.get("source") or {}).get("topic") != source_topic:
            continue
        chosen.append(letter)
    return chosen


def summary_lines(letters: list[Letter], newest: int) -> list[str]:
    readable = [letter for letter in letters if letter.body is not None]
    bodies = [letter.body for letter in readable if letter.body is not None]
    reasons = Counter(str(body.get("reason")) for body in bodies)
    topics = Counter(str((body.get("source") or {}).get("topic")) for body in bodies)
    sealed = sum(1 for body in bodies if body.get("sealed_original"))

    def counts(counter: Counter[str]) -> str:
        return ", ".join(f"{name} {n}" for name, n in counter.most_common()) or "-"

    lines = [
        f"{len(letters)} dead letters ({sealed} sealed, {len(readable) - sealed} masked"
        + (f", {len(letters) - len(readable)} not JSON" if len(readable) < len(letters) else "")
        + ")",
        f"by reason: {counts(reasons)}",
        f"by source topic: {counts(topics)}",
    ]
    latest = sorted(readable, key=lambda letter: (letter.failed_at_ms or 0, letter.offset))
    shown = latest[-newest:] if newest else []
    if shown:
        lines.append(f"newest {len(shown)}:")
    for letter in reversed(shown):
        body = letter.body or {}
        when = body.get("failed_at") or "?"
        detail = str(body.get("detail", "")).replace("\n", " ")[:160]
        lines.append(f"  {when} {body.get('reason')} {letter.where}: {detail}")
    return lines


@dataclass
class ReplayPlan:
    """What ``replay`` sends (logical topic, key, value), and what it skips, with why."""

    send: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (where, why)

    @property
    def skip_counts(self) -> Counter[str]:
        return Counter(why for _, why in self.skipped)


def plan_replay(letters: Iterable[Letter], keys: Mapping[str, SealingKey]) -> ReplayPlan:
    """Open each letter's sealed originals; one record per source position (the latest letter
    of a redelivered one), in source order."""
    latest: dict[tuple[str, int, int], Letter] = {}
    plan = ReplayPlan()
    for letter in letters:
        source: Any = (letter.body or {}).get("source")
        try:
            position = (str(source["topic"]), int(source["partition"]), int(source["offset"]))
        except (KeyError, TypeError, ValueError):
            position = None
        if position is None:
            plan.skipped.append(
                (f"dead-letter[{letter.offset[0]}]@{letter.offset[1]}", "not a dead letter")
            )
            continue
        latest[position] = letter
    for (topic, _, _), letter in sorted(latest.items()):
        body = letter.body or {}
        if topic not in REPLAYABLE:
            plan.skipped.append((letter.where, f"source topic {topic} is not an input topic"))
            continue
        if not body.get("sealed_original"):
            plan.skipped.append((letter.where, "not sealed (a masked copy is not the original)"))
            continue
        try:
            opened = open_original(body, keys)
        except SealingError as exc:
            plan.skipped.append((letter.where, str(exc)))
            continue
        if opened.truncated:
            plan.skipped.append(
                (letter.where, "original larger than the dead-letter cap: only a prefix was kept")
            )
            continue
        plan.send.append((topic, opened.key, opened.value))
    return plan


# ------------------------------------------------------------------------------ broker


def _bootstrap() -> tuple[str, str]:
    from stream.ops.admin import bootstrap_servers

    settings = _cli()._settings()
    return bootstrap_servers(settings.kafka_broker), settings.topic_prefix


def _read_letters(bootstrap: str, prefix: str) -> list[Letter]:
    from stream.ops.labels import LabelsError, read_to_end

    try:
        records = asyncio.run(read_to_end(bootstrap, [prefix + DEAD_LETTER]))
    except LabelsError as exc:
        _cli()._fail(str(exc))
    except Exception as exc:  # aiokafka: broker unreachable, auth refused
        _cli()._fail(f"cannot read {prefix + DEAD_LETTER} at {bootstrap}: {exc}")
    return parse_letters(records)


async def _produce(bootstrap: str, records: list[tuple[str, bytes | None, bytes | None]]) -> None:
    from aiokafka import AIOKafkaProducer

    from stream.security import KafkaSecurity

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=10,
        max_request_size=4 * 1024 * 1024,
        **KafkaSecurity.from_env().aiokafka_kwargs(),
    )
    await producer.start()
    try:
        sent = [await producer.send(topic, value, key=key) for topic, key, value in records]
        for delivery in sent:
            await delivery
    finally:
        await producer.stop()


# ------------------------------------------------------------------------------ commands

_since_option = click.option(
    "--since",
    default=None,
    help="Only dead letters that failed at or after this: an RFC 3339 time or an age "
    "(30m, 6h, 2d).",
)


@click.group("dead-letter")
def dead_letter_group() -> None:
    """Dead letters: counts and the newest ones; replay sealed originals once fixed."""


@dead_letter_group.command("list")
@_since_option
@click.option("--newest", type=click.IntRange(0), default=5, show_default=True)
def list_letters(since: str | None, newest: int) -> None:
    """Counts per reason and source topic, and the newest records' reason, source and
    (readable, redacted) detail, one line each."""
    start = None if since is None else since_ms(since, int(time.time() * 1000))
    bootstrap, prefix = _bootstrap()
    letters = select(_read_letters(bootstrap, prefix), since=start)
    for line in summary_lines(letters, newest):
        click.echo(line)


@dead_letter_group.command("replay")
@click.option(
    "--key-file",
    "key_files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A dead-letter key file (repeat it for the keys of a rotation); default: "
    "RISKSTREAM_DEAD_LETTER_KEY_FILE.",
)
@click.option("--reason", default=None, help="Only dead letters with this reason.")
@click.option(
    "--source-topic", default=None, help="Only those from this input topic (e.g. reviews)."
)
@_since_option
@click.option("--dry-run", is_flag=True, help="Open and count; produce nothing.")
def replay(
    key_files: tuple[Path, ...],
    reason: str | None,
    source_topic: str | None,
    since: str | None,
    dry_run: bool,
) -> None:
    """Unseal the originals and re-produce each (key and value bytes unchanged) to its source
    topic, so that they are processed again once what dead-lettered them is fixed."""
    cli = _cli()
    settings = cli._settings()
    paths = list(key_files) or (
        [settings.dead_letter_key_file] if settings.dead_letter_key_file else []
    )
    if not paths:
        cli._fail(
            "no key: give --key-file (or set RISKSTREAM_DEAD_LETTER_KEY_FILE)", cli.EXIT_USAGE
        )
    if source_topic is not None and source_topic not in REPLAYABLE:
        cli._fail(
            f"--source-topic {source_topic}: not an input topic ({', '.join(sorted(REPLAYABLE))})",
            cli.EXIT_USAGE,
        )
    try:
        keys = keyring(load_key(path) for path in paths)
    except SealingError as exc:
        cli._fail(str(exc), cli.EXIT_USAGE)
    start = None if since is None else since_ms(since, int(time.time() * 1000))
    bootstrap, prefix = _bootstrap()
    letters = _read_letters(bootstrap, prefix)
    chosen = select(letters, since=start, reason=reason, source_topic=source_topic)
    plan = plan_replay(chosen, keys)
    for where, why in plan.skipped:
        click.echo(f"skipped {where}: {why}", err=True)
    targets = Counter(prefix + topic for topic, _, _ in plan.send)
    if plan.send and not dry_run:
        try:
            asyncio.run(_produce(bootstrap, [(prefix + t, k, v) for t, k, v in plan.send]))
        except Exception as exc:  # aiokafka: broker unreachable, a record too large
            cli._fail(f"re-producing to {', '.join(sorted(targets))} failed: {exc}")
    verb = "would re-produce" if dry_run else "re-produced"
    where = ", ".join(f"{n} to {t}" for t, n in sorted(targets.items()))
    click.echo(f"{verb} {len(plan.send)}" + (f" ({where})" if where else ""))
    why = ", ".join(f"{w}: {n}" for w, n in plan.skip_counts.most_common())
    click.echo(f"skipped {len(plan.skipped)}" + (f" ({why})" if why else ""))
