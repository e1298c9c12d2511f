"""The typed edge decoder (``stream.core.events.decode_input``) against the JSON Schema path it
replaced (``stream.core.codec.decode`` plus the known-field filter): same verdict, same dead-letter
reason and detail, same fields, for valid events, boundary values and broken bytes alike."""

from __future__ import annotations

import string

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.core.codec import ValidationError, decode
from stream.core.events import INPUT_EVENTS, MemberEvent, SubjectEvent, decode_input, edge_fields
from stream.core.policy import Pseudonymiser
from stream.core.steps import RawRecord, ValidEvent, decode_record, member_event
from stream.core.surge import subject_events

REVIEW = {
    "event_id": "r1",
    "member_id": "m1",
    "event_time": "2026-11-23T10:00:00Z",
    "product_id": "p1",
    "text": "fine",
}
CHAT = {
    "event_id": "c1",
    "member_id": "m1",
    "event_time": "2026-11-23T10:00:00Z",
    "conversation_id": "k1",
    "sender_role": "member",
    "text": "hello",
}
TRANSACTION = {
    "event_id": "t1",
    "member_id": "m1",
    "event_time": "2026-11-23T10:00:00+02:00",
    "amount": 10.5,
    "currency": "EUR",
    "merchant_id": "x",
    "channel": "web",
    "device_id": "d",
    "country": "DE",
}
BASE = {"reviews": REVIEW, "chats": CHAT, "transactions": TRANSACTION}


def reference(raw: bytes | None, topic: str) -> dict:
    """What the edge did before: orjson, the JSON Schema, then only the known fields."""
    data = decode(raw, topic)
    return {k: v for k, v in data.items() if k in edge_fields(topic)}


def outcome(fn, raw: bytes | None, topic: str) -> tuple[str, object]:
    try:
        return "ok", fn(raw, topic)
    except ValidationError as error:
        return error.reason, error.detail


def assert_same(raw: bytes | None, topic: str) -> None:
    new, old = outcome(decode_input, raw, topic), outcome(reference, raw, topic)
    assert new == old, raw
    if new[0] == "ok":  # same values, and the same JSON types but for floats
        for key, value in old[1].items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                assert type(new[1][key]) is type(value), key


#: Values near every bound of the three schemas, of the right type and of wrong ones.
NASTY = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        1,
        1.0,
        5,
        5.0,
        5.5,
        6,
        -1,
        -0.0,
        1e9,
        1e9 + 1,
        2**63,
        "",
        "x",
        "x" * 128,
        "x" * 129,
        "has space",
        "a@b.co",
        "EUR",
        "eur",
        "DE",
        "DEU",
        "web",
        "fax",
        "member",
        "agent",
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:00:00",
        "2026-11-23T10:00:00+0100" + "0" * 30,
        "x\n",
        [],
        [1.5] * 64,
        [1.5] * 65,
        [1, "2"],
        {},
        {"negative": True, "surge": "s1"},
        {"negative": 1},
        {"scam": "yes"},
        {"other": [1]},
    ]
)
FIELDS = sorted(
    {f for kind in INPUT_EVENTS.values() for f in kind.__struct_fields__} | {"extra", "rating"}
)


@st.composite
def bodies(draw) -> tuple[str, bytes]:
    topic = draw(st.sampled_from(sorted(BASE)))
    body = dict(BASE[topic])
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(FIELDS))
        if draw(st.integers(0, 4)) == 0:
            body.pop(field, None)
        else:
            body[field] = draw(NASTY | st.text(string.printable, max_size=12))
    raw = orjson.dumps(body)
    cut = draw(st.sampled_from([None, None, None, "cut", "splice"]))
    if cut == "cut":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif cut == "splice":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at:]
    return topic, raw


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies())
def test_same_verdict_reason_and_fields_as_the_schema_path(case: tuple[str, bytes]) -> None:
    assert_same(case[1], case[0])


