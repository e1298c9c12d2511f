"""The operator's learning loop end to end, against the real embedded broker and real models:
events scored -> labels produced (bad ones dead-lettered) -> labelled set -> ``riskstream adapt``
-> promote refused before shadowing -> shadow -> promote -> the running worker scores new
events with the adapted build (no restart) -> roll back -> the base build again.

Texts are tweets about brands and events (``models.training.data_operator``), a kind the served
heads never saw and read badly (negative-review PR-AUC 0.34: ``docs/evaluation.md``), sent as
reviews; every command is the CLI an operator runs."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from models.serving import artefacts
from models.training import data_operator
from stream.core.labels import label_key
from tests.fixtures import worker_env
from tests.kafka_io import collect, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

LABELLED = 500
FRESH = 20


def review(event_id: str, text: str, minute: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "member_id": f"m-{minute % 37}",
            "event_time": f"2026-11-23T{10 + minute // 60:02d}:{minute % 60:02d}:00Z",
            "product_id": f"flight-{minute % 11}",
            "text": text,
        }
    )


def riskstream(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "stream", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"riskstream {' '.join(args)} -> {done.returncode}\n{done.stderr}")
    return done


async def scored_versions(bootstrap: str, topic: str, ids: set[str], timeout_s: float) -> dict:
    found = await collect(
        bootstrap,
        [topic],
        lambda f: ids <= {orjson.loads(m.value)["event_id"] for m in f[topic]},
        timeout_s,
    )
    versions = {}
    for message in found[topic]:
        body = orjson.loads(message.value)
        if body["event_id"] in ids:
            versions[body["event_id"]] = body["model_version"]
    return versions


async def score(bootstrap: str, prefix: str, name: str, rows: list, minute: int) -> dict:
    """Produce ``rows`` as new reviews; -> event id -> the build that scored it."""
    events = [(f"{name}-{i}", r) for i, r in enumerate(rows)]
    await produce(
        bootstrap,
        [
            (prefix + "reviews", b"k", review(e, r.text, minute + i))
            for i, (e, r) in enumerate(events)
        ],
    )
    return await scored_versions(bootstrap, prefix + "scored-events", {e for e, _ in events}, 120)


async def serving(worker, build: str, timeout_s: float = 60) -> None:
    """Until the worker's ``riskstream_model_info`` names ``build`` (it switched)."""
    import urllib.request

    url = f"http://127.0.0.1:{worker.env['RISKSTREAM_WEB_PORT']}/metrics"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        try:
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        except OSError:
            text = b""
        lines = text.decode().splitlines()
        if any(line.startswith("riskstream_model_info{") and build in line for line in lines):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"the worker never served {build}:\n{worker.log_tail()}")


