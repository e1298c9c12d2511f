"""The model registry's pure functions: promote, rollback, shadow and stop shadowing, the bounded
history, the codec, and the published schema saying what the typed record says."""

from __future__ import annotations

import msgspec
import orjson
import pytest

from stream.core.codec import load_schema, schema_dir, validate
from stream.core.registry import (
    MAX_HISTORY,
    RegistryError,
    RegistryRecord,
    decode_record,
    describe,
    encode_record,
    entry,
    fold,
    promote,
    record_key,
    rollback,
    shadow,
    stop_shadow,
)
from tests.schemas.test_schemas_match_types import schema_lines, type_lines

AT = "2026-11-23T10:15:00.000Z"
BUNDLE = {
    "model_version": "minilm-l6-adapted-aaaa",
    "base_version": "minilm-l6-student-0000",
    "route": "english",
    "thresholds": {"negative_review": 0.8, "scam_chat": None},
    "report": {"examples": 10},
}


def build(version: str, **extra) -> msgspec.Struct:
    return entry(version, by="ops", at=AT, why=f"try {version}", **extra)


def test_first_promotion_starts_the_route() -> None:
    record = promote(None, build("a", bundle=BUNDLE, report={"n": 1}), route="english")
    assert (record.route, record.seq, record.history) == ("english", 1, [])
    assert record.champion.model_version == "a" and record.champion.action == "promote"
    assert record.champion.bundle == BUNDLE


def test_a_first_promotion_needs_its_route() -> None:
    with pytest.raises(RegistryError, match="route"):
        promote(None, build("a"))


def test_promotion_pushes_the_champion_into_the_history_newest_first() -> None:
    record = promote(None, build("a"), route="english")
    record = promote(record, build("b"))
    record = promote(record, build("c"))
    assert record.seq == 3
    assert record.champion.model_version == "c"
    assert [e.model_version for e in record.history] == ["b", "a"]


def test_promoting_the_champion_again_is_refused() -> None:
    record = promote(None, build("a"), route="english")
    with pytest.raises(RegistryError, match="already the english champion"):
        promote(record, build("a"))


def test_a_record_of_another_route_is_refused() -> None:
    record = promote(None, build("a"), route="english")
    with pytest.raises(RegistryError, match="route"):
        promote(record, build("b"), route="multilingual")


def test_the_history_is_bounded() -> None:
    record = promote(None, build("v0"), route="multilingual")
    for i in range(1, MAX_HISTORY + 10):
        record = promote(record, build(f"v{i}"))
    assert len(record.history) == MAX_HISTORY
    assert record.history[0].model_version == f"v{MAX_HISTORY + 8}"  # the newest kept
    assert record.history[-1].model_version == "v9"  # the oldest ones dropped
    validate("model-registry", orjson.loads(encode_record(record)))


def test_rollback_restores_the_previous_champion_and_drops_it_from_history() -> None:
    record = promote(None, build("a", bundle=BUNDLE, report={"n": 1}), route="english")
    record = promote(record, build("b"))
    record = promote(record, build("c"))
    back = rollback(record, "oncall", "2026-11-24T00:00:00Z", "c raised false alerts")
    assert back.seq == 4 and back.champion.model_version == "b"
    assert (back.champion.action, back.champion.by) == ("rollback", "oncall")
    assert back.champion.why == "c raised false alerts"
    assert [e.model_version for e in back.history] == ["a"]
    again = rollback(back, "oncall", "2026-11-24T00:01:00Z", "b too")
    assert again.champion.model_version == "a" and again.history == []
    # the restored entry keeps what a worker needs to serve it
    assert again.champion.bundle == BUNDLE and again.champion.report == {"n": 1}
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        rollback(again, "oncall", AT, "no")


def test_rollback_without_a_record_is_refused_in_one_line() -> None:
    with pytest.raises(RegistryError) as caught:
        rollback(None, "oncall", AT, "why")
    assert "\n" not in str(caught.value)


def test_a_bad_entry_is_refused_where_it_is_made() -> None:
    with pytest.raises(RegistryError, match="bad registry entry"):
        entry("a", by="", at=AT, why="no name")
    with pytest.raises(RegistryError, match="bad registry entry"):
        entry("a", by="ops", at="yesterday", why="not RFC 3339")


def test_encode_decode_round_trip() -> None:
    record = promote(promote(None, build("a", bundle=BUNDLE), route="english"), build("b"))
    raw = encode_record(record)
    assert decode_record(raw) == record
    validate("model-registry", orjson.loads(raw))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'{"route": "english"}',
        b'{"route": "klingon", "seq": 1, "champion": {}, "history": []}',
        None,
    ],
)
def test_bad_bytes_raise_registry_error(raw: bytes | None) -> None:
    with pytest.raises(RegistryError):
        decode_record(raw)


