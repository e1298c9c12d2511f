# ruff: noqa: RUF001, RUF002 (full-width signs and CJK punctuation are the point)
"""Planted PII for ``tests/stream/test_pii_planted.py``: every PII class in every field of every
input, each plant with a value of its own, so a raw find names exactly one (class, field, topic).

Values are made like the labelled corpus (``tests/stream/pii_corpus.py``: valid phone numbers
glued to letters and CJK, Luhn-valid cards, e-mails incl. full-width ``＠`` and IDN, Chinese
resident ids, SSNs, UK NI numbers, mod-97 IBANs), with fresh digits per plant from a fixed seed.

* :data:`TEMPLATES`: per class, how a value is written in free text (``context``) and as an id
  (``id_value``: the glued form when it fits the id pattern, else the value without spaces);
* :func:`plants`: one record per (template, input topic, field), otherwise valid, plus the
  fields of :data:`ENCODINGS` again in records with ``\\u`` escapes and in UTF-16;
* :func:`needles`: the forms a raw find is searched in (as planted, without separators, digits
  only, a phone's national number, an e-mail's local part and its punycode domain).
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import phonenumbers

from tests.stream.pii_corpus import cn_id_complete, iban_complete, luhn_complete, ni_number, ssn

EVENT_TIME = "2026-11-23T10:00:00Z"
#: A reference id with no PII in it: kept verbatim by the edge, so the scanner must find it on
#: scored-events (a control that the scan of the outputs reads what it should).
CANARY_PRODUCT = "SKU-CANARY-7Q4"
INPUTS = ("reviews", "chats", "transactions", "labels")


@dataclass(frozen=True)
class Value:
    cls: str
    template: str
    secret: str  # the PII as written, the exact thing that must not travel raw
    context: str  # a free-text rendering (sentence or glued)
    id_value: str  # as a whole id field


@dataclass(frozen=True)
class Plant:
    n: int
    value: Value
    topic: str  # logical input topic
    field: str  # schema property (dotted for nested), "<extra>" or "<key>"
    planted: str  # what went into the field (or the key)
    key: bytes | None
    record: bytes
    encoding: str = "utf-8"  # how the record was written: see ENCODINGS

    @property
    def where(self) -> str:
        suffix = "" if self.encoding == "utf-8" else f" [{self.encoding}]"
        return f"{self.topic}.{self.field}{suffix}"

    @property
    def event_id(self) -> str:
        return f"pii-{self.n:04d}"


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _letters(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("abcdefghijkmnpqrstuvwxyz") for _ in range(n))


def _phone_cn_call(rng: random.Random) -> Value:
    m = "138" + _digits(rng, 8)
    return Value("phone", "glued call+CN mobile", m, f"call{m}", f"call{m}")


def _phone_whatsapp(rng: random.Random) -> Value:
    m = "13" + rng.choice("5789") + _digits(rng, 8)
    return Value("phone", "glued WhatsApp+86", "+86" + m, f"WhatsApp+86{m}", "86" + m)


def _phone_uk_tel(rng: random.Random) -> Value:
    m = "07911" + _digits(rng, 6)
    return Value("phone", "glued tel+UK national", m, f"tel{m}", f"tel{m}")


def _phone_de_sentence(rng: random.Random) -> Value:
    d = _digits(rng, 8)
    secret = f"+49 30 {d[:4]} {d[4:]}"
    return Value(
        "phone",
        "DE international in a sentence",
        secret,
        f"Call me on {secret} after 6pm",
        "4930" + d,
    )


def _phone_cjk(rng: random.Random) -> Value:
    m = "139" + _digits(rng, 8)
    return Value("phone", "CN mobile glued to CJK", m, f"电话{m}联系我", m)


def _card_visa(rng: random.Random) -> Value:
    c = luhn_complete("4" + _digits(rng, 14))
    secret = " ".join(c[i : i + 4] for i in range(0, 16, 4))
    return Value(
        "card", "Visa grouped in a sentence", secret, f"my card is {secret}, charged twice", c
    )


def _card_amex(rng: random.Random) -> Value:
    c = luhn_complete("37" + _digits(rng, 12))
    secret = f"{c[:4]} {c[4:10]} {c[10:]}"
    return Value(
        "card", "Amex glued to words", secret, f"refund to{secret}please", secret.replace(" ", "-")
    )


def _card_mc_cjk(rng: random.Random) -> Value:
    c = luhn_complete("55" + _digits(rng, 13))
    secret = "-".join(c[i : i + 4] for i in range(0, 16, 4))
    return Value("card", "Mastercard dashed after CJK", secret, f"卡号{secret}，密码别问", secret)


def _email_ascii(rng: random.Random) -> Value:
    e = f"jane.doe.{_letters(rng, 5)}@example.com"
    return Value("email", "ASCII", e, f"mail {e} please", e)


def _email_fullwidth(rng: random.Random) -> Value:
    e = f"zhang.wei.{_letters(rng, 5)}＠163.com"
    return Value(
        "email", "full-width at sign", e, f"请联系{e}谢谢", unicodedata.normalize("NFKC", e)
    )


def _email_idn(rng: random.Random) -> Value:
    e = f"josé.{_letters(rng, 5)}@bücher.de"
    return Value("email", "IDN", e, f"<{e}>", e)  # not an id: dead-lettered as one


def _cn_id(rng: random.Random) -> Value:
    body = "110101" + f"{rng.randint(1950, 2004)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    x = cn_id_complete(body + _digits(rng, 3))
    return Value("national_id", "CN resident id", x, f"身份证号{x}", x)


def _ssn(rng: random.Random) -> Value:
    x = ssn(rng)
    return Value("national_id", "US SSN", x, f"my social is {x}", x)


def _ni(rng: random.Random) -> Value:
    x = ni_number(rng)
    secret = f"{x[:2]} {x[2:4]} {x[4:6]} {x[6:8]} {x[8]}"
    return Value("national_id", "UK NI number", secret, f"NI number {secret}", x)


def _iban_gb(rng: random.Random) -> Value:
    iban = iban_complete("GB", "WEST" + _digits(rng, 14))
    secret = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return Value("iban", "GB grouped", secret, f"IBAN {secret} thanks", iban)


def _iban_de(rng: random.Random) -> Value:
    iban = iban_complete("DE", _digits(rng, 18))
    return Value("iban", "DE glued to CJK", iban, f"请转账到{iban}", iban)


TEMPLATES: tuple[Callable[[random.Random], Value], ...] = (
    _phone_cn_call,
    _phone_whatsapp,
    _phone_uk_tel,
    _phone_de_sentence,
    _phone_cjk,
    _card_visa,
    _card_amex,
    _card_mc_cjk,
    _email_ascii,
    _email_fullwidth,
    _email_idn,
    _cn_id,
    _ssn,
    _ni,
    _iban_gb,
    _iban_de,
)

#: Every property of each input schema (nested ``label.surge``), an unknown field and the key.
FIELDS: dict[str, tuple[str, ...]] = {
    "reviews": (
        *("event_id", "member_id", "event_time", "schema_version", "product_id", "brand"),
        *("rating", "text", "label.surge", "<extra>", "<key>"),
    ),
    "chats": (
        *("event_id", "member_id", "event_time", "schema_version", "conversation_id"),
        *("sender_role", "product_id", "brand", "text", "label.surge", "<extra>", "<key>"),
    ),
    "transactions": (
        *("event_id", "member_id", "event_time", "schema_version", "amount", "currency"),
        *("merchant_id", "channel", "device_id", "country", "features", "label", "<extra>"),
        "<key>",
    ),
    "labels": (
        *("event_id", "head", "value", "labeller", "labelled_at", "note", "schema_version"),
        *("<extra>", "<key>"),
    ),
}
#: Fields planted a second time in records written another way: JSON with every non-ASCII
#: character and ``@`` as a ``\\uXXXX`` escape (as ``json.dumps`` writes non-ASCII), and the
#: JSON in UTF-16 (not UTF-8: dead-lettered with its bytes masked in their own encoding).
ENCODINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "escaped": {
        "reviews": ("text", "rating"),
        "chats": ("sender_role",),
        "transactions": ("device_id", "currency"),
        "labels": ("note", "labeller"),
    },
    "utf-16": {"reviews": ("text",), "chats": ("member_id",)},
}
#: Fields that take the value as a whole id; the others take it in a sentence or glued.
ID_FIELDS = {
    "event_id",
    "member_id",
    "product_id",
    "conversation_id",
    "merchant_id",
    "device_id",
    "labeller",
}
#: Where the masker (not a pseudonym or the schema) is what keeps the value out.
TEXT_FIELDS = {"text", "brand", "note", "label.surge", "<extra>"}


def base_event(topic: str, n: int) -> tuple[bytes | None, dict]:
    event_id, member = f"pii-{n:04d}", f"m-pii-{n:04d}"
    common = {"event_id": event_id, "member_id": member, "event_time": EVENT_TIME}
    if topic == "reviews":
        event = {
            **common,
            "product_id": CANARY_PRODUCT,
            "brand": "acme-tea",
            "rating": 2,
            "text": "The tea arrived stale and the box was crushed.",
            "label": {"negative": True, "surge": "surge-1"},
        }
    elif topic == "chats":
        event = {
            **common,
            "conversation_id": f"c-{n:04d}",
            "sender_role": "merchant",
            "product_id": CANARY_PRODUCT,
            "brand": "acme-tea",
            "text": "Hello, your parcel is on its way.",
            "label": {"scam": False, "negative": False, "surge": "surge-1"},
        }
    elif topic == "transactions":
        event = {
            **common,
            "amount": 42.5,
            "currency": "EUR",
            "merchant_id": "shop-1",
            "channel": "web",
            "device_id": "dev-1",
            "country": "DE",
            "features": [0.0] * 28,
            "label": 0,
        }
    else:
        event = {
            "event_id": event_id,
            "head": "sentiment",
            "value": "negative",
            "labeller": "analyst-7",
            "labelled_at": EVENT_TIME,
            "note": "checked by hand",
        }
        return f"{event_id}|sentiment".encode(), {**event, "schema_version": 1}
    return member.encode(), {**event, "schema_version": 1}


def _encode(event: dict, encoding: str) -> bytes:
    if encoding == "escaped":
        return json.dumps(event, ensure_ascii=True).replace("@", "\\u0040").encode()
    if encoding == "utf-16":
        return json.dumps(event, ensure_ascii=False).encode("utf-16")
    return orjson.dumps(event)


def _plant(topic: str, n: int, value: Value, field: str, encoding: str = "utf-8") -> Plant:
    key, event = base_event(topic, n)
    if field == "<key>":
        planted = value.context
        key = planted.encode()
    elif field in ID_FIELDS:
        planted = value.id_value
        event[field] = planted
        if field == "member_id":
            key = planted.encode()  # producers key by member id
        if topic == "labels" and field == "event_id":
            key = f"{planted}|sentiment".encode()  # the key must be event_id|head
    elif field == "label.surge":
        planted = value.context
        event["label"] = {**event["label"], "surge": planted}
    elif field == "<extra>":
        planted = value.context
        event["contact"] = planted
    elif field == "features":
        planted = value.context
        event["features"] = [0.1, planted]
    elif field in ("event_time", "labelled_at"):
        planted = f"{EVENT_TIME} {value.id_value}"
        event[field] = planted
    elif field == "text":
        planted = f"The parcel came late. {value.context} Thanks."
        event[field] = planted
    else:  # brand, note: free text; closed vocabularies and numbers: a string that fails them
        planted = value.context
        event[field] = planted
    return Plant(n, value, topic, field, planted, key, _encode(event, encoding), encoding)


def plants(seed: int = 2020) -> list[Plant]:
    rng = random.Random(seed)
    out: list[Plant] = []
    for topic in INPUTS:
        for field in FIELDS[topic]:
            for template in TEMPLATES:
                out.append(_plant(topic, len(out), template(rng), field))
    for encoding, fields in ENCODINGS.items():
        for topic, names in fields.items():
            for field in names:
                for template in TEMPLATES:
                    out.append(_plant(topic, len(out), template(rng), field, encoding))
    return out


# --------------------------------------------------------------------------------------------
# What is searched for.

#: Separators a value may be re-written with; a skeleton drops them (after NFKC and casefold).
SEPARATORS = re.compile(r"[\s\-./()+_\u00a0]")
MIN_NEEDLE = 8


def norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def skeleton(text: str) -> str:
    return SEPARATORS.sub("", norm(text))


def _phone_national(secret: str) -> str | None:
    try:
        number = phonenumbers.parse(norm(secret), "CN" if secret.startswith("13") else "GB")
    except phonenumbers.NumberParseException:
        return None
    return str(number.national_number)


def needles(secret: str, cls: str) -> list[tuple[str, str, str]]:
    """(form, where, string): ``where`` is "text" (normalised text) or "skel" (skeleton)."""
    found: list[tuple[str, str, str]] = [("as planted", "text", norm(secret))]
    if cls == "email":
        local, _, domain = norm(secret).replace("﹫", "@").partition("@")
        found.append(("normalised", "text", f"{local}@{domain}"))
        try:
            puny = domain.encode("idna").decode()
        except UnicodeError:
            puny = domain
        if puny != domain:
            found.append(("punycode domain", "text", f"{local}@{puny}"))
        found.append(("local part", "skel", skeleton(local)))
    else:
        found.append(("without separators", "skel", skeleton(secret)))
        digits = max(re.findall(r"\d+", skeleton(secret)), key=len)
        if digits != skeleton(secret) and len(digits) >= 9:
            found.append(("digits", "skel", digits))
        if cls == "phone":
            national = _phone_national(secret)
            if national:
                found.append(("national number", "skel", national))
    unique: dict[tuple[str, str], str] = {}
    for form, where, string in found:
        if len(string) >= MIN_NEEDLE and (where, string) not in unique:
            unique[(where, string)] = form
    return [(form, where, string) for (where, string), form in unique.items()]
