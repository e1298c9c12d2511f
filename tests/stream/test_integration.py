"""End to end against the real embedded broker and a real worker process with the real model."""

from __future__ import annotations

import base64
from collections import Counter

import orjson
import pytest

from models import artefacts
from stream.simulate import DemoCorpus, DemoTraffic
from tests.kafka_io import collect, produce

pytestmark = pytest.mark.integration

NEGATIVE = (
    "This is the worst thing I have ever bought. It arrived stale, tasted rancid and made "
    "me sick. Complete waste of money, avoid it."
)
POSITIVE = (
    "Absolutely delicious! Fresh, great flavour and arrived quickly. My whole family loves "
    "it and I will definitely buy it again."
)
BAD_TIME = {
    "event_id": "bad-time",
    "member_id": "m1",
    "event_time": "2026-02-30T25:00:00Z",
    "product_id": "p",
    "text": "ok",
}
MALFORMED: list[tuple[str, bytes | None, str]] = [
    ("reviews", b'{"event_id": "x", "member_id": ', "invalid_json"),
    ("chats", b'{"event_id": "\xff\xfe"}', "invalid_utf8"),
    ("transactions", orjson.dumps({"event_id": "t", "member_id": "m1"}), "schema_violation"),
    (
        "transactions",
        orjson.dumps(
            {
                "event_id": "t2",
                "member_id": "m1",
                "event_time": "2026-11-23T10:00:00Z",
                "amount": "12.50",
                "currency": "EUR",
                "merchant_id": "x",
                "channel": "web",
                "device_id": "d",
                "country": "DE",
            }
        ),
        "schema_violation",
    ),
    (
        "reviews",
        orjson.dumps(
            {
                **BAD_TIME,
                "event_id": "big",
                "event_time": "2026-11-23T10:00:00Z",
                "text": "x" * 25_000,
            }
        ),
        "schema_violation",
    ),
    ("chats", b'{"pad": "' + b"y" * 70_000 + b'"}', "oversized_event"),
    ("reviews", orjson.dumps(BAD_TIME), "invalid_event_time"),
    ("reviews", None, "invalid_json"),
]


def planted_review(event_id: str, text: str, rating: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "member_id": "m-planted",
            "event_time": "2026-11-23T10:00:00Z",
            "product_id": "B00PLANTED",
            "brand": "planted",
            "rating": rating,
            "text": text,
        }
    )


async def test_valid_events_are_scored_bad_ones_dead_lettered_alerts_and_profiles(
    kafka_broker, make_worker, topic_prefix
) -> None:
    traffic = DemoTraffic(DemoCorpus.load(), seed=11, members=40, malformed_ratio=0.0)
    demo = [traffic.next_record() for _ in range(300)]
    records = [(topic_prefix + r.topic, r.key, r.value) for r in demo]
    records += [
        (topic_prefix + "reviews", b"m-planted", planted_review("planted-neg", NEGATIVE, 1)),
        (topic_prefix + "reviews", b"m-planted", planted_review("planted-pos", POSITIVE, 5)),
    ]
    records += [(topic_prefix + topic, b"bad", value) for topic, value, _ in MALFORMED]
    valid_ids = {orjson.loads(r.value)["event_id"] for r in demo} | {"planted-neg", "planted-pos"}
    members = {orjson.loads(r.value)["member_id"] for r in demo} | {"m-planted"}

    worker = await make_worker()
    await produce(kafka_broker.bootstrap, records)
    out = {
        name: topic_prefix + name
        for name in ("scored-events", "dead-letter", "alerts", "member-profiles")
    }

    def done(found) -> bool:
        ids = {orjson.loads(m.value)["event_id"] for m in found[out["scored-events"]]}
        latest = {m.key.decode(): orjson.loads(m.value) for m in found[out["member-profiles"]]}
        planted = latest.get("m-planted", {}).get("counts", {}).get("review")
        return (
            ids >= valid_ids
            and len(found[out["dead-letter"]]) >= len(MALFORMED)
            and set(latest) >= members
            and planted == 2
        )

    found = await collect(
        kafka_broker.bootstrap, list(out.values()), done, timeout_s=120, alive=worker.alive
    )
    assert done(found), worker.log_tail()

    scored = [orjson.loads(m.value) for m in found[out["scored-events"]]]
    assert {s["event_id"] for s in scored} == valid_ids  # exactly the valid ones, by event_id
    for message, body in zip(found[out["scored-events"]], scored, strict=True):
        assert message.key == body["member_id"].encode()
        if body["event_type"] != "transaction":
            assert body["model_version"] == artefacts.model_version()
            assert 0.0 <= body["scores"]["sentiment_negative"] <= 1.0

    dead = [orjson.loads(m.value) for m in found[out["dead-letter"]]]
    assert len(dead) == len(MALFORMED)
    assert Counter(d["reason"] for d in dead) == Counter(reason for *_, reason in MALFORMED)
    originals = {value for _, value, _ in MALFORMED}
    for letter in dead:
        raw = letter["original_value_b64"]
        assert (base64.b64decode(raw) if raw is not None else None) in originals
        assert letter["source"]["topic"] in ("reviews", "chats", "transactions")
        assert letter["detail"]

    alerts = [orjson.loads(m.value) for m in found[out["alerts"]]]
    negative = [a for a in alerts if a["alert_type"] == "negative_review"]
    assert any(a["event_ids"] == ["planted-neg"] and a["severity"] == "high" for a in negative)
    assert not any("planted-pos" in a["event_ids"] for a in alerts)
    assert all(m.key == orjson.loads(m.value)["alert_id"].encode() for m in found[out["alerts"]])

    profiles = {m.key.decode(): orjson.loads(m.value) for m in found[out["member-profiles"]]}
    assert set(profiles) == members
    planted = profiles["m-planted"]
    assert planted["counts"]["review"] == 2
    assert planted["negative_reviews"] == 1
