"""Settings and processes behave: a bad setting is one line naming the variable (exit 2), an
unknown ``RISKSTREAM_*`` variable is a warning, ``.env`` is honoured, SIGTERM leaves no process
behind, and the worker's web server is loopback-only without Faust's table endpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stream.config import Settings, settings_table
from stream.ops.broker import free_port
from tests.stream.test_cli import riskstream

ROOT = Path(__file__).resolve().parents[2]

BAD_SETTINGS = [
    ("RISKSTREAM_MAX_BATCH_SIZE", "-1"),
    ("RISKSTREAM_MAX_BATCH_TOKENS", "100"),  # below the 256-token max_length
    ("RISKSTREAM_BACKEND", "gpu"),
    ("RISKSTREAM_WEB_PORT", "99999"),
    ("RISKSTREAM_SESSION_TIMEOUT_S", "-5"),
    ("RISKSTREAM_LOG_LEVEL", "verbose"),
    ("RISKSTREAM_PROCESSING_ERROR_POLICY", "ignore"),
    ("RISKSTREAM_PARTITIONS", "many"),
    ("RISKSTREAM_MEMBER_TTL_DAYS", ""),  # empty: neither the default nor no bound, so an error
    ("RISKSTREAM_EVENT_TIME_MAX_FUTURE_S", "soon"),
    # before: accepted by `settings`, then 140 lines of tracebacks from the worker
    ("RISKSTREAM_STORE", "redis://x"),
    ("RISKSTREAM_TOPIC_PREFIX", "team/a"),
    ("RISKSTREAM_GROUP_INSTANCE_ID", ""),
    ("RISKSTREAM_PSEUDONYM_KEY_FILE", "/nonexistent/pseudonym.key"),
]


@pytest.mark.parametrize("value", ["localhost:9092", "kafka://broker", "kafka://a:9092;b:9092"])
def test_a_bad_broker_url_is_one_line(value: str) -> None:
    result = riskstream("settings", env={"KAFKA_BROKER": value})
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "kafka://host:port" in lines[0], result.stderr


@pytest.mark.parametrize(("name", "value"), BAD_SETTINGS)
def test_a_bad_setting_is_one_line_naming_the_variable(name: str, value: str) -> None:
    # the broker is unreachable on purpose: the setting must fail first, before any I/O
    result = riskstream("worker", env={name: value, "KAFKA_BROKER": "kafka://127.0.0.1:1"})
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert name in lines[0] and value in lines[0]


def optional_settings() -> list[str]:
    from stream.config import optional_fields

    return sorted(optional_fields())


def test_every_optional_setting_is_known() -> None:
    assert {
        "event_time_max_future_s",
        "event_time_max_past_s",
        "member_ttl_days",
        "max_batch_size",
        "model_version",
        "shadow_backend",
        "chinese_negative_review_threshold",
    } <= set(optional_settings())


@pytest.mark.parametrize("field", optional_settings())
@pytest.mark.parametrize("word", ["none", "None", "NONE", " none "])
def test_none_means_no_value_for_every_optional_setting(
    field: str, word: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset variable means the default, which for the future bound and the member TTL is a
    value: 'none' is how "no bound" is written (and what ``riskstream settings`` prints)."""
    from stream.config import env_name, load_settings

    monkeypatch.setenv(env_name(field), word)
    assert getattr(load_settings(), field) is None
    assert "'none'" in (Settings.model_fields[field].description or "")


def test_none_is_a_value_only_for_optional_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream.config import SettingsError, load_settings

    monkeypatch.setenv("RISKSTREAM_CHINESE_MODEL_VERSION", "none")  # its own word: no routing
    assert load_settings().chinese_build() is None
    monkeypatch.setenv("RISKSTREAM_PARTITIONS", "none")
    with pytest.raises(SettingsError, match="RISKSTREAM_PARTITIONS='none'"):
        load_settings()


def test_the_none_settings_reach_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream.config import load_settings

    monkeypatch.setenv("RISKSTREAM_EVENT_TIME_MAX_FUTURE_S", "none")
    monkeypatch.setenv("RISKSTREAM_MEMBER_TTL_DAYS", "none")
    settings = load_settings()
    assert settings.edge_limits().max_future_ms is None
    assert settings.member_ttl_days is None


def test_the_settings_printout_reads_back() -> None:
    env = {"RISKSTREAM_MEMBER_TTL_DAYS": "none", "RISKSTREAM_EVENT_TIME_MAX_FUTURE_S": "none"}
    first = riskstream("settings", env=env)
    assert first.returncode == 0, first.stderr
    printed = dict(line.split("=", 1) for line in first.stdout.splitlines() if "=" in line)
    assert printed["RISKSTREAM_MEMBER_TTL_DAYS"] == "None"
    again = riskstream("settings", env={k: printed[k] for k in env})
    assert again.returncode == 0 and again.stdout == first.stdout


def test_the_backend_choices_are_the_factorys() -> None:
    from typing import get_args

    from models.serving.factory import available_backends

    assert set(get_args(Settings.model_fields["backend"].annotation)) == set(available_backends())


def test_an_unknown_variable_is_a_warning_with_the_closest_name() -> None:
    result = riskstream("settings", env={"RISKSTREAM_MAX_BATCH_SIZ": "8"})
    assert result.returncode == 0
    assert "RISKSTREAM_MAX_BATCH_SIZ" in result.stderr
    assert "did you mean RISKSTREAM_MAX_BATCH_SIZE" in result.stderr


