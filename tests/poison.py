"""Records that must never stop a partition: the six that crash-looped the worker before
(issue 9), and a seeded generator of malformed records for fuzzing through the real broker.

Each generated record says whether the worker must score it (``valid``) or dead-letter it."""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson

#: Big enough that a record exceeds 1 MB (a consumer's default fetch size and a producer's
#: default request limit), as the ones that crash-looped the worker did.
BIG = 800_000


def review(event_id: str, member_id: str = "m-poison", **fields: object) -> dict:
    return {
        "event_id": event_id,
        "member_id": member_id,
        "event_time": "2026-11-23T10:00:00Z",
        "product_id": "p-1",
        "brand": "acme",
        "text": "Arrived on time, does what it says.",
        **fields,
    }


@dataclass(frozen=True, slots=True)
class PoisonRecord:
    name: str
    topic: str
    key: bytes | None
    value: bytes | None
    #: The dead-letter reason it must get; None: a valid event that must be scored.
    reason: str | None


def _deeply_nested_review() -> bytes:
    body = orjson.dumps(review("poison-deep"))
    return body[:-1] + b',"extra":' + b"[" * 300 + b"1" + b"]" * 300 + b"}"


def six_records() -> list[PoisonRecord]:
    """The six records that each put the worker into a crash loop before."""
    return [
        PoisonRecord(
            "nested 300 levels", "reviews", b"m-poison", _deeply_nested_review(), "nesting_too_deep"
        ),
        PoisonRecord(
            "year 0 in UTC",
            "reviews",
            b"m-poison",
            orjson.dumps(review("poison-y0", event_time="0001-01-01T00:00:00+00:01")),
            "invalid_event_time",
        ),
        PoisonRecord(
            "year 10000 in UTC",
            "transactions",
            b"m-poison",
            orjson.dumps(
                {
                    "event_id": "poison-y10k",
                    "member_id": "m-poison",
                    "event_time": "9999-12-31T23:59:59-00:01",
                    "amount": 10.0,
                    "currency": "EUR",
                    "merchant_id": "mer-1",
                    "channel": "web",
                    "device_id": "d-1",
                    "country": "DE",
                }
            ),
            "invalid_event_time",
        ),
        PoisonRecord("800 kB of non-JSON", "chats", b"m-poison", b"\x01" * BIG, "oversized_event"),
        PoisonRecord(
            "800 kB key, invalid JSON", "reviews", b"k" * BIG, b'{"event_id": ', "oversized_key"
        ),
        PoisonRecord(
            "1 MiB text",
            "reviews",
            b"m-poison",
            orjson.dumps(review("poison-1mib", text="a" * 1_048_576)),
            "oversized_event",
        ),
    ]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)


def valid_event(topic: str, event_id: str, member_id: str = "m-poison") -> dict:
    """A valid event of ``topic``'s schema."""
    if topic == "reviews":
        return review(event_id, member_id)
    common = {"event_id": event_id, "member_id": member_id, "event_time": "2026-11-23T10:00:00Z"}
    if topic == "chats":
        return {
            **common,
            "conversation_id": "c-1",
            "sender_role": "member",
            "text": "Hi, where is my parcel?",
        }
    return {
        **common,
        "amount": 12.5,
        "currency": "EUR",
        "merchant_id": "mer-1",
        "channel": "web",
        "device_id": "d-1",
        "country": "DE",
    }


def valid_after(name: str, count: int, topic: str = "reviews") -> list[PoisonRecord]:
    """Valid events behind a poison record, on its partition (same key)."""
    return [
        PoisonRecord(
            f"valid after {name}",
            topic,
            b"m-poison",
            orjson.dumps(valid_event(topic, f"after-{slug(name)}-{i}")),
            None,
        )
        for i in range(count)
    ]


