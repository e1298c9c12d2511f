"""Sealed dead-letter originals (RISKSTREAM_DEAD_LETTER_KEY_FILE) and `riskstream dead-letter`."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from stream.config import SettingsError, load_settings
from stream.core.codec import ValidationError, schema_dir, validate
from stream.core.sealing import (
    SealingError,
    SealingKey,
    keyring,
    load_key,
    open_original,
    parse_key,
    redact_detail,
)
from stream.core.steps import InvalidEvent, RawRecord, dead_letter, decode_record
from stream.ops.dead_letter_cli import Letter, plan_replay, select, since_ms, summary_lines

FAILED_AT = "2026-11-23T10:00:01Z"
SECRETS = ("4111", "1111 1111", "jane", "example.com", "13800138000", "Jane Doe")
REVIEW = {
    "event_id": "e1",
    "member_id": "m1",
    "event_time": "2026-11-23T10:00:00Z",
    "product_id": "p1",
    "text": "card 4111 1111 1111 1111, mail jane.doe@example.com, 电话13800138000",
}


def new_key(tmp_path: Path, name: str = "key", *, as_hex: bool = False) -> Path:
    secret = os.urandom(32)
    path = tmp_path / name
    path.write_text((secret.hex() if as_hex else base64.b64encode(secret).decode()) + "\n")
    return path


def sealed_letter(
    key: SealingKey, value: bytes | None, *, raw_key: bytes | None = b"m1", offset: int = 7, **kw
) -> dict[str, Any]:
    invalid = decode_record(RawRecord("reviews", 1, offset, raw_key, value, 1_795_428_000_000))
    assert isinstance(invalid, InvalidEvent)
    return dead_letter(invalid, failed_at=FAILED_AT, sealing_key=key, **kw)


def readable_json(letter: dict[str, Any]) -> str:
    """The letter as JSON without the ciphertexts and nonces (random bytes in base64, where a
    four-character secret could turn up by chance)."""
    readable = copy.deepcopy(letter)
    for part in readable["sealed_original"].values():
        if isinstance(part, dict):
            part.pop("nonce_b64"), part.pop("ciphertext_b64")
    return orjson.dumps(readable).decode()


def test_sealing_round_trip_gives_the_exact_original_bytes(tmp_path: Path) -> None:
    key = load_key(new_key(tmp_path))
    value = orjson.dumps({**REVIEW, "rating": "five"})
    letter = sealed_letter(key, value, raw_key=b"jane.doe@example.com")
    validate("dead-letter", letter)
    assert letter["reason"] == "schema_violation"
    assert letter["original_key_b64"] is None and letter["original_value_b64"] is None
    sealed = letter["sealed_original"]
    assert sealed["alg"] == "AES-256-GCM" and sealed["key_id"] == key.key_id
    assert sealed["value"]["bytes"] == len(value)
    assert sealed["value"]["sha256"] == hashlib.sha256(value).hexdigest()
    assert "sha256" not in sealed["key"]  # keys are short and guessable
    opened = open_original(letter, keyring([key]))
    assert (opened.key, opened.value, opened.truncated) == (b"jane.doe@example.com", value, False)
    assert opened.detail == "rating: 'five' is not of type 'integer'"
    assert letter["detail"] == "rating: '…' is not of type 'integer'"


def test_a_null_key_and_a_tombstone_seal_as_null(tmp_path: Path) -> None:
    key = load_key(new_key(tmp_path))
    letter = sealed_letter(key, None, raw_key=None)
    validate("dead-letter", letter)
    assert letter["sealed_original"]["key"] is None and letter["sealed_original"]["value"] is None
    opened = open_original(letter, keyring([key]))
    assert opened.key is None and opened.value is None


def _flip(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _tamper_ciphertext(letter: dict) -> None:
    box = letter["sealed_original"]["value"]
    box["ciphertext_b64"] = _flip(box["ciphertext_b64"])


def _tamper_nonce(letter: dict) -> None:
    box = letter["sealed_original"]["value"]
    box["nonce_b64"] = _flip(box["nonce_b64"])


def _move_to_another_offset(letter: dict) -> None:
    letter["source"]["offset"] += 1


def _move_to_another_topic(letter: dict) -> None:
    letter["source"]["topic"] = "chats"


def _swap_key_and_value(letter: dict) -> None:
    sealed = letter["sealed_original"]
    sealed["key"], sealed["value"] = sealed["value"], sealed["key"]


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_ciphertext,
        _tamper_nonce,
        _move_to_another_offset,
        _move_to_another_topic,
        _swap_key_and_value,
    ],
)
def test_a_tampered_or_moved_sealed_original_does_not_open(tamper, tmp_path: Path) -> None:
    key = load_key(new_key(tmp_path))
    letter = sealed_letter(key, b"{not json, jane.doe@example.com")
    open_original(letter, keyring([key]))  # opens as it is
    tamper(letter)
    with pytest.raises(SealingError, match="does not open"):
        open_original(letter, keyring([key]))


def test_another_key_with_the_same_id_does_not_open(tmp_path: Path) -> None:
    key, other = load_key(new_key(tmp_path)), load_key(new_key(tmp_path, "other"))
    letter = sealed_letter(key, b"{not json")
    with pytest.raises(SealingError, match="does not open"):
        open_original(letter, {key.key_id: other})


@pytest.mark.parametrize(
    "value",
    [
        # invalid JSON (a truncated record)
        orjson.dumps(REVIEW)[:-3],
        # UTF-16 (not UTF-8: invalid_utf8), with and without a stray byte
        orjson.dumps(REVIEW).decode().encode("utf-16"),
        orjson.dumps(REVIEW).decode().encode("utf-16-le") + b"\x00",
        # a schema violation that quotes the value (a name the masker cannot know is one)
        orjson.dumps({**REVIEW, "rating": "Jane Doe, 4111 1111 1111 1111, jane.doe@example.com"}),
    ],
    ids=["invalid-json", "utf-16", "utf-16-odd", "schema-quotes-value"],
)
def test_planted_pii_never_appears_in_a_sealed_dead_letter(value: bytes, tmp_path: Path) -> None:
    key = load_key(new_key(tmp_path))
    letter = sealed_letter(key, value, raw_key="jane.doe@example.com".encode("utf-16"))
    validate("dead-letter", letter)
    text = readable_json(letter)
    for secret in SECRETS:
        assert secret not in text, (secret, text)
    assert base64.b64encode(value[:12]).decode()[:12] not in orjson.dumps(letter).decode()
    assert open_original(letter, keyring([key])).value == value


def test_key_rotation_opens_records_under_either_key_file(tmp_path: Path) -> None:
    old, new = new_key(tmp_path, "old"), new_key(tmp_path, "new", as_hex=True)
    letters = [
        sealed_letter(load_key(old), b"{old", offset=1),
        sealed_letter(load_key(new), b"{new", offset=2),
    ]
    both = keyring([load_key(old), load_key(new)])
    assert [open_original(letter, both).value for letter in letters] == [b"{old", b"{new"]
    only_new = keyring([load_key(new)])
    with pytest.raises(SealingError, match=f"key id {load_key(old).key_id} has no key file"):
        open_original(letters[0], only_new)
    plan = plan_replay([Letter((0, i), letter) for i, letter in enumerate(letters)], only_new)
    assert plan.send == [("reviews", b"m1", b"{new")]
    assert plan.skipped == [("reviews[1]@1", f"key id {load_key(old).key_id} has no key file")]


@pytest.mark.parametrize(
    "text", ["", "short", base64.b64encode(os.urandom(16)).decode(), "zz" * 32]
)
def test_a_key_file_that_is_no_32_byte_key_is_refused(text: str) -> None:
    with pytest.raises(SealingError, match="not a dead-letter key"):
        parse_key(text, "k")


def test_the_setting_names_the_variable_when_the_key_file_is_bad(
    tmp_path: Path, monkeypatch
) -> None:
    bad = tmp_path / "bad"
    bad.write_text("not a key")
    monkeypatch.setenv("RISKSTREAM_DEAD_LETTER_KEY_FILE", str(bad))
    with pytest.raises(SettingsError, match=r"RISKSTREAM_DEAD_LETTER_KEY_FILE=.*not a dead-letter"):
        load_settings()
    good = new_key(tmp_path)
    monkeypatch.setenv("RISKSTREAM_DEAD_LETTER_KEY_FILE", str(good))
    assert load_settings().dead_letter_key_file == good
    monkeypatch.setenv("RISKSTREAM_DEAD_LETTER_KEY_FILE", "none")
    assert load_settings().dead_letter_key_file is None


def test_oversized_originals_keep_the_cap_and_are_not_replayed(tmp_path: Path) -> None:
    key = load_key(new_key(tmp_path))
    value = b"{" + b"x" * 5000
    letter = sealed_letter(key, value, max_original_bytes=1024)
    validate("dead-letter", letter)
    assert letter["original_value_truncated"] == {
        "bytes": 5001,
        "sha256": hashlib.sha256(value).hexdigest(),
    }
    assert letter["sealed_original"]["value"]["truncated"] is True
    opened = open_original(letter, keyring([key]))
    assert opened.value == value[:1024] and opened.truncated
    plan = plan_replay([Letter((0, 0), letter)], keyring([key]))
    assert plan.send == [] and "only a prefix" in plan.skipped[0][1]


def test_replay_plan_dedupes_and_skips_what_it_cannot_replay(tmp_path: Path) -> None:
    key = load_key(new_key(tmp_path))
    sealed = sealed_letter(key, b"{bad", offset=3)
    masked = dead_letter(
        InvalidEvent(RawRecord("chats", 0, 4, b"m", b"{x"), ValidationError("invalid_json", "x")),
        failed_at=FAILED_AT,
    )
    internal = dead_letter(
        InvalidEvent(
            RawRecord("riskstream-member-events", 0, 5, b"m", b"{}"),
            ValidationError("processing_error", "member: boom"),
            "member",
        ),
        failed_at=FAILED_AT,
        sealing_key=key,
    )
    letters = [
        Letter((0, 0), sealed),
        Letter((0, 1), sealed),  # a redelivery dead-lettered twice
        Letter((0, 2), masked),
        Letter((0, 3), internal),
        Letter((0, 4), None),
    ]
    plan = plan_replay(letters, keyring([key]))
    assert plan.send == [("reviews", b"m1", b"{bad")]
    assert plan.skip_counts == {
        "not sealed (a masked copy is not the original)": 1,
        "source topic riskstream-member-events is not an input topic": 1,
        "not a dead letter": 1,
    }
    assert select(letters, reason="processing_error") == [letters[3]]
    assert select(letters, source_topic="chats") == [letters[2]]


def test_list_lines_count_per_reason_and_topic_and_show_the_newest(tmp_path: Path) -> None:
    key = load_key(new_key(tmp_path))
    letters = [
        Letter((0, 0), sealed_letter(key, b"{bad", offset=1)),
        Letter((0, 1), sealed_letter(key, orjson.dumps({**REVIEW, "rating": "x"}), offset=2)),
    ]
    lines = summary_lines(letters, newest=1)
    assert lines[0] == "2 dead letters (2 sealed, 0 masked)"
    assert lines[1] in (
        "by reason: invalid_json 1, schema_violation 1",
        "by reason: schema_violation 1, invalid_json 1",
    )
    assert lines[2] == "by source topic: reviews 2"
    assert lines[3] == "newest 1:"
    assert lines[4].startswith(f"  {FAILED_AT} ") and len(lines) == 5
    now = 1_795_428_000_000
    assert since_ms("30m", now) == now - 1_800_000
    assert since_ms("2026-11-23T10:00:00Z", now) == now


def test_redacted_detail_keeps_type_names_and_counts() -> None:
    assert redact_detail("x: 'a@b.c' is not of type 'string'") == "x: '…' is not of type 'string'"
    detail = "'utf-8' codec can't decode byte 0xff in position 3: invalid start byte"
    assert redact_detail(detail) == detail


def test_the_sealed_example_opens_with_its_documented_key() -> None:
    example = orjson.loads((schema_dir() / "examples/dead-letter/1/4.json").read_bytes())
    key = SealingKey(bytes(range(32)), "example")  # the example's key: 00 01 ... 1f
    opened = open_original(example, keyring([key]))
    assert opened.key == b"m-1042" and orjson.loads(opened.value)["rating"] == "five"


def test_replay_without_a_key_or_with_a_bad_one_is_a_one_line_usage_error(
    tmp_path: Path,
) -> None:
    from stream.ops.cli import main

    env = {"KAFKA_BROKER": "kafka://127.0.0.1:1", "RISKSTREAM_DEAD_LETTER_KEY_FILE": None}
    runner = CliRunner()
    no_key = runner.invoke(main, ["dead-letter", "replay", "--dry-run"], env=env)
    assert no_key.exit_code == 2 and "no key" in no_key.output
    bad = tmp_path / "bad"
    bad.write_text("nope")
    refused = runner.invoke(main, ["dead-letter", "replay", "--key-file", str(bad)], env=env)
    assert refused.exit_code == 2 and "not a dead-letter key" in refused.output
    assert len(refused.output.strip().splitlines()) == 1


@pytest.mark.integration
def test_a_worker_seals_a_dead_letter_and_replay_reproduces_the_original(
    kafka_broker, make_worker, topic_prefix, tmp_path: Path
) -> None:
    from stream.ops.cli import main
    from tests.kafka_io import collect, produce

    key_file = new_key(tmp_path)
    bad = orjson.dumps({**REVIEW, "event_id": "dl-1", "rating": "jane.doe@example.com"})
    dead_topic, reviews = topic_prefix + "dead-letter", topic_prefix + "reviews"

    async def start_and_produce() -> Any:
        worker = await make_worker(
            RISKSTREAM_DEAD_LETTER_KEY_FILE=str(key_file), RISKSTREAM_BACKEND="stub"
        )
        await produce(kafka_broker.bootstrap, [(reviews, b"m-dl", bad)])
        found = await collect(
            kafka_broker.bootstrap,
            [dead_topic],
            lambda f: len(f[dead_topic]) >= 1,
            timeout_s=90,
            alive=worker.alive,
        )
        return worker, found

    worker, found = asyncio.run(start_and_produce())
    assert found[dead_topic], worker.log_tail()
    letter = orjson.loads(found[dead_topic][0].value)
    assert letter["reason"] == "schema_violation" and letter["original_value_b64"] is None
    assert letter["sealed_original"]["key_id"] == load_key(key_file).key_id
    assert b"jane" not in found[dead_topic][0].value

    env = {
        "KAFKA_BROKER": kafka_broker.url,
        "RISKSTREAM_TOPIC_PREFIX": topic_prefix,
        "RISKSTREAM_DEAD_LETTER_KEY_FILE": None,
    }
    runner = CliRunner()
    listed = runner.invoke(main, ["dead-letter", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "by reason: schema_violation 1" in listed.output
    args = ["dead-letter", "replay", "--key-file", str(key_file), "--source-topic", "reviews"]
    dry = runner.invoke(main, [*args, "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert f"would re-produce 1 (1 to {reviews})" in dry.output
    other = new_key(tmp_path, "other")
    refused = runner.invoke(main, ["dead-letter", "replay", "--key-file", str(other)], env=env)
    assert refused.exit_code == 0 and "has no key file" in refused.output
    assert "re-produced 0" in refused.output and "skipped 1 (key id" in refused.output
    done = runner.invoke(main, args, env=env)
    assert done.exit_code == 0, done.output
    assert f"re-produced 1 (1 to {reviews})" in done.output

    back = asyncio.run(
        collect(kafka_broker.bootstrap, [reviews], lambda f: len(f[reviews]) >= 2, timeout_s=30)
    )
    assert [(m.key, m.value) for m in back[reviews]] == [(b"m-dl", bad)] * 2
