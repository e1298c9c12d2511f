"""Edge decoding per event, before vs after the typed decoder (a command, not a test).

    .venv/bin/python bench/edge_decode.py [--events 3000] [--repeats 5] [--before REV]

Times, on valid demo events (``stream.ops.simulate.DemoTraffic``, reviews, chats and transactions
in the demo mix), the validation step alone (before: ``orjson`` + JSON Schema ``iter_errors`` +
the known-field filter; after: ``stream.core.events.decode_input``, one ``msgspec`` pass) and the
whole ``decode_record`` (plus event-time parse, id hashing and PII masking). "Before" is
``stream/steps.py`` as of ``--before`` (default: the commit before the typed events were
added), loaded from git next to the current code (its imports mapped to today's modules). Reports
microseconds per event, the median (and best) of ``--repeats`` passes, before and after passes
alternating; about 10 s. Writes ``bench/results/edge_decode.json``.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream.core.codec import decode  # noqa: E402
from stream.core.events import decode_input  # noqa: E402
from stream.core.steps import RawRecord, decode_record  # noqa: E402
from stream.ops.simulate import DemoCorpus, DemoTraffic  # noqa: E402


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


#: The commit before the typed decoder (stream/events.py) was added.
BEFORE_TYPED_EVENTS = "31d6e86"


def default_before() -> str:
    return BEFORE_TYPED_EVENTS


def old_steps(rev: str) -> types.ModuleType:
    """``stream/steps.py`` at ``rev`` as a module of its own (it imports today's codec and pii,
    whose ``decode`` and ``load_schema`` it used; they moved to ``stream.core``)."""
    module = types.ModuleType("steps_before")
    module.__file__ = f"{rev}:stream/steps.py"
    sys.modules[module.__name__] = module  # dataclasses look their module up
    source = re.sub(
        r"\bfrom stream\.(codec|pii|events) import",
        r"from stream.core.\1 import",
        git("show", f"{rev}:stream/steps.py"),
    )
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def per_event_us(
    pairs: dict[str, tuple[Callable[[RawRecord], Any], Callable[[RawRecord], Any]]],
    records: list[RawRecord],
    repeats: int,
) -> dict[str, dict[str, float]]:
    """Microseconds per record of each (before, after) pair: median and best of ``repeats``
    passes. Before and after passes alternate, so load from other processes hits both."""
    passes: dict[str, list[float]] = {}
    for name, fns in pairs.items():
        for fn in fns:
            for record in records[:200]:  # warm caches (schemas, validators, regexes)
                fn(record)
        for _ in range(repeats):
            for side, fn in zip(("before", "after"), fns, strict=True):
                gc.collect()
                start = time.perf_counter()
                for record in records:
                    fn(record)
                elapsed = (time.perf_counter() - start) / len(records) * 1e6
                passes.setdefault(f"{name}_{side}", []).append(elapsed)
    return {
        k: {"median_us": round(statistics.median(v), 2), "best_us": round(min(v), 2)}
        for k, v in passes.items()
    }


@click.command()
@click.option("--events", default=3000, show_default=True)
@click.option("--repeats", default=5, show_default=True)
@click.option("--before", "before_rev", default=None, help="git revision of the old steps.py")
@click.option(
    "--out", type=click.Path(path_type=Path), default=ROOT / "bench/results/edge_decode.json"
)
def main(events: int, repeats: int, before_rev: str | None, out: Path) -> None:
    rev = before_rev or default_before()
    before = old_steps(rev)
    traffic = DemoTraffic(
        DemoCorpus.load(), seed=1, malformed_ratio=0.0, clock_ms=lambda: 1_795_428_000_000
    )
    records = [
        RawRecord(r.topic, 0, i, r.key, r.value, None)
        for i, r in enumerate(traffic.next_record() for _ in range(events))
    ]
    for record in records:  # both must accept every event, with the same fields
        old, new = before.decode_record(record), decode_record(record)
        assert type(old).__name__ == type(new).__name__ == "ValidEvent", record
        assert old.data == new.data, record
        assert old.event_time_ms == new.event_time_ms, record

    def old_validate(r: RawRecord) -> dict:
        known = before.known_fields(r.topic)
        return {k: v for k, v in decode(r.value, r.topic).items() if k in known}

    figures = per_event_us(
        {
            "validate": (old_validate, lambda r: decode_input(r.value, r.topic)),
            "decode_record": (before.decode_record, decode_record),
        },
        records,
        repeats,
    )
    code_changed = bool(git("status", "--short", "--", "stream"))  # uncommitted edits
    result = {
        "before": git("rev-parse", "--short", rev),
        "after": git("rev-parse", "--short", "HEAD") + ("+" if code_changed else ""),
        "events": events,
        "mean_value_bytes": round(statistics.mean(len(r.value) for r in records), 1),
        "repeats": repeats,
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        **figures,
    }
    for step in ("validate", "decode_record"):
        b, a = figures[f"{step}_before"], figures[f"{step}_after"]
        click.echo(
            f"{step:>14}: {b['median_us']:7.2f} µs -> {a['median_us']:6.2f} µs per event, median"
            f" ({b['median_us'] / a['median_us']:.1f}x); best {b['best_us']:.2f} -> "
            f"{a['best_us']:.2f}"
        )
    out.write_text(json.dumps(result, indent=2) + "\n")
    click.echo(f"-> {out}")


if __name__ == "__main__":
    main()