#: Mutations of a valid record -> the reason its dead letter must carry.
def malformed(rng: random.Random, i: int) -> PoisonRecord:
    base = review(f"fuzz-{i}", member_id=f"m-{rng.randrange(50)}")
    key = base["member_id"].encode()
    kind = rng.randrange(14)
    if kind == 0:
        raw = orjson.dumps(base)
        return PoisonRecord(
            "truncated JSON", "reviews", key, raw[: rng.randrange(1, len(raw))], "invalid_json"
        )
    if kind == 1:
        raw = orjson.dumps(base)
        cut = rng.randrange(len(raw))
        return PoisonRecord(
            "bad UTF-8", "reviews", key, raw[:cut] + b"\xff\xfe" + raw[cut:], "invalid_utf8"
        )
    if kind == 2:
        field = rng.choice(["rating", "text", "product_id", "member_id"])
        wrong = rng.choice([[], {}, 3.5, True, "seven"] if field == "rating" else [[], {}, 3, None])
        return PoisonRecord(
            "wrong type", "reviews", key, orjson.dumps({**base, field: wrong}), "schema_violation"
        )
    if kind == 3:
        field = rng.choice(["event_id", "member_id", "event_time", "product_id", "text"])
        del base[field]
        return PoisonRecord("missing field", "reviews", key, orjson.dumps(base), "schema_violation")
    if kind == 4:
        bad = rng.choice(
            [
                "2026-02-30T25:00:00Z",
                "2026-11-23T10:00:00Z\x00garbage",
                "2026-W48-1T10:00:00Z",
                "2026-11-23T10:00:00+0100",
                "0001-01-01T00:00:00+00:01",
                "9999-12-31T23:59:59-00:01",
                "2099-01-01T00:00:00Z",  # far future: would move the member's clock for good
                "yesterday at noon, more or less",
            ]
        )
        base["event_time"] = bad
        return PoisonRecord("bad time", "reviews", key, orjson.dumps(base), "invalid_event_time")
    if kind == 5:
        return PoisonRecord("tombstone", "reviews", key, None, "invalid_json")
    if kind == 6:
        return PoisonRecord(
            "oversized text",
            "reviews",
            key,
            orjson.dumps({**base, "text": "x" * 70_000}),
            "oversized_event",
        )
    if kind == 7:
        raw = orjson.dumps(base)
        depth = rng.randrange(17, 400)
        return PoisonRecord(
            "deep nesting",
            "reviews",
            key,
            raw[:-1] + b',"x":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}",
            "nesting_too_deep",
        )
    if kind == 8:
        return PoisonRecord(
            "huge key",
            "chats",
            b"k" * rng.randrange(1025, 5000),
            orjson.dumps(base),
            "oversized_key",
        )
    if kind == 9:
        return PoisonRecord(
            "not an object",
            "transactions",
            key,
            orjson.dumps(rng.choice([[1, 2], "s", 7, None])),
            "schema_violation",
        )
    if kind == 10:
        return PoisonRecord("empty", "chats", key, b"", "invalid_json")
    if kind == 11:
        tx = {
            "event_id": f"fuzz-{i}",
            "member_id": base["member_id"],
            "event_time": "2026-11-23T10:00:00Z",
            "amount": rng.choice([-1, "12.5", float("nan"), float("inf"), -5]),
            "currency": "EUR",
            "merchant_id": "mer-1",
            "channel": "web",
            "device_id": "d",
            "country": "DE",
        }
        raw = _dumps_loose(tx)
        reason = "invalid_json" if b"NaN" in raw or b"Infinity" in raw else "schema_violation"
        return PoisonRecord("bad amount", "transactions", key, raw, reason)
    if kind == 12:
        chat = {**base, "conversation_id": "c", "sender_role": "robot"}
        return PoisonRecord("bad enum", "chats", key, orjson.dumps(chat), "schema_violation")
    raw = b"#" + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
    return PoisonRecord(
        "random bytes", "reviews", key, raw, "invalid_utf8" if _bad_utf8(raw) else "invalid_json"
    )


def _bad_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _dumps_loose(data: dict) -> bytes:
    """JSON with NaN/Infinity written as JavaScript does (orjson refuses to write them)."""
    import json

    return json.dumps(data).encode()
