"""Issue 20, "private by construction": every PII class planted in every field of every input
(and in the record key, an unknown field and the labels topic) finds none raw on any topic the
worker writes: outputs, dead letters, internal topics and table changelogs alike.

Plants: ``tests/stream/pii_planted_values.py`` (16 values of 5 classes x 46 fields, and some
fields again in ``\\u``-escaped JSON and in UTF-16: 880 records). One worker (stub model) per
case, against the real embedded broker: dead letters masked with the member stage hopping
through ``riskstream-member-events``, and dead letters sealed with the default fused stage.
A find is searched as planted, without separators, as digits, as a phone's national number
and as an e-mail's local part, after NFKC and case folding, in keys, values, headers, every
JSON string (so ``\\u0040`` escapes count) and the base64 originals of dead letters. A
failure lists each (class, input field, value) and the topic it was found on.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.stream.pii_planted_values import (
    CANARY_PRODUCT,
    INPUTS,
    MIN_NEEDLE,
    TEXT_FIELDS,
    Plant,
    needles,
    norm,
    plants,
    skeleton,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCORED, DEAD = "scored-events", "dead-letter"
#: Random bytes in a sealed dead letter: searched as text only, never decoded.
OPAQUE_B64 = {"nonce_b64", "ciphertext_b64"}


# --------------------------------------------------------------------------------------------
# What a record says, in every form a value could hide in.


def _decodings(raw: bytes) -> list[str]:
    texts = [raw.decode("utf-8", "replace")]
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(raw) > 1 and raw.count(0) * 3 >= len(raw)):
        for codec in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"):
            texts.append(raw.decode(codec, "ignore"))
    return texts


def _strings(node: Any, out: list[str], depth: int) -> None:
    if isinstance(node, dict):
        for name, item in node.items():
            out.append(str(name))
            if isinstance(item, str) and name.endswith("_b64") and name not in OPAQUE_B64:
                with contextlib.suppress(ValueError):
                    out.extend(_views(base64.b64decode(item), depth + 1))
            _strings(item, out, depth)
    elif isinstance(node, list):
        for item in node:
            _strings(item, out, depth)
    elif isinstance(node, str):
        out.append(node)
    elif node is not None:
        out.append(str(node))


def _views(raw: bytes | None, depth: int = 0) -> list[str]:
    """The bytes as text (in the encodings they may be in), plus every JSON string in them,
    unescaped, plus the decoded ``*_b64`` originals of a dead letter."""
    if not raw:
        return []
    views = _decodings(raw)
    if depth < 3:
        for text in list(views):
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError:
                continue
            _strings(parsed, views, depth)
            break
    return views


def record_views(message: Any) -> list[str]:
    views = _views(message.key) + _views(message.value)
    for name, value in message.headers or ():
        views.append(name)
        views.extend(_views(value))
    return views


@dataclass
class Haystack:
    """One topic's records as two searchable strings (normalised text, and the skeleton:
    separators dropped) with where each record starts."""

    topic: str
    positions: list[tuple[int, int]]
    text: str
    text_starts: list[int]
    skel: str
    skel_starts: list[int]

    @classmethod
    def of(cls, topic: str, messages: list[Any]) -> Haystack:
        texts, skels, positions = [], [], []
        for message in messages:
            views = record_views(message)
            texts.append("\x00".join(norm(v) for v in views))
            skels.append("\x00".join(skeleton(v) for v in views))
            positions.append((message.partition, message.offset))

        def joined(parts: list[str]) -> tuple[str, list[int]]:
            starts, at = [], 0
            for part in parts:
                starts.append(at)
                at += len(part) + 1
            return "\x01".join(parts), starts

        text, text_starts = joined(texts)
        skel, skel_starts = joined(skels)
        return cls(topic, positions, text, text_starts, skel, skel_starts)

    def record_at(self, where: str, index: int) -> tuple[int, int]:
        starts = self.text_starts if where == "text" else self.skel_starts
        return self.positions[bisect.bisect_right(starts, index) - 1]


@dataclass(frozen=True)
class Find:
    plant: Plant
    form: str
    topic: str
    position: tuple[int, int]
    excerpt: str


class Scanner:
    """Every plant's needles, looked up by their first ``MIN_NEEDLE`` characters while sliding
    over a haystack (one pass per haystack, whatever the number of needles)."""

    def __init__(self, planted: list[Plant]) -> None:
        self.by_prefix: dict[str, dict[str, list[tuple[str, str, Plant]]]] = {
            "text": defaultdict(list),
            "skel": defaultdict(list),
        }
        for plant in planted:
            for form, where, string in needles(plant.value.secret, plant.value.cls):
                self.by_prefix[where][string[:MIN_NEEDLE]].append((string, form, plant))

    def scan(self, hay: Haystack) -> list[Find]:
        finds: dict[tuple[int, tuple[int, int]], Find] = {}
        for where, blob in (("text", hay.text), ("skel", hay.skel)):
            table = self.by_prefix[where]
            for i in range(len(blob) - MIN_NEEDLE + 1):
                candidates = table.get(blob[i : i + MIN_NEEDLE])
                if not candidates:
                    continue
                for string, form, plant in candidates:
                    if blob.startswith(string, i):
                        position = hay.record_at(where, i)
                        excerpt = blob[max(0, i - 40) : i + len(string) + 40]
                        excerpt = excerpt.replace("\x00", " | ").replace("\x01", " || ")
                        found = finds.get((plant.n, position))
                        if found is None:
                            finds[(plant.n, position)] = Find(
                                plant, form, hay.topic, position, excerpt
                            )
        return list(finds.values())


# --------------------------------------------------------------------------------------------
# Kafka.


async def produce_all(
    bootstrap: str, prefix: str, planted: list[Plant]
) -> dict[tuple[str, int, int], Plant]:
    """Plants by (logical topic, partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(prefix + p.topic, p.record, key=p.key) for p in planted]
        sent = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {(p.topic, m.partition, m.offset): p for p, m in zip(planted, sent, strict=True)}


