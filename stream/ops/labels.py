"""``riskstream labels``: import an analyst's labels to the ``labels`` topic, and build a
labelled set (labels joined with what was scored) as a hash-named Parquet file.

The join itself is pure (``stream/core/labels.py``); this module reads files and topics. A
labelled set is built from a broker (the ``labels`` topic, the input topics for the text as
served and ``scored-events`` for the scores, each read from the start to its current end) or
from a replay's output folder (``riskstream replay`` wrote ``outputs-a/scored-events.jsonl``; its
input file gives the text) with labels from the topic or a file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from stream.core.codec import ValidationError
from stream.core.labels import (
    COLUMNS,
    Label,
    ScoredEvent,
    decode_label,
    encode_label,
    label_key,
    labelled_rows,
    latest_labels,
    rows_digest,
)
from stream.core.policy import PiiInIds, Pseudonymiser
from stream.core.steps import RawRecord, ValidEvent, decode_record, text_to_score
from stream.security import KafkaAccessError, KafkaSecurity, start_client
from stream.topics import INPUT_TOPICS, LABELS, SCORED_EVENTS


class LabelsError(RuntimeError):
    """A labels file or source that cannot be used; the message is one line."""


# ------------------------------------------------------------------------------ import


def read_label_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV, JSONL (optionally .gz) or Parquet file of labels, as dicts."""
    if not path.is_file():
        raise LabelsError(f"no such file: {path}")
    name = path.name.lower()
    if name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ModuleNotFoundError:
            raise LabelsError(
                "Parquet needs the backtest extra: pip install 'riskstream[backtest]'"
            ) from None
        return pq.read_table(path).to_pylist()
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if name.endswith((".csv", ".csv.gz")):
        return [dict(row) for row in csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))]
    rows = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                rows.append({"__invalid__": f"line {number}: invalid JSON ({exc})"})
    return rows


@dataclass(frozen=True)
class ParsedLabels:
    labels: list[Label]
    #: Row number (1-based) -> why it was refused.
    refused: dict[int, str]


def parse_label_rows(rows: Iterable[dict[str, Any]]) -> ParsedLabels:
    """Each row checked exactly as the worker checks a ``labels`` record."""
    labels, refused = [], {}
    for number, row in enumerate(rows, start=1):
        if "__invalid__" in row:
            refused[number] = row["__invalid__"]
            continue
        body = {k: v for k, v in row.items() if v not in (None, "")}
        try:
            key = label_key(str(body.get("event_id", "")), str(body.get("head", "")))
            labels.append(decode_label(key, orjson.dumps(body)))
        except (ValidationError, TypeError) as exc:
            refused[number] = str(exc)
    return ParsedLabels(labels, refused)


async def produce_labels(
    bootstrap: str, topic: str, labels: list[Label], security: KafkaSecurity | None = None
) -> int:
    """Produce every label (keyed ``event_id|head``) with acks=all; -> how many."""
    from aiokafka import AIOKafkaProducer

    security = security or KafkaSecurity.from_env()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=10, **security.aiokafka_kwargs()
    )
    await producer.start()
    try:
        sent = [
            await producer.send(topic, value, key=key) for key, value in map(encode_label, labels)
        ]
        for delivery in sent:
            await delivery
        return len(sent)
    finally:
        await producer.stop()


# ------------------------------------------------------------------------------ sources


@dataclass(frozen=True)
class TopicRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


async def read_to_end(
    bootstrap: str, topics: list[str], security: KafkaSecurity | None = None, timeout_s: float = 60
) -> list[TopicRecord]:
    """Every record of ``topics`` from the start to its end as of the first fetch, in (topic,
    partition, offset) order; absent topics read as empty."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    from stream.ops import registry

    security = security or KafkaSecurity.from_env()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **security.aiokafka_kwargs(),
    )
    try:
        await start_client(consumer, bootstrap, security, min(timeout_s, 30.0))
    except KafkaAccessError as exc:  # one line, not aiokafka's traceback
        raise LabelsError(f"cannot read the topics: {exc}") from None
    try:
        present = await consumer.topics()
        tps = [
            TopicPartition(t, p)
            for t in topics
            if t in present
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        if not tps:
            return []
        consumer.assign(tps)
        found: list[TopicRecord] = []

        def take(m: Any) -> None:
            found.append(TopicRecord(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp))

        try:
            await asyncio.wait_for(registry.read_to_end(consumer, tps, take), timeout_s)
        except TimeoutError:
            raise LabelsError(
                f"timed out reading {', '.join(topics)} ({timeout_s:.0f} s)"
            ) from None
        return sorted(found, key=lambda r: (r.topic, r.partition, r.offset))
    finally:
        await consumer.stop()


def labels_of(
    records: Iterable[TopicRecord | tuple[bytes | None, bytes | None]],
) -> tuple[dict, int]:
    """The latest valid label per (event, head) and how many records were invalid."""
    good, bad = [], 0
    for record in records:
        key, value = (record.key, record.value) if isinstance(record, TopicRecord) else record
        try:
            good.append(decode_label(key, value))
        except ValidationError:
            bad += 1
    return latest_labels(good), bad


def served_texts(
    records: Iterable[tuple[str, bytes | None, bytes | None]],
    pseudonymiser: Pseudonymiser | None = None,
    pii_in_ids: PiiInIds = "pseudonymise",
) -> dict[str, tuple]:
    """event_id -> (event type, the text as the worker served it: decoded and PII-masked by
    the edge's own step), for every valid input record (``(logical topic, key, value)``).
    With the workers' pseudonymiser and id policy, an event id the edge pseudonymised (it
    carried PII) is keyed by its pseudonym, as ``scored-events`` and labels name it."""
    out: dict[str, tuple] = {}
    for topic, key, value in records:
        decoded = decode_record(
            RawRecord(topic, 0, 0, key, value), pseudonymiser=pseudonymiser, pii_in_ids=pii_in_ids
        )
        if isinstance(decoded, ValidEvent):
            out[decoded.data["event_id"]] = (decoded.event_type, text_to_score(decoded))
    return out


def scored_events(
    values: Iterable[bytes | dict], texts: dict[str, tuple]
) -> dict[str, ScoredEvent]:
    """event_id -> what was served, from ``scored-events`` values and the texts; the last
    record of an event wins (at-least-once: a redelivery republishes the same scores)."""
    out = {}
    for value in values:
        body = orjson.loads(value) if isinstance(value, bytes | bytearray) else value
        event_id = body["event_id"]
        _, text = texts.get(event_id, (body["event_type"], None))
        out[event_id] = ScoredEvent(
            event_id, body["event_type"], text, body.get("scores") or {}, body.get("model_version")
        )
    return out


def in_range(record: TopicRecord, from_ms: int | None, to_ms: int | None) -> bool:
    """Whether a record's timestamp is in ``[from_ms, to_ms)`` (None: open on that side)."""
    at = record.timestamp_ms
    if at is None:
        return from_ms is None and to_ms is None
    return (from_ms is None or at >= from_ms) and (to_ms is None or at < to_ms)


