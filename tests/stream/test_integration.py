"""End to end against the real embedded broker and a real worker process with the real model."""

# ruff: noqa: RUF001 (Chinese punctuation in the planted texts)

from __future__ import annotations

import base64
import hashlib
from collections import Counter

import orjson
import pytest

from models.serving import artefacts
from models.serving.router import text_route
from stream.ops.simulate import DemoCorpus, DemoTraffic
from tests.fixtures import pseudonym
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
#: Chinese, scored by the multilingual build the router sends Chinese text to.
NEGATIVE_ZH = "质量太差了，用了两天就坏了，客服也不理人，非常失望，要求退货！"
POSITIVE_ZH = "非常好，物流很快，包装精美，五星好评，下次还会再买。"
#: Different buyers' complaints about one product within 40 minutes (a Chinese surge).
COMPLAINTS_ZH = (
    "收到就是坏的，根本不能用，太失望了",
    "质量很差，用了一天就坏了，要求退款",
    "垃圾产品，千万别买，浪费钱",
    "做工粗糙，和描述完全不符，差评",
    "用了两次就坏了，客服还不理人",
    "味道很难闻，质量太差了，退货",
    "太差了，一分钱一分货，后悔买了",
    "坏了，联系卖家也不处理，非常生气",
    "包装破损，东西也是坏的，很不满意",
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


#: Real ULB rows (day 2): a fraud the model scores 0.997 and an ordinary purchase (4e-5).
ULB_FRAUD = [
    -5.8392, 7.1515, -12.8168, 7.0311, -9.6513, -2.9384, -11.5432, 4.8436, -3.4943, -13.3208,
    8.4602, -17.0033, 0.1016, -14.0945, 0.747, -12.6617, -18.9125, -6.627, 4.0089, 0.0557,
    2.4621, 1.0549, 0.5305, 0.4727, -0.276, 0.2824, 0.1049, 0.2544,
]  # fmt: skip
ULB_LEGIT = [
    2.0711, -1.1499, -0.5883, -0.9158, -1.013, -0.2571, -1.0817, -0.0309, 0.0972, 0.7271,
    -0.7981, -0.5208, 0.4999, -0.5101, 0.6653, 1.3823, -0.0424, -0.9753, 0.2478, 0.1205,
    0.4224, 1.131, 0.1148, 0.6465, -0.1954, -0.0952, 0.0055, -0.03,
]  # fmt: skip
CARD, EMAIL, PHONE = "4111 1111 1111 1111", "jane.doe@example.com", "+44 20 7946 0958"
PII_TEXT = f"Refund me to card {CARD} or mail {EMAIL}, call {PHONE}. The tea was stale."


def planted_transaction(event_id: str, minute: int, features: list[float], amount: float) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "member_id": "m-fraud",
            "event_time": f"2026-11-23T12:{minute:02d}:00Z",
            "amount": amount,
            "currency": "EUR",
            "merchant_id": "shop-1",
            "channel": "web",
            "device_id": "dev-1",
            "country": "DE",
            "features": features,
        }
    )


def planted_pii() -> list[tuple[str, bytes, bytes]]:
    review = {
        "event_id": "pii-review",
        "member_id": "m-pii",
        "event_time": "2026-11-23T11:00:00Z",
        "product_id": "B00PII",
        "text": PII_TEXT,
    }
    chat = {
        "event_id": "pii-chat",
        "member_id": "m-pii",
        "event_time": "2026-11-23T11:01:00Z",
        "conversation_id": "c-pii",
        "sender_role": "merchant",
        "text": f"Pay outside the platform: send to {EMAIL} or text {PHONE}",
    }
    broken = b'{"event_id": "pii-bad", "text": "card ' + CARD.encode() + b'"'  # invalid JSON
    return [
        ("reviews", b"m-pii", orjson.dumps(review)),
        ("chats", b"m-pii", orjson.dumps(chat)),
        ("reviews", b"m-pii", broken),
    ]


def surge_history() -> list[tuple[str, bytes, bytes]]:
    """One ordinary review of the surge product a day before its burst, so the product has a
    baseline of its own (a new subject leans on its partition's stream prior, which this short
    run has not built: ``stream.core.surge``). Produce it first."""
    review = {
        "event_id": "surge-history",
        "member_id": "m-surge-0",
        "event_time": "2026-11-22T09:00:00Z",
        "product_id": "B00SURGE",
        "brand": "surgebrand",
        "rating": 5,
        "text": POSITIVE,
    }
    return [("reviews", b"m-surge-0", orjson.dumps(review))]


def surge_burst(count: int = 9) -> list[tuple[str, bytes, bytes]]:
    """``count`` negative reviews of one product within 30 minutes, by different members."""
    return [
        (
            "reviews",
            f"m-surge-{i}".encode(),
            orjson.dumps(
                {
                    "event_id": f"surge-{i}",
                    "member_id": f"m-surge-{i}",
                    "event_time": f"2026-11-23T09:{5 * i:02d}:00Z",
                    "product_id": "B00SURGE",
                    "brand": "surgebrand",
                    "rating": 1,
                    "text": NEGATIVE,
                }
            ),
        )
        for i in range(count)
    ]


