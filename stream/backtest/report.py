"""Backtests as plain data: replay inputs, ground-truth labels, and the report over a replay's
outputs. No Kafka here (``stream/backtest/replay.py`` moves the records); everything is unit-tested.

Labels ride inside the events, where a replayed topic or file already has them: a transaction's
``label`` (1 = fraud, the ULB ``Class``), and on reviews and chats a ``label`` object with any of
``negative`` (bool), ``scam`` (bool) and ``surge`` (the id of an injected or known surge).
"""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from models.training.fraud import at_threshold, average_precision, recall_at_fpr
from stream.core.codec import parse_event_time
from stream.core.steps import EVENT_TYPE_OF_TOPIC
from stream.core.surge import CONFIGS as SURGE_CONFIGS

#: Event type -> logical input topic.
TOPIC_OF_EVENT_TYPE = {event_type: topic for topic, event_type in EVENT_TYPE_OF_TOPIC.items()}
INPUT_TOPICS = tuple(EVENT_TYPE_OF_TOPIC)


class ReplayInputError(ValueError):
    """A replay source line that cannot be routed to an input topic."""


@dataclass(frozen=True, slots=True)
class ReplayRecord:
    """One input record to replay: logical topic, key, original value bytes, timestamp."""

    topic: str
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


def _as_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return orjson.dumps(value)


def record_from_row(row: Mapping[str, Any]) -> ReplayRecord:
    """A file row -> record. Two shapes are accepted:

    * an envelope ``{"topic": "reviews", "key": "m-1", "value": {...} | "raw text",
      "timestamp_ms": 1700000000000}`` (``value`` as a string is replayed byte for byte, so
      malformed inputs can be replayed too; ``value_b64`` carries arbitrary bytes), or
    * a bare event with ``"event_type": "review" | "chat" | "transaction"``, keyed by member.
    """
    if "topic" in row:
        topic = row["topic"]
        if topic not in INPUT_TOPICS:
            raise ReplayInputError(f"topic {topic!r} is not one of {', '.join(INPUT_TOPICS)}")
        if "value_b64" in row:
            value = base64.b64decode(row["value_b64"]) if row["value_b64"] is not None else None
        elif "value" in row:
            value = _as_bytes(row["value"])
        else:
            raise ReplayInputError("an envelope needs 'value' or 'value_b64'")
        timestamp = row.get("timestamp_ms")
        return ReplayRecord(topic, _as_bytes(row.get("key")), value, timestamp)
    event_type = row.get("event_type")
    if event_type not in TOPIC_OF_EVENT_TYPE:
        raise ReplayInputError(
            "a row needs 'topic' (an envelope) or 'event_type' in review/chat/transaction"
        )
    event = {name: value for name, value in row.items() if name != "event_type"}
    member = event.get("member_id")
    key = str(member).encode() if member is not None else None
    return ReplayRecord(TOPIC_OF_EVENT_TYPE[event_type], key, orjson.dumps(event))