def test_fold_keeps_the_latest_record_per_route_and_skips_bad_ones() -> None:
    first = promote(None, build("a"), route="english")
    second = promote(first, build("b"))
    registry: dict[str, RegistryRecord] = {}
    assert fold(registry, record_key("english"), encode_record(first)) is None
    assert fold(registry, record_key("english"), encode_record(second)) is None
    assert isinstance(fold(registry, record_key("english"), b"garbage"), RegistryError)
    assert isinstance(fold(registry, b"multilingual", encode_record(second)), RegistryError)
    assert registry["english"] == second and "multilingual" not in registry
    assert fold(registry, b"english", None) is None  # a tombstone forgets the route
    assert registry == {}


def test_describe_prints_one_line_per_entry() -> None:
    record = promote(promote(None, build("a"), route="english"), build("b"))
    lines = describe(record)
    assert len(lines) == 2 and lines[0].startswith("english champion #2: b")
    assert all("\n" not in line for line in lines)


def test_the_published_schema_matches_the_typed_record() -> None:
    assert schema_lines(load_schema("model-registry")) == type_lines(RegistryRecord)


def test_the_example_decodes_as_a_record() -> None:
    for path in (schema_dir() / "examples" / "model-registry" / "1").glob("*.json"):
        decode_record(path.read_bytes())


def test_shadow_sets_the_challenger_in_the_same_record() -> None:
    record = promote(None, build("a"), route="english")
    shadowed = shadow(record, build("b", bundle=BUNDLE), route="english")
    assert shadowed.seq == 2 and shadowed.champion == record.champion
    assert shadowed.history == record.history
    challenger = shadowed.challenger
    assert challenger is not None and challenger.model_version == "b"
    assert challenger.action == "shadow" and challenger.bundle == BUNDLE
    # another build replaces it
    again = shadow(shadowed, build("c"))
    assert again.seq == 3 and again.challenger.model_version == "c"
    raw = encode_record(again)
    assert decode_record(raw) == again
    validate("model-registry", orjson.loads(raw))


def test_shadow_is_refused_for_the_champion_the_challenger_or_no_record() -> None:
    record = promote(None, build("a"), route="english")
    with pytest.raises(RegistryError, match="is the english champion"):
        shadow(record, build("a"))
    with pytest.raises(RegistryError, match="already the english challenger"):
        shadow(shadow(record, build("b")), build("b"))
    with pytest.raises(RegistryError, match="route"):
        shadow(record, build("b"), route="multilingual")
    with pytest.raises(RegistryError) as caught:
        shadow(None, build("b"), route="english")
    assert "\n" not in str(caught.value)


def test_stop_shadow_clears_the_challenger() -> None:
    record = shadow(promote(None, build("a"), route="english"), build("b"))
    stopped = stop_shadow(record, "oncall", "2026-11-24T00:00:00Z", "b disagrees too often")
    assert stopped.seq == 3 and stopped.challenger is None
    assert stopped.champion == record.champion and stopped.history == record.history
    with pytest.raises(RegistryError, match="no challenger to stop"):
        stop_shadow(stopped, "oncall", AT, "again")
    with pytest.raises(RegistryError, match="no challenger to stop"):
        stop_shadow(None, "oncall", AT, "never")
    with pytest.raises(RegistryError, match="bad registry entry"):
        stop_shadow(record, "", AT, "no name")


def test_promoting_the_challenger_clears_it_and_another_build_leaves_it() -> None:
    record = shadow(promote(None, build("a"), route="english"), build("b"))
    other = promote(record, build("c"))
    assert other.challenger == record.challenger  # still shadowed against the new champion
    promoted = promote(other, build("b"))
    assert promoted.champion.model_version == "b" and promoted.challenger is None
    assert [e.model_version for e in promoted.history] == ["c", "a"]


def test_rolling_back_to_the_challenger_clears_it() -> None:
    record = promote(promote(None, build("a"), route="english"), build("b"))
    back = rollback(shadow(record, build("a")), "oncall", AT, "b was worse")
    assert back.champion.model_version == "a" and back.challenger is None
    kept = rollback(shadow(record, build("c")), "oncall", AT, "b was worse")
    assert kept.challenger.model_version == "c"


def test_a_record_without_a_challenger_field_still_decodes() -> None:
    record = promote(None, build("a"), route="english")
    old = orjson.loads(encode_record(record))
    old.pop("challenger")
    assert decode_record(orjson.dumps(old)) == record


def test_describe_names_the_challenger() -> None:
    record = shadow(promote(promote(None, build("a"), route="english"), build("b")), build("c"))
    lines = describe(record)
    assert lines[0].startswith("english champion #3: b")
    assert lines[1].startswith("english challenger: c (shadow by ops")
    assert lines[2].startswith("english earlier 1: a")