def zh_surge() -> list[tuple[str, bytes, bytes]]:
    """A Chinese product's ordinary history a day before, then a burst of complaints."""
    history = {
        "event_id": "zh-surge-history",
        "member_id": "m-zh-surge-0",
        "event_time": "2026-11-22T09:00:00Z",
        "product_id": "ZH-SURGE",
        "brand": "zhbrand",
        "rating": 5,
        "text": POSITIVE_ZH,
    }
    burst = [
        {
            **history,
            "event_id": f"zh-surge-{i}",
            "member_id": f"m-zh-surge-{i}",
            "event_time": f"2026-11-23T11:{5 * i:02d}:00Z",
            "rating": 1,
            "text": text,
        }
        for i, text in enumerate(COMPLAINTS_ZH)
    ]
    return [("reviews", e["member_id"].encode(), orjson.dumps(e)) for e in [history, *burst]]


def planted_review(event_id: str, text: str, rating: int, member_id: str = "m-planted") -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "member_id": member_id,
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
    records = [(topic_prefix + topic, key, value) for topic, key, value in surge_history()]
    records += [(topic_prefix + topic, key, value) for topic, key, value in zh_surge()[:1]]
    records += [(topic_prefix + r.topic, r.key, r.value) for r in demo]
    records += [
        (topic_prefix + "reviews", b"m-planted", planted_review("planted-neg", NEGATIVE, 1)),
        (topic_prefix + "reviews", b"m-planted", planted_review("planted-pos", POSITIVE, 5)),
        (
            topic_prefix + "reviews",
            b"m-planted-zh",
            planted_review("planted-zh-neg", NEGATIVE_ZH, 1, "m-planted-zh"),
        ),
        (
            topic_prefix + "reviews",
            b"m-planted-zh",
            planted_review("planted-zh-pos", POSITIVE_ZH, 5, "m-planted-zh"),
        ),
        (
            topic_prefix + "transactions",
            b"m-fraud",
            planted_transaction("tx-ok", 0, ULB_LEGIT, 63.48),
        ),
        (
            topic_prefix + "transactions",
            b"m-fraud",
            planted_transaction("tx-fraud", 5, ULB_FRAUD, 316.06),
        ),
    ]
    records += [(topic_prefix + topic, key, value) for topic, key, value in planted_pii()]
    records += [(topic_prefix + topic, key, value) for topic, key, value in surge_burst()]
    records += [(topic_prefix + topic, key, value) for topic, key, value in zh_surge()[1:]]
    records += [(topic_prefix + topic, b"bad", value) for topic, value, _ in MALFORMED]
    planted_ids = {"planted-neg", "planted-pos", "tx-ok", "tx-fraud", "pii-review", "pii-chat"}
    planted_ids |= {f"surge-{i}" for i in range(9)} | {"surge-history"}
    planted_ids |= {"planted-zh-neg", "planted-zh-pos", "zh-surge-history"}
    planted_ids |= {f"zh-surge-{i}" for i in range(len(COMPLAINTS_ZH))}
    valid_ids = {orjson.loads(r.value)["event_id"] for r in demo} | planted_ids
    members = {orjson.loads(r.value)["member_id"] for r in demo} | {"m-planted", "m-fraud", "m-pii"}
    members |= {f"m-surge-{i}" for i in range(9)} | {"m-planted-zh"}
    members |= {f"m-zh-surge-{i}" for i in range(len(COMPLAINTS_ZH))}
    members = {pseudonym("member_id", m) for m in members}  # what the edge publishes for each
    m_planted, m_fraud = pseudonym("member_id", "m-planted"), pseudonym("member_id", "m-fraud")

    worker = await make_worker()
    await produce(kafka_broker.bootstrap, records)
    out = {
        name: topic_prefix + name
        for name in (
            "scored-events",
            "dead-letter",
            "alerts",
            "member-profiles",
            "riskstream-member-events",
        )
    }

    def done(found) -> bool:
        ids = {orjson.loads(m.value)["event_id"] for m in found[out["scored-events"]]}
        latest = {m.key.decode(): orjson.loads(m.value) for m in found[out["member-profiles"]]}
        planted = latest.get(m_planted, {}).get("counts", {}).get("review")
        return (
            ids >= valid_ids
            and len(found[out["dead-letter"]]) >= len(MALFORMED) + 1
            and set(latest) >= members
            and planted == 2
            # product and brand alerts come from different partitions: wait for both
            and all(
                any(
                    b'"opinion_surge"' in m.value and subject in m.value
                    for m in found[out["alerts"]]
                )
                for subject in (b'"B00SURGE"', b'"surgebrand"', b'"ZH-SURGE"')
            )
        )

    found = await collect(
        kafka_broker.bootstrap, list(out.values()), done, timeout_s=120, alive=worker.alive
    )
    assert done(found), worker.log_tail()

    scored = [orjson.loads(m.value) for m in found[out["scored-events"]]]
    assert {s["event_id"] for s in scored} == valid_ids  # exactly the valid ones, by event_id
    by_id = {}
    for _, _, value in records:
        try:
            event = orjson.loads(value) if value else None
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict) and "event_id" in event:
            by_id[event["event_id"]] = event.get("text", "")
    for message, body in zip(found[out["scored-events"]], scored, strict=True):
        assert message.key == body["member_id"].encode()
        if body["event_type"] != "transaction":
            chinese = text_route(by_id[body["event_id"]]) == "multilingual"
            assert body["model_version"] == (
                artefacts.multilingual_version() if chinese else artefacts.model_version()
            )
            assert 0.0 <= body["scores"]["sentiment_negative"] <= 1.0
    assert any(  # the demo traffic has Chinese members
        b["model_version"] == artefacts.multilingual_version() for b in scored
    )

    dead = [orjson.loads(m.value) for m in found[out["dead-letter"]]]
    assert len(dead) == len(MALFORMED) + 1
    expected_reasons = Counter(reason for *_, reason in MALFORMED) + Counter(["invalid_json"])
    assert Counter(d["reason"] for d in dead) == expected_reasons
    originals = {value for _, value, _ in MALFORMED} | {
        b'{"event_id": "pii-bad", "text": "card [card]"'  # masked, otherwise byte for byte
    }
    by_hash = {hashlib.sha256(v).hexdigest(): v for v in originals if v is not None}
    for letter in dead:
        raw = letter["original_value_b64"]
        kept = base64.b64decode(raw) if raw is not None else None
        if "original_value_truncated" in letter:  # above the cap: a prefix, size and sha256
            original = by_hash[letter["original_value_truncated"]["sha256"]]
            assert letter["original_value_truncated"]["bytes"] == len(original)
            assert kept == original[: len(kept)] and len(kept) == 65536
        else:
            assert kept in originals
        assert letter["source"]["topic"] in ("reviews", "chats", "transactions")
        assert letter["detail"]

    alerts = [orjson.loads(m.value) for m in found[out["alerts"]]]
    negative = [a for a in alerts if a["alert_type"] == "negative_review"]
    assert any(a["event_ids"] == ["planted-neg"] and a["severity"] == "high" for a in negative)
    assert not any("planted-pos" in a["event_ids"] for a in alerts)
    assert any(a["event_ids"] == ["planted-zh-neg"] for a in negative)  # read in Chinese
    assert not any("planted-zh-pos" in a["event_ids"] for a in alerts)
    assert all(m.key == orjson.loads(m.value)["alert_id"].encode() for m in found[out["alerts"]])

    profiles = {m.key.decode(): orjson.loads(m.value) for m in found[out["member-profiles"]]}
    assert set(profiles) == members
    planted = profiles[m_planted]
    assert planted["counts"]["review"] == 2
    assert planted["negative_reviews"] == 1

    fraud = {s["event_id"]: s for s in scored if s["event_type"] == "transaction"}
    assert fraud["tx-fraud"]["scores"]["fraud_risk"] > 0.9 > fraud["tx-ok"]["scores"]["fraud_risk"]
    assert any(r.startswith("model: V") for r in fraud["tx-fraud"]["fraud"]["reasons"])
    fraud_alerts = [a for a in alerts if a["alert_type"] == "fraud_risk"]
    assert [a["event_ids"] for a in fraud_alerts if a["subject"]["id"] == m_fraud] == [["tx-fraud"]]
    assert profiles[m_fraud]["risk_level"] == "high"
    assert profiles[m_fraud]["spend"]["EUR"]["count"] == 2

    surges = [a for a in alerts if a["alert_type"] == "opinion_surge"]
    product_surges = [a for a in surges if a["subject"] == {"kind": "product", "id": "B00SURGE"}]
    assert len(product_surges) == 1  # nine negatives, one alert (cooldown)
    (surge,) = product_surges
    assert surge["window"]["negatives"] >= 6 and set(surge["event_ids"]) <= planted_ids
    brand_surges = [a["subject"]["id"] for a in surges if a["subject"]["kind"] == "brand"]
    assert brand_surges.count("surgebrand") == 1 and set(brand_surges) <= {"surgebrand", "zhbrand"}
    zh_surges = [a for a in surges if a["subject"] == {"kind": "product", "id": "ZH-SURGE"}]
    assert len(zh_surges) == 1, surges  # a burst of Chinese complaints raises one surge
    assert set(zh_surges[0]["event_ids"]) <= {f"zh-surge-{i}" for i in range(len(COMPLAINTS_ZH))}

    # no card number, e-mail or phone number in any output topic, dead letters included
    for topic, messages in found.items():
        for message in messages:
            blobs = [message.value or b""]
            if topic == out["dead-letter"]:
                raw = orjson.loads(message.value)["original_value_b64"]
                blobs.append(base64.b64decode(raw) if raw else b"")
            for blob in blobs:
                for secret in (CARD, EMAIL, PHONE, CARD.replace(" ", "")):
                    assert secret.encode() not in blob, (topic, secret)
