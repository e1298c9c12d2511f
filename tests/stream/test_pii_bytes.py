"""Dead letters: original bytes masked in their own encoding, whatever it is."""

from __future__ import annotations

import base64
import hashlib
import time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.codec import ValidationError, encode, validate
from stream.core.pii import mask_pii_bytes
from stream.core.steps import InvalidEvent, RawRecord, dead_letter, decode_record

SECRETS = ("4111", "1111 1111", "jane", "example", "13800138000", "0013", "42 68 53")
RECORD = (
    '{"event_id": "e1", "member_id": "m1", "event_time": "2026-11-23T10:00:00Z", '
    '"product_id": "p1", "text": "退货! card 4111 1111 1111 1111, mail jane.doe@example.com, '
    '电话13800138000联系我 or +33 1 42 68 53 00; order ord-0500123 cost 1234567.5"}'
)
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be")


def assert_masked(text: str, *, exactly: bool = True) -> None:
    for secret in SECRETS:
        assert secret not in text, (secret, text)
    if exactly:  # not over-masked (bytes that are no text are masked aggressively)
        assert "ord-0500123" in text and "1234567.5" in text


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_record_in_any_unicode_encoding_is_masked_and_stays_in_it(encoding: str) -> None:
    raw = RECORD.encode(encoding)
    masked = mask_pii_bytes(raw)
    assert masked is not None
    text = masked.decode(encoding)  # same encoding, BOM (if any) kept
    assert masked[:2] == raw[:2]
    assert_masked(text)
    assert "[card]" in text and "[email]" in text and text.count("[phone]") == 2


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_dead_lettered_record_does_not_leak_in_any_encoding(encoding: str) -> None:
    key = "jane.doe@example.com".encode(encoding)
    record = RawRecord("reviews", 0, 7, key, RECORD.encode(encoding))
    invalid = decode_record(record)
    if encoding == "utf-8":  # a valid event: dead-letter it as a stage would
        invalid = InvalidEvent(
            record, ValidationError("processing_error", "member: boom"), "member"
        )
    assert isinstance(invalid, InvalidEvent)
    letter = dead_letter(invalid, failed_at="2026-11-23T10:00:01Z")
    validate("dead-letter", letter)
    assert_masked(base64.b64decode(letter["original_value_b64"]).decode(encoding))
    assert base64.b64decode(letter["original_key_b64"]).decode(encoding).endswith("[email]")


def test_utf8_that_starts_like_a_utf16_bom_is_still_masked() -> None:
    """Even-length, it decodes as UTF-16 LE (CJK-looking garbage), so the ASCII view is
    masked too; odd-length, it decodes as nothing."""
    for raw in (b"\xff\xfe" + RECORD.encode(), b"\xff\xfe " + RECORD.encode()):
        for policy in ("mask_digits", "drop"):
            masked = mask_pii_bytes(raw, undecodable=policy)
            if masked is not None:
                assert_masked(masked.decode("utf-8", "replace"), exactly=False)
        assert mask_pii_bytes(raw) is not None


def test_bytes_without_pii_come_back_unchanged() -> None:
    for encoding in ENCODINGS:
        raw = '{"text": "质量很差 ord-0500123 2026-11-23 $19.99"}'.encode(encoding)
        assert mask_pii_bytes(raw) == raw
    for raw in (b"\x00not json\xff", b"\x01" * 1000, bytes(range(256))[::3]):
        assert mask_pii_bytes(raw) == raw
    assert b"0123456789" not in mask_pii_bytes(bytes(range(256)))  # not text: 7+ digits go


def test_json_escapes_do_not_hide_pii() -> None:
    raw = b'{"text": "\\u0034111 1111 1111 1111 jane.doe\\u0040example.com", "x": "caf\\u00e9"}'
    masked = mask_pii_bytes(raw)
    assert b"1111" not in masked and b"jane" not in masked
    assert b"[card]" in masked and b"[email]" in masked
    assert mask_pii_bytes(b'{"x": "caf\\u00e9"}') == b'{"x": "caf\\u00e9"}'  # kept as it was


UNDECODABLE = [
    # UTF-16 LE cut at an odd length, and with a lone surrogate: no strict decoder takes them
    RECORD.encode("utf-16-le") + b"\x00",
    RECORD.encode("utf-16-le")[:200] + b"\x00\xd8" + RECORD.encode("utf-16-le")[200:],
    RECORD.encode("utf-16-be")[:200] + b"\xdc\x00" + RECORD.encode("utf-16-be")[200:] + b"\x00",
    # UTF-8 with stray bytes, Latin-1
    b"\xfd\xfe\xff" + RECORD.encode("utf-8"),
    "card 4111 1111 1111 1111 josé@example.com tel 13800138000 \xe9".encode("latin-1"),
]


@pytest.mark.parametrize("raw", UNDECODABLE)
def test_undecodable_bytes_are_masked_in_the_ascii_and_utf16_views(raw: bytes) -> None:
    masked = mask_pii_bytes(raw)
    assert masked is not None
    for encoding in ("latin-1", "utf-16-le", "utf-16-be"):
        view = masked.decode(encoding, "replace")
        for secret in ("4111", "1111", "jane", "josé", "13800138000", "42 68 53"):
            assert secret not in view, (encoding, secret)
    assert mask_pii_bytes(raw, undecodable="drop") is None


