"""Which fields are masked, and e-mail-shaped ids: brand and ids reach no output raw."""

from __future__ import annotations

import orjson
import pytest

from stream.core.codec import ValidationError, load_schema, validate
from stream.core.pii import ID_FIELDS, TEXT_FIELDS, hashed_id, is_email_shaped, protect_ids
from stream.core.steps import (
    EVENT_TYPE_OF_TOPIC,
    InvalidEvent,
    RawRecord,
    ValidEvent,
    decode_record,
    member_event,
    scored_event,
)

ID_PATTERN = "^[A-Za-z0-9._:@-]+$"


@pytest.mark.parametrize(("topic", "event_type"), sorted(EVENT_TYPE_OF_TOPIC.items()))
def test_every_free_text_and_id_field_of_the_input_schemas_is_covered(topic, event_type) -> None:
    """A string field without pattern or enum is free text; one with the id pattern is an id.
    A new field in a schema fails here until it is classified in ``stream/core/pii.py``."""
    properties = load_schema(topic)["properties"]
    free_text, ids = set(), set()
    for name, spec in properties.items():
        if name in ("label", "event_time") or spec.get("type") != "string":
            continue  # label never passes the edge; event_time is parsed strictly
        if spec.get("pattern") == ID_PATTERN:
            ids.add(name)
        elif "pattern" not in spec and "enum" not in spec and "const" not in spec:
            free_text.add(name)
    assert free_text <= set(TEXT_FIELDS[event_type]), free_text
    assert {"brand", "text"} & set(properties) <= set(TEXT_FIELDS[event_type])
    assert ids == set(ID_FIELDS[event_type])


@pytest.mark.parametrize(
    ("value", "shaped"),
    [
        ("jane.doe@example.com", True),
        ("member:jane_doe@mail.example.co.uk", True),
        ("m1", False),
        ("ord-0500123", False),
        ("device@v2", False),  # an @ but no domain
        ("a@b", False),
        ("id-0123456789abcdef0123", False),
    ],
)
def test_email_shaped_ids(value: str, shaped: bool) -> None:
    assert is_email_shaped(value) is shaped


def test_protect_ids_hashes_stably_or_rejects() -> None:
    data = {"member_id": "jane.doe@example.com", "product_id": "p1", "text": "x@y.io"}
    hashed = protect_ids("review", data, "hash")
    assert hashed["member_id"] == hashed_id("jane.doe@example.com")
    assert hashed["member_id"].startswith("id-") and len(hashed["member_id"]) == 23
    assert hashed["product_id"] == "p1" and hashed["text"] == "x@y.io"  # text is not an id
    assert protect_ids("review", data, "hash") == hashed  # deterministic: joins still work
    assert data["member_id"] == "jane.doe@example.com"  # pure
    assert protect_ids("review", hashed, "hash") == hashed  # a hashed id stays as it is
    with pytest.raises(ValidationError) as rejected:
        protect_ids("review", data, "reject")
    assert rejected.value.reason == "schema_violation"
    assert "e-mail-shaped id" in rejected.value.detail
    assert "jane" not in rejected.value.detail
    with pytest.raises(ValueError):
        protect_ids("review", data, "keep")  # type: ignore[arg-type]


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
    assert event.member_id == (
        hashed_id(body["member_id"]) if "@" in body["member_id"] else body["member_id"]
    )


def test_brand_is_masked_like_text_and_kept_otherwise() -> None:
    event = decode("chats", CHAT)
    assert event.data["brand"] == "ACME [phone]"
    assert decode("chats", {**CHAT, "brand": "Bosch"}).data["brand"] == "Bosch"
    review = decode("reviews", REVIEW)
    assert review.data["brand"] == "Call [phone] or [email]"
    assert scored_event(member_event(review, {}, None))["subject"]["brand"] == review.data["brand"]


def test_amounts_and_plain_ids_pass_untouched() -> None:
    event = decode("transactions", {**TRANSACTION, "member_id": "m-0500123"})
    assert event.data["amount"] == 1234567.5
    assert event.data["member_id"] == "m-0500123"
    assert event.data["merchant_id"] == hashed_id("merchant@example.com")
    assert event.data["device_id"] == "dev-1"


def test_reject_policy_dead_letters_the_event() -> None:
    invalid = decode("reviews", REVIEW, email_shaped_ids="reject")
    assert isinstance(invalid, InvalidEvent)
    assert invalid.error.reason == "schema_violation"
    assert isinstance(decode("chats", {**CHAT, "conversation_id": "k1"}), ValidEvent)
    with pytest.raises(ValueError):  # a configuration error, raised before any record
        decode("chats", CHAT, email_shaped_ids="nope")


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