async def test_label_adapt_shadow_promote_rollback(
    make_worker, kafka_broker, topic_prefix: str, tmp_path: Path
) -> None:
    bootstrap = kafka_broker.bootstrap
    env = worker_env(kafka_broker, topic_prefix)
    base = artefacts.model_version()
    rows = random.Random(7).sample(data_operator.brand_event_tweets(), LABELLED + 3 * FRESH)
    labelled, fresh = rows[:LABELLED], rows[LABELLED:]

    worker = await make_worker()
    events = [(f"air-{i}", r) for i, r in enumerate(labelled)]
    await produce(
        bootstrap,
        [
            (topic_prefix + "reviews", b"k", review(eid, r.text, i))
            for i, (eid, r) in enumerate(events)
        ],
    )
    served = await scored_versions(
        bootstrap, topic_prefix + "scored-events", {eid for eid, _ in events}, 240
    )
    assert len(served) == LABELLED and set(served.values()) == {base}, worker.log_tail()

    # labels: a file through `labels import`, a relabel, and bad records straight to the topic
    lines = ["event_id,head,value,labeller,labelled_at"]
    lines += [
        f"{eid},sentiment,{r.label},analyst-{i % 3},2026-11-24T09:00:00Z"
        for i, (eid, r) in enumerate(events)
    ]
    flipped = "positive" if labelled[0].label == "negative" else "negative"
    lines.append(f"air-0,sentiment,{flipped},analyst-9,2026-11-23T09:00:00Z")  # older: loses
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    riskstream(env, "labels", "import", str(tmp_path / "labels.csv"))
    bad = [
        (b"air-1|sentiment", b'{"event_id": "air-1", "head": "sentiment"}'),
        (label_key("air-2", "sentiment"), orjson.dumps({
            "event_id": "air-2", "head": "sentiment", "value": "scam", "labeller": "a",
            "labelled_at": "2026-11-24T09:00:00Z"})),
        (b"wrong-key", orjson.dumps({
            "event_id": "air-3", "head": "sentiment", "value": "negative", "labeller": "a",
            "labelled_at": "2026-11-24T09:00:00Z"})),
    ]  # fmt: skip
    await produce(bootstrap, [(topic_prefix + "labels", k, v) for k, v in bad])
    dead = topic_prefix + "dead-letter"
    found = await collect(bootstrap, [dead], lambda f: len(f[dead]) >= len(bad), 60)
    letters = [orjson.loads(m.value) for m in found[dead]]
    assert [d["source"]["topic"] for d in letters] == ["labels"] * len(bad), worker.log_tail()
    assert {d["reason"] for d in letters} == {"schema_violation"}
    assert any("not a sentiment label" in d["detail"] for d in letters)

    # the labelled set, twice: the same inputs give the same file
    out = riskstream(env, "labels", "build-set", "--out", str(tmp_path / "set"))
    again = riskstream(env, "labels", "build-set", "--out", str(tmp_path / "again"))
    set_path = Path(out.stdout.strip().splitlines()[-1])
    assert set_path.name == Path(again.stdout.strip().splitlines()[-1]).name
    facts = orjson.loads(out.stdout.strip().splitlines()[0])
    assert facts["rows"] == LABELLED and facts["invalid"] == len(bad)
    import pyarrow.parquet as pq

    later = riskstream(
        env, "labels", "build-set", "--out", str(tmp_path / "later"),
        "--from-time", "2099-01-01T00:00:00Z", check=False,
    )  # fmt: skip
    assert later.returncode == 1 and "no label matched" in later.stderr  # nothing scored then
    table = {r["event_id"]: r for r in pq.read_table(set_path).to_pylist()}
    assert table["air-0"]["value"] == labelled[0].label  # the later label won
    assert table["air-5"]["model_version"] == base and table["air-5"]["language"] == "en"

    # adapt -> an installed build; promoting it before it was shadowed is refused
    adapted = riskstream(
        env, "adapt", str(set_path), "--base-per-domain", "100", "--bootstrap", "300"
    )
    build = adapted.stdout.strip().splitlines()[-1]
    assert build.startswith("minilm-l6-adapted-"), adapted.stderr
    assert artefacts.is_built(artefacts.artefact_dir(build))
    refused = riskstream(
        env, "models", "promote", build, "--by", "ops-1", "--why", "too early", check=False
    )
    assert refused.returncode != 0 and "shadow" in refused.stderr.lower()

    # shadow through the registry: the running worker scores beside its champion with it
    riskstream(env, "models", "shadow", build, "--by", "ops-1", "--why", "labels of November")
    first = [(f"fresh-a-{i}", r) for i, r in enumerate(fresh[:FRESH])]
    shadow = topic_prefix + "shadow-scores"

    def shadowed_by_build(found) -> int:
        return sum(
            orjson.loads(m.value)["challenger"]["model_version"] == build for m in found[shadow]
        )

    loop = asyncio.get_running_loop()
    deadline, sent = loop.time() + 180, 0
    while loop.time() < deadline:  # until the challenger is loaded and has seen FRESH texts
        batch = first if sent == 0 else [(f"{e}-{sent}", r) for e, r in first]
        await produce(
            bootstrap,
            [(topic_prefix + "reviews", b"k", review(e, r.text, 600 + i))
             for i, (e, r) in enumerate(batch)],
        )  # fmt: skip
        sent += 1
        found = await collect(bootstrap, [shadow], lambda f: shadowed_by_build(f) >= FRESH, 10)
        if shadowed_by_build(found) >= FRESH:
            break
    assert shadowed_by_build(found) >= FRESH, worker.log_tail()
    shadowed = worker

    # promote: the running worker switches, with no restart
    riskstream(env, "models", "promote", build, "--by", "ops-1", "--why", "lift on brand tweets")
    await serving(shadowed, build)
    after = await score(bootstrap, topic_prefix, "fresh-b", fresh[FRESH : 2 * FRESH], 700)
    assert set(after.values()) == {build}, shadowed.log_tail()
    champions = riskstream(env, "models", "champions").stdout
    assert build in champions

    # roll back: the base build again, still without a restart
    riskstream(env, "models", "rollback", "--route", "english", "--by", "ops-1", "--why", "test")
    await serving(shadowed, base)
    back = await score(bootstrap, topic_prefix, "fresh-c", fresh[2 * FRESH :], 800)
    assert set(back.values()) == {base}, shadowed.log_tail()
    assert shadowed.alive() and os.path.exists(shadowed.log_path)