def test_drop_policy_keeps_no_undecodable_original_but_keeps_decodable_ones() -> None:
    raw = RECORD.encode("utf-16-le") + b"\x00"
    invalid = decode_record(RawRecord("reviews", 0, 7, b"m1", raw))
    letter = dead_letter(invalid, failed_at="2026-11-23T10:00:01Z", raw_dead_letters="drop")
    validate("dead-letter", letter)
    assert letter["original_value_b64"] is None
    assert letter["original_value_dropped"]["bytes"] == len(raw)
    assert letter["original_value_dropped"]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert base64.b64decode(letter["original_key_b64"]) == b"m1"  # text: masked, kept
    masked = dead_letter(invalid, failed_at="2026-11-23T10:00:01Z")  # default: "masked"
    assert b"4111" not in base64.b64decode(masked["original_value_b64"]).replace(b"\x00", b"")


def test_truncated_originals_do_not_leak_the_number_cut_in_half() -> None:
    value = ('{"text": "' + "x" * 100 + ' 4111 1111 1111 1111 more"}').encode("utf-16")
    cut = value.index("1111 1111 1111".encode("utf-16-le")) + 7  # mid-number, odd byte
    invalid = decode_record(RawRecord("reviews", 0, 7, None, value))
    letter = dead_letter(invalid, failed_at="2026-11-23T10:00:01Z", max_original_bytes=cut)
    kept = base64.b64decode(letter["original_value_b64"])
    assert letter["original_value_truncated"]["bytes"] == len(value)
    text = kept.decode("utf-16", "replace")
    assert "4111" not in text and text.endswith("[truncated]"), text
    # UTF-8 cut in the middle of a character still decodes as UTF-8 (not aggressively masked)
    utf8 = ('{"text": "质量很差 order 12345678 ' + "很" * 50 + '"}').encode()
    kept = mask_pii_bytes(utf8[:-5], truncated=True)
    assert kept is not None and b"12345678" in kept


def test_dead_letters_stay_under_the_producer_limit_and_masking_stays_linear() -> None:
    for value in (b"a@" * 32768, "a@".encode("utf-16-le") * 16384, b"1 " * 32768):
        started = time.perf_counter()
        invalid = decode_record(RawRecord("reviews", 0, 7, None, value))
        letter = dead_letter(invalid, failed_at="2026-11-23T10:00:01Z")
        assert len(encode(letter, "dead-letter", check=True)) < 1_048_576
        assert time.perf_counter() - started < 2.0
    started = time.perf_counter()
    assert mask_pii_bytes("y".encode("utf-16-le") * 35_000 + b"\x00") is not None
    assert mask_pii_bytes(b"\xff" + b"7" * 70_000) is not None
    assert time.perf_counter() - started < 2.0


texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
pii = st.sampled_from(
    ["4111 1111 1111 1111", "jane.doe@example.com", "13800138000", "+33 1 42 68 53 00"]
)


@settings(max_examples=200, deadline=None)
@given(texts, pii, texts, st.sampled_from(ENCODINGS), st.booleans())
def test_generated_records_in_any_encoding_do_not_leak(before, value, after, encoding, cut):
    raw = (before + " 电话 " + value + " " + after).encode(encoding)
    if cut:
        raw += b"\x00"  # undecodable in UTF-16/32: masked in the byte views
    masked = mask_pii_bytes(raw)
    assert masked is not None
    needle = "".join(c for c in value if c.isalnum())[:8]
    for view_encoding in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
        view = "".join(c for c in masked.decode(view_encoding, "ignore") if c.isalnum())
        if needle not in "".join(c for c in before + after if c.isalnum()):
            assert needle not in view, (view_encoding, raw, masked)


def test_utf16_json_record_is_still_dead_lettered_as_before() -> None:
    """UTF-16 input is not decoded as an event (events are UTF-8), only masked as a letter."""
    invalid = decode_record(
        RawRecord("reviews", 0, 7, None, orjson.dumps({}).decode().encode("utf-16"))
    )
    assert isinstance(invalid, InvalidEvent) and invalid.error.reason == "invalid_utf8"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_sealed_dead_letter_does_not_leak_in_any_encoding(encoding: str) -> None:
    """With a dead-letter key the originals are sealed, not masked: nothing of them is readable."""
    from stream.core.sealing import SealingKey, keyring, open_original

    key = SealingKey(bytes(range(32)))
    raw = RECORD.encode(encoding)
    record = RawRecord("reviews", 0, 7, "jane.doe@example.com".encode(encoding), raw)
    invalid = decode_record(record)
    if encoding == "utf-8":  # a valid event: dead-letter it as a stage would
        invalid = InvalidEvent(
            record, ValidationError("processing_error", "member: boom"), "member"
        )
    assert isinstance(invalid, InvalidEvent)
    letter = dead_letter(invalid, failed_at="2026-11-23T10:00:01Z", sealing_key=key)
    validate("dead-letter", letter)
    readable = {k: v for k, v in letter.items() if k != "sealed_original"}
    assert_masked(orjson.dumps(readable).decode(), exactly=False)
    assert open_original(letter, keyring([key])).value == raw
