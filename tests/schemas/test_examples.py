"""Every example message validates against its topic's schema, and every schema has examples."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream.core.codec import TOPICS, schema_dir, validate

EXAMPLES = sorted((schema_dir() / "examples").glob("*/1/*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parts[-3]}/{p.name}")
def test_example_is_valid(path: Path) -> None:
    validate(path.parts[-3], orjson.loads(path.read_bytes()))


def test_every_topic_has_a_schema_and_an_example() -> None:
    for topic in TOPICS:
        assert (schema_dir() / f"{topic}.v1.schema.json").is_file()
        assert any(p.parts[-3] == topic for p in EXAMPLES), topic