def records_from_jsonl(lines: Iterable[bytes]) -> Iterator[tuple[int, ReplayRecord | str]]:
    """(line number, record) per non-blank line, or (line number, why it was skipped)."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
            if not isinstance(row, dict):
                raise ReplayInputError("a line must be a JSON object")
            yield number, record_from_row(row)
        except (orjson.JSONDecodeError, ReplayInputError) as exc:
            yield number, str(exc)


# --------------------------------------------------------------------------- ground truth


@dataclass(frozen=True, slots=True)
class InputFacts:
    """What the report needs of one replayed input (its bytes are not kept)."""

    topic: str
    event_id: str | None
    event_time_ms: int | None
    label: Any
    product_id: str | None = None
    brand: str | None = None
    #: "zh" or "en": the build the router sends the text to (None: no text).
    language: str | None = None


def text_language(text: Any) -> str | None:
    """``"zh"`` for text the router sends to the multilingual build, ``"en"`` otherwise."""
    from models.serving.router import text_route

    if not isinstance(text, str):
        return None
    return "zh" if text_route(text) == "multilingual" else "en"


def input_facts(record: ReplayRecord) -> InputFacts:
    """Event id, time, label and subject of an input, as far as its bytes parse."""
    try:
        data = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return InputFacts(record.topic, None, None, None)
    try:
        event_time = parse_event_time(data["event_time"])
    except Exception:
        event_time = None
    event_id = data.get("event_id")
    return InputFacts(
        record.topic,
        event_id if isinstance(event_id, str) else None,
        event_time,
        data.get("label"),
        str(data["product_id"]) if data.get("product_id") else None,
        str(data["brand"]) if data.get("brand") else None,
        text_language(data.get("text")),
    )


@dataclass
class ReplayOutputs:
    """Output records of one replay, decoded."""

    scored: list[dict] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)
    dead_letters: list[dict] = field(default_factory=list)
    profiles: dict[str, dict] = field(default_factory=dict)  # latest per member

    def add(self, logical_topic: str, key: bytes | None, value: bytes | None) -> None:
        body = orjson.loads(value) if value else None
        if body is None:
            return
        if logical_topic == "scored-events":
            self.scored.append(body)
        elif logical_topic == "alerts":
            self.alerts.append(body)
        elif logical_topic == "dead-letter":
            self.dead_letters.append(body)
        elif logical_topic == "member-profiles" and key is not None:
            self.profiles[key.decode()] = body

    def accounted(self) -> int:
        """Inputs with an outcome: distinct scored event ids plus dead letters (by source)."""
        return len({s["event_id"] for s in self.scored}) + len(
            {tuple(d["source"].values()) for d in self.dead_letters}
        )


def unique_alerts(alerts: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Alerts are keyed by id; a redelivery re-publishes the same alert."""
    return list({a["alert_id"]: a for a in alerts}.values())


def accuracy(y: np.ndarray, score: np.ndarray, threshold: float) -> float:
    """Share of events whose ``score >= threshold`` agrees with their label."""
    return float(np.mean((np.asarray(score) >= threshold) == (np.asarray(y) == 1)))


#: The precision the report calibrates each text alert's threshold for, on the replayed labels.
CALIBRATION_PRECISION = 0.90
#: ... flagging at least this many labelled events, so a few lucky top scores do not count.
CALIBRATION_MIN_FLAGGED = 20


def _calibrated(y: np.ndarray, score: np.ndarray) -> dict[str, Any]:
    from models.training.metrics import threshold_for_precision

    chosen = threshold_for_precision(y, score, CALIBRATION_PRECISION, CALIBRATION_MIN_FLAGGED)
    if chosen is None:
        return {"precision": CALIBRATION_PRECISION, "threshold": None}
    cut = at_threshold(y, score, chosen)
    return {
        "precision": CALIBRATION_PRECISION,
        "threshold": round(chosen, 4),
        "recall": round(cut["recall"], 4),
    }


def _undefined_because(positives: int, negatives: int) -> str | None:
    """Why ranking measures (PR-AUC, recall at an FPR) are undefined on a slice, or None."""
    if positives == 0 and negatives == 0:
        return "no labelled events"
    if negatives == 0:
        return "no negatives"
    if positives == 0:
        return "no positives"
    return None


def _binary_block(
    y: np.ndarray, score: np.ndarray, threshold: float, alerted: np.ndarray
) -> dict[str, Any]:
    """Score-level quality at the configured threshold, and what the published alerts caught."""
    tp, flagged, positives = int((alerted & (y == 1)).sum()), int(alerted.sum()), int(y.sum())
    cut: dict[str, Any] = at_threshold(y, score, threshold)
    cut["accuracy"] = accuracy(y, score, threshold)
    # PR-AUC and recall at an FPR need both classes: with no negatives PR-AUC is 1.0 whatever
    # the scores and no false-positive rate exists; with no positives neither means anything
    undefined = _undefined_because(positives, len(y) - positives)
    if positives == 0:
        cut["recall"] = None
    if cut["alerts"] == 0:
        cut["precision"] = None
    block: dict[str, Any] = {
        "events": len(y),
        "positives": positives,
        "pr_auc": None if undefined else round(average_precision(y, score), 4),
        "recall_at_1pct_fpr": None if undefined else round(recall_at_fpr(y, score, 0.01), 4),
        "undefined_because": undefined,
        # the model card's headline: P >= 0.5 vs the label; and what "always the majority"
        # would score, since on rare labels (fraud) accuracy alone says little
        "accuracy_at_0_5": round(accuracy(y, score, 0.5), 4),
        "majority_accuracy": round(max(positives, len(y) - positives) / len(y), 4),
        "at_threshold": {k: None if v is None else round(v, 4) for k, v in cut.items()},
        # calibration on the operator's own labelled traffic: the threshold that would give
        # CALIBRATION_PRECISION here (None: no threshold reaches it on this replay)
        "threshold_for_precision": _calibrated(y, score),
        "alerts": {
            "events_alerted": flagged,
            "precision": round(tp / flagged, 4) if flagged else None,
            "recall": round(tp / positives, 4) if positives else None,
        },
    }
    return block


