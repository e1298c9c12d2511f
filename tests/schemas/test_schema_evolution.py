"""Schema evolution within v1 (README, Topics: "Evolving a schema"): a published v1 schema only
gains optional fields. ``tests/schemas/frozen/`` keeps each output schema as first published;
a v1 consumer coded against it must read what the worker writes today (old consumer, new
producer), and today's schema must accept every record written before (new consumer, old
producer). A breaking change needs a v2 topic instead."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
import pytest

from stream.core.codec import load_schema, schema_dir
from stream.core.member import member_step
from stream.core.rules import AlertThresholds

FROZEN = sorted((Path(__file__).parent / "frozen").glob("*.schema.json"))


def topic_of(path: Path) -> str:
    return path.name.split(".v1.")[0]


@pytest.mark.parametrize("path", FROZEN, ids=topic_of)
def test_only_optional_fields_were_added(path: Path) -> None:
    old, new = json.loads(path.read_text()), load_schema(topic_of(path))
    assert set(old["required"]) == set(new["required"]), "a field became required: v2"
    assert new.get("additionalProperties", True) is not False
    for name, spec in old["properties"].items():
        assert name in new["properties"], f"{name} removed: v2"
        kept = {k: v for k, v in spec.items() if k != "description"}
        now = {k: v for k, v in new["properties"][name].items() if k != "description"}
        assert kept == now, f"{name} changed type or bounds: v2"


@pytest.mark.parametrize("path", FROZEN, ids=topic_of)
def test_records_before_and_after_read_both_ways(path: Path) -> None:
    old, new = json.loads(path.read_text()), load_schema(topic_of(path))
    examples = sorted((schema_dir() / "examples" / topic_of(path) / "1").glob("*.json"))
    assert len(examples) >= 2, "keep an example written before the addition and one after"
    for example in examples:
        record = orjson.loads(example.read_bytes())
        jsonschema.validate(record, old)  # a consumer coded against v1 as first published
        jsonschema.validate(record, new)


class _NoFraud:
    def __call__(self, event):
        return None


def test_what_the_worker_writes_today_reads_with_the_first_v1() -> None:
    """The member stage's real outputs (with the added ``sentiment`` and ``sentiments``)."""
    frozen = {topic_of(p): json.loads(p.read_text()) for p in FROZEN}
    evt = {
        "event_type": "review",
        "event": {
            "event_id": "r1",
            "member_id": "p1-aaaaaaaaaaaaaaaaaaaaaaaaaa",
            "event_time": "2026-11-23T10:00:00Z",
            "product_id": "B000J0LSBG",
            "text": "meh",
        },
        "event_time_ms": 1_795_428_000_000,
        "scores": {"sentiment_negative": 0.5, "sentiment_polarity": 0.0, "scam_risk": 0.01},
        "model_version": "v1",
        "source": {"topic": "reviews", "partition": 0, "offset": 1},
        "input_timestamp_ms": None,
    }
    outcome = member_step(
        None, evt, thresholds=AlertThresholds(), profile_throttle_ms=0, fraud_scorer=_NoFraud()
    )
    written = {o.topic: orjson.loads(o.value) for o in outcome.outputs}
    assert written["scored-events"]["sentiment"] == "neutral"
    assert written["member-profiles"]["sentiments"] == {"negative": 0, "neutral": 1, "positive": 0}
    for topic, schema in frozen.items():
        jsonschema.validate(written[topic], schema)


def test_the_served_neutral_band_is_the_one_the_model_card_fitted() -> None:
    """RISKSTREAM_NEUTRAL_BAND's default and the band ``python -m models eval-domains`` fitted
    (3-class macro-F1 per domain in the model card) stay the same numbers."""
    from stream.config import Settings
    from stream.core.rules import NEUTRAL_BAND

    fitted = json.loads(
        (Path(__file__).parents[2] / "bench/results/eval-domains.json").read_text()
    )["neutral_band"]
    assert Settings.model_fields["neutral_band"].default == NEUTRAL_BAND
    assert (fitted["low"], fitted["high"]) == NEUTRAL_BAND
