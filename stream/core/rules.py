"""Alert rules: pure functions from one scored member event to zero or more alerts.

Alert ids are a hash of (type, subject, triggering event), so a redelivered event re-publishes
the same keyed alert instead of a new one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class TextThresholds:
    """The text rules' thresholds for the events one build scored (``None``: the default)."""

    negative_review: float | None = None
    scam_chat: float | None = None
    neutral_band: tuple[float, float] | None = None


Sentiment = Literal["negative", "neutral", "positive"]
SENTIMENTS: tuple[Sentiment, ...] = ("negative", "neutral", "positive")
#: P(negative) in [low, high) reads neutral: fitted on three English sets rated by people with
#: a neutral class (model card, "Neutral"; bench/results/eval-domains.json ``neutral_band``).
NEUTRAL_BAND = (0.25, 0.80)


def sentiment_label(p_negative: float, band: tuple[float, float] = NEUTRAL_BAND) -> Sentiment:
    """Three-way sentiment from the binary head: P(negative) at or above the band's top is
    negative, below its bottom positive, in between neutral (the head has no neutral class;
    a neutral sentence scores in the middle)."""
    low, high = band
    if p_negative >= high:
        return "negative"
    return "positive" if p_negative < low else "neutral"


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    """Score thresholds at which rules fire (configurable through ``Settings``).

    A threshold means a precision only within one build and domain (model card, "Across
    domains"), so ``by_build`` can set the text rules' thresholds for the events one build
    scored: a router's Chinese build, calibrated on Chinese traffic, say.
    """

    negative_review: float = 0.85  # precision 0.88-0.92 on the training domains (model card)
    scam_chat: float = 0.90
    fraud_risk: float = 0.15  # served score; ULB day 2: precision 0.66, recall 0.81
    surge_negative: float = 0.5  # a text counts as negative in surge windows
    neutral_band: tuple[float, float] = NEUTRAL_BAND
    by_build: Mapping[str, TextThresholds] = field(default_factory=dict)

    def for_event(self, member_evt: Mapping[str, Any]) -> AlertThresholds:
        """These thresholds, with the text ones of the build that scored ``member_evt``."""
        own = self.by_build.get(member_evt.get("model_version") or "")
        if own is None:
            return self
        return replace(
            self,
            negative_review=self.negative_review
            if own.negative_review is None
            else own.negative_review,
            scam_chat=self.scam_chat if own.scam_chat is None else own.scam_chat,
            neutral_band=self.neutral_band if own.neutral_band is None else own.neutral_band,
        )


def text_sentiment(member_evt: Mapping[str, Any], own: AlertThresholds) -> Sentiment | None:
    """The served three-way label of a scored text under its build's band (None: no text)."""
    p_negative = (member_evt.get("scores") or {}).get("sentiment_negative")
    return None if p_negative is None else sentiment_label(p_negative, own.neutral_band)


def alert_id(alert_type: str, subject_kind: str, subject_id: str, event_id: str) -> str:
    digest = hashlib.sha1(f"{alert_type}|{subject_kind}|{subject_id}|{event_id}".encode())
    return digest.hexdigest()[:20]


def _alert(
    alert_type: str,
    severity: str,
    subject: tuple[str, str],
    score: float,
    reasons: list[str],
    member_evt: Mapping[str, Any],
) -> dict[str, Any]:
    data = member_evt["event"]
    kind, subject_id = subject
    return {
        "alert_id": alert_id(alert_type, kind, subject_id, data["event_id"]),
        "alert_type": alert_type,
        "severity": severity,
        "subject": {"kind": kind, "id": subject_id},
        "score": round(score, 6),
        "reasons": reasons,
        "event_ids": [data["event_id"]],
        "model_version": member_evt["model_version"],
        "event_time": data["event_time"],
        "member_id": data["member_id"],
    }


def negative_review_alert(
    member_evt: Mapping[str, Any], thresholds: AlertThresholds
) -> dict[str, Any] | None:
    """A review whose P(negative) reaches the threshold; severe when the rating agrees."""
    if member_evt["event_type"] != "review":
        return None
    p_negative = member_evt["scores"]["sentiment_negative"]
    if p_negative < thresholds.negative_review:
        return None
    data = member_evt["event"]
    reasons = [f"review sentiment P(negative)={p_negative:.2f} >= {thresholds.negative_review:.2f}"]
    rating = data.get("rating")
    if rating is not None:
        reasons.append(f"rating {rating}/5")
    severe = rating is not None and rating <= 2
    return _alert(
        "negative_review",
        "high" if severe else "medium",
        ("product", data["product_id"]),
        p_negative,
        reasons,
        member_evt,
    )


