from __future__ import annotations

from collections import Counter

import orjson

from stream.core.steps import EdgeLimits, InvalidEvent, RawRecord, ValidEvent, decode_record
from stream.ops.simulate import DemoCorpus, DemoTraffic

CORPUS = DemoCorpus(
    reviews=[
        ("P1", "Great taste, will buy again.", "positive"),
        ("P2", "Stale and awful.", "negative"),
    ],
    member_lines=["where is my parcel?", "thanks!"],
    scam_lines=["WINNER! claim your prize now"],
)


def generate(n: int, **kw: float) -> list:
    traffic = DemoTraffic(CORPUS, seed=7, members=20, clock_ms=lambda: 1_795_428_000_000, **kw)
    return [traffic.next_record() for _ in range(n)]


def test_valid_records_pass_the_real_decoder_and_malformed_ones_fail() -> None:
    records = generate(2000, malformed_ratio=0.05)
    outcomes = Counter()
    for i, rec in enumerate(records):
        decoded = decode_record(
            RawRecord(rec.topic, 0, i, rec.key, rec.value), limits=EdgeLimits(max_event_bytes=65536)
        )
        ok = isinstance(decoded, ValidEvent)
        assert ok == (rec.malformed is None), (rec.malformed, rec.value[:200])
        outcomes[rec.topic if ok else "bad"] += 1
    assert 50 < outcomes["bad"] < 150
    assert all(outcomes[t] > 300 for t in ("reviews", "chats", "transactions"))


def test_generation_is_deterministic_per_seed() -> None:
    assert [r.value for r in generate(100)] == [r.value for r in generate(100)]


def test_records_are_keyed_by_member() -> None:
    for rec in generate(200, malformed_ratio=0.0):
        assert orjson.loads(rec.value)["member_id"].encode() == rec.key


def test_malformed_kinds_cover_each_reason() -> None:
    kinds = {r.malformed for r in generate(3000, malformed_ratio=0.2)} - {None}
    assert kinds == {
        "invalid_json",
        "invalid_utf8",
        "missing_field",
        "wrong_type",
        "oversized_text",
        "bad_time",
    }
    decoded = decode_record(
        RawRecord("reviews", 0, 0, b"k", b"{"), limits=EdgeLimits(max_event_bytes=100)
    )
    assert isinstance(decoded, InvalidEvent)


def test_labelled_traffic_carries_the_corpus_ground_truth_and_still_validates() -> None:
    truth = {text: label == "negative" for _, text, label in CORPUS.reviews}
    records = generate(400, malformed_ratio=0.0, labelled=True)
    for i, rec in enumerate(records):
        event = orjson.loads(rec.value)
        if rec.topic == "reviews":
            assert event["label"] == {"negative": truth[event["text"]]}
        elif rec.topic == "chats":
            assert event["label"] == {"scam": event["text"] in CORPUS.scam_lines}
        else:
            assert "label" not in event
        decoded = decode_record(
            RawRecord(rec.topic, 0, i, rec.key, rec.value), limits=EdgeLimits(max_event_bytes=65536)
        )
        assert isinstance(decoded, ValidEvent)
    assert "label" not in orjson.loads(generate(1, malformed_ratio=0.0)[0].value)


ZH_CORPUS = DemoCorpus(
    reviews=CORPUS.reviews,
    member_lines=CORPUS.member_lines,
    scam_lines=CORPUS.scam_lines,
    zh_reviews=[("zh-p000", "质量很差 要求退货", "negative"), ("zh-p001", "非常好", "positive")],
    zh_member_lines=["什么时候发货"],
    zh_scam_lines=["加我微信领取返现"],
)


def test_a_share_of_members_write_chinese_reviews_and_chats() -> None:
    traffic = DemoTraffic(
        ZH_CORPUS, seed=7, members=200, malformed_ratio=0.0, clock_ms=lambda: 1_795_428_000_000
    )
    by_member: dict[str, set[bool]] = {}
    for _ in range(3000):
        record = traffic.next_record()
        event = orjson.loads(record.value)
        if record.topic in ("reviews", "chats"):
            chinese = event["text"] in {t for _, t, _ in ZH_CORPUS.zh_reviews} | {
                *ZH_CORPUS.zh_member_lines,
                *ZH_CORPUS.zh_scam_lines,
            }
            by_member.setdefault(event["member_id"], set()).add(chinese)
    assert all(len(kinds) == 1 for kinds in by_member.values())  # a member keeps one language
    share = sum(kinds == {True} for kinds in by_member.values()) / len(by_member)
    assert 0.12 < share < 0.28, share


def test_an_english_only_corpus_gives_english_traffic() -> None:
    texts = {orjson.loads(r.value).get("text") for r in generate(500, malformed_ratio=0.0)}
    assert texts - {None} <= {t for _, t, _ in CORPUS.reviews} | {
        *CORPUS.member_lines,
        *CORPUS.scam_lines,
    }
