"""The README's main job and the broker's error path, run as a user would run them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import orjson
import pytest

from stream.ops.broker import BrokerError, EmbeddedBroker


def riskstream(*args: str, env: dict[str, str] | None = None, timeout: float = 240):
    return subprocess.run(
        [sys.executable, "-m", "stream", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_taken_port_is_one_clear_line_not_a_traceback() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = riskstream("broker", "--port", str(port), timeout=60)
    assert result.returncode == 1  # a runtime failure; 2 is for usage errors
    assert "already in use" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_broker_binary_is_a_clear_error(tmp_path) -> None:
    os.environ["CALF_TANSU_BIN"] = str(tmp_path / "no-such-tansu")
    try:
        with pytest.raises(BrokerError, match="Tansu broker binary not found"):
            EmbeddedBroker(log_path=tmp_path / "b.log").start()
    finally:
        del os.environ["CALF_TANSU_BIN"]


@pytest.mark.integration
def test_run_main_job_end_to_end(tmp_path, built_model) -> None:
    result = riskstream(
        "run",
        "--duration",
        "8",
        "--rate",
        "40",
        "--no-live",
        "--malformed-ratio",
        "0.1",
        "--run-dir",
        str(tmp_path / "run"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = orjson.loads((tmp_path / "run" / "summary.json").read_bytes())
    assert summary["produced_total"] >= 200
    assert summary["consumed"] == summary["produced_total"]
    dead = sum(summary["dead_letters"].values())
    assert dead == summary["malformed_produced"] > 0
    assert summary["scored_events"] == summary["produced_total"] - dead
    assert summary["mean_batch_size"] >= 1
    assert (tmp_path / "run" / "worker.log").exists()
    assert "embedded broker on 127.0.0.1:" in result.stderr
