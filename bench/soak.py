"""Reliability soaks, larger than CI's: the broker fuzz with many more malformed records, and
the multi-kill restart test repeated with fresh random seeds.

    python bench/soak.py fuzz --malformed 12000
    python bench/soak.py restarts --runs 5 [--events 5000]

Each runs the pytest test of the same name (the same code CI runs, just bigger or repeated)
and prints one line per run plus a summary; the exit code is non-zero if any run failed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
TESTS = {
    "fuzz": "tests/stream/test_fuzz_broker.py",
    "restarts": "tests/stream/test_restart_multikill.py",
}


def run_test(name: str, env: dict[str, str], timeout_s: float) -> tuple[bool, float, str]:
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            TESTS[name],
            "-x",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            "-o",
            f"timeout={int(timeout_s)}",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    out = proc.stdout + proc.stderr
    facts = " ".join(
        re.findall(r"(?:multikill seed \d+|kills \[.*?\]; duplicates \d+; alerts \d+)", out)
    )
    if proc.returncode != 0:
        failure = [line for line in out.splitlines() if line.startswith("E ")][:3]
        facts += " | " + " / ".join(failure)
    return proc.returncode == 0, elapsed, facts


@click.group()
def main() -> None:
    """Reliability soaks against the embedded broker."""


@main.command()
@click.option("--malformed", type=int, default=12000, show_default=True)
def fuzz(malformed: int) -> None:
    """The six crash-loop records + valid events + MALFORMED generated bad records."""
    ok, elapsed, facts = run_test(
        "fuzz", {"RISKSTREAM_TEST_FUZZ_MALFORMED": str(malformed)}, timeout_s=1800
    )
    click.echo(
        f"fuzz malformed={malformed}: {'passed' if ok else 'FAILED'} in {elapsed:.0f} s {facts}"
    )
    sys.exit(0 if ok else 1)


@main.command()
@click.option("--runs", type=int, default=5, show_default=True)
@click.option("--events", type=int, default=5000, show_default=True)
def restarts(runs: int, events: int) -> None:
    """The multi-kill restart test RUNS times in a row, each with a fresh random seed."""
    passed = 0
    for i in range(1, runs + 1):
        ok, elapsed, facts = run_test(
            "restarts", {"RISKSTREAM_TEST_MULTIKILL_EVENTS": str(events)}, timeout_s=900
        )
        passed += ok
        click.echo(f"run {i}: {'passed' if ok else 'FAILED'} in {elapsed:.0f} s {facts}")
    click.echo(f"{passed}/{runs} runs passed")
    sys.exit(0 if passed == runs else 1)


if __name__ == "__main__":
    main()