@pytest.mark.parametrize(
    ("topic", "raw"),
    [
        ("reviews", None),
        ("reviews", b""),
        ("reviews", b"[1, 2]"),
        ("reviews", b"\xef\xbb\xbf" + orjson.dumps(REVIEW)),
        ("reviews", orjson.dumps(REVIEW)[:-1] + b',"x":"\xff"}'),  # bad UTF-8 in an extra
        ("reviews", orjson.dumps(REVIEW)[:-1] + b',"x":"\\ud800"}'),  # a lone surrogate
        ("reviews", orjson.dumps(REVIEW)[:-1] + b',"x":' + b"[" * 17 + b"]" * 17 + b"}"),
        ("reviews", orjson.dumps(REVIEW)[:-1] + b',"x":' + b"[" * 16 + b"]" * 16 + b"}"),
        ("reviews", orjson.dumps(REVIEW)[:-1] + b',"x":' + b"[" * 900 + b"]" * 900 + b"}"),
        ("reviews", orjson.dumps({**REVIEW, "text": "{[" * 20})),  # brackets in a string
        ("reviews", orjson.dumps({**REVIEW, "rating": 9})),
        ("reviews", orjson.dumps({**REVIEW, "rating": 5.0})),  # an integer, for JSON Schema
        ("reviews", orjson.dumps({**REVIEW, "schema_version": 1.0})),
        ("reviews", orjson.dumps({**REVIEW, "schema_version": True})),
        ("reviews", orjson.dumps({**REVIEW, "label": {"negative": True, "x": [1]}})),
        ("reviews", b'{"rating": "x", ' + orjson.dumps(REVIEW)[1:-1] + b', "rating": 2}'),
        ("reviews", orjson.dumps({**REVIEW, "text": "质量很差" * 100})),
        ("reviews", orjson.dumps({**REVIEW, "text": "x" * 20_001})),
        ("chats", orjson.dumps({**CHAT, "sender_role": "robot"})),
        ("chats", orjson.dumps({**CHAT, "label": {"scam": 1}})),
        ("transactions", orjson.dumps({**TRANSACTION, "amount": 10})),
        ("transactions", orjson.dumps({**TRANSACTION, "amount": True})),
        ("transactions", orjson.dumps({**TRANSACTION, "label": 1.0})),
        ("transactions", orjson.dumps({**TRANSACTION, "label": True})),
        ("transactions", orjson.dumps({**TRANSACTION, "features": [1] * 65})),
        ("transactions", orjson.dumps(TRANSACTION).replace(b"10.5", b"NaN")),
        ("transactions", orjson.dumps(TRANSACTION).replace(b"10.5", b"1e400")),
        ("transactions", b"7"),
    ],
)
def test_boundary_cases_agree(topic: str, raw: bytes | None) -> None:
    assert_same(raw, topic)


def test_the_schema_path_words_the_reason() -> None:
    with pytest.raises(ValidationError) as info:
        decode_input(orjson.dumps({**REVIEW, "rating": 9}), "reviews")
    assert info.value.reason == "schema_violation"
    assert info.value.detail == "rating: 9 is greater than the maximum of 5"


def test_only_the_known_fields_come_out_with_floats_for_numbers() -> None:
    out = decode_input(
        orjson.dumps({**TRANSACTION, "amount": 10, "x": 1, "label": 1}), "transactions"
    )
    assert out == {**TRANSACTION, "amount": 10.0}
    assert isinstance(out["amount"], float)


def test_a_double_overflow_in_an_unknown_field_passes() -> None:
    """The one known difference: ``msgspec`` skips an unknown field without reading its
    number as a double; ``orjson`` refused the whole record. The field is dropped anyway."""
    raw = orjson.dumps(REVIEW)[:-1] + b',"x":1e400}'
    assert decode_input(raw, "reviews") == REVIEW
    assert outcome(reference, raw, "reviews")[0] == "invalid_json"


@pytest.mark.parametrize("topic", sorted(BASE))
def test_what_the_edge_writes_decodes_as_the_internal_types(topic: str) -> None:
    body = {**BASE[topic], "product_id": "p1", "brand": "Call +33 1 42 68 53 00 or a@b.co"}
    if topic == "transactions":
        body = {**TRANSACTION, "member_id": "jane@example.com", "features": [0.5] * 28}
    key = Pseudonymiser(b"k" * 32)
    event = decode_record(
        RawRecord(topic, 0, 1, b"m1", orjson.dumps(body), None), pseudonymiser=key
    )
    assert isinstance(event, ValidEvent)
    scores = None if topic == "transactions" else {"sentiment_negative": 0.9}
    evt = member_event(event, scores, "v1" if scores else None)
    typed = msgspec.json.decode(orjson.dumps(evt), type=MemberEvent)
    assert msgspec.to_builtins(typed) == evt
    for mention in subject_events(evt, 0.5):
        msgspec.json.decode(orjson.dumps(mention), type=SubjectEvent)


@pytest.mark.parametrize("topic", sorted(BASE))
def test_a_trailing_newline_in_any_patterned_field_is_refused_like_the_schema_path(
    topic: str,
) -> None:
    """msgspec checks patterns with Python's ``re``, whose ``$`` matches before a final newline;
    such a value goes to the schema path, which reads patterns as ECMA-262 does."""
    from stream.core.events import _PATTERNED

    assert {"event_id", "member_id"} <= set(_PATTERNED[topic])
    for field in _PATTERNED[topic]:
        valid = {**BASE[topic], "product_id": "p1"}
        body = {**valid, field: valid[field] + "\n"}  # valid but for the newline
        raw = orjson.dumps(body)
        assert outcome(decode_input, raw, topic)[0] == "schema_violation", field
        assert_same(raw, topic)
