"""Operator labels: decoding with dead-letter reasons, latest-wins, the join, the labelled set."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream.core.codec import ValidationError
from stream.core.labels import (
    Label,
    ScoredEvent,
    decode_label,
    encode_label,
    label_key,
    labelled_rows,
    language_of,
    latest_labels,
    target,
)
from stream.ops import labels as ops


def raw(event_id: str = "rev-1", head: str = "sentiment", value: str = "negative", **extra):
    body = {
        "event_id": event_id,
        "head": head,
        "value": value,
        "labeller": "analyst-1",
        "labelled_at": "2026-11-23T10:00:00Z",
        **extra,
    }
    return label_key(event_id, head), orjson.dumps(body)


def test_a_valid_label_round_trips() -> None:
    label = decode_label(*raw(note="call me on +44 7911 123456"))
    assert (label.event_id, label.head, label.value) == ("rev-1", "sentiment", "negative")
    assert "7911" not in label.note  # the note is masked before anything keeps it
    assert decode_label(*encode_label(label)) == label


@pytest.mark.parametrize(
    ("key", "value", "reason", "words"),
    [
        (b"x|sentiment", b"not json", "invalid_json", ""),
        (b"x|sentiment", b"\xff\xfe", "invalid_utf8", ""),
        (*raw(head="mood"), "schema_violation", "head"),
        (*raw(value="angry"), "schema_violation", "value"),
        (*raw(value="scam"), "schema_violation", "not a sentiment label"),
        (*raw(labeller="jane@example.com"), "schema_violation", "labeller"),
        (*raw(labelled_at="2026-13-45T99:00:00Z"), "invalid_event_time", "labelled_at"),
        (*raw(extra_field=1), "schema_violation", ""),
        (b"rev-1|scam", raw()[1], "schema_violation", "must be 'rev-1|sentiment'"),
        (None, raw()[1], "schema_violation", "key None"),
        (b"x|y", None, "invalid_json", "tombstone"),
    ],
)
def test_bad_labels_say_why(key, value, reason, words) -> None:
    with pytest.raises(ValidationError) as caught:
        decode_label(key, value)
    assert caught.value.reason == reason
    assert words in caught.value.detail


def label(event_id: str, value: str, at: str, head: str = "sentiment") -> Label:
    return decode_label(*raw(event_id, head, value, labelled_at=at))


def test_relabelling_keeps_the_latest() -> None:
    first = label("a", "negative", "2026-11-23T10:00:00Z")
    later = label("a", "positive", "2026-11-23T11:00:00Z")
    same_time_later_record = label("b", "neutral", "2026-11-23T10:00:00Z")
    tie_first = label("b", "negative", "2026-11-23T10:00:00Z")
    kept = latest_labels([later, first, tie_first, same_time_later_record])
    assert kept[("a", "sentiment")].value == "positive"  # later labelled_at, read earlier
    assert kept[("b", "sentiment")].value == "neutral"  # a tie: the later record
    assert target(kept[("a", "sentiment")]) == 0 and target(first) == 1
    assert target(label("c", "neutral", "2026-11-23T10:00:00Z")) == 0


def test_join_uses_served_text_and_counts_what_it_leaves_out() -> None:
    labels = latest_labels(
        [
            label("r1", "negative", "2026-11-23T10:00:00Z"),
            label("c1", "scam", "2026-11-23T10:00:00Z", head="scam"),
            label("t1", "scam", "2026-11-23T10:00:00Z", head="scam"),
            label("gone", "negative", "2026-11-23T10:00:00Z"),
            label("alert-9", "true_alarm", "2026-11-23T10:00:00Z", head="surge"),
        ]
    )
    scored = {
        "r1": ScoredEvent("r1", "review", "Awful", {"sentiment_negative": 0.9}, "v1"),
        "c1": ScoredEvent("c1", "chat", "快来领奖", {"scam_risk": 0.7}, "v2"),
        "t1": ScoredEvent("t1", "transaction", None, {"fraud_risk": 0.1}, "f"),
    }
    joined = labelled_rows(labels, scored)
    assert [(r["event_id"], r["head"], r["target"], r["score"]) for r in joined.rows] == [
        ("c1", "scam", 1, 0.7),
        ("r1", "sentiment", 1, 0.9),
    ]
    assert joined.rows[0]["language"] == "zh" and joined.rows[1]["language"] == "en"
    assert joined.unmatched == {"no_scored_event": 1, "head_does_not_fit": 1, "surge_alert": 1}
    assert language_of("OK 👍") == "en"


def test_served_texts_are_masked_like_the_edge() -> None:
    review = {
        "event_id": "r1",
        "member_id": "m1",
        "event_time": "2026-11-23T10:00:00Z",
        "product_id": "p1",
        "rating": 1,
        "text": "Broken. Mail me at jane@example.com",
    }
    texts = ops.served_texts([("reviews", b"m1", orjson.dumps(review)), ("reviews", None, b"{")])
    event_type, text = texts["r1"]
    assert event_type == "review" and "jane@example.com" not in text and "Broken" in text


def test_import_file_rows_are_checked_like_records(tmp_path: Path) -> None:
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(
        "event_id,head,value,labeller,labelled_at,note\n"
        "r1,sentiment,negative,a1,2026-11-23T10:00:00Z,\n"
        "r2,sentiment,furious,a1,2026-11-23T10:00:00Z,\n"
        "r3,scam,scam,a2,2026-11-23T10:00:00+08:00,looks phishy\n"
    )
    parsed = ops.parse_label_rows(ops.read_label_rows(csv_file))
    assert [lb.event_id for lb in parsed.labels] == ["r1", "r3"]
    assert list(parsed.refused) == [2] and "value" in parsed.refused[2]
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_bytes(b'{"event_id": "r1"}\nnot json\n')
    parsed = ops.parse_label_rows(ops.read_label_rows(jsonl))
    assert sorted(parsed.refused) == [1, 2] and "invalid JSON" in parsed.refused[2]


def test_the_same_inputs_give_the_same_file(tmp_path: Path) -> None:
    labels = latest_labels([label(f"r{i}", "negative", "2026-11-23T10:00:00Z") for i in range(5)])
    scored = {
        f"r{i}": ScoredEvent(f"r{i}", "review", f"text {i}", {"sentiment_negative": i / 5}, "v")
        for i in range(5)
    }
    one, facts = ops.build_set(labels, scored, 2, tmp_path / "a")
    two, _ = ops.build_set(dict(reversed(labels.items())), scored, 2, tmp_path / "b")
    assert one.name == two.name and one.read_bytes() == two.read_bytes()
    assert facts["rows"] == 5 and facts["invalid"] == 2
    import pyarrow.parquet as pq

    rows = pq.read_table(one).to_pylist()
    assert [r["event_id"] for r in rows] == [f"r{i}" for i in range(5)]
    changed = {**scored, "r0": ScoredEvent("r0", "review", "other", {}, "v")}
    three, _ = ops.build_set(labels, changed, 2, tmp_path / "c")
    assert three.name != one.name
    with pytest.raises(ops.LabelsError, match="no label matched"):
        ops.build_set(labels, {}, 0, tmp_path / "d")


def test_a_set_from_a_replays_outputs(tmp_path: Path) -> None:
    """``build-set --replay DIR --input FILE``: scores from the replay, texts from its input."""
    review = {
        "topic": "reviews",
        "value": {
            "event_id": "r1",
            "member_id": "m1",
            "event_time": "2026-11-23T10:00:00Z",
            "product_id": "p1",
            "text": "Arrived broken, call +1 415 555 0100",
        },
    }
    chat_value = {**review["value"], "event_id": "c1", "conversation_id": "k1"}
    chat_value.update(sender_role="merchant", text="pay off-platform")
    chat = {**review, "topic": "chats", "value": chat_value}
    (tmp_path / "input.jsonl").write_bytes(
        orjson.dumps(review) + b"\n" + orjson.dumps(chat) + b"\n"
    )
    outputs = tmp_path / "replay" / "outputs-a"
    outputs.mkdir(parents=True)
    scored = [
        {"event_id": "r1", "event_type": "review", "scores": {"sentiment_negative": 0.8},
         "model_version": "v1"},
        {"event_id": "c1", "event_type": "chat", "scores": {"scam_risk": 0.95},
         "model_version": "v1"},
    ]  # fmt: skip
    (outputs / "scored-events.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in scored))
    events = ops.from_replay(tmp_path / "replay", tmp_path / "input.jsonl")
    assert events["r1"].text.startswith("Arrived broken") and "555" not in events["r1"].text
    labels = latest_labels(
        [label("r1", "negative", "2026-11-23T11:00:00Z"),
         label("c1", "scam", "2026-11-23T11:00:00Z", head="scam")]
    )  # fmt: skip
    _, facts = ops.build_set(labels, events, 0, tmp_path / "set")
    assert facts["rows"] == 2 and facts["by_head_language"] == {
        "scam/en": {"scam": 1},
        "sentiment/en": {"negative": 1},
    }
    with pytest.raises(ops.LabelsError, match="replay's output folder"):
        ops.from_replay(tmp_path, tmp_path / "input.jsonl")


def test_a_time_range_selects_scored_records() -> None:
    record = ops.TopicRecord("scored-events", 0, 7, b"m", b"{}", 1_000)
    assert ops.in_range(record, None, None)
    assert ops.in_range(record, 1_000, 2_000) and not ops.in_range(record, 1_001, None)
    assert not ops.in_range(record, None, 1_000)  # the end is exclusive
    no_time = ops.TopicRecord("scored-events", 0, 8, b"m", b"{}")
    assert ops.in_range(no_time, None, None) and not ops.in_range(no_time, 0, None)


def test_build_set_without_a_broker_is_one_line() -> None:
    """Before: an aiokafka traceback."""
    from tests.stream.test_cli import riskstream

    result = riskstream("labels", "build-set", env={"KAFKA_BROKER": "kafka://127.0.0.1:1"})
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "connection refused" in lines[0], lines