async def read_all(
    bootstrap: str, prefix: str, idle_s: float = 3.0, timeout_s: float = 60
) -> dict[str, list]:
    """Every topic with ``prefix``, each partition from its beginning until nothing new came
    for ``idle_s`` (the worker is stopped; Tansu's ListOffsets answers stale end offsets, so
    they are not used)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        names = sorted(t for t in await consumer.topics() if t.startswith(prefix))
        tps = [
            TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t))
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: dict[str, list] = {t: [] for t in names}
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() - last_new < idle_s:
            assert time.monotonic() < deadline, f"topics still growing after {timeout_s}s"
            batches = await consumer.getmany(timeout_ms=500)
            for tp, messages in batches.items():
                found[tp.topic].extend(messages)
                last_new = time.monotonic()
        return found
    finally:
        await consumer.stop()


async def wait_accounted(
    bootstrap: str,
    prefix: str,
    expected: set[tuple[str, int, int]],
    alive: Any,
    timeout_s: float,
) -> set[tuple[str, int, int]]:
    """Read scored-events and dead-letter until every expected input position is in one of
    them (``source`` says where an output came from); returns those seen."""
    seen: set[tuple[str, int, int]] = set()
    consumer = AIOKafkaConsumer(
        prefix + SCORED,
        prefix + DEAD,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and alive() and not expected <= seen:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for message in messages:
                    try:
                        source = orjson.loads(message.value)["source"]
                        seen.add((source["topic"], source["partition"], source["offset"]))
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue
    finally:
        await consumer.stop()
    return seen


async def labels_consumed(
    bootstrap: str, group: str, ends: dict[TopicPartition, int], timeout_s: float
) -> bool:
    """Whether the worker's group committed ``ends`` (one past the last planted label of each
    labels partition): valid labels produce no output, so this is how one knows they were all
    checked."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()  # no subscription: it joins nothing, it only asks for offsets
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            committed = {tp: await reader.committed(tp) for tp in ends}
            if all((committed[tp] or 0) >= end for tp, end in ends.items()):
                return True
            await asyncio.sleep(0.5)
        return False
    finally:
        await reader.stop()


# --------------------------------------------------------------------------------------------
# Reporting.


