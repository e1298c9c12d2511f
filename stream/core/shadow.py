"""Shadow scoring as pure functions: how a challenger model build's scores compare with the
champion's on the same text, and the ``shadow-scores`` record that says so.

A platform promotes a new build (a retrained student, the INT8 export, another backend) after
watching it on live traffic: the champion's scores drive every output, the challenger's are only
compared. Agreement is measured where it changes what users see: the label (P >= 0.5) and the
alert decision (the alert thresholds), per head, beside the absolute score difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stream.core.rules import AlertThresholds

#: Heads compared (``sentiment_polarity`` is derived from ``sentiment_negative``).
SHADOW_HEADS: tuple[str, ...] = ("sentiment_negative", "scam_risk")
#: The label decision of a head: P >= 0.5.
LABEL_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class HeadComparison:
    """One head of one text: champion vs challenger."""

    head: str
    abs_diff: float
    #: Both on the same side of 0.5.
    label_agrees: bool
    #: Both on the same side of the head's alert threshold.
    alert_agrees: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "abs_diff": round(self.abs_diff, 6),
            "label_agrees": self.label_agrees,
            "alert_agrees": self.alert_agrees,
        }


def alert_threshold(head: str, thresholds: AlertThresholds) -> float:
    """The score at which a head raises its alert (a review's negativity, a chat's scam risk)."""
    return {"sentiment_negative": thresholds.negative_review, "scam_risk": thresholds.scam_chat}[
        head
    ]


def compare_scores(
    champion: Mapping[str, float],
    challenger: Mapping[str, float],
    thresholds: AlertThresholds,
) -> list[HeadComparison]:
    """Per head: the absolute difference and whether both builds decide alike."""
    found = []
    for head in SHADOW_HEADS:
        ours, theirs = champion[head], challenger[head]
        cut = alert_threshold(head, thresholds)
        found.append(
            HeadComparison(
                head,
                abs(ours - theirs),
                (ours >= LABEL_THRESHOLD) == (theirs >= LABEL_THRESHOLD),
                (ours >= cut) == (theirs >= cut),
            )
        )
    return found


#: One side of a comparison: (model version, precision, scores).
Build = tuple[str, str, Mapping[str, float]]


def shadow_record(
    event: Mapping[str, Any],
    champion: Build,
    challenger: Build,
    comparison: list[HeadComparison],
) -> dict[str, Any]:
    """The ``shadow-scores`` record for one scored text (keyed by event id). It carries no
    text and no member id: the event id joins it to ``scored-events`` where that is allowed."""

    def side(build: Build) -> dict[str, Any]:
        version, precision, scores = build
        return {"model_version": version, "precision": precision, "scores": dict(scores)}

    return {
        "event_id": event["event_id"],
        "event_type": event["event_type"],
        "event_time": event["event_time"],
        "champion": side(champion),
        "challenger": side(challenger),
        "comparison": {c.head: c.as_dict() for c in comparison},
        "source": dict(event["source"]),
    }
