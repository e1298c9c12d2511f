"""``bench/model_threads.py``: one tiny run, both settings, prints a row each with sane values
(the figures are the bench's, not the test's)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_one_tiny_run_reports_both_settings(built_model) -> None:
    done = subprocess.run(
        [sys.executable, "bench/model_threads.py", "--runs", "1", "--sample", "32"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = re.findall(r"^\| (.+?) \| (\d+) \((\d+)\) \| ([\d.]+) \|$", done.stdout, re.M)
    assert [row[0] for row in rows] == ["ort default (one per core)", "1 (no pool)"], done.stdout
    assert all(float(rate) > 0 and float(cpu) > 0 for _, rate, _, cpu in rows)