def test_dotenv_is_honoured_by_every_command(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RISKSTREAM_PARTITIONS=7\nRISKSTREAM_CACHE_DIR=/tmp/rs-env\n")
    result = subprocess.run(
        [sys.executable, "-m", "stream", "settings"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert "RISKSTREAM_PARTITIONS=7" in result.stdout
    assert "RISKSTREAM_DATA_DIR=/tmp/rs-env/faust" in result.stdout


def test_version_and_worker_help() -> None:
    assert riskstream("--version").stdout.startswith("riskstream")
    help_text = riskstream("worker", "--help").stdout
    for field in (
        "RISKSTREAM_MAX_BATCH_SIZE",
        "RISKSTREAM_PROCESSING_ERROR_POLICY",
        "KAFKA_BROKER",
    ):
        assert field in help_text


def test_readme_settings_table_is_generated_from_the_code() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- settings-table:start -->\n") + len("<!-- settings-table:start -->\n")
    end = readme.index("\n<!-- settings-table:end -->")
    assert readme[start:end] == settings_table(), "run: riskstream settings --markdown"


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children of children too), from /proc."""
    found, frontier = set(), [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            children = (
                (task / "children").read_text().split() if (task / "children").exists() else []
            )
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def worker_running(pid: int) -> bool:
    return any(
        b"stream\x00worker" in Path(f"/proc/{child}/cmdline").read_bytes()
        for child in descendants(pid)
        if alive(child)
    )


def start_and_sigterm(
    args: list[str], ready: str | None, log: Path, timeout_s: float = 120
) -> set[int]:
    """Start ``riskstream ARGS``, wait for ``ready`` in its output (None: for its worker
    process), SIGTERM it; -> the processes it had started that are still alive."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream", *args], stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + timeout_s
    while not (
        worker_running(proc.pid) if ready is None else ready in log.read_text(errors="replace")
    ):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    children = descendants(proc.pid)
    assert children, "nothing was started"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    time.sleep(0.5)
    return {pid for pid in children if alive(pid)}


def test_sigterm_to_broker_leaves_no_process(tmp_path: Path) -> None:
    port = free_port()
    left = start_and_sigterm(
        ["broker", "--port", str(port), "--log", str(tmp_path / "b.log")],
        "broker ready",
        tmp_path / "out.log",
    )
    assert not left


@pytest.mark.integration
def test_sigterm_to_run_stops_worker_and_broker(tmp_path: Path, built_model) -> None:
    left = start_and_sigterm(
        ["run", "--duration", "120", "--no-live", "--run-dir", str(tmp_path / "run")],
        "worker started",
        tmp_path / "out.log",
    )
    assert not left


@pytest.mark.integration
def test_sigterm_to_replay_stops_worker_and_broker(tmp_path: Path, built_model) -> None:
    import orjson

    from stream.ops.simulate import DemoCorpus, DemoTraffic

    traffic = DemoTraffic(DemoCorpus.load(), seed=3, members=20, malformed_ratio=0.0)
    rows = [traffic.next_record() for _ in range(3000)]
    source = tmp_path / "events.jsonl"
    source.write_bytes(
        b"".join(
            orjson.dumps({"topic": r.topic, "key": r.key.decode(), "value": r.value.decode()})
            + b"\n"
            for r in rows
        )
    )
    out = tmp_path / "bt"
    left = start_and_sigterm(
        ["replay", "--file", str(source), "--out", str(out)], None, tmp_path / "out.log"
    )
    assert not left
    report = orjson.loads((out / "report.json").read_bytes())
    assert report["status"] == "interrupted"


@pytest.mark.integration
async def test_web_server_is_loopback_only_and_serves_no_tables(make_worker) -> None:
    worker = await make_worker()
    port = int(worker.env["RISKSTREAM_WEB_PORT"])
    deadline = time.monotonic() + 90
    while True:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
            break
        except OSError:
            assert time.monotonic() < deadline and worker.alive(), worker.log_tail()
            time.sleep(0.5)
    assert b"riskstream_" in body
    listening = [
        line.split()[1]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == port
    ]
    assert listening == [f"0100007F:{port:04X}"], listening  # 127.0.0.1 only
    for path in ("/table/member-to-profile/m-1/", "/table/", "/router/"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2)
        assert info.value.code == 404, path


@pytest.mark.integration
def test_run_can_start_a_local_prometheus(tmp_path: Path, built_model) -> None:
    import shutil

    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (apt-get install prometheus; .ci/run does)")
    run_dir = tmp_path / "run"
    result = riskstream(
        "run", "--duration", "6", "--rate", "20", "--no-live", "--prometheus",
        "--run-dir", str(run_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "prometheus on http://127.0.0.1:" in result.stderr
    assert "Server is ready to receive web requests" in (run_dir / "prometheus.log").read_text()
    assert "riskstream-worker" in (run_dir / "prometheus.yml").read_text()


def test_summaries_print_readable_lines_not_python_dicts() -> None:
    from stream.ops.cli import _flat

    lines = dict(
        _flat(
            {
                "events": {"sent": {"reviews": 10, "chats": 4}, "scored": 14},
                "alerts": {},
                "latency_s": {"p50": 0.0123, "p99": 0.456},
                "shadow": None,
            }
        )
    )
    assert lines == {
        "events.sent": "reviews 10, chats 4",
        "events.scored": "14",
        "alerts": "none",
        "latency_s": "p50 0.0123, p99 0.456",
        "shadow": "none",
    }
    assert not any("{" in value or "'" in value for value in lines.values())
