"""The published JSON Schemas and the typed records of ``stream/core/events.py`` say the same thing.

The schemas stay hand-written (descriptions, readable layout); this test reduces each schema and
``msgspec.json.schema(Type)`` to a set of lines, one per property path, with the constraints
that decide validity (type, bounds, lengths, pattern, enum, items) and ``?`` for an optional
field, then compares the sets. Annotations (titles, descriptions) are ignored; a keyword the
reduction does not know fails the test rather than being skipped silently."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from stream.core.codec import TOPICS, load_schema, schema_dir
from stream.core.events import TOPIC_TYPES, Review

#: Keywords that do not change what is valid.
ANNOTATIONS = frozenset(
    {"$schema", "$id", "$defs", "$comment", "title", "description", "examples", "default"}
    | {"contentEncoding", "discriminator"}
)
#: The validation keywords each JSON type takes.
KEYWORDS = {
    "string": ("minLength", "maxLength", "pattern"),
    "integer": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
    "array": ("items", "minItems", "maxItems", "uniqueItems"),
    "object": ("properties", "required", "additionalProperties"),
    "boolean": (),
    "null": (),
}
STRUCTURAL = frozenset({"type", "enum", "const", "anyOf", "oneOf", "$ref"})
KNOWN = ANNOTATIONS | STRUCTURAL | {k for keys in KEYWORDS.values() for k in keys}

Alternatives = list[dict[str, Any]]


def normal(node: dict[str, Any], root: dict[str, Any]) -> Alternatives:
    """``node`` as a list of alternatives (a union), each a dict of the keywords that matter,
    with ``$ref`` resolved, ``const`` as a one-value ``enum``, ``type: [a, b]`` and
    ``anyOf``/``oneOf`` as alternatives, and properties beside a union merged into each."""
    unknown = set(node) - KNOWN
    assert not unknown, f"keywords this comparison does not understand: {sorted(unknown)}"
    node = {k: v for k, v in node.items() if k not in ANNOTATIONS}
    if "$ref" in node:
        ref = node.pop("$ref")
        assert ref.startswith("#/$defs/") and not node, ref
        return normal(root["$defs"][ref.removeprefix("#/$defs/")], root)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    union = node.pop("anyOf", None) or node.pop("oneOf", None)
    if union is not None:
        bases = normal(node, root) if node else [{}]
        return _sorted([merge(b, a) for b in bases for u in union for a in normal(u, root)])
    if "enum" in node:
        assert set(node) == {"enum"}, node
        return [{"enum": sorted(json.dumps(v) for v in node["enum"])}]
    types = node.pop("type", None)
    if types is None:  # a fragment beside a union: only object keywords
        return [_object_keywords(node, root)]
    alternatives = []
    for kind in [types] if isinstance(types, str) else types:
        alt: dict[str, Any] = {"type": kind}
        if kind == "object":
            alt |= _object_keywords(node, root)
        elif kind == "array":
            alt |= {k: node[k] for k in ("minItems", "maxItems", "uniqueItems") if k in node}
            alt["items"] = normal(node["items"], root) if "items" in node else [{}]
        else:
            # bounds as floats: 0 and 0.0 are the same bound
            alt |= {k: float(v) if kind in ("integer", "number") else v for k, v in node.items()}
            alt = {k: v for k, v in alt.items() if k == "type" or k in KEYWORDS[kind]}
        alternatives.append(alt)
    return _sorted(alternatives)


def _object_keywords(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "properties": {k: normal(v, root) for k, v in node.get("properties", {}).items()},
        "required": sorted(node.get("required", [])),
    }
    extra = node.get("additionalProperties", True)
    if extra is not True:  # absent and true are the same
        out["additionalProperties"] = extra if extra is False else normal(extra, root)
    return out


def merge(base: dict[str, Any], alt: dict[str, Any]) -> dict[str, Any]:
    """Both at once: the union of properties and required fields; a property in both is the
    narrower of the two (a bare ``{}``, or an enum that holds the other's values)."""
    out = {**base, **{k: v for k, v in alt.items() if k not in ("properties", "required")}}
    properties = dict(base.get("properties", {}))
    for name, spec in alt.get("properties", {}).items():
        properties[name] = narrower(properties[name], spec) if name in properties else spec
    out["properties"] = properties
    out["required"] = sorted(set(base.get("required", [])) | set(alt.get("required", [])))
    return out


def narrower(a: Alternatives, b: Alternatives) -> Alternatives:
    if a == [{"properties": {}, "required": []}] or a == [{}]:
        return b
    if b == [{"properties": {}, "required": []}] or b == [{}]:
        return a
    if len(a) == len(b) == 1 and "enum" in a[0] and "enum" in b[0]:
        assert set(b[0]["enum"]) <= set(a[0]["enum"]), (a, b)
        return b
    assert a == b, f"cannot intersect {a} and {b}"
    return a


def _sorted(alternatives: Alternatives) -> Alternatives:
    unique = {json.dumps(a, sort_keys=True): a for a in alternatives}
    return [unique[k] for k in sorted(unique)]


def lines(alternatives: Alternatives, path: str = "$") -> set[str]:
    """One line per path and alternative: its constraints; ``?`` marks an optional field.
    Alternatives of a tagged union are named by their ``event_type``."""
    out: set[str] = set()
    for i, alt in enumerate(alternatives):
        here = path if len(alternatives) == 1 else f"{path}<{_name(alt, i)}>"
        own = {k: v for k, v in alt.items() if k not in ("properties", "items")}
        own.pop("required", None)
        if isinstance(own.get("additionalProperties"), list):
            out |= lines(own.pop("additionalProperties"), f"{here}.*")
        out.add(f"{here}: {json.dumps(own, sort_keys=True)}")
        for name, spec in alt.get("properties", {}).items():
            optional = "" if name in alt.get("required", []) else "?"
            out |= lines(spec, f"{here}.{name}{optional}")
        if "items" in alt:
            out |= lines(alt["items"], f"{here}[]")
    return out


def _name(alt: dict[str, Any], index: int) -> str:
    tag = alt.get("properties", {}).get("event_type", [{}])
    return tag[0]["enum"][0].strip('"') if len(tag) == 1 and "enum" in tag[0] else str(index)


def schema_lines(schema: dict[str, Any]) -> set[str]:
    return lines(normal(schema, schema))


def type_lines(kind: Any) -> set[str]:
    return schema_lines(msgspec.json.schema(kind))


@pytest.mark.parametrize("topic", sorted(TOPIC_TYPES))
def test_published_schema_matches_the_typed_record(topic: str) -> None:
    published, typed = schema_lines(load_schema(topic)), type_lines(TOPIC_TYPES[topic])
    assert published == typed, (
        f"schemas/{topic}.v1.schema.json and stream/core/events.py differ:\n"
        f"only in the schema: {sorted(published - typed)}\n"
        f"only in the type: {sorted(typed - published)}"
    )


def test_every_typed_topic_has_a_published_schema() -> None:
    assert set(TOPIC_TYPES) <= set(TOPICS)


EXAMPLES = sorted(
    p for p in (schema_dir() / "examples").glob("*/1/*.json") if p.parts[-3] in TOPIC_TYPES
)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parts[-3]}/{p.name}")
def test_examples_decode_as_their_type(path: Path) -> None:
    msgspec.json.decode(path.read_bytes(), type=TOPIC_TYPES[path.parts[-3]])


