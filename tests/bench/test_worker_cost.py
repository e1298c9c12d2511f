"""``bench/worker_cost.py``: its pure parts, and one tiny run of both apps against the real
embedded broker (the report's shape and sane values, not its figures)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench.worker_cost import CpuSampler, cpu_s, parse_mix, quotas
from stream.ops.admin import TABLES, TOPIC_CONFIGS

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 300


def test_mix_quotas_add_up() -> None:
    assert quotas(7, parse_mix("40:35:25")) == {"reviews": 3, "chats": 2, "transactions": 2}
    assert quotas(301, parse_mix("1:1:0")) == {"reviews": 151, "chats": 150, "transactions": 0}
    with pytest.raises(Exception, match="weights"):
        parse_mix("0:0:1")


def test_cpu_is_read_and_interpolated() -> None:
    assert cpu_s(os.getpid()) > 0
    assert cpu_s(2**22 + 7) is None  # above pid_max: no such process
    sampler = CpuSampler(os.getpid(), os.getpid())
    sampler.samples = [(10.0, 1.0, 2.0), (11.0, 2.0, 2.5)]
    assert sampler.at(10.5) == (1.5, 2.25)
    assert sampler.at(9.0) == (1.0, 2.0) and sampler.at(12.0) == (2.0, 2.5)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_tiny_run_reports_both_apps(tmp_path: Path) -> None:
    out = tmp_path / "worker_cost.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "worker_cost.py"),
            # held surge mentions fold 2 s after they arrive: wait for those writes
            *("--events", str(EVENTS), "--runs", "1", "--settle-seconds", "4"),
            *("--json", str(out), "--run-dir", str(tmp_path / "run")),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| events/s" in proc.stdout and "worker ÷ bare" in proc.stdout
    report = orjson.loads(out.read_bytes())
    assert sum(report["inputs"].values()) == EVENTS
    assert {r["kind"] for r in report["runs"]} == {"worker", "bare"}
    expected = set(TOPIC_CONFIGS) | {f"riskstream-{table}-changelog" for table in TABLES}
    for run in report["runs"]:
        assert run["missing"] == 0
        assert run["events_per_s"] > 0 and run["window_s"] > 0
        assert run["app_cpu_s"] > 0 and run["broker_cpu_s"] >= 0
        assert run["writes_per_event"] >= 1 and run["writes_per_text_event"] >= 1
        topics = run["topics"]
        assert expected <= set(topics), expected - set(topics)
        assert topics["scored-events"]["records"] == EVENTS
        for name in ("reviews", "chats", "transactions"):
            assert topics[name]["records"] == report["inputs"][name]
            assert topics[name]["role"] == "input"
    worker = next(r for r in report["runs"] if r["kind"] == "worker")["topics"]
    # one member state write per member per published batch: at most one per event
    assert 0 < worker["riskstream-member-to-profile-changelog"]["records"] <= EVENTS
    # inputs keyed by member sit on their member's partition: no member-events hop
    assert worker["riskstream-member-events"]["records"] == 0
    assert worker["riskstream-subject-to-surge-changelog"]["records"] > 0
    summary = report["summary"]
    assert summary["worker_over_bare"]["events_per_s"] > 0
    assert summary["worker"]["writes_per_text_event"] > summary["bare"]["writes_per_text_event"]
