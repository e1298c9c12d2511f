"""PII masking: cards (Luhn), e-mails, phone numbers; text and raw bytes."""

from __future__ import annotations

import pytest

from stream.pii import luhn_valid, mask_pii, mask_pii_bytes
from stream.steps import EdgeLimits, RawRecord, dead_letter, decode_record


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pay to 4111 1111 1111 1111 now", "pay to [card] now"),
        ("card 5500-0000-0000-0004.", "card [card]."),
        ("mail bob.smith+x@example.co.uk!", "mail [email]!"),
        ("call +44 20 7946 0958 today", "call [phone] today"),
        ("call (555) 123-4567", "call [phone]"),
        ("I bought 3 packs of 12 for $19.99 on 2026-11-23", None),
        ("order 12345, zip 90210", None),
    ],
)
def test_mask_pii(text: str, expected: str | None) -> None:
    assert mask_pii(text) == (expected if expected is not None else text)


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")


def test_bytes_masking_survives_invalid_utf8() -> None:
    raw = b'\xff{"t": "4111111111111111 x@y.io"}'
    assert mask_pii_bytes(raw) == b'\xff{"t": "[card] [email]"}'


def test_decode_masks_text_and_dead_letters_mask_original_bytes() -> None:
    value = (
        b'{"event_id": "e1", "member_id": "m1", "event_time": "2026-11-23T10:00:00Z", '
        b'"product_id": "p1", "text": "my card 4111 1111 1111 1111 was charged twice"}'
    )
    event = decode_record(
        RawRecord("reviews", 0, 1, b"m1", value), limits=EdgeLimits(max_event_bytes=65536)
    )
    assert event.data["text"] == "my card [card] was charged twice"
    bad = decode_record(
        RawRecord("reviews", 0, 2, b"m1", value[:-1]), limits=EdgeLimits(max_event_bytes=65536)
    )
    letter = dead_letter(bad, failed_at="now")
    import base64

    assert b"4111" not in base64.b64decode(letter["original_value_b64"])
    assert b"[card]" in base64.b64decode(letter["original_value_b64"])


def test_masking_is_linear_on_long_runs_without_separators() -> None:
    """A 70 kB run of letters took 2.7 s with an unbounded e-mail pattern (quadratic)."""
    import time

    payload = b'{"pad": "' + b"y" * 70_000 + b'"}'
    started = time.perf_counter()
    assert mask_pii_bytes(payload) == payload
    assert mask_pii("x" * 20_000 + "@") == "x" * 20_000 + "@"
    assert time.perf_counter() - started < 0.5
