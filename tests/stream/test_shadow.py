"""Shadow scoring: the pure comparison, and the challenger beside the champion in-process (the
champion's outputs unchanged, never waiting for the challenger, which drops what it cannot
keep up with). The run against a real broker is in ``tests/stream/test_monitoring_worker.py``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from models.serving.base import PredictionResult, TextScores
from stream.config import Settings
from stream.core.codec import validate
from stream.core.rules import AlertThresholds
from stream.core.shadow import compare_scores, shadow_record
from stream.topics import SCORED_EVENTS, SHADOW_SCORES
from stream.worker.batcher import MicroBatcher
from stream.worker.shadow import ShadowScoring
from tests.fakes import FakeModelHandler
from tests.stream.test_worker_stages import edge, review, stages  # noqa: F401 (fixture)

T = AlertThresholds(negative_review=0.85, scam_chat=0.9)


def scores(negative: float, scam: float) -> dict[str, float]:
    return TextScores(negative, scam).as_dict()


def test_agreement_is_decided_per_head_at_the_label_and_at_the_alert_threshold() -> None:
    found = {c.head: c for c in compare_scores(scores(0.9, 0.2), scores(0.8, 0.1), T)}
    negative, scam = found["sentiment_negative"], found["scam_risk"]
    assert negative.abs_diff == pytest.approx(0.1)
    assert negative.label_agrees and not negative.alert_agrees  # 0.9 alerts, 0.8 does not
    assert scam.label_agrees and scam.alert_agrees
    flipped = {c.head: c for c in compare_scores(scores(0.49, 0.95), scores(0.51, 0.95), T)}
    assert not flipped["sentiment_negative"].label_agrees
    assert flipped["sentiment_negative"].alert_agrees  # neither reaches 0.85
    assert flipped["scam_risk"].abs_diff == 0 and flipped["scam_risk"].alert_agrees


def test_the_record_is_schema_valid_and_carries_no_text_or_member() -> None:
    event = {
        "event_id": "r-1",
        "event_type": "chat",
        "event_time": "2026-11-23T10:00:00Z",
        "source": {"topic": "chats", "partition": 0, "offset": 7},
    }
    champion, challenger = scores(0.1, 0.95), scores(0.2, 0.4)
    record = shadow_record(
        event,
        ("v1", "fp32", champion),
        ("v1", "int8", challenger),
        compare_scores(champion, challenger, T),
    )
    assert (record["champion"]["precision"], record["challenger"]["precision"]) == ("fp32", "int8")
    validate(SHADOW_SCORES, record)
    assert record["comparison"]["scam_risk"] == {
        "abs_diff": 0.55,
        "label_agrees": False,
        "alert_agrees": False,
    }
    assert "member_id" not in record and "text" not in orjson.dumps(record).decode()


def test_challenger_settings_replace_only_the_model() -> None:
    settings = Settings(KAFKA_BROKER="kafka://x:1", backend="onnx-cpu", model_version="a")
    assert not settings.shadow_enabled
    shadowed = settings.model_copy(update={"shadow_backend": "onnx-cpu-int8"})
    challenger = shadowed.challenger()
    assert shadowed.shadow_enabled
    assert (challenger.backend, challenger.model_version) == ("onnx-cpu-int8", "a")
    assert not challenger.shadow_enabled and challenger.kafka_broker == settings.kafka_broker
    other = settings.model_copy(update={"shadow_model_version": "b"}).challenger()
    assert (other.backend, other.model_version) == ("onnx-cpu", "b")


class Challenger(FakeModelHandler):
    """Disagrees with the champion on purpose: "awful" reads 0.80 (below the 0.85 alert)."""

    @property
    def model_version(self) -> str:
        return "challenger-2"

    def run_inference(
        self, batch: Sequence[str], model: str, inference_args: Mapping[str, Any] | None = None
    ) -> list[PredictionResult]:
        results = super().run_inference(batch, model, inference_args)
        return [
            PredictionResult(
                r.example,
                TextScores(min(r.inference.sentiment_negative, 0.8), 0.0),
                self.model_version,
            )
            for r in results
        ]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def settle(shadow: ShadowScoring) -> None:
    while shadow._in_flight:
        await asyncio.sleep(0.01)


async def test_the_challenger_scores_the_same_texts_beside_the_champion(stages) -> None:  # noqa: F811
    challenger = Challenger()
    shadow = ShadowScoring(
        MicroBatcher(challenger, max_batch_size=8, max_wait_s=0.001),
        stages.recorder.send,
        stages.thresholds,
    )
    stages.shadow = shadow
    await shadow.start()
    before_disagree = sample(
        "riskstream_shadow_decisions_total",
        head="sentiment_negative",
        decision="alert",
        agree="false",
    )
    before_scored = sample("riskstream_shadow_scored_total")
    await edge(stages, [review("r1", "awful, broke"), b"{not json", review("r2", "fine")])
    await settle(shadow)
    await shadow.stop()
    shadowed = {r["event_id"]: r for r in stages.recorder.on(SHADOW_SCORES)}
    assert set(shadowed) == {"r1", "r2"}  # the dead letter has no text to compare
    for record in shadowed.values():
        validate(SHADOW_SCORES, record)
    r1 = shadowed["r1"]
    assert r1["champion"] == {
        "model_version": "fake-1",
        "precision": "fp32",
        "scores": scores(0.99, 0.0),
    }
    assert r1["challenger"]["model_version"] == "challenger-2"
    assert r1["challenger"]["scores"]["sentiment_negative"] == 0.8
    assert r1["comparison"]["sentiment_negative"]["alert_agrees"] is False
    assert shadowed["r2"]["comparison"]["sentiment_negative"]["alert_agrees"] is True
    # what every other output used is the champion's
    scored = {e["event_id"]: e for e in stages.recorder.on(SCORED_EVENTS)}
    assert scored["r1"]["scores"]["sentiment_negative"] == 0.99
    assert scored["r1"]["model_version"] == "fake-1"
    assert sample("riskstream_shadow_scored_total") - before_scored == 2
    disagree = sample(
        "riskstream_shadow_decisions_total",
        head="sentiment_negative",
        decision="alert",
        agree="false",
    )
    assert disagree - before_disagree == 1
    assert challenger.batches == [["awful, broke", "fine"]]


async def test_a_stuck_challenger_never_holds_the_champion_back(stages) -> None:  # noqa: F811
    """Its queue full, the challenger drops texts (counted) and the champion publishes all."""
    release = threading.Event()
    challenger = Challenger(block=release)
    batcher = MicroBatcher(challenger, max_batch_size=1, max_wait_s=0.0, max_pending=2)
    shadow = ShadowScoring(batcher, stages.recorder.send, stages.thresholds)
    stages.shadow = shadow
    await shadow.start()
    behind = sample("riskstream_shadow_dropped_total", reason="behind")
    texts = [review(f"r{i}", "fine") for i in range(6)]
    await asyncio.wait_for(edge(stages, texts), 5)  # the champion does not wait
    assert len(stages.recorder.on(SCORED_EVENTS)) == 6
    assert sample("riskstream_shadow_dropped_total", reason="behind") - behind == 4
    release.set()
    await settle(shadow)
    await shadow.stop()
    assert len(stages.recorder.on(SHADOW_SCORES)) == 2


async def test_a_failing_challenger_is_counted_and_the_champion_goes_on(stages) -> None:  # noqa: F811
    shadow = ShadowScoring(
        MicroBatcher(Challenger(fail_with=RuntimeError("boom")), max_batch_size=4, max_wait_s=0),
        stages.recorder.send,
        stages.thresholds,
    )
    stages.shadow = shadow
    await shadow.start()
    errors = sample("riskstream_shadow_dropped_total", reason="error")
    await edge(stages, [review("r1", "awful"), review("r2", "fine")])
    await settle(shadow)
    await shadow.stop()
    assert len(stages.recorder.on(SCORED_EVENTS)) == 2 and not stages.recorder.on(SHADOW_SCORES)
    assert sample("riskstream_shadow_dropped_total", reason="error") - errors == 2
    assert not stages.stopped


async def test_a_challenger_that_cannot_load_turns_shadow_off(stages) -> None:  # noqa: F811
    class Unloadable(Challenger):
        def load_model(self) -> str:
            raise FileNotFoundError("no such build in the model cache")

    shadow = ShadowScoring(
        MicroBatcher(Unloadable(), max_batch_size=4, max_wait_s=0),
        stages.recorder.send,
        stages.thresholds,
    )
    stages.shadow = shadow
    assert await shadow.start() is False
    await edge(stages, [review("r1", "awful")])
    assert len(stages.recorder.on(SCORED_EVENTS)) == 1 and not stages.recorder.on(SHADOW_SCORES)
    assert not stages.stopped


def decisions(decision: str, agree: str, value: float) -> str:
    labels = f'head="scam_risk",decision="{decision}",agree="{agree}"'
    return f"riskstream_shadow_decisions_total{{{labels}}} {value}"


def test_the_run_summary_reads_the_agreement_from_the_metrics_page() -> None:
    from stream.ops.live import parse_metrics, shadow_summary

    page = "\n".join(
        [
            "# TYPE riskstream_shadow_scored_total counter",
            "riskstream_shadow_scored_total 4.0",
            "# TYPE riskstream_shadow_dropped_total counter",
            'riskstream_shadow_dropped_total{reason="behind"} 1.0',
            'riskstream_shadow_dropped_total{reason="error"} 0.0',
            "# TYPE riskstream_shadow_decisions_total counter",
            decisions("alert", "true", 3),
            decisions("alert", "false", 1),
            decisions("label", "true", 4),
            "",
        ]
    )
    summary = shadow_summary(parse_metrics(page, 0.0))
    assert summary == {
        "compared": 4.0,
        "skipped": {"behind": 1.0},
        "agreement": {"scam_risk alert": 0.75, "scam_risk label": 1.0},
    }
    assert shadow_summary(parse_metrics("riskstream_shadow_scored_total 0.0\n", 0.0)) is None
