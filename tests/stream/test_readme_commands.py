"""The README's Commands table lists every ``riskstream`` command, and only real ones."""

from __future__ import annotations

import re
from pathlib import Path

import click

from stream.ops.cli import main

ROOT = Path(__file__).resolve().parents[2]


def command_paths(group: click.Group, prefix: str = "") -> set[str]:
    paths = set()
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            paths |= command_paths(command, f"{path} ")
        else:
            paths.add(path)
    return paths


def documented() -> set[str]:
    """Command paths named in the Commands table's first column (``riskstream models promote
    BUILD` / `rollback`` names two: a later `` `word` `` continues the same group)."""
    section = (ROOT / "README.md").read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    found = set()
    for line in section.splitlines():
        if not line.startswith("| `riskstream "):
            continue
        cell = line.split(" | ", 1)[0]
        names = re.findall(r"`([^`]+)`", cell)
        words = names[0].split()[1:]
        group = [w for w in words if re.fullmatch(r"[a-z][a-z-]*", w)]
        found.add(" ".join(group))
        for extra in names[1:]:
            first = extra.split()[0]
            if re.fullmatch(r"[a-z][a-z-]*", first):
                found.add(" ".join([*group[:-1], first]))
    return found


def test_every_command_is_in_the_readme_and_every_listed_one_exists() -> None:
    commands, listed = command_paths(main), documented()
    assert commands - listed == set(), "commands missing from README's Commands table"
    assert listed - commands == set(), "README lists commands that do not exist"