def scam_chat_alert(
    member_evt: Mapping[str, Any], thresholds: AlertThresholds
) -> dict[str, Any] | None:
    """A chat message that reads like a scam (phishing, fake prizes, off-platform payment)."""
    if member_evt["event_type"] != "chat":
        return None
    risk = member_evt["scores"]["scam_risk"]
    if risk < thresholds.scam_chat:
        return None
    data = member_evt["event"]
    reasons = [
        f"chat scam risk {risk:.2f} >= {thresholds.scam_chat:.2f}",
        f"written by the {data['sender_role']}",
    ]
    severity = "high" if data["sender_role"] != "member" else "medium"
    return _alert(
        "scam_chat", severity, ("conversation", data["conversation_id"]), risk, reasons, member_evt
    )


def fraud_risk_alert(
    member_evt: Mapping[str, Any], thresholds: AlertThresholds
) -> dict[str, Any] | None:
    """A transaction whose fraud score reaches the threshold, with the score's top reasons."""
    if member_evt["event_type"] != "transaction":
        return None
    assessment = member_evt.get("fraud")
    if not assessment or assessment["score"] < thresholds.fraud_risk:
        return None
    data = member_evt["event"]
    alert = _alert(
        "fraud_risk",
        "high" if assessment["score"] >= 0.5 else "medium",
        ("member", data["member_id"]),
        assessment["score"],
        list(assessment["reasons"]),
        member_evt,
    )
    alert["model_version"] = assessment["model_version"]
    return alert


RULES = (negative_review_alert, scam_chat_alert, fraud_risk_alert)

#: Event-time cooldown per (alert type, subject) within one member's stream.
ALERT_COOLDOWN_MS = {
    "fraud_risk": 10 * 60_000,
    "scam_chat": 30 * 60_000,
    "negative_review": 60 * 60_000,
}
_SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}
MAX_ALERT_LOG = 32


def rate_limit(
    log: Mapping[str, list[Any]],
    alerts: list[dict[str, Any]],
    event_ms: int,
    event_id: str,
    *,
    redelivered: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, list[Any]], int]:
    """Keep at most one alert per (type, subject) per cooldown of event time, unless its
    severity rises -> (alerts to send, new log, number suppressed).

    The log maps ``type|kind|id`` to ``[event ms, severity]``; an entry whose cooldown has run
    out by ``event_ms`` can suppress nothing more and leaves it (a member's state is rewritten
    on every event). Entries written before also hold the event id: a redelivered event found
    there (a state of the previous release) re-sends exactly the alerts it was allowed then.
    """
    # entries are replaced, never changed in place, so the new log shares them with the old
    # (a copy of each per entry and event: most of 3 % of the worker's samples)
    new_log = {
        key: value
        for key, value in log.items()
        if event_ms - value[0] < ALERT_COOLDOWN_MS.get(key.partition("|")[0], 0)
        or (redelivered and len(value) > 2)
    }
    kept, suppressed = [], 0
    for alert in alerts:
        key = f"{alert['alert_type']}|{alert['subject']['kind']}|{alert['subject']['id']}"
        last = new_log.get(key)
        if redelivered:
            if last is not None and len(last) > 2 and last[2] == event_id:
                kept.append(alert)
            continue
        cooldown = ALERT_COOLDOWN_MS.get(alert["alert_type"], 0)
        escalates = last is not None and _SEVERITY_RANK[alert["severity"]] > _SEVERITY_RANK[last[1]]
        if last is None or escalates or not 0 <= event_ms - last[0] < cooldown:
            kept.append(alert)
            new_log[key] = [event_ms, alert["severity"]]
        else:
            suppressed += 1
    newest = sorted(new_log.items(), key=lambda item: item[1][0])[-MAX_ALERT_LOG:]
    return kept, dict(newest), suppressed


def evaluate_rules(member_evt: Mapping[str, Any], thresholds: AlertThresholds) -> list[dict]:
    """Every alert the event triggers, in rule order, at the thresholds of the build that
    scored it."""
    own = thresholds.for_event(member_evt)
    return [a for rule in RULES if (a := rule(member_evt, own)) is not None]
