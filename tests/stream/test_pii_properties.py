"""Generated PII (phone numbers of many regions and formats, Luhn-valid cards with separators,
e-mail addresses with IDN domains and @ look-alikes) is masked wherever it sits in a text,
CJK included; order ids, amounts and dates next to it are left alone."""

from __future__ import annotations

import string
from datetime import date, datetime, time

import phonenumbers
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from stream.core.pii import PHONE_REGIONS, luhn_valid, mask_pii

SETTINGS = settings(max_examples=300, deadline=None)

CJK = (
    "质量很差用了两天就坏了要求退货客服态度包装破损说明书缺页联系我电话邮箱謝謝お問い合わせ고객센터"
)
#: Filler without digits, "@", "+" or lowercase ASCII: whatever of those is in the output came
#: from the PII.
#: Words of 4+ consonants: no currency code ("EUR 4155552671" is an amount) and no word that
#: names an identifier ("ORDER 4155552671" is an order number).
words = st.text("BCDFGHJKLMNPQRSTVWXZ", min_size=4, max_size=8)
cjk_runs = st.text(CJK, min_size=1, max_size=8)
punctuation = st.sampled_from([" ", ", ", "! ", "? ", "。", "，", ": ", " - ", "（", "）"])  # noqa: RUF001


@st.composite
def filler(draw, *, cjk_adjacent: bool) -> str:
    """Some text; with ``cjk_adjacent`` it may end/start with CJK touching the value."""
    parts = draw(st.lists(st.one_of(words, cjk_runs, punctuation), max_size=6))
    text = "".join(parts)
    if cjk_adjacent:
        return text + draw(cjk_runs)
    return text + " "


@st.composite
def embedded(draw, value: str) -> str:
    cjk = draw(st.booleans())
    before = draw(filler(cjk_adjacent=cjk))
    after = draw(filler(cjk_adjacent=cjk))[::-1]  # CJK (or a space) first
    return before + value + after


# --- phone numbers ---------------------------------------------------------------------------

INTERNATIONAL_REGIONS = (
    *PHONE_REGIONS,
    *("JP", "KR", "IN", "BR", "AU", "RU", "ES", "IT", "NL", "SG", "MX", "ZA", "CH", "SE"),
)
TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
FORMATS = {
    "international": phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    "national": phonenumbers.PhoneNumberFormat.NATIONAL,
    "e164": phonenumbers.PhoneNumberFormat.E164,
}


@st.composite
def phone_numbers(draw) -> str:
    """A valid number of a region (its example number with the last digits redrawn), in
    INTERNATIONAL or E164 form, or NATIONAL for the default regions, sometimes with en dashes,
    dots or no-break spaces as separators."""
    form = draw(st.sampled_from(sorted(FORMATS)))
    regions = PHONE_REGIONS if form == "national" else INTERNATIONAL_REGIONS
    region = draw(st.sampled_from(regions))
    example = phonenumbers.example_number_for_type(region, draw(st.sampled_from(TYPES)))
    assume(example is not None)
    national = str(example.national_number)
    tail = draw(st.text("0123456789", min_size=3, max_size=3))
    number = phonenumbers.parse(f"+{example.country_code}{national[:-3]}{tail}")
    assume(phonenumbers.is_valid_number(number))
    text = phonenumbers.format_number(number, FORMATS[form])
    assume(sum(c.isdigit() for c in text) >= 8 or text.startswith("+"))
    separator = draw(st.sampled_from([None, "–", ".", "\u00a0", "-"]))  # noqa: RUF001
    if separator is not None and form != "e164":
        text = text[:4] + text[4:].replace(" ", separator).replace("-", separator)
    return text


@SETTINGS
@given(st.data())
def test_generated_phone_numbers_are_masked_in_any_text(data) -> None:
    phone = data.draw(phone_numbers())
    text = data.draw(embedded(phone))
    masked = mask_pii(text)
    leftover = masked.replace("[phone]", "").replace("[card]", "")
    assert not any(c.isdigit() for c in leftover), (text, masked)


# --- cards -----------------------------------------------------------------------------------


def with_check_digit(body: str) -> str:
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")


GROUPINGS = {
    13: [(4, 4, 5), (13,)],
    14: [(4, 6, 4), (14,)],
    15: [(4, 6, 5), (4, 4, 4, 3), (15,)],
    16: [(4, 4, 4, 4), (4, 4, 4, 4), (16,)],
    17: [(4, 4, 4, 5), (17,)],
    18: [(4, 4, 4, 6), (18,)],
    19: [(4, 4, 4, 4, 3), (19,)],
}


@st.composite
def card_numbers(draw) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    digits = with_check_digit(draw(st.sampled_from("3456")) + body[1:])
    grouping = draw(st.sampled_from(GROUPINGS[length]))
    parts, at = [], 0
    for size in grouping:
        parts.append(digits[at : at + size])
        at += size
    separators = st.sampled_from([" ", "  ", "   ", "-", " - ", "/", ".", "\u2013", "\u3000"])
    text = parts[0]
    for part in parts[1:]:
        text += draw(separators) + part  # one kind or mixed: any separator between groups
    return text