async def from_broker(
    bootstrap: str,
    prefix: str,
    security: KafkaSecurity | None = None,
    *,
    from_ms: int | None = None,
    to_ms: int | None = None,
    pseudonymiser: Pseudonymiser | None = None,
    pii_in_ids: PiiInIds = "pseudonymise",
) -> tuple[dict, int, dict[str, ScoredEvent]]:
    """(latest labels, invalid label records, scored events) read from a deployment; with a
    range, only the events scored in ``[from_ms, to_ms)`` (``scored-events`` record time) join
    (every label and input is read: a label often comes days after its event)."""
    names = {prefix + t: t for t in (LABELS, SCORED_EVENTS, *INPUT_TOPICS)}
    records = await read_to_end(bootstrap, list(names), security)
    labels, bad = labels_of(r for r in records if names[r.topic] == LABELS)
    texts = served_texts(
        ((names[r.topic], r.key, r.value) for r in records if names[r.topic] in INPUT_TOPICS),
        pseudonymiser,
        pii_in_ids,
    )
    scored = scored_events(
        (
            r.value
            for r in records
            if names[r.topic] == SCORED_EVENTS and r.value and in_range(r, from_ms, to_ms)
        ),
        texts,
    )
    return labels, bad, scored


def from_replay(
    replay_dir: Path,
    input_file: Path,
    pseudonymiser: Pseudonymiser | None = None,
    pii_in_ids: PiiInIds = "pseudonymise",
) -> dict[str, ScoredEvent]:
    """Scored events of a replay's run A (``outputs-a/scored-events.jsonl``) with the texts
    of the file it replayed."""
    from stream.backtest.replay import read_file

    scored_file = replay_dir / "outputs-a" / "scored-events.jsonl"
    if not scored_file.is_file():
        raise LabelsError(f"{scored_file} is missing: is {replay_dir} a replay's output folder?")
    records, _ = read_file(input_file)
    texts = served_texts(((r.topic, r.key, r.value) for r in records), pseudonymiser, pii_in_ids)
    return scored_events(iter_jsonl(scored_file), texts)


def iter_jsonl(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from (line for line in handle if line.strip())


# ------------------------------------------------------------------------------ the set


def write_labelled_set(rows: list[dict[str, Any]], out_dir: Path) -> Path:
    """``labelled-<sha256[:12] of the rows>.parquet`` in ``out_dir`` (same rows, same name and
    bytes); a summary JSON beside it."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise LabelsError("a labelled set is Parquet: pip install 'riskstream[backtest]'") from None
    if not rows:
        raise LabelsError("no label matched a scored event: nothing to write")
    digest = rows_digest(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"labelled-{digest[:12]}.parquet"
    schema = pa.schema(
        [
            ("event_id", pa.string()),
            ("head", pa.string()),
            ("value", pa.string()),
            ("target", pa.int8()),
            ("event_type", pa.string()),
            ("language", pa.string()),
            ("text", pa.string()),
            ("score", pa.float64()),
            ("sentiment_negative", pa.float64()),
            ("scam_risk", pa.float64()),
            ("fraud_risk", pa.float64()),
            ("model_version", pa.string()),
            ("labeller", pa.string()),
            ("labelled_at", pa.string()),
        ],
        metadata={"riskstream.labelled_set.sha256": digest},
    )
    table = pa.Table.from_pylist([{c: row.get(c) for c in COLUMNS} for row in rows], schema)
    staging = path.with_suffix(".tmp")
    pq.write_table(table, staging, compression="zstd")
    staging.replace(path)
    return path


def summary(rows: list[dict[str, Any]], unmatched: dict[str, int], invalid: int) -> dict:
    by: dict[str, dict[str, int]] = {}
    for row in rows:
        slot = by.setdefault(f"{row['head']}/{row['language']}", {})
        slot[row["value"]] = slot.get(row["value"], 0) + 1
    return {"rows": len(rows), "by_head_language": by, "unmatched": unmatched, "invalid": invalid}


def build_set(
    labels: dict, scored: dict[str, ScoredEvent], invalid: int, out_dir: Path
) -> tuple[Path, dict]:
    joined = labelled_rows(labels, scored)
    path = write_labelled_set(joined.rows, out_dir)
    facts = {**summary(joined.rows, joined.unmatched, invalid), "file": path.name}
    path.with_suffix(".json").write_text(json.dumps(facts, indent=2, sort_keys=True))
    return path, facts