# --------------------------------------------------------------- the comparison catches drift


def test_a_field_only_in_the_type_is_caught() -> None:
    wider = msgspec.defstruct("Review", [("title", str, "")], bases=(Review,), kw_only=True)
    assert type_lines(wider) != schema_lines(load_schema("reviews"))


@pytest.mark.parametrize(
    "change",
    [
        "drop a field",
        "add a field",
        "make an optional field required",
        "make a required field optional",
        "change a type",
        "change a bound",
        "change a pattern",
        "change an enum",
        "allow null",
        "change a nested field",
    ],
)
def test_a_schema_change_is_caught(change: str) -> None:
    schema = copy.deepcopy(load_schema("reviews"))
    props = schema["properties"]
    if change == "drop a field":
        del props["brand"]
    elif change == "add a field":
        props["title"] = {"type": "string"}
    elif change == "make an optional field required":
        schema["required"].append("rating")
    elif change == "make a required field optional":
        schema["required"].remove("product_id")
    elif change == "change a type":
        props["rating"]["type"] = "number"
    elif change == "change a bound":
        props["text"]["maxLength"] = 20_001
    elif change == "change a pattern":
        props["member_id"]["pattern"] = "^.+$"
    elif change == "change an enum":
        schema = copy.deepcopy(load_schema("chats"))
        schema["properties"]["sender_role"]["enum"].append("system")
    elif change == "allow null":
        props["brand"]["type"] = ["string", "null"]
    else:
        props["label"]["properties"]["negative"]["type"] = "integer"
    topic = "chats" if change == "change an enum" else "reviews"
    assert schema_lines(schema) != type_lines(TOPIC_TYPES[topic])


def test_an_unknown_keyword_is_not_ignored() -> None:
    schema = copy.deepcopy(load_schema("reviews"))
    schema["properties"]["text"]["format"] = "email"
    with pytest.raises(AssertionError, match="format"):
        schema_lines(schema)


def test_the_internal_union_is_compared_per_event_type() -> None:
    """A constraint inside one edge event of the member-events union is checked too."""
    schema = copy.deepcopy(load_schema("riskstream-member-events"))
    schema["$defs"]["chat"]["required"].remove("sender_role")
    assert schema_lines(schema) != type_lines(TOPIC_TYPES["riskstream-member-events"])