def describe(finds: list[Find]) -> str:
    grouped: dict[tuple[str, str, str, str], list[Find]] = defaultdict(list)
    for find in finds:
        p = find.plant
        grouped[(p.value.cls, p.where, p.value.template, find.topic)].append(find)
    summary: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (cls, where, _, topic), _found in grouped.items():
        summary[(where, topic)].add(cls)
    lines = [
        f"{len({f.plant.n for f in finds})} planted values found raw "
        f"({len(finds)} records) on {len({f.topic for f in finds})} topic(s).",
        "By input field -> topic: classes",
    ]
    lines += [
        f"  {where:<34} -> {topic:<40} {', '.join(sorted(classes))}"
        for (where, topic), classes in sorted(summary.items())
    ]
    lines.append("Each (class, template, input field, found on topic): value [form] e.g. excerpt")
    for (cls, where, template, topic), found in sorted(grouped.items()):
        first = found[0]
        lines.append(
            f"  {cls:<11} {template:<30} {where:<28} on {topic} ({len(found)}x): "
            f"{first.plant.value.secret!r} [{first.form}] "
            f"@{first.position[0]}:{first.position[1]} …{first.excerpt}…"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The test.


def new_key(path: Path) -> Path:
    path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    return path


@pytest.mark.parametrize(
    "dead_letters,member_stage", [("masked", "hop"), ("sealed", "fused")], ids=lambda v: v
)
async def test_planted_pii_is_found_raw_on_no_topic(
    kafka_broker, make_worker, topic_prefix, tmp_path: Path, dead_letters: str, member_stage: str
) -> None:
    planted = plants()
    env = {"RISKSTREAM_BACKEND": "stub", "RISKSTREAM_MEMBER_STAGE": member_stage}
    if dead_letters == "sealed":
        env["RISKSTREAM_DEAD_LETTER_KEY_FILE"] = str(new_key(tmp_path / "dead-letter.key"))
    worker = await make_worker(**env)
    by_position = await produce_all(kafka_broker.bootstrap, topic_prefix, planted)
    events = {pos for pos, p in by_position.items() if p.topic != "labels"}

    seen = await wait_accounted(
        kafka_broker.bootstrap, topic_prefix, events, worker.alive, timeout_s=90
    )
    lost = sorted(events - seen)
    assert not lost, (
        f"{len(lost)} planted inputs gave neither a scored event nor a dead letter: "
        + ", ".join(f"{by_position[pos].where}@{pos[1]}:{pos[2]}" for pos in lost[:30])
        + "\n"
        + worker.log_tail()
    )
    label_ends: dict[TopicPartition, int] = defaultdict(int)
    for topic, partition, offset in by_position:
        if topic == "labels":
            tp = TopicPartition(topic_prefix + topic, partition)
            label_ends[tp] = max(label_ends[tp], offset + 1)
    group = topic_prefix + "riskstream"  # the app id (consumer group) under the prefix
    assert await labels_consumed(kafka_broker.bootstrap, group, label_ends, timeout_s=30), (
        "the worker did not consume the planted labels\n" + worker.log_tail()
    )
    worker.stop()  # SIGTERM: outputs flushed, changelogs written, offsets committed

    topics = await read_all(kafka_broker.bootstrap, topic_prefix)
    scanner = Scanner(planted)
    inputs = {topic_prefix + name for name in INPUTS}

    # the scanner finds every planted value where it was planted (in the input record)...
    missed = []
    for name in INPUTS:
        own = {
            (f.plant.n, f.position)
            for f in scanner.scan(Haystack.of(topic_prefix + name, topics[topic_prefix + name]))
        }
        missed += [
            p.where + f" {p.value.secret!r}"
            for (topic, partition, offset), p in by_position.items()
            if topic == name and (p.n, (partition, offset)) not in own
        ]
    assert not missed, f"the scanner does not find {len(missed)} planted values: {missed[:20]}"
    # ... and reads the outputs: a reference id with no PII is carried verbatim
    scored = topics[topic_prefix + SCORED]
    assert any(CANARY_PRODUCT.encode() in (m.value or b"") for m in scored), "no canary"
    if dead_letters == "masked":  # ... and the base64 originals of masked dead letters
        canary, dead = norm(CANARY_PRODUCT), topics[topic_prefix + DEAD]
        assert not any(CANARY_PRODUCT.encode() in (m.value or b"") for m in dead)
        assert any(canary in norm(view) for m in dead for view in record_views(m)), "no canary"

    outputs = sorted(set(topics) - inputs)
    assert {topic_prefix + SCORED, topic_prefix + DEAD} <= set(outputs)
    finds = [f for topic in outputs for f in scanner.scan(Haystack.of(topic, topics[topic]))]
    text_gaps = sorted(
        {(f.plant.value.cls, f.plant.value.secret) for f in finds if f.plant.field in TEXT_FIELDS}
    )
    scanned = ", ".join(f"{t.removeprefix(topic_prefix)} {len(topics[t])}" for t in outputs)
    assert not finds, (
        f"[{dead_letters} dead letters, {member_stage} member stage; scanned: {scanned}]\n"
        + describe(finds)
        + f"\nMasker misses in free-text fields (class, value): {text_gaps}"
    )
