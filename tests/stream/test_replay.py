"""``riskstream replay`` against the real embedded broker and a real worker process: isolation,
range selection, determinism, the labelled report, ``--compare`` and Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from click.testing import CliRunner
from rich.console import Console

from stream.backtest.replay import (
    ReplayOptions,
    ReplaySource,
    TopicRange,
    read_file,
    read_topic_range,
)
from stream.backtest.replay import replay as run_replay
from stream.config import Settings
from stream.ops.admin import TOPIC_CONFIGS, ensure_topics
from stream.ops.broker import WORKER_SETTINGS
from stream.ops.cli import main
from stream.ops.simulate import DemoCorpus, DemoTraffic
from tests.fixtures import pseudonym
from tests.kafka_io import collect, produce
from tests.stream.test_integration import NEGATIVE, POSITIVE, ULB_FRAUD, ULB_LEGIT

pytestmark = pytest.mark.integration

#: The shared test broker: short group timeouts, every profile change published.
FAST = {**WORKER_SETTINGS, "RISKSTREAM_PROFILE_THROTTLE_S": "0"}
FAST_FLAGS = [flag for name, value in FAST.items() for flag in ("--set", f"{name}={value}")]


def review(event_id: str, member: str, minute: int, text: str, label: dict, **extra) -> dict:
    return {
        "topic": "reviews",
        "key": member,
        "value": {
            "event_id": event_id,
            "member_id": member,
            "event_time": extra.get("event_time", f"2026-11-23T09:{minute:02d}:00Z"),
            "product_id": extra.get("product_id", "B00CALM"),
            "brand": extra.get("brand", "calmbrand"),
            "rating": 1 if label.get("negative") else 5,
            "text": text,
            "label": label,
        },
    }


def transaction(event_id: str, member: str, minute: int, vector: list, label: int) -> dict:
    return {
        "event_type": "transaction",  # the bare-event row shape
        "event_id": event_id,
        "member_id": member,
        "event_time": f"2026-11-23T12:{minute:02d}:00Z",
        "amount": 316.06 if label else 63.48,
        "currency": "EUR",
        "merchant_id": "shop-1",
        "channel": "web",
        "device_id": f"dev-{member}",
        "country": "DE",
        "features": vector,
        "label": label,
    }


def planted_rows() -> list[dict]:
    """A tiny labelled backtest: one fraud among four transactions, one negative and two
    positive reviews, a labelled surge of nine negative reviews (on a product reviewed once the
    day before: a subject with no history is in its warm-up), one malformed record."""
    rows = [
        review(
            "surge-history",
            "m-surge-0",
            0,
            POSITIVE,
            {},
            product_id="B00SURGE",
            brand="surgebrand",
            event_time="2026-11-22T09:00:00Z",
        ),
        transaction("tx-ok-1", "m-a", 0, ULB_LEGIT, 0),
        transaction("tx-ok-2", "m-b", 1, ULB_LEGIT, 0),
        transaction("tx-ok-3", "m-fraud", 2, ULB_LEGIT, 0),
        transaction("tx-fraud", "m-fraud", 7, ULB_FRAUD, 1),
        review("rev-neg", "m-a", 0, NEGATIVE, {"negative": True}),
        review("rev-pos-1", "m-b", 1, POSITIVE, {"negative": False}),
        review("rev-pos-2", "m-c", 2, POSITIVE, {"negative": False}),
        {"topic": "chats", "key": "m-x", "value": '{"event_id": "broken", '},
    ]
    rows += [
        review(
            f"surge-{i}",
            f"m-surge-{i}",
            10 + 5 * i,
            NEGATIVE,
            {"surge": "s1"},
            product_id="B00SURGE",
            brand="surgebrand",
        )
        for i in range(9)
    ]
    return rows


@pytest.fixture
def planted_file(tmp_path: Path) -> Path:
    path = tmp_path / "planted.jsonl"
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in planted_rows()))
    return path


def invoke(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_labelled_report_and_compare_on_a_planted_dataset(
    kafka_broker, built_model, planted_file, tmp_path
) -> None:
    out = tmp_path / "bt"
    result = invoke(
        [
            "replay",
            "--file",
            str(planted_file),
            "--broker",
            kafka_broker.url,
            "--run-id",
            "planted",
            "--out",
            str(out),
            "--no-progress",
            *FAST_FLAGS,
            "--compare",
            "fraud_risk_threshold=0.999",  # the planted fraud scores about 0.997
        ]
    )
    assert result.exit_code == 0, result.output
    report = orjson.loads((out / "report.json").read_bytes())
    assert report["status"] == "complete"
    a, b = report["runs"]["a"], report["runs"]["b"]
    assert a["events"]["input"] == {"transactions": 4, "reviews": 13, "chats": 1}
    assert a["events"]["accounted"] == 18
    assert a["events"]["dead_letter"] == {"invalid_json": 1}

    fraud = a["labelled"]["fraud_risk"]
    assert (fraud["events"], fraud["positives"], fraud["pr_auc"]) == (4, 1, 1.0)
    assert fraud["at_threshold"] == {
        "threshold": 0.15,
        "alerts": 1,
        "precision": 1.0,
        "recall": 1.0,
        "accuracy": 1.0,
    }
    assert fraud["accuracy_at_0_5"] == 1.0 and fraud["majority_accuracy"] == 0.75
    assert fraud["alerts"] == {"events_alerted": 1, "precision": 1.0, "recall": 1.0}
    negative = a["labelled"]["negative_review"]
    assert (negative["events"], negative["positives"], negative["pr_auc"]) == (3, 1, 1.0)
    assert negative["alerts"] == {"events_alerted": 1, "precision": 1.0, "recall": 1.0}
    surge = a["labelled"]["opinion_surge"]
    assert (surge["surges"], surge["detected"], surge["recall"]) == (1, 1, 1.0)
    assert surge["unmatched_alerts"] == 0 and surge["max_delay_windows"] <= 2
    assert surge["per_surge"]["s1"]["subjects"] == ["brand:surgebrand", "product:B00SURGE"]

    # B raised no fraud alert at 0.999; everything else is the same
    assert b["labelled"]["fraud_risk"]["at_threshold"]["recall"] == 0.0
    diff = report["compare"]["alerts"]
    assert diff["only_a"] == [
        {
            "alert_type": "fraud_risk",
            "subject": f"member:{pseudonym('member_id', 'm-fraud')}",
            "event_ids": ["tx-fraud"],
        }
    ]
    assert diff["only_b"] == [] and diff["same"] == a["alerts"]["total"] - 1

    markdown = (out / "report.md").read_text()
    assert "| fraud PR-AUC | 1 | 1 |" in markdown
    assert "| negative-review accuracy @0.5 | 1 | 1 |" in markdown
    assert (out / "alerts-over-time-a.png").stat().st_size > 1000
    assert (out / "pr-fraud_risk-a.png").is_file()
    scored = (out / "outputs-a" / "scored-events.jsonl").read_bytes().splitlines()
    assert len(scored) >= 16


async def test_two_replays_of_a_file_give_identical_alerts_and_profiles(
    kafka_broker, built_model, planted_file, tmp_path
) -> None:
    records, skipped = read_file(planted_file)
    assert not skipped
    source = ReplaySource(records, skipped, {"kind": "file", "path": str(planted_file)})
    runs = []
    for run_id in ("det-1", "det-2"):
        options = ReplayOptions(
            run_id=run_id,
            out_dir=tmp_path / run_id,
            broker_url=kafka_broker.url,
            show_progress=False,
            settings=dict(FAST),
        )
        report = await run_replay(source, options, Console(quiet=True))
        assert report["status"] == "complete"
        alerts = (options.out_dir / "outputs-a" / "alerts.jsonl").read_bytes().splitlines()
        profiles = (options.out_dir / "outputs-a" / "member-profiles.jsonl").read_bytes()
        runs.append(
            (
                {a["alert_id"]: a for a in map(orjson.loads, alerts)},
                {p["member_id"]: p for p in map(orjson.loads, profiles.splitlines())},
            )
        )
    (alerts_1, profiles_1), (alerts_2, profiles_2) = runs
    assert alerts_1 == alerts_2 and len(alerts_1) >= 4
    assert profiles_1 == profiles_2 and len(profiles_1) == 13


def _stamped(prefix: str) -> list[tuple[str, bytes, bytes, int]]:
    """Twelve reviews keyed onto both partitions, record timestamps one minute apart."""
    base = 1_795_000_000_000
    rows = []
    for i in range(12):
        body = review(f"r{i}", f"m{i % 4}", i, POSITIVE, {"negative": False})["value"]
        rows.append(
            (prefix + "reviews", f"m{i % 4}".encode(), orjson.dumps(body), base + i * 60_000)
        )
    return rows


async def _produce_stamped(bootstrap: str, rows) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        for topic, key, value, ts in rows:
            await producer.send_and_wait(topic, value, key=key, timestamp_ms=ts)
    finally:
        await producer.stop()


async def test_range_selection_by_offset_and_by_timestamp(kafka_broker, topic_prefix) -> None:
    await ensure_topics(
        Settings(KAFKA_BROKER=kafka_broker.url, topic_prefix=topic_prefix, partitions=2)
    )
    rows = _stamped(topic_prefix)
    await _produce_stamped(kafka_broker.bootstrap, rows)
    everything = await read_topic_range(TopicRange(kafka_broker.url, topic_prefix))
    assert sorted(r.value for r in everything) == sorted(v for _, _, v, _ in rows)
    assert [r.timestamp_ms for r in everything] == sorted(ts for *_, ts in rows)

    # per partition: offsets 1 and 2 of each partition
    by_offset = await read_topic_range(TopicRange(kafka_broker.url, topic_prefix, 1, 3))
    placed = await collect(kafka_broker.bootstrap, [topic_prefix + "reviews"], lambda _: False, 3)
    expected = {m.value for m in placed[topic_prefix + "reviews"] if 1 <= m.offset < 3}
    assert len(expected) == 4  # two partitions x two offsets
    assert {r.value for r in by_offset} == expected

    base = rows[0][3]
    by_time = await read_topic_range(
        TopicRange(
            kafka_broker.url, topic_prefix, from_ms=base + 3 * 60_000, to_ms=base + 7 * 60_000
        )
    )
    assert [orjson.loads(r.value)["event_id"] for r in by_time] == ["r3", "r4", "r5", "r6"]
    both = await read_topic_range(
        TopicRange(kafka_broker.url, topic_prefix, 1, 3, from_ms=base + 5 * 60_000)
    )
    assert {r.value for r in both} == {
        r.value for r in by_offset if r.timestamp_ms >= base + 5 * 60_000
    }


async def _topic_sizes(bootstrap: str, topics: list[str]) -> dict[str, int]:
    found = await collect(bootstrap, topics, lambda _: False, timeout_s=3)
    return {t: len(found.get(t, [])) for t in topics}


async def test_a_topic_replay_writes_only_under_its_own_prefix(
    kafka_broker, built_model, topic_prefix, tmp_path
) -> None:
    live = Settings(KAFKA_BROKER=kafka_broker.url, topic_prefix=topic_prefix, partitions=2)
    await ensure_topics(live)
    rows = planted_rows()
    records, _ = read_file_rows(rows, tmp_path)
    await produce(
        kafka_broker.bootstrap, [(topic_prefix + r.topic, r.key, r.value) for r in records]
    )
    live_topics = [live.topic(t) for t in TOPIC_CONFIGS]  # inputs, outputs and internal ones
    before_sizes = await _topic_sizes(kafka_broker.bootstrap, live_topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    before_topics = set(await admin.list_topics())

    rng = TopicRange(kafka_broker.url, topic_prefix)
    selected = await read_topic_range(rng)
    assert len(selected) == len(records)
    options = ReplayOptions(
        run_id="iso",
        out_dir=tmp_path / "iso",
        broker_url=kafka_broker.url,
        show_progress=False,
        settings=dict(FAST),
    )
    report = await run_replay(
        ReplaySource(selected, {}, rng.describe()), options, Console(quiet=True)
    )
    assert report["status"] == "complete"
    assert report["events"]["accounted"] == len(records)
    assert report["labelled"]["fraud_risk"]["positives"] == 1

    new_topics = set(await admin.list_topics()) - before_topics
    await admin.close()
    assert new_topics and all(t.startswith("backtest.iso.") for t in new_topics)
    assert await _topic_sizes(kafka_broker.bootstrap, live_topics) == before_sizes
    outputs = await _topic_sizes(kafka_broker.bootstrap, ["backtest.iso.scored-events"])
    assert outputs["backtest.iso.scored-events"] >= len(records) - 1


def read_file_rows(rows: list[dict], folder: Path):
    path = folder / "rows.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return read_file(path)


RECORDS = 9000


def test_ctrl_c_leaves_a_valid_partial_report(kafka_broker, built_model, tmp_path) -> None:
    traffic = DemoTraffic(DemoCorpus.load(), seed=9, members=50, malformed_ratio=0.0)
    path = tmp_path / "long.jsonl"
    with path.open("wb") as handle:
        # long enough that Ctrl-C lands mid-run: with 3,000 events, the run completed twice in
        # the CI check before the test read a checkpoint (every 3 s) with 50 events accounted
        for _ in range(RECORDS):
            r = traffic.next_record()
            handle.write(
                orjson.dumps(
                    {"topic": r.topic, "key": r.key.decode(), "value": orjson.loads(r.value)}
                )
                + b"\n"
            )
    out = tmp_path / "partial"
    command = [
        sys.executable,
        "-m",
        "stream",
        "replay",
        "--file",
        str(path),
        "--broker",
        kafka_broker.url,
        "--run-id",
        "ctrlc",
        "--out",
        str(out),
        "--no-progress",
        *FAST_FLAGS,
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    report_path = out / "report.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if (
                report_path.is_file()
                and orjson.loads(report_path.read_bytes())["events"]["accounted"] >= 50
            ):
                break
            assert process.poll() is None, process.stdout.read().decode()
            time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        interrupted_at = time.monotonic()
        output = process.communicate(timeout=120)[0].decode()
        took = time.monotonic() - interrupted_at
        print(f"exit {took:.1f} s after Ctrl-C")
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, output
    # the worker gets 20 s to stop, the collector 10 s; the partial report is written after
    assert took < 60, f"{took:.0f} s from Ctrl-C to exit\n{output}"
    assert "interrupted: stopping the worker" in output
    report = orjson.loads(report_path.read_bytes())
    assert report["status"] == "interrupted"
    assert 50 <= report["events"]["accounted"] < report["events"]["input_total"] == RECORDS
    assert "interrupted" in (out / "report.md").read_text()
    scored = (out / "outputs-a" / "scored-events.jsonl").read_bytes().splitlines()
    assert len({orjson.loads(line)["event_id"] for line in scored}) >= 50
    assert not list(out.glob("*.tmp"))