@SETTINGS
@given(st.data())
def test_generated_card_numbers_are_masked_in_any_text(data) -> None:
    card = data.draw(card_numbers())
    text = data.draw(embedded(card))
    masked = mask_pii(text)
    assert "[card]" in masked, (text, masked)
    assert not any(c.isdigit() for c in masked.replace("[card]", "")), (text, masked)


# --- e-mail addresses ------------------------------------------------------------------------

local_parts = st.text(string.ascii_lowercase + string.digits + "._%+-", min_size=1, max_size=20)
ascii_labels = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12)
idn_labels = st.one_of(
    st.text("abcdeéèüöäßñçøå", min_size=1, max_size=10),
    st.sampled_from(["例子", "公司名", "邮件", "例え", "예시", "пример"]),
)
tlds = st.sampled_from(["com", "de", "co.uk", "io", "公司", "中国", "рф", "xn--fiqs8s", "museum"])


@st.composite
def email_addresses(draw) -> tuple[str, str]:
    local = draw(local_parts)
    labels = draw(st.lists(st.one_of(ascii_labels, idn_labels), min_size=1, max_size=3))
    domain = ".".join([*labels, draw(tlds)])
    at = draw(st.sampled_from(["@", "\uff20", "\ufe6b"]))
    return local + at + domain, domain


@SETTINGS
@given(st.data())
def test_generated_email_addresses_are_masked_in_any_text(data) -> None:
    address, domain = data.draw(email_addresses())
    text = data.draw(embedded(address))
    masked = mask_pii(text)
    assert "[email]" in masked, (text, masked)
    leftover = masked.replace("[email]", "")
    assert not any(c in leftover for c in "@\uff20\ufe6b"), (text, masked)
    assert not any(c.islower() or c.isdigit() for c in leftover if c.isascii()), (text, masked)
    assert domain not in masked


# --- what must be left alone -----------------------------------------------------------------

order_ids = st.text("0123456789", min_size=7, max_size=7).map(lambda d: f"ord-{d}")
amounts = st.builds(
    lambda whole, cents, style: style.format(whole=whole, cents=cents),
    st.integers(0, 10**10 - 1),
    st.integers(0, 99),
    st.sampled_from(
        [
            "{whole}.{cents:02d}",
            "{whole}.{cents}",
            "${whole}.{cents:02d}",
            "€ {whole},{cents:02d}",
            "{whole:,}.{cents:02d}",
            "¥{whole}",
            "{whole} EUR",
            "USD {whole}",
            "{whole}元",
        ]
    ),
)
dates = st.builds(
    lambda day, moment, style: style.format(d=day, t=moment),
    st.dates(min_value=date(1990, 1, 1), max_value=date(2039, 12, 31)),
    st.times(),
    st.sampled_from(
        [
            "{d:%Y-%m-%d}",
            "{d:%Y-%m-%d}T{t:%H:%M:%S}Z",
            "{d:%Y/%m/%d} {t:%H:%M}",
            "{d:%d.%m.%Y}",
            "{d:%Y}",
            "{d:%Y}-{d:%Y}",
        ]
    ),
)


@SETTINGS
@given(st.data(), st.lists(st.one_of(order_ids, amounts, dates), min_size=1, max_size=4))
def test_order_ids_amounts_and_dates_are_left_alone(data, values) -> None:
    """Each value with some words or CJK between it and the next (two numbers with only a
    space between them can read as one phone number: ``01.01.2000 0.00`` is a valid FR one)."""
    text = ""
    for value in values:
        text += data.draw(filler(cjk_adjacent=data.draw(st.booleans())))
        text += data.draw(st.one_of(words, cjk_runs)) + " " + value + " "
    text += " ok"
    assert mask_pii(text) == text


def test_datetime_strategy_is_sane() -> None:
    """The date formats above render (guards the strategy, not the mask)."""
    style = "{d:%Y-%m-%d}T{t:%H:%M:%S}Z"
    assert style.format(d=datetime(2026, 11, 23), t=time(10)) == "2026-11-23T10:00:00Z"


#: Pieces of national ids and IBANs, glued in any order: the cues must see every match.
id_pieces = st.lists(
    st.one_of(
        st.text("0123456789", min_size=1, max_size=18),
        st.text("ABCDGJKNXZabx", min_size=1, max_size=3),
        st.sampled_from([" ", "-", "SSN", "ssn ", "Social security no. ", "IBAN", "GB", "DE"]),
    ),
    max_size=10,
).map("".join)


@SETTINGS
@given(id_pieces)
@example("id 11010519491231002X.")
@example("ssn: 123-45-6789")
@example("Social security no. 123456789")
@example("NI AB 12 34 56 C")
@example("IBANGB82WEST12345698765432")
def test_the_cues_tried_first_see_every_national_id_and_iban_match(text: str) -> None:
    """``_national_id_spans`` and ``_iban_spans`` try a cheaper pattern first and stop when
    it finds nothing: it must be found wherever the full patterns would match."""
    from stream.core import pii

    if any(p.search(text) for p in (pii._CN_ID, pii._SSN, pii._SSN_BARE, pii._UK_NINO)):
        assert pii._NATIONAL_ID_DIGITS.search(text) or pii._SSN_WORDS.search(text)
    if pii._IBAN.search(text):
        assert pii._IBAN_CUE.search(text)
