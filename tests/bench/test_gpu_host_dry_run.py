"""``bench/gpu_host.py``: the dry run (stub model, CPU, K=2) against the real embedded broker,
so the script a GPU lease runs once is known to work end to end before the lease; and the
parts only a GPU host reaches (nvidia-smi sampling, GPU cells of the report), with a fake
``nvidia-smi``, since CI has no GPU."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from bench.gpu_host import CpuProbe, GpuSampler, parse_args, percentiles, render_markdown

ROOT = Path(__file__).resolve().parents[2]

FAKE_NVIDIA_SMI = """#!/bin/sh
case "$*" in
  *name,memory.total*) echo "NVIDIA Fake H200, 143771 MiB, 580.00" ;;
  *) while true; do echo "0, 42, 1234"; sleep 0.1; done ;;
esac
"""


def test_percentiles_and_cpu_cores() -> None:
    assert percentiles([]) == {}
    got = percentiles([float(v) for v in range(1, 101)])
    assert (got["p50_ms"], got["p99_ms"], got["max_ms"], got["samples"]) == (50.0, 99.0, 100.0, 100)
    before = {"at": 10.0, "host": (100.0, 400.0), "pids": {"workers": {1: 5.0, 2: 1.0}}}
    after = {"at": 12.0, "host": (500.0, 800.0), "pids": {"workers": {1: 7.0, 2: 1.5, 3: 9.0}}}
    cores = CpuProbe.cores(before, after)
    assert cores["workers"] == {"total": 1.25, "per_process_max": 1.0, "processes": 2}
    assert cores["host_busy_pct"] == 100.0


def test_dry_run_presets_and_overrides(tmp_path: Path) -> None:
    cfg = parse_args(["--dry-run", "--out", str(tmp_path), "--workers", "3"])
    assert (cfg.backend, cfg.workers, cfg.partitions, cfg.budget_s) == ("stub", 3, 4, 85.0)
    assert not cfg.staggered
    host = parse_args(["--out", str(tmp_path)])
    assert host.backend == "torch-cuda" and host.torch_compile and host.staggered
    assert not parse_args(["--out", str(tmp_path), "--no-compile"]).staggered


def test_gpu_sampler_and_report_with_a_fake_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(FAKE_NVIDIA_SMI)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    sampler = GpuSampler(tmp_path / "nvidia-smi.csv")
    started = time.time()
    sampler.start()
    time.sleep(0.6)
    sampler.stop()
    window = sampler.window(started, time.time())
    assert sampler.info == {"gpus": ["NVIDIA Fake H200, 143771 MiB, 580.00"]}
    assert isinstance(window, dict) and window["util_pct_mean"] == 42.0
    assert window["memory_mib_max"] == 1234.0 and window["samples"] >= 2
    assert GpuSampler(tmp_path / "none.csv").window(0, 1) == "n/a"

    phase = {
        "duration_s": 45.0,
        "offered_events_per_s": 61000.0,
        "events_per_s": 52000.0,
        "mean_model_batch": 96.0,
        "latency": {"p50_ms": 40.0, "p99_ms": 180.0},
        "gpu": window,
        "cpu_cores": {"workers": {"total": 9.5}, "broker": {"total": 3.1}, "host_busy_pct": 88},
    }
    report = {
        "dry_run": False,
        "partial": False,
        "wall_s": 400.0,
        "host": {"cpu_count": 16, "gpu": sampler.info},
        "summary": {
            "backend": "torch-cuda fp16+compile",
            "k_workers": 10,
            "partitions": 40,
            "loaders": 3,
            "events_per_s": 52000.0,
            "events_per_s_phase": "saturate",
            "p50_ms": 40.0,
            "p99_ms": 180.0,
            "latency_phase": "paced",
            "latency_at_events_per_s": 31000.0,
            "gpu": {k: window[k] for k in ("util_pct_mean", "util_pct_max", "memory_mib_max")},
            "worker_restarts": 0,
            "goal_events_per_s": 50000,
            "goal_met": True,
        },
        "phases": {"saturate": phase, "paced": {**phase, "gpu": "no samples"}},
        "errors": [],
    }
    markdown = render_markdown(report)
    assert "| events/s per host (saturate) | 52,000 (goal ≥ 50,000: met) |" in markdown
    assert "42 % mean, 42 % max, 1,234 MiB" in markdown and "NVIDIA Fake H200" in markdown


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_dry_run_exercises_every_path(tmp_path: Path) -> None:
    out = tmp_path / "out"
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gpu_host.py"),
            *("--dry-run", "--out", str(out), "--run-dir", str(tmp_path / "run")),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    wall = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = orjson.loads((out / "report.json").read_bytes())
    summary = report["summary"]
    assert report["complete"] and not report["errors"], report["errors"]
    assert summary["events_per_s"] > 0
    assert 0 < summary["p50_ms"] <= summary["p99_ms"]
    assert summary["k_workers"] == 2 and summary["gpu"] == "n/a"
    assert summary["latency_phase"] == "paced" and summary["events_per_s_phase"] == "saturate"
    assert set(report["phases"]) == {"warmup", "saturate", "paced"}
    saturate = report["phases"]["saturate"]
    assert len(saturate["per_worker_events_per_s"]) == 2
    assert saturate["cpu_cores"]["workers"]["processes"] == 2
    assert saturate["cpu_cores"]["loaders"]["processes"] == 2
    assert saturate["latency"]["samples"] > 0
    assert [m["version"] for m in report["models"]] == ["stub-1", "stub-1"]
    assert (out / "report.md").read_text().startswith("## GPU host run (DRY RUN")
    assert (out / "logs.tar.gz").stat().st_size > 0
    assert wall < 90, f"the dry run took {wall:.0f} s"