def _labelled_scores(
    facts: Sequence[InputFacts],
    scored: Mapping[str, Mapping[str, Any]],
    alerted_ids: set[str],
    topic: str,
    label_of: Any,
    score_name: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    rows = [
        (label, score, f.event_id in alerted_ids)
        for f in facts
        if f.topic == topic
        and f.event_id in scored
        and (label := label_of(f.label)) is not None
        and (score := scored[f.event_id]["scores"].get(score_name)) is not None
    ]
    if not rows:
        return None
    y, score, alerted = zip(*rows, strict=True)
    return np.array(y, dtype=int), np.array(score, dtype=float), np.array(alerted, dtype=bool)


def _label_key(key: str) -> Any:
    def get(label: Any) -> int | None:
        if isinstance(label, dict) and isinstance(label.get(key), bool):
            return int(label[key])
        return None

    return get


def _fraud_label(label: Any) -> int | None:
    return label if label in (0, 1) and not isinstance(label, bool) else None


def surge_quality(
    facts: Sequence[InputFacts], alerts: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """Labelled surges (events sharing a ``label.surge`` id) against ``opinion_surge`` alerts.

    A surge is detected when an alert names its product or brand with an event time from its
    first labelled event up to one window after its last; delay is counted from the first
    labelled event, in minutes and in windows (minutes over the alerting subject's window
    length, the unit docs/evaluation.md uses)."""
    episodes: dict[str, list[InputFacts]] = defaultdict(list)
    for f in facts:
        if isinstance(f.label, dict) and f.label.get("surge") and f.event_time_ms is not None:
            episodes[str(f.label["surge"])].append(f)
    if not episodes:
        return None
    surge_alerts = [a for a in alerts if a["alert_type"] == "opinion_surge"]
    matched: set[str] = set()
    per_episode = {}
    for name, events in sorted(episodes.items()):
        start = min(e.event_time_ms for e in events)
        end = max(e.event_time_ms for e in events)
        subjects = {("product", e.product_id) for e in events if e.product_id}
        subjects |= {("brand", e.brand) for e in events if e.brand}
        hits = []
        for alert in surge_alerts:
            kind, subject_id = alert["subject"]["kind"], alert["subject"]["id"]
            window = SURGE_CONFIGS[kind].window_ms
            at = parse_event_time(alert["event_time"])
            if (kind, subject_id) in subjects and start <= at <= end + window:
                hits.append((at, kind, alert["alert_id"]))
                matched.add(alert["alert_id"])
        first = min(hits) if hits else None
        per_episode[name] = {
            "events": len(events),
            "subjects": sorted(f"{k}:{s}" for k, s in subjects),
            "detected": first is not None,
            "delay_minutes": round((first[0] - start) / 60_000, 1) if first else None,
            "delay_windows": (
                round((first[0] - start) / SURGE_CONFIGS[first[1]].window_ms, 2) if first else None
            ),
        }
    detected = [e for e in per_episode.values() if e["detected"]]
    delays = [e["delay_minutes"] for e in detected]
    windows = [e["delay_windows"] for e in detected]
    return {
        "surges": len(per_episode),
        "detected": len(detected),
        "recall": round(len(detected) / len(per_episode), 4),
        "window_minutes": sorted({c.window_ms // 60_000 for c in SURGE_CONFIGS.values()}),
        "median_delay_minutes": float(np.median(delays)) if delays else None,
        "median_delay_windows": round(float(np.median(windows)), 2) if windows else None,
        "max_delay_windows": max(windows, default=None),
        "unmatched_alerts": len([a for a in surge_alerts if a["alert_id"] not in matched]),
        "per_surge": per_episode,
    }


#: Labelled alert type -> (input topic, label reader, score it is judged on).
LABELLED_SCORES = {
    "fraud_risk": ("transactions", _fraud_label, "fraud_risk"),
    "negative_review": ("reviews", _label_key("negative"), "sentiment_negative"),
    "scam_chat": ("chats", _label_key("scam"), "scam_risk"),
}


def labelled_arrays(
    facts: Sequence[InputFacts], outputs: ReplayOutputs
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per alert type with labelled inputs: (label, score, alerted) over the scored ones."""
    scored = {s["event_id"]: s for s in outputs.scored}
    alerts = unique_alerts(outputs.alerts)
    arrays = {}
    for alert_type, (topic, label_of, score_name) in LABELLED_SCORES.items():
        alerted = {i for a in alerts if a["alert_type"] == alert_type for i in a["event_ids"]}
        rows = _labelled_scores(facts, scored, alerted, topic, label_of, score_name)
        if rows is not None:
            arrays[alert_type] = rows
    return arrays


def labelled_quality(
    facts: Sequence[InputFacts], outputs: ReplayOutputs, thresholds: Mapping[str, float]
) -> dict[str, Any]:
    """Precision, recall, PR-AUC (and surge delay) wherever the inputs carry labels."""
    quality: dict[str, Any] = {
        alert_type: _binary_block(y, score, thresholds[alert_type], alerted)
        for alert_type, (y, score, alerted) in labelled_arrays(facts, outputs).items()
    }
    surges = surge_quality(facts, unique_alerts(outputs.alerts))
    if surges is not None:
        quality["opinion_surge"] = surges
    return quality


def quality_by_language(
    facts: Sequence[InputFacts],
    outputs: ReplayOutputs,
    thresholds: Mapping[str, float],
    language_thresholds: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The text alerts' labelled quality per input language, where inputs mix languages."""
    languages = sorted({f.language for f in facts if f.language is not None})
    if len(languages) < 2:
        return {}
    by_language: dict[str, dict[str, Any]] = {}
    for language in languages:
        chosen = [f for f in facts if f.language == language]
        own = {**thresholds, **(language_thresholds or {}).get(language, {})}
        for alert_type, (y, score, alerted) in labelled_arrays(chosen, outputs).items():
            block = _binary_block(y, score, own[alert_type], alerted)
            by_language.setdefault(alert_type, {})[language] = block
    return by_language


def build_report(
    facts: Sequence[InputFacts],
    outputs: ReplayOutputs,
    *,
    thresholds: Mapping[str, float],
    language_thresholds: Mapping[str, Mapping[str, float]] | None = None,
    skipped_lines: Mapping[int, str] | None = None,
    status: str,
    elapsed_s: float,
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """The whole backtest report as JSON-ready data (a partial one if ``status`` says so);
    ``language_thresholds`` overrides ``thresholds`` per input language (``zh``: those set for
    the Chinese build)."""
    alerts = unique_alerts(outputs.alerts)
    by_type: dict[str, Counter] = defaultdict(Counter)
    for alert in alerts:
        by_type[alert["alert_type"]][alert["severity"]] += 1
    accounted = outputs.accounted()
    model_versions = Counter(s.get("model_version") for s in outputs.scored)
    model_versions.pop(None, None)
    return {
        "status": status,
        **meta,
        "events": {
            "input": dict(Counter(f.topic for f in facts)),
            "input_total": len(facts),
            "accounted": accounted,
            "scored": dict(Counter(s["event_type"] for s in outputs.scored)),
            "dead_letter": dict(Counter(d["reason"] for d in outputs.dead_letters)),
            "skipped_source_lines": {str(n): why for n, why in (skipped_lines or {}).items()},
        },
        "alerts": {
            "total": len(alerts),
            "by_type": {t: dict(sorted(c.items())) for t, c in sorted(by_type.items())},
        },
        "profiles": len(outputs.profiles),
        "model_versions": dict(model_versions),
        "labelled": labelled_quality(facts, outputs, thresholds),
        "labelled_by_language": quality_by_language(
            facts, outputs, thresholds, language_thresholds or {}
        ),
        "throughput": {
            "elapsed_s": round(elapsed_s, 2),
            "events_per_s": round(accounted / elapsed_s, 1) if elapsed_s > 0 else None,
        },
    }


# --------------------------------------------------------------------------- compare


def alert_signature(alert: Mapping[str, Any]) -> tuple:
    return (
        alert["alert_type"],
        alert["subject"]["kind"],
        alert["subject"]["id"],
        tuple(alert["event_ids"]),
    )


def compare_alerts(
    first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Which alerts two replays share and which only one raised (by type, subject, events)."""
    a = {alert_signature(x) for x in unique_alerts(first)}
    b = {alert_signature(x) for x in unique_alerts(second)}

    def listed(signatures: set[tuple]) -> list[dict[str, Any]]:
        return [
            {"alert_type": t, "subject": f"{k}:{s}", "event_ids": list(ids)}
            for t, k, s, ids in sorted(signatures)
        ]

    return {
        "same": len(a & b),
        "only_a": listed(a - b),
        "only_b": listed(b - a),
        "identical": a == b,
    }


# --------------------------------------------------------------------------- rendering


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _ranking(block: Mapping[str, Any], name: str) -> str:
    """A ranking measure's cell: the value, or why it is undefined on this slice."""
    why = block.get("undefined_because")
    return f"undefined ({why})" if why else _fmt(block.get(name))


def _calibrated_cell(block: Mapping[str, Any]) -> str:
    calibrated = block.get("threshold_for_precision") or {}
    if calibrated.get("threshold") is None:
        return "-"
    return f"{calibrated['threshold']:.3f} ({calibrated['recall']:.3f})"


def render_markdown(report: Mapping[str, Any]) -> list[str]:
    """A short page a person reads: counts, alerts, labelled quality, throughput."""
    events = report["events"]
    lines = [
        f"# Backtest {report.get('run_id', '')}",
        "",
        f"Status: **{report['status']}** — {events['accounted']} of {events['input_total']} "
        f"input events processed in {report['throughput']['elapsed_s']} s "
        f"({_fmt(report['throughput']['events_per_s'])} events/s). "
        f"Model: {', '.join(report['model_versions']) or '-'}.",
        "",
        "| input topic | events |",
        "|---|---|",
        *(f"| {t} | {n} |" for t, n in sorted(events["input"].items())),
        "",
        f"Dead letters: {events['dead_letter'] or 'none'}. Profiles: {report['profiles']}.",
        "",
        "| alert type | severity | count |",
        "|---|---|---|",
        *(
            f"| {t} | {s} | {n} |"
            for t, by_severity in report["alerts"]["by_type"].items()
            for s, n in by_severity.items()
        ),
    ]
    labelled = report["labelled"]
    binary = {k: v for k, v in labelled.items() if k != "opinion_surge"}
    if binary:
        lines += [
            "",
            "## Against the labels",
            "",
            "| alert type | labelled | positives | PR-AUC | accuracy @0.5 (majority) | "
            "recall @1% FPR | threshold | accuracy | precision | recall | alerts: precision | "
            f"alerts: recall | threshold for precision {CALIBRATION_PRECISION:.2f} (recall) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, q in binary.items():
            t = q["at_threshold"]
            lines.append(
                f"| {name} | {q['events']} | {q['positives']} | {_ranking(q, 'pr_auc')} | "
                f"{_fmt(q.get('accuracy_at_0_5'))} ({_fmt(q.get('majority_accuracy'))}) | "
                f"{_ranking(q, 'recall_at_1pct_fpr')} | {_fmt(t['threshold'])} | "
                f"{_fmt(t.get('accuracy'))} | {_fmt(t['precision'])} | {_fmt(t['recall'])} | "
                f"{_fmt(q['alerts']['precision'])} | {_fmt(q['alerts']['recall'])} | "
                f"{_calibrated_cell(q)} |"
            )
        lines += [
            "",
            "Accuracy @0.5 is the model card's measure (P ≥ 0.5 against the label), beside what "
            "always answering the majority label would score; the threshold columns use the "
            "alert threshold. The last column calibrates to this traffic: the lowest threshold "
            f"at which at least {CALIBRATION_MIN_FLAGGED} labelled events flagged hold precision "
            f"{CALIBRATION_PRECISION:.2f} (set it as the alert's threshold, per language if the "
            "table below differs); `-` when none does.",
        ]
    by_language = report.get("labelled_by_language") or {}
    if by_language:
        lines += [
            "",
            "By input language (zh: text the router sends to the multilingual build):",
            "",
            "| alert type | language | labelled | positives | PR-AUC | accuracy @0.5 (majority) "
            f"| precision | recall | threshold for precision {CALIBRATION_PRECISION:.2f} "
            "(recall) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, blocks in by_language.items():
            for language, q in blocks.items():
                t = q["at_threshold"]
                lines.append(
                    f"| {name} | {language} | {q['events']} | {q['positives']} | "
                    f"{_ranking(q, 'pr_auc')} | {_fmt(q.get('accuracy_at_0_5'))} "
                    f"({_fmt(q.get('majority_accuracy'))}) | {_fmt(t['precision'])} | "
                    f"{_fmt(t['recall'])} | {_calibrated_cell(q)} |"
                )
    if "opinion_surge" in labelled:
        s = labelled["opinion_surge"]
        window = "/".join(str(m) for m in s.get("window_minutes", [])) or "-"
        lines += [
            "",
            f"Labelled surges: {s['detected']} of {s['surges']} detected (recall "
            f"{_fmt(s['recall'])}), delay from the first labelled event: median "
            f"{_fmt(s.get('median_delay_windows'))} windows "
            f"({_fmt(s['median_delay_minutes'])} min), max "
            f"{_fmt(s.get('max_delay_windows'))} windows ({window}-minute windows); "
            f"{s['unmatched_alerts']} surge alerts matched no labelled surge.",
        ]
    return lines


#: (label, path into a run report) of the side-by-side table of ``--compare``.
COMPARED = (
    ("status", ("status",)),
    ("events processed", ("events", "accounted")),
    ("events/s", ("throughput", "events_per_s")),
    ("alerts", ("alerts", "total")),
    ("model", ("model_versions",)),
    ("fraud PR-AUC", ("labelled", "fraud_risk", "pr_auc")),
    ("fraud precision at threshold", ("labelled", "fraud_risk", "at_threshold", "precision")),
    ("fraud recall at threshold", ("labelled", "fraud_risk", "at_threshold", "recall")),
    ("fraud accuracy at threshold", ("labelled", "fraud_risk", "at_threshold", "accuracy")),
    ("negative-review PR-AUC", ("labelled", "negative_review", "pr_auc")),
    ("negative-review accuracy @0.5", ("labelled", "negative_review", "accuracy_at_0_5")),
    ("scam-chat PR-AUC", ("labelled", "scam_chat", "pr_auc")),
    ("scam-chat accuracy @0.5", ("labelled", "scam_chat", "accuracy_at_0_5")),
    ("surge recall", ("labelled", "opinion_surge", "recall")),
    ("surge median delay (windows)", ("labelled", "opinion_surge", "median_delay_windows")),
    ("surge median delay (min)", ("labelled", "opinion_surge", "median_delay_minutes")),
)


def _dig(data: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    if isinstance(data, Mapping):
        return ", ".join(f"{k}" for k in data) or None
    return data


def render_compare_markdown(report: Mapping[str, Any]) -> list[str]:
    """Run A and run B side by side, then the alerts only one of them raised."""
    runs = report["runs"]
    a, b = runs.get("a", {}), runs.get("b", {})
    diff = report["compare"]["alerts"]
    lines = [
        f"# Backtest {report['run_id']}: A vs B",
        "",
        f"Status: **{report['status']}**. B = A with `{report['compare']['settings_b']}`.",
        "",
        "| | A | B |",
        "|---|---|---|",
    ]
    for label, path in COMPARED:
        first, second = _dig(a, path), _dig(b, path)
        if first is not None or second is not None:
            lines.append(f"| {label} | {_fmt(first)} | {_fmt(second)} |")
    types = sorted(
        set(a.get("alerts", {}).get("by_type", {})) | set(b.get("alerts", {}).get("by_type", {}))
    )
    for alert_type in types:
        counts = [
            sum(r.get("alerts", {}).get("by_type", {}).get(alert_type, {}).values()) for r in (a, b)
        ]
        lines.append(f"| {alert_type} alerts | {counts[0]} | {counts[1]} |")
    if diff is not None:
        lines += [
            "",
            f"Alerts raised by both: {diff['same']}; only by A: {len(diff['only_a'])}; "
            f"only by B: {len(diff['only_b'])}.",
        ]
        for side in ("only_a", "only_b"):
            for alert in diff[side][:20]:
                lines.append(
                    f"- {side.replace('_', ' ')}: {alert['alert_type']} {alert['subject']} "
                    f"{', '.join(alert['event_ids'])}"
                )
    return lines
