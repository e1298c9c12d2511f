"""The backtest report as pure functions: source rows, labels, metrics against hand counts."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from stream.backtest.report import (
    ReplayInputError,
    ReplayOutputs,
    ReplayRecord,
    build_report,
    compare_alerts,
    input_facts,
    record_from_row,
    records_from_jsonl,
    render_markdown,
    surge_quality,
)

THRESHOLDS = {"fraud_risk": 0.5, "negative_review": 0.85, "scam_chat": 0.9}


def test_rows_become_records_in_both_shapes() -> None:
    envelope = record_from_row(
        {"topic": "chats", "key": "m1", "value": {"a": 1}, "timestamp_ms": 7}
    )
    assert envelope == ReplayRecord("chats", b"m1", b'{"a":1}', 7)
    raw = record_from_row({"topic": "reviews", "value": '{"broken": '})
    assert raw.value == b'{"broken": ' and raw.key is None
    blob = record_from_row({"topic": "reviews", "value_b64": base64.b64encode(b"\xff").decode()})
    assert blob.value == b"\xff"
    bare = record_from_row({"event_type": "transaction", "event_id": "t1", "member_id": "m9"})
    assert bare.topic == "transactions" and bare.key == b"m9"
    assert orjson.loads(bare.value) == {"event_id": "t1", "member_id": "m9"}
    for row, message in (
        ({"topic": "alerts", "value": {}}, "is not one of"),
        ({"topic": "chats"}, "needs 'value'"),
        ({"event_id": "x"}, "needs 'topic'"),
    ):
        with pytest.raises(ReplayInputError, match=message):
            record_from_row(row)


def test_unreadable_lines_are_reported_by_number() -> None:
    lines = [
        b'{"topic": "chats", "value": {}}',
        b"",
        b"nope",
        b"[1]",
        b'{"topic": "x", "value": 1}',
    ]
    out = list(records_from_jsonl(lines))
    assert isinstance(out[0][1], ReplayRecord)
    assert [n for n, r in out if isinstance(r, str)] == [3, 4, 5]


def _txn(event_id: str, label: int, minute: int = 0) -> ReplayRecord:
    body = {"event_id": event_id, "member_id": "m", "event_time": f"2026-11-23T10:{minute:02d}:00Z",
            "label": label}  # fmt: skip
    return ReplayRecord("transactions", b"m", orjson.dumps(body))


def _scored(event_id: str, fraud_risk: float) -> dict:
    return {"event_id": event_id, "event_type": "transaction", "model_version": None,
            "scores": {"fraud_risk": fraud_risk}}  # fmt: skip


def _alert(alert_id: str, kind: str, subject: str, event_ids: list, at: str, alert_type: str):
    return {
        "alert_id": alert_id,
        "alert_type": alert_type,
        "severity": "high",
        "subject": {"kind": kind, "id": subject},
        "event_ids": event_ids,
        "event_time": at,
    }


def test_fraud_figures_match_a_hand_count() -> None:
    facts = [input_facts(_txn(i, label)) for i, label in (("a", 1), ("b", 0), ("c", 1), ("d", 0))]
    facts.append(input_facts(ReplayRecord("reviews", None, b"{oops")))
    outputs = ReplayOutputs()
    for event_id, score in (("a", 0.9), ("b", 0.6), ("c", 0.3), ("d", 0.1)):
        outputs.scored.append(_scored(event_id, score))
    alert = _alert("x1", "member", "m", ["a"], "2026-11-23T10:00:00Z", "fraud_risk")
    outputs.alerts += [alert, alert]  # a redelivered alert counts once
    source = {"topic": "reviews", "partition": 0, "offset": 3}
    outputs.dead_letters.append({"reason": "invalid_json", "source": source})
    report = build_report(
        facts, outputs, thresholds=THRESHOLDS, status="complete", elapsed_s=2.0, meta={}
    )
    fraud = report["labelled"]["fraud_risk"]
    # ranked a(1) b(0) c(1) d(0): precision at the two frauds 1/1 and 2/3
    assert fraud["pr_auc"] == round((1 + 2 / 3) / 2, 4)
    assert fraud["at_threshold"] == {
        "threshold": 0.5,
        "alerts": 2,
        "precision": 0.5,
        "recall": 0.5,
        "accuracy": 0.5,  # a and d right, b and c wrong
    }
    assert (fraud["accuracy_at_0_5"], fraud["majority_accuracy"]) == (0.5, 0.5)
    assert fraud["alerts"] == {"events_alerted": 1, "precision": 1.0, "recall": 0.5}
    assert report["events"]["accounted"] == 5 and report["events"]["input_total"] == 5
    assert report["alerts"] == {"total": 1, "by_type": {"fraud_risk": {"high": 1}}}
    assert report["throughput"]["events_per_s"] == 2.5
    assert "negative_review" not in report["labelled"]  # no labelled reviews
    assert "| fraud_risk | 4 | 2 | 0.8333 | 0.5 (0.5) |" in "\n".join(render_markdown(report))


def test_surge_recall_delay_and_unmatched_alerts() -> None:
    def review(event_id: str, minute: int, product: str, label: dict | None) -> ReplayRecord:
        body = {"event_id": event_id, "member_id": "m", "product_id": product, "brand": "b",
                "event_time": f"2026-11-23T10:{minute:02d}:00Z", "label": label}  # fmt: skip
        return ReplayRecord("reviews", b"m", orjson.dumps(body))

    facts = [input_facts(review(f"s{i}", 5 * i, "p1", {"surge": "burst"})) for i in range(6)]
    facts.append(input_facts(review("calm", 0, "p2", None)))
    alerts = [
        _alert("hit", "product", "p1", ["s0"], "2026-11-23T10:25:00Z", "opinion_surge"),
        _alert("other", "product", "p2", ["calm"], "2026-11-23T10:30:00Z", "opinion_surge"),
        _alert("late", "product", "p1", ["s5"], "2026-11-23T15:00:00Z", "opinion_surge"),
    ]
    quality = surge_quality(facts, alerts)
    assert (quality["surges"], quality["detected"], quality["recall"]) == (1, 1, 1.0)
    assert quality["median_delay_minutes"] == 25.0
    assert quality["median_delay_windows"] == quality["max_delay_windows"] == 0.42  # of 60 min
    assert quality["per_surge"]["burst"]["delay_windows"] == 0.42
    report = build_report(
        facts, ReplayOutputs(alerts=alerts), thresholds=THRESHOLDS, status="complete",
        elapsed_s=1.0, meta={},
    )  # fmt: skip
    assert "median 0.42 windows (25 min)" in "\n".join(render_markdown(report))
    assert surge_quality(facts[-1:], alerts) is None


def test_compare_lists_the_alerts_only_one_run_raised() -> None:
    shared = _alert("1", "member", "m", ["a"], "2026-11-23T10:00:00Z", "fraud_risk")
    extra = _alert("2", "product", "p", ["b"], "2026-11-23T10:00:00Z", "opinion_surge")
    diff = compare_alerts([shared, extra], [shared])
    assert diff["same"] == 1 and not diff["identical"] and diff["only_b"] == []
    assert diff["only_a"] == [
        {"alert_type": "opinion_surge", "subject": "product:p", "event_ids": ["b"]}
    ]
    assert compare_alerts([shared], [shared])["identical"]


def test_parquet_and_gzipped_jsonl_sources(tmp_path) -> None:
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    from stream.backtest.replay import read_file

    rows = [
        {"topic": "reviews", "key": "m1", "value": '{"event_id": "r1"}'},
        {"topic": "nowhere", "key": None, "value": "{}"},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "events.parquet")
    records, skipped = read_file(tmp_path / "events.parquet")
    assert records == [ReplayRecord("reviews", b"m1", b'{"event_id": "r1"}')]
    assert list(skipped) == [2]
    with gzip.open(tmp_path / "events.jsonl.gz", "wb") as handle:
        handle.write(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    records, skipped = read_file(tmp_path / "events.jsonl.gz")
    assert len(records) == 1 and list(skipped) == [2]


def _alerts_at(times_ms: list[int], alert_type: str) -> list[dict]:
    from stream.core.steps import rfc3339_from_ms

    return [
        _alert(f"{alert_type}-{i}", "member", "m", ["e"], rfc3339_from_ms(t), alert_type)
        for i, t in enumerate(times_ms)
    ]


def test_alerts_over_time_bins_scale_with_the_span() -> None:
    from stream.backtest.plots import MAX_BARS, bin_alerts

    hour, day = 3_600_000, 86_400_000
    start = 1_700_000_000_000
    assert bin_alerts({"a": [start, start + 5 * hour]}).bin_name == "hour"
    month = bin_alerts({"a": [start], "b": [start + 60 * day]})
    assert month.bin_name == "day" and month.bars == 61
    assert [int(c.sum()) for c in month.counts.values()] == [1, 1]
    years = bin_alerts({"a": [start, start + 86_000 * hour]})  # ~9.8 years
    assert years.bin_name == "30 days" and years.bars <= MAX_BARS
    huge = bin_alerts({"a": [0, 500 * 365 * day]})
    assert huge.bars <= MAX_BARS and huge.bin_name.endswith("years")


def test_a_multi_year_replay_plots_fast_and_visibly(tmp_path) -> None:
    """86k event-time hours drew 86k one-hour bars: a blank image after 55 s."""
    import time

    import matplotlib.image

    from stream.backtest.plots import alerts_over_time

    rng = np.random.default_rng(0)
    start = 1_500_000_000_000
    span = 86_000 * 3_600_000
    outputs = ReplayOutputs()
    for alert_type, n in (("fraud_risk", 20_000), ("opinion_surge", 2_000)):
        outputs.alerts += _alerts_at(
            sorted((start + rng.integers(0, span, n)).tolist()), alert_type
        )
    began = time.perf_counter()
    binned = alerts_over_time(outputs, tmp_path / "over-time.png")
    elapsed = time.perf_counter() - began
    assert binned is not None and binned.bars <= 200
    assert elapsed < 5.0, elapsed
    pixels = matplotlib.image.imread(tmp_path / "over-time.png")[..., :3]
    coloured = (pixels.max(axis=2) - pixels.min(axis=2)) > 0.2  # bars, not grey text/axes
    assert coloured.mean() > 0.05  # the bars cover a good part of the image
    assert alerts_over_time(ReplayOutputs(), tmp_path / "none.png") is None


def _labelled_reviews(rows: list[tuple[str, str, bool, float]]) -> tuple[list, dict]:
    """``(event id, text, labelled negative, P(negative))`` reviews through ``build_report``
    -> (input facts, report)."""

    def review(event_id: str, text: str, negative: bool) -> ReplayRecord:
        body = {"event_id": event_id, "member_id": "m", "event_time": "2026-11-23T10:00:00Z",
                "text": text, "label": {"negative": negative}}  # fmt: skip
        return ReplayRecord("reviews", b"m", orjson.dumps(body))

    facts = [input_facts(review(i, text, negative)) for i, text, negative, _ in rows]
    outputs = ReplayOutputs()
    for event_id, _, _, p in rows:
        outputs.scored.append({"event_id": event_id, "event_type": "review",
                               "scores": {"sentiment_negative": p}})  # fmt: skip
    report = build_report(
        facts, outputs, thresholds=THRESHOLDS, status="complete", elapsed_s=1.0, meta={}
    )
    return facts, report


def test_text_alerts_are_also_judged_per_input_language() -> None:
    inputs = [
        ("e1", "stale and awful", True, 0.9),
        ("e2", "lovely tea", False, 0.2),
        ("z1", "质量很差 要求退货", True, 0.3),  # a Chinese negative the model missed
        ("z2", "非常好 五星好评", False, 0.1),
    ]
    facts, report = _labelled_reviews(inputs)
    assert [f.language for f in facts] == ["en", "en", "zh", "zh"]
    by_language = report["labelled_by_language"]["negative_review"]
    assert by_language["en"]["accuracy_at_0_5"] == 1.0
    assert by_language["zh"]["accuracy_at_0_5"] == 0.5
    assert report["labelled"]["negative_review"]["accuracy_at_0_5"] == 0.75
    assert "| negative_review | zh | 2 | 1 |" in "\n".join(render_markdown(report))


def test_one_language_gives_no_language_table() -> None:
    body = {"event_id": "e", "member_id": "m", "event_time": "2026-11-23T10:00:00Z",
            "text": "fine", "label": {"negative": False}}  # fmt: skip
    facts = [input_facts(ReplayRecord("reviews", b"m", orjson.dumps(body)))]
    report = build_report(
        facts, ReplayOutputs(), thresholds=THRESHOLDS, status="complete", elapsed_s=1.0, meta={}
    )
    assert report["labelled_by_language"] == {}


def test_the_report_calibrates_each_text_alert_to_the_replayed_labels() -> None:
    """Per language, the lowest threshold holding precision 0.90 on this traffic, with enough
    flagged events; none where the language's scores never reach it."""
    rows = []
    for n in range(40):  # English: negatives score 0.70-0.89, positives 0.60 and below
        rows.append((f"e{n}", "awful tea", n < 30, 0.7 + 0.006 * n if n < 30 else 0.6 - 0.01 * n))
    for n in range(40):  # Chinese: the scores do not separate the labels
        rows.append((f"z{n}", "质量很差", n % 2 == 0, 0.5 + 0.01 * (n % 7)))
    _, report = _labelled_reviews(rows)
    by_language = report["labelled_by_language"]["negative_review"]
    english = by_language["en"]["threshold_for_precision"]
    # flagging down to 0.28 takes all 30 negatives and 3 positives: 30 / 33 = 0.91
    assert english == {"precision": 0.9, "threshold": 0.28, "recall": 1.0}
    assert by_language["zh"]["threshold_for_precision"]["threshold"] is None
    markdown = "\n".join(render_markdown(report))
    assert "| 0.280 (1.000) |" in markdown and "threshold for precision 0.90" in markdown


def test_ranking_measures_are_undefined_on_a_slice_without_both_classes() -> None:
    """Before: PR-AUC 1.0 and recall @1% FPR 1.0 on a slice with no negatives."""
    import numpy as np

    from stream.backtest.report import _binary_block, _ranking

    scores = np.array([0.9, 0.2, 0.6])
    only_positives = _binary_block(np.array([1, 1, 1]), scores, 0.5, scores >= 0.5)
    assert only_positives["pr_auc"] is None and only_positives["recall_at_1pct_fpr"] is None
    assert only_positives["undefined_because"] == "no negatives"
    assert only_positives["at_threshold"]["recall"] == round(2 / 3, 4)  # still defined
    assert _ranking(only_positives, "pr_auc") == "undefined (no negatives)"
    none_positive = _binary_block(np.array([0, 0, 0]), scores, 0.95, scores >= 0.95)
    assert none_positive["undefined_because"] == "no positives"
    assert none_positive["at_threshold"]["recall"] is None  # not 0.0: nothing to recall
    assert none_positive["at_threshold"]["precision"] is None  # nothing flagged
    both = _binary_block(np.array([1, 0, 1]), scores, 0.5, scores >= 0.5)
    assert both["undefined_because"] is None and both["pr_auc"] == 1.0
