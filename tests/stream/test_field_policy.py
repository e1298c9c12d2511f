"""The field policy at the edge (``stream/core/policy.py``): every field of every input has a
class; identifiers are pseudonymised, references carrying PII pseudonymised or refused, free text
masked, so brand and ids reach no output raw."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from stream.core.codec import ValidationError, load_schema, validate
from stream.core.pii import pii_in_id
from stream.core.policy import (
    FIELD_POLICY,
    PSEUDONYM_PREFIX,
    Pseudonymiser,
    apply_policy,
    fields_of,
    policy_markdown,
)
from stream.core.steps import (
    InvalidEvent,
    RawRecord,
    ValidEvent,
    decode_record,
    member_event,
    scored_event,
)
from tests.fixtures import pseudonym

ROOT = Path(__file__).resolve().parents[2]
ID_PATTERN = "^[A-Za-z0-9._:@-]+$"
KEY = Pseudonymiser(b"k" * 32, "test")


@pytest.mark.parametrize("topic", sorted(FIELD_POLICY))
def test_every_field_of_every_input_schema_has_a_class(topic) -> None:
    """A new field in a schema fails here until the policy names its class; the classes agree
    with what the schema says of the field (an id pattern is an id, an enum a vocabulary)."""
    properties = load_schema(topic)["properties"]
    policy = FIELD_POLICY[topic]
    assert set(properties) == set(policy), set(properties) ^ set(policy)
    for name, spec in properties.items():
        cls = policy[name]
        if spec.get("pattern") in (ID_PATTERN, "^[A-Za-z0-9._:-]+$"):
            assert cls in ("identifier", "reference"), name
        elif "enum" in spec or "const" in spec or "pattern" in spec:
            assert cls in ("vocabulary", "dropped"), name
        elif spec.get("type") in ("number", "integer", "array"):
            assert cls == "number", name
        elif name != "label" and "string" in str(spec.get("type")):
            assert cls in ("text", "time"), name


def test_the_readme_table_is_the_policy() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- field-policy:start -->\n") + len("<!-- field-policy:start -->\n")
    end = readme.index("\n<!-- field-policy:end -->")
    assert readme[start:end] == policy_markdown(), "run: riskstream privacy policy --markdown"


def test_pseudonyms_are_keyed_stable_and_separate_per_field() -> None:
    a = KEY.pseudonym("member_id", "13812345678")
    assert a == KEY.pseudonym("member_id", "13812345678")  # joins and partitions still work
    assert re.fullmatch(PSEUDONYM_PREFIX + "[a-z2-7]{26}", a)
    assert a != Pseudonymiser(b"j" * 32).pseudonym("member_id", "13812345678")  # keyed
    assert a != KEY.pseudonym("device_id", "13812345678")  # a member does not link to a device
    assert pii_in_id(a) is None  # a pseudonym never reads as PII
    assert "k" * 32 not in repr(KEY)


def test_identifiers_always_become_pseudonyms_references_only_when_they_carry_pii() -> None:
    data = {
        "event_id": "e-1",
        "member_id": "m-1",
        "merchant_id": "shop@example.com",
        "device_id": "4111 1111 1111 1111".replace(" ", ""),
        "currency": "EUR",
    }
    out = apply_policy("transactions", data, KEY)
    assert out["member_id"] == KEY.pseudonym("member_id", "m-1")
    assert out["device_id"] == KEY.pseudonym("device_id", "4111111111111111")
    assert out["merchant_id"] == KEY.pseudonym("merchant_id", "shop@example.com")
    assert out["event_id"] == "e-1" and out["currency"] == "EUR"
    assert data["member_id"] == "m-1"  # pure
    with pytest.raises(ValidationError) as refused:
        apply_policy("transactions", data, KEY, "reject")
    assert refused.value.reason == "schema_violation"
    assert "merchant_id" in refused.value.detail and "[email]" in refused.value.detail
    assert "shop" not in refused.value.detail


def test_without_a_key_clean_ids_pass_and_ids_with_pii_are_refused() -> None:
    clean = {"event_id": "e-1", "member_id": "m-1", "product_id": "B001E4KFG0"}
    assert apply_policy("reviews", clean, None) == clean
    for field, value in [("member_id", "call13812345678"), ("product_id", "a@b.example")]:
        with pytest.raises(ValidationError) as refused:
            apply_policy("reviews", {**clean, field: value}, None)
        assert "no pseudonymisation key" in refused.value.detail and value not in str(refused.value)
    with pytest.raises(ValueError):  # a configuration error, raised before any record
        apply_policy("reviews", clean, KEY, "keep")  # type: ignore[arg-type]


@pytest.mark.parametrize("topic", sorted(FIELD_POLICY))
def test_text_and_identifier_fields_are_what_the_edge_treats(topic) -> None:
    assert set(fields_of(topic, "identifier")) <= {"member_id", "device_id"}
    if topic != "labels":
        assert "member_id" in fields_of(topic, "identifier")


REVIEW = {
    "event_id": "jane.doe@example.com:1",
    "member_id": "jane.doe@example.com",
    "event_time": "2026-11-23T10:00:00Z",
    "product_id": "shop@example.org",
    "brand": "Call 13800138000 or zhang.wei＠163.com",  # noqa: RUF001
    "text": "great, mail me at jane.doe@example.com",
}
CHAT = {
    "event_id": "c1",
    "member_id": "m1",
    "event_time": "2026-11-23T10:00:00Z",
    "conversation_id": "support@example.com",
    "sender_role": "merchant",
    "brand": "ACME +33 1 42 68 53 00",
    "text": "call me",
}
TRANSACTION = {
    "event_id": "t1",
    "member_id": "jane.doe@example.com",
    "event_time": "2026-11-23T10:00:00Z",
    "amount": 1234567.5,
    "currency": "EUR",
    "merchant_id": "merchant@example.com",
    "channel": "web",
    "device_id": "dev-1",
    "country": "FR",
}


def decode(topic: str, body: dict, **kwargs):
    kwargs.setdefault("pseudonymiser", KEY)
    return decode_record(RawRecord(topic, 0, 1, b"k", orjson.dumps(body)), **kwargs)


@pytest.mark.parametrize(
    ("topic", "body"), [("reviews", REVIEW), ("chats", CHAT), ("transactions", TRANSACTION)]
)
def test_no_email_phone_or_raw_id_reaches_scored_events_or_member_events(topic, body) -> None:
    event = decode(topic, body)
    assert isinstance(event, ValidEvent)
    member = member_event(event, {"sentiment_negative": 0.1}, "v1")
    scored = scored_event(member)
    validate("scored-events", scored)
    for published in (scored, member):
        text = orjson.dumps(published).decode()
        for secret in ("jane", "@", "13800138000", "42 68 53", "zhang", "shop", "support"):
            assert secret not in text, (secret, text)
    assert event.member_id == KEY.pseudonym("member_id", body["member_id"])
    assert event.partition_key == body["member_id"].encode()  # the producer's partitioning


def test_brand_is_masked_like_text_and_kept_otherwise() -> None:
    event = decode("chats", CHAT)
    assert event.data["brand"] == "ACME [phone]"
    assert decode("chats", {**CHAT, "brand": "Bosch"}).data["brand"] == "Bosch"
    review = decode("reviews", REVIEW)
    assert review.data["brand"] == "Call [phone] or [email]"
    assert scored_event(member_event(review, {}, None))["subject"]["brand"] == review.data["brand"]


def test_amounts_and_plain_ids_pass_untouched() -> None:
    event = decode("transactions", {**TRANSACTION, "merchant_id": "shop-0500123"})
    assert event.data["amount"] == 1234567.5
    assert event.data["merchant_id"] == "shop-0500123"
    assert event.data["event_id"] == "t1"
    assert decode("transactions", TRANSACTION).data["merchant_id"] == KEY.pseudonym(
        "merchant_id", "merchant@example.com"
    )


def test_reject_policy_dead_letters_the_event() -> None:
    invalid = decode("reviews", REVIEW, pii_in_ids="reject")
    assert isinstance(invalid, InvalidEvent)
    assert invalid.error.reason == "schema_violation"
    assert isinstance(decode("chats", {**CHAT, "conversation_id": "k1"}), ValidEvent)
    with pytest.raises(ValueError):  # a configuration error, raised before any record
        decode("chats", CHAT, pii_in_ids="nope")


def test_the_test_key_is_what_workers_in_tests_use() -> None:
    """``tests.fixtures.pseudonym`` names what a test worker publishes for a member."""
    from stream.config import Settings

    worker_key = Settings().pseudonymiser()
    assert worker_key is not None
    assert worker_key.pseudonym("member_id", "m-1") == pseudonym("member_id", "m-1")


def test_decode_stays_total_when_masking_fails(monkeypatch) -> None:
    """An exception inside the masker dead-letters the event (processing_error at the edge)
    without quoting the text it failed on."""
    import stream.core.steps

    def broken(text: str) -> str:
        raise RuntimeError(f"cannot mask {text}")

    monkeypatch.setattr(stream.core.steps, "mask_pii", broken)
    invalid = decode("reviews", REVIEW)
    assert isinstance(invalid, InvalidEvent)
    assert invalid.error.reason == "processing_error" and invalid.stage == "edge"
    assert "jane" not in invalid.error.detail and "RuntimeError" in invalid.error.detail


def test_a_label_whose_labeller_carries_pii_is_refused() -> None:
    from stream.core.labels import decode_label

    body = {
        "event_id": "e-1",
        "head": "scam",
        "value": "scam",
        "labeller": "analyst13812345678",
        "labelled_at": "2026-11-23T10:00:00Z",
    }
    with pytest.raises(ValidationError) as refused:
        decode_label(b"e-1|scam", orjson.dumps(body))
    assert "labeller" in refused.value.detail and "13812345678" not in refused.value.detail
    assert decode_label(b"e-1|scam", orjson.dumps({**body, "labeller": "analyst-7"}))


def test_privacy_commands(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from stream.core.sealing import load_key
    from stream.ops.cli import main

    runner = CliRunner()
    shown = runner.invoke(main, ["privacy", "pseudonym", "member_id", "m-1", "m-2"])
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines() == [
        f"m-1\t{pseudonym('member_id', 'm-1')}",
        f"m-2\t{pseudonym('member_id', 'm-2')}",
    ]
    key = tmp_path / "new.key"
    made = runner.invoke(main, ["privacy", "new-key", str(key)])
    assert made.exit_code == 0 and load_key(key).key_id in made.output
    before = key.read_bytes()
    again = runner.invoke(main, ["privacy", "new-key", str(key)])
    assert again.exit_code == 2 and key.read_bytes() == before  # never overwritten
    other = runner.invoke(main, ["privacy", "pseudonym", "device_id", "d", "--key-file", str(key)])
    assert other.output.split("\t")[1].strip() != pseudonym("device_id", "d")
    monkeypatch.setenv("RISKSTREAM_PSEUDONYM_KEY_FILE", "none")
    off = runner.invoke(main, ["privacy", "pseudonym", "member_id", "m-1"])
    assert off.exit_code == 2 and "none" in off.output
    monkeypatch.setenv("RISKSTREAM_PSEUDONYM_KEY_FILE", str(tmp_path / "typo.key"))
    typo = runner.invoke(main, ["privacy", "pseudonym", "member_id", "m-1"])
    assert typo.exit_code == 2 and "no such key file" in typo.output
    policy = runner.invoke(main, ["privacy", "policy", "--markdown"])
    assert policy.output.strip() == policy_markdown()


def test_the_default_key_is_made_once_and_reused(tmp_path, monkeypatch) -> None:
    """No key set: the first start makes <cache>/pseudonym.key (0600), later starts read it."""
    from stream.config import Settings

    monkeypatch.setenv("RISKSTREAM_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("RISKSTREAM_PSEUDONYM_KEY_FILE")
    first = Settings().pseudonymiser()
    assert (tmp_path / "pseudonym.key").stat().st_mode & 0o777 == 0o600
    second = Settings().pseudonymiser()
    assert first is not None and second is not None
    assert first.pseudonym("member_id", "m") == second.pseudonym("member_id", "m")


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("8613791733639", "[phone]"),  # +86 mobile written without its +
        ("447911123456", "[phone]"),
        ("call13812345678", "[phone]"),
        ("jane@example.com", "[email]"),
        ("B001E4KFG0", None),  # an ASIN
        ("order-7712345680", None),  # the id word says order
        ("1795428000000", None),  # epoch milliseconds: no valid number behind a +
        ("20261123101500123", None),  # 17 digits: no phone number
        ("mer-042", None),
        ("rev-4-000000123", None),  # a zero-padded sequence number
        ("m-13812345678", "[phone]"),  # a letter prefix is no id word
        ("dev-0791-112-3456", "[phone]"),  # grouped like a phone number
        ("4111-1111-1111-1111", "[card]"),
        ("3782-822463-10005", "[card]"),  # Amex, 4-6-5
        ("11010519491231002X", "[id]"),  # a Chinese resident id
        ("GB82WEST12345698765432", "[iban]"),
    ],
)
def test_an_id_carries_pii_when_a_long_digit_run_is_an_international_number(value, found):
    assert pii_in_id(value) == found


def test_dead_letter_details_and_keys_mask_quoted_values_and_ids_aggressively() -> None:
    from stream.core.pii import mask_detail, mask_id_bytes

    detail = "event_time: '2026-11-23 8613971637280' is not RFC 3339 (3600000 s ahead)"
    assert mask_detail(detail) == "event_time: '[digits]' is not RFC 3339 (3600000 s ahead)"
    assert mask_detail("rating: 'a@b' is not of type 'integer'") == (
        "rating: '[email]' is not of type 'integer'"
    )
    assert mask_id_bytes(b"8613791733639") == b"[phone]"  # valid behind a +
    assert mask_id_bytes(b"m-12345678") == b"m-[digits]"  # any 7+ digits in an id
    assert mask_id_bytes("m-12345678".encode("utf-16-le")) == "m-[digits]".encode("utf-16-le")
    assert mask_id_bytes(b"m-42") == b"m-42"
