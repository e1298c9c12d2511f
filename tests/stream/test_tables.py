"""The tables' JSON-bytes view: what the stages read is what they wrote, and a changelog value
written by Faust's JSON codec before reads the same."""

from __future__ import annotations

import json

import pytest

from stream.worker.tables import JsonValues


def test_values_are_stored_as_json_bytes_and_read_back_as_written() -> None:
    raw: dict[str, object] = {}
    table = JsonValues(raw)
    state = {"member_id": "m1", "counts": {"review": 2}, "seen": "0aZ!", "spend": {}}
    table["m1"] = state
    assert isinstance(raw["m1"], bytes) and table["m1"] == state
    assert table.get("m1") == state and "m1" in table and len(table) == 1
    assert table.get("m2") is None and "m2" not in table
    del table["m1"]
    assert not raw


def test_a_value_written_by_fausts_json_codec_reads_the_same() -> None:
    state = {"member_id": "m1", "counts": {"review": 1}, "last_seen_ms": 1_795_428_000_000}
    table = JsonValues({"m1": json.dumps(state).encode()})
    assert table["m1"] == state
    assert dict(table.items()) == {"m1": state}


def test_a_missing_key_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        JsonValues({"m1": None})["m1"]


class KeysItCannotFind(dict):
    """Like a ``rocksdb://`` table: ``keys()`` lists a key that ``get`` does not find."""

    def get(self, key, default=None):
        return None if key == "standby" else super().get(key, default)


def test_items_reads_pairs_and_skips_keys_a_lookup_cannot_find() -> None:
    table = JsonValues(KeysItCannotFind({"m1": b'{"a":1}', "standby": b'{"b":2}', "gone": None}))
    assert dict(table.items()) == {"m1": {"a": 1}, "standby": {"b": 2}}
    assert table.get("standby") is None
