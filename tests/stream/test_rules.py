from __future__ import annotations

import pytest

from stream.core.codec import validate
from stream.core.rules import AlertThresholds, TextThresholds, alert_id, evaluate_rules

T = AlertThresholds(negative_review=0.9, scam_chat=0.9)


def review(neg: float, rating: int | None = None) -> dict:
    event = {
        "event_id": "r1",
        "member_id": "m1",
        "event_time": "2026-11-23T10:00:00Z",
        "product_id": "p1",
    }
    if rating is not None:
        event["rating"] = rating
    return {
        "event_type": "review",
        "event": event,
        "event_time_ms": 0,
        "model_version": "v1",
        "scores": {"sentiment_negative": neg, "sentiment_polarity": 1 - 2 * neg, "scam_risk": 0},
    }


def chat(scam: float, role: str) -> dict:
    event = {
        "event_id": "c1",
        "member_id": "m1",
        "event_time": "2026-11-23T10:00:00Z",
        "conversation_id": "k1",
        "sender_role": role,
    }
    return {
        "event_type": "chat",
        "event": event,
        "event_time_ms": 0,
        "model_version": "v1",
        "scores": {"sentiment_negative": 0.5, "sentiment_polarity": 0, "scam_risk": scam},
    }


def test_strongly_negative_review_alerts_on_the_product() -> None:
    (alert,) = evaluate_rules(review(0.97, rating=1), T)
    validate("alerts", alert)
    assert alert["alert_type"] == "negative_review"
    assert alert["severity"] == "high"
    assert alert["subject"] == {"kind": "product", "id": "p1"}
    assert alert["event_ids"] == ["r1"]
    assert any("rating 1/5" in r for r in alert["reasons"])


def test_threshold_is_inclusive_and_positive_reviews_do_not_alert() -> None:
    assert evaluate_rules(review(0.9), T)[0]["severity"] == "medium"
    assert evaluate_rules(review(0.89), T) == []
    assert evaluate_rules(review(0.02, rating=5), T) == []


def test_the_build_that_scored_an_event_picks_its_text_thresholds() -> None:
    """A router's Chinese build calibrated to its own precision: its events use its
    thresholds, every other build's the defaults; an unset one falls back."""
    own = AlertThresholds(
        negative_review=0.9, scam_chat=0.9, by_build={"zh-build": TextThresholds(0.8, None)}
    )
    chinese = {**review(0.82), "model_version": "zh-build"}
    (alert,) = evaluate_rules(chinese, own)
    assert ">= 0.80" in alert["reasons"][0]
    assert evaluate_rules(review(0.82), own) == []  # the English build: 0.9
    assert evaluate_rules({**chat(0.85, "merchant"), "model_version": "zh-build"}, own) == []
    assert own.for_event({"model_version": None}) is own


def test_settings_put_the_chinese_thresholds_on_the_chinese_build() -> None:
    from models.serving.artefacts import multilingual_version
    from stream.config import Settings

    plain = Settings(_env_file=None).thresholds()
    assert plain.by_build == {}
    routed = Settings(_env_file=None, chinese_negative_review_threshold=0.83).thresholds()
    assert routed.by_build == {multilingual_version(): TextThresholds(0.83, None)}
    alone = Settings(
        _env_file=None, chinese_negative_review_threshold=0.83, chinese_model_version="none"
    ).thresholds()
    assert alone.by_build == {}  # nothing is routed, so nothing to override


def test_scam_chat_from_merchant_is_high_severity() -> None:
    (alert,) = evaluate_rules(chat(0.95, "merchant"), T)
    validate("alerts", alert)
    assert (alert["alert_type"], alert["severity"]) == ("scam_chat", "high")
    assert evaluate_rules(chat(0.5, "merchant"), T) == []


def test_alert_id_is_deterministic_and_distinct() -> None:
    assert alert_id("a", "product", "p", "e") == alert_id("a", "product", "p", "e")
    assert alert_id("a", "product", "p", "e") != alert_id("a", "product", "p", "e2")
    assert (
        evaluate_rules(review(0.99), T)[0]["alert_id"]
        == evaluate_rules(review(0.99), T)[0]["alert_id"]
    )


def test_rate_limit_keeps_one_alert_per_subject_per_cooldown_unless_it_escalates() -> None:
    from stream.core.rules import ALERT_COOLDOWN_MS, rate_limit

    def alert(severity: str, subject: str = "m1") -> dict:
        return {"alert_type": "fraud_risk", "severity": severity,
                "subject": {"kind": "member", "id": subject}}  # fmt: skip

    cooldown = ALERT_COOLDOWN_MS["fraud_risk"]
    kept, log, dropped = rate_limit({}, [alert("medium")], 0, "e1")
    assert len(kept) == 1 and dropped == 0
    kept, log2, dropped = rate_limit(log, [alert("medium"), alert("medium", "m2")], 1_000, "e2")
    assert [a["subject"]["id"] for a in kept] == ["m2"] and dropped == 1
    before = {key: list(value) for key, value in log2.items()}
    kept, log3, _ = rate_limit(log2, [alert("high")], 2_000, "e3")
    assert len(kept) == 1  # escalation goes out
    assert log2 == before  # the new log shares entries with the old: none is changed in place
    kept, log4, _ = rate_limit(log3, [alert("high")], 2_000 + cooldown, "e4")
    assert len(kept) == 1  # cooldown over
    assert log3 == {
        "fraud_risk|member|m1": [2_000, "high"],
        "fraud_risk|member|m2": [1_000, "medium"],
    }
    # entries whose cooldown ran out leave the log: they suppress nothing any more
    assert log4 == {"fraud_risk|member|m1": [2_000 + cooldown, "high"]}
    # a log of the previous release (event ids kept): a redelivered event found there
    # re-sends exactly what it was allowed the first time
    legacy = {
        "fraud_risk|member|m1": [2_000, "high", "e3"],
        "fraud_risk|member|m2": [1_000, "medium", "e2"],
    }
    assert len(rate_limit(legacy, [alert("high")], 2_000, "e3", redelivered=True)[0]) == 1
    assert rate_limit(legacy, [alert("medium", "m2")], 1_000, "e1", redelivered=True)[0] == []


@pytest.mark.parametrize(
    ("p_negative", "label"),
    [
        (0.0, "positive"),
        (0.2499, "positive"),
        (0.25, "neutral"),
        (0.79, "neutral"),
        (0.8, "negative"),
    ],
)
def test_three_way_sentiment_from_the_neutral_band(p_negative: float, label: str) -> None:
    from stream.core.rules import sentiment_label

    assert sentiment_label(p_negative, (0.25, 0.80)) == label


def test_each_build_reads_sentiment_with_its_own_band() -> None:
    from stream.core.rules import AlertThresholds, TextThresholds, text_sentiment

    thresholds = AlertThresholds(by_build={"zh-1": TextThresholds(neutral_band=(0.5, 0.9))})
    evt = {"scores": {"sentiment_negative": 0.85}, "model_version": "en-1"}
    assert text_sentiment(evt, thresholds.for_event(evt)) == "negative"
    zh = {**evt, "model_version": "zh-1"}
    assert text_sentiment(zh, thresholds.for_event(zh)) == "neutral"
    assert text_sentiment({"scores": {"fraud_risk": 0.2}}, thresholds) is None
