"""Warm failover: how long partitions are without a worker when one of two (or three) workers
dies, with and without standby replicas (issue 23).

    python bench/failover.py --members 100000 --store memory:// --store rocksdb://

For each member count N, table store and standby setting (``RISKSTREAM_STANDBY_REPLICAS`` 0
and 1), on a fresh embedded broker: N realistic member states are written straight into the
member table's changelog (4 partitions, as ``bench/state_recovery.py`` does), two workers
(``--workers 3``: three) of one group start together, each with its own web port and data
folder. Once all are ready, share the partitions out and (with standbys) have read their standby
partitions up to date, the oldest worker is killed with SIGKILL and the survivors' ``/readyz``
and ``/metrics`` are polled every 0.2 s until together they hold all 4 partitions and are
ready again. Reported per run (seconds from the kill):

- detect: a survivor first reports a rebalance (its session with the dead member expired:
  about ``RISKSTREAM_SESSION_TIMEOUT_S``, which is why it is set and reported);
- rebalance: the survivors hold all 4 partitions (detection plus the group join; the embedded
  broker (Tansu) completes a join only after about the rebalance timeout);
- recovery: from that assignment to ready (``recovery_done``, /readyz 200): reading the
  changelog records the survivors' copies lack;
- outage: kill -> ready. Meanwhile the dead worker's partitions are processed by nobody (and
  the survivors' own are paused too: Faust pauses every input while a table recovers);
- records recovered: changelog records the survivors set out to read for their active
  partitions, from Faust's own "Highwater - Active" and "Reading Starts At - Active" log
  tables (workers log at info); the peak of ``riskstream_table_recovery_remaining
  {kind="active"}`` seen in the 0.2 s polls is kept beside it (it misses short recoveries);
- survivors' RSS just before the kill and once ready again; keys held (memory:// only).

The model is not what is measured: workers run ``RISKSTREAM_BACKEND=stub``. Results go to
bench/results/failover.json; docs/benchmarks.md ("Warm failover: standby replicas") quotes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from state_recovery import PARTITIONS, rss_mib, start_and_time, stop, write_changelog  # noqa: E402

from stream.config import Settings  # noqa: E402
from stream.ops.admin import ensure_topics  # noqa: E402
from stream.ops.broker import WORKER_SETTINGS, EmbeddedBroker, free_port  # noqa: E402
from stream.topics import MEMBER_TABLE  # noqa: E402

POLL_S = 0.2
_SAMPLE = re.compile(r"^(\w+)(?:\{([^}]*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def get(url: str, timeout: float = 2.0) -> tuple[int | None, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError, TimeoutError):
        return None, b""


def scrape(port: int) -> dict:
    """One look at a worker: /readyz and the recovery, key and rebalance metrics."""
    status, body = get(f"http://127.0.0.1:{port}/readyz")
    try:
        readyz = json.loads(body) if body else {}
    except ValueError:
        readyz = {}
    _, text = get(f"http://127.0.0.1:{port}/metrics")
    remaining: dict[tuple[str, str, int], int] = {}
    keys: dict[str, int] = {}
    rebalances = None
    for line in text.decode(errors="replace").splitlines():
        m = _SAMPLE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), dict(_LABEL.findall(m.group(2) or "")), m.group(3)
        if name == "riskstream_table_recovery_remaining":
            remaining[(labels["kind"], labels["table"], int(labels["partition"]))] = int(
                float(value)
            )
        elif name == "riskstream_table_keys":
            keys[labels["table"]] = int(float(value))
        elif name == "riskstream_worker_rebalances_total":
            rebalances = int(float(value))
    return {
        "status": status,
        "readyz": readyz,
        "remaining": remaining,
        "keys": keys,
        "rebalances": rebalances,
        "scraped": bool(text),
    }


def held(look: dict, kind: str, table: str = MEMBER_TABLE) -> set[int]:
    return {p for (k, t, p) in look["remaining"] if k == kind and t == table}


def left(look: dict, kind: str) -> int:
    return sum(v for (k, _t, _p), v in look["remaining"].items() if k == kind)


def standby_started(log: Path) -> bool:
    """Faust fetched the standby highwaters after the last recovery began: until then the
    standby remaining reads 0 without meaning it."""
    text = log.read_text(errors="replace")
    last_start = max(text.rfind("Restoring state from changelog"), text.rfind("Resuming flow"))
    return text.rfind("Highwater for standby changelog partitions") > last_start


_LOGTABLE_ROW = re.compile(r"^\|\s*(\S+)\s*\|\s*(\d+)\s*\|\s*(-?\d+)\s*\|")


def logged_to_read(log: Path, since: int) -> int | None:
    """Records Faust set out to read for active partitions after byte ``since`` of the log:
    its last 'Highwater - Active' table minus its last 'Reading Starts At - Active' one."""
    text = log.read_bytes()[since:].decode(errors="replace")

    def last_table(title: str) -> dict[tuple[str, int], int] | None:
        at = text.rfind(title)
        if at < 0:
            return None
        rows: dict[tuple[str, int], int] = {}
        topic = ""
        for line in text[at:].splitlines()[1:]:
            if line.startswith("["):  # the next log record
                break
            m = _LOGTABLE_ROW.match(line)
            if m:
                topic = topic if m.group(1) == "\u3003" else m.group(1)  # 〃: as above
                rows[(topic, int(m.group(2)))] = int(m.group(3))
        return rows

    highwater = last_table("Highwater - Active")
    starts = last_table("Reading Starts At - Active")
    if not highwater or not starts:
        return None
    return sum(max(hw - starts.get(tp, -1), 0) for tp, hw in highwater.items())


def spread(looks: list[dict], kind: str) -> list[int]:
    """Member-table partitions of ``kind`` held across ``looks``, with repeats, sorted."""
    return sorted(p for look in looks for p in held(look, kind))


def settled(looks: list[dict], standbys: int) -> bool:
    """All ready, the partitions shared out once each (and, with standbys, each partition
    with its standby copies elsewhere, none behind)."""
    if any(look["status"] != 200 or not held(look, "active") for look in looks):
        return False
    if spread(looks, "active") != list(range(PARTITIONS)):
        return False
    if not standbys:
        return True
    wanted = sorted(list(range(PARTITIONS)) * min(standbys, len(looks) - 1))
    return spread(looks, "standby") == wanted and not any(left(look, "standby") for look in looks)


def compact(timeline: list[dict]) -> list[dict]:
    """The polls where status, partitions or reason changed, one a second between, the last."""
    kept: list[dict] = []
    for i, look in enumerate(timeline):
        shown = (look["status"], look["actives"], look["reason"])
        if (
            not kept
            or shown != (kept[-1]["status"], kept[-1]["actives"], kept[-1]["reason"])
            or look["t"] >= kept[-1]["t"] + 1.0
            or i == len(timeline) - 1
        ):
            kept.append(look)
    return kept


def run_once(
    members: int,
    store: str,
    standbys: int,
    workers: int,
    work: Path,
    session_s: float,
    rebalance_s: float,
) -> dict:
    tag = f"{members}-{store.split(':')[0]}-sb{standbys}-w{workers}"
    broker = EmbeddedBroker(log_path=work / f"broker-{tag}.log").start()
    pids: list[int] = []
    try:
        prefix = f"fo{members}."
        settings = Settings(KAFKA_BROKER=broker.url, topic_prefix=prefix, partitions=PARTITIONS)
        asyncio.run(ensure_topics(settings))
        changelog = f"{prefix}riskstream-{MEMBER_TABLE}-changelog"
        started = time.monotonic()
        asyncio.run(write_changelog(broker.bootstrap, changelog, members))
        write_s = time.monotonic() - started

        def env(name: str) -> tuple[dict, Path]:
            data_dir = work / f"data-{tag}-{name}"
            shutil.rmtree(data_dir, ignore_errors=True)
            return {
                **os.environ,
                **WORKER_SETTINGS,
                "RISKSTREAM_SESSION_TIMEOUT_S": str(session_s),
                "RISKSTREAM_REBALANCE_TIMEOUT_S": str(rebalance_s),
                "KAFKA_BROKER": broker.url,
                "RISKSTREAM_TOPIC_PREFIX": prefix,
                "RISKSTREAM_PARTITIONS": str(PARTITIONS),
                "RISKSTREAM_STORE": store,
                "RISKSTREAM_DATA_DIR": str(data_dir),
                "RISKSTREAM_WEB_PORT": str(free_port()),
                "RISKSTREAM_BACKEND": "stub",
                "RISKSTREAM_STANDBY_REPLICAS": str(standbys),
                # info: Faust's recovery tables (offsets, highwaters) cross-check the metrics
                "RISKSTREAM_LOG_LEVEL": "info",
            }, work / f"worker-{tag}-{name}.log"

        envs = [env("abcdefgh"[i]) for i in range(workers)]
        ports = [int(e["RISKSTREAM_WEB_PORT"]) for e, _ in envs]
        logs = [log for _, log in envs]
        # all at once (one group join, each recovers its own share), as a deployment starts
        with ThreadPoolExecutor(workers) as pool:
            futures = []
            for e, log in envs:
                futures.append(pool.submit(start_and_time, e, log))
                time.sleep(1)
            ready_s = []
            for future in futures:
                seconds, _, pid = future.result()
                ready_s.append(round(seconds, 1))
                pids.append(pid)

        # settled: partitions shared out, standbys caught up; then 3 s more to be sure
        started = time.monotonic()
        stable_since = None
        while True:
            looks = [scrape(port) for port in ports]
            ok = settled(looks, standbys)
            if ok and standbys:
                ok = all(
                    standby_started(log)
                    for look, log in zip(looks, logs, strict=True)
                    if held(look, "standby")
                )
            if ok:
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since >= 3:
                    break
            else:
                stable_since = None
            if time.monotonic() - started > 1800:
                raise RuntimeError(f"workers never settled: {looks}")
            time.sleep(0.5)
        settle_s = time.monotonic() - started
        click.echo(
            f"  [{tag}] changelog {write_s:.1f} s, workers ready after {ready_s} s, "
            f"settled {settle_s:.1f} s later; killing a"
        )
        survivors = list(range(1, workers))
        before = [scrape(ports[i]) for i in survivors]
        dead_held = {
            "active": sorted(held(looks[0], "active")),
            "standby": sorted(held(looks[0], "standby")),
        }
        rss_before = [rss_mib(pids[i]) for i in survivors]
        marks = [logs[i].stat().st_size for i in survivors]

        # kill the oldest worker (its whole process group), watch the survivors
        os.killpg(pids[0], signal.SIGKILL)
        killed = time.monotonic()
        timeline = []
        noticed = assigned = ready = None
        peak_left = 0
        while True:
            looks = [scrape(ports[i]) for i in survivors]
            t = time.monotonic() - killed
            actives = spread(looks, "active")
            active_left = sum(left(look, "active") for look in looks)
            timeline.append(
                {
                    "t": round(t, 2),
                    "status": [look["status"] for look in looks],
                    "actives": [sorted(held(look, "active")) for look in looks],
                    "active_left": active_left,
                    "reason": [look["readyz"].get("reason") for look in looks],
                }
            )
            if noticed is None and any(
                look["status"] != 200 or look["readyz"].get("not_rebalancing") is False
                for look in looks
            ):
                noticed = t
            if assigned is None and actives == list(range(PARTITIONS)):
                assigned = t
            if assigned is not None:
                peak_left = max(peak_left, active_left)
            if (
                assigned is not None
                and actives == list(range(PARTITIONS))
                and all(
                    look["status"] == 200 and look["readyz"].get("recovery_done") for look in looks
                )
            ):
                ready = t
                break
            if t > 1800:
                raise RuntimeError(f"survivors not ready in time: {timeline[-5:]}")
            time.sleep(POLL_S)
        time.sleep(2)
        after = [scrape(ports[i]) for i in survivors]
        rss_after = [rss_mib(pids[i]) for i in survivors]
        logged = [logged_to_read(logs[i], mark) for i, mark in zip(survivors, marks, strict=True)]
        result = {
            "members": members,
            "store": store,
            "standby_replicas": standbys,
            "workers": workers,
            "session_timeout_s": session_s,
            "rebalance_timeout_s": rebalance_s,
            "write_s": round(write_s, 1),
            "workers_ready_s": ready_s,
            "settle_s": round(settle_s, 1),
            "killed_held": dead_held,
            "detect_s": round(noticed, 1) if noticed is not None else None,
            "rebalance_s": round(assigned, 1),
            "recovery_s": round(ready - assigned, 1),
            "outage_s": round(ready, 1),
            "records_recovered_metric": peak_left,
            "records_recovered_log": (
                None if all(n is None for n in logged) else sum(n or 0 for n in logged)
            ),
            "survivor_rss_before_mib": [round(r, 1) for r in rss_before],
            "survivor_rss_after_mib": [round(r, 1) for r in rss_after],
            "survivor_keys_before": [look["keys"].get(MEMBER_TABLE) for look in before],
            "survivor_keys_after": [look["keys"].get(MEMBER_TABLE) for look in after],
            "survivor_partitions_before": [
                {"active": sorted(held(look, "active")), "standby": sorted(held(look, "standby"))}
                for look in before
            ],
            "timeline": compact(timeline),
        }
        click.echo(
            f"{members:>9,} {store:<11} standbys={standbys} workers={workers}: "
            f"detect {result['detect_s']} s, rebalance {result['rebalance_s']} s, "
            f"recovery {result['recovery_s']} s, outage {result['outage_s']} s, recovered "
            f"{peak_left:,} (log {result['records_recovered_log']}), RSS "
            f"{result['survivor_rss_before_mib']} -> {result['survivor_rss_after_mib']} MiB"
        )
        return result
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                stop(pid)
        broker.stop()


def recovered(r: dict) -> int:
    """Records the survivor read: Faust's own log tables; else the metric's peak."""
    logged = r["records_recovered_log"]
    return logged if logged is not None else r["records_recovered_metric"]


def mib(values: list[float]) -> str:
    return " + ".join(f"{v:,.0f}" for v in values)


def table(results: list[dict]) -> str:
    rows = [
        "| members | store | workers | standbys | detect s | rebalance s | recovery s "
        "| total outage s | records recovered | survivor RSS before → after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r['members']:,} | `{r['store']}` | {r['workers']} | {r['standby_replicas']} "
            f"| {r['detect_s']} | {r['rebalance_s']} | {r['recovery_s']} | {r['outage_s']} "
            f"| {recovered(r):,} | {mib(r['survivor_rss_before_mib'])} → "
            f"{mib(r['survivor_rss_after_mib'])} MiB |"
        )
    return "\n".join(rows)


@click.command()
@click.option("--members", "counts", type=int, multiple=True, default=(100_000,))
@click.option(
    "--store",
    "stores",
    type=click.Choice(["memory://", "rocksdb://"]),
    multiple=True,
    default=("memory://",),
)
@click.option("--standbys", "standby_settings", type=int, multiple=True, default=(0, 1))
@click.option("--workers", "worker_counts", type=click.IntRange(2, 4), multiple=True, default=(2,))
@click.option(
    "--session-timeout",
    type=float,
    default=float(WORKER_SETTINGS["RISKSTREAM_SESSION_TIMEOUT_S"]),
    show_default=True,
    help="RISKSTREAM_SESSION_TIMEOUT_S: how soon the survivor notices the dead worker.",
)
@click.option(
    "--rebalance-timeout",
    type=float,
    default=float(WORKER_SETTINGS["RISKSTREAM_REBALANCE_TIMEOUT_S"]),
    show_default=True,
    help="RISKSTREAM_REBALANCE_TIMEOUT_S (Tansu completes a join only after it).",
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=ROOT / "bench/results/failover.json"
)
def main(
    counts: tuple[int, ...],
    stores: tuple[str, ...],
    standby_settings: tuple[int, ...],
    worker_counts: tuple[int, ...],
    session_timeout: float,
    rebalance_timeout: float,
    out: Path,
) -> None:
    work = Path(tempfile.mkdtemp(prefix="failover-"))
    click.echo(f"work folder (logs): {work}")
    started = datetime.now(UTC)
    results = []
    try:
        for members in counts:
            for workers in worker_counts:
                for store in stores:
                    for standbys in standby_settings:
                        results.append(
                            run_once(
                                members,
                                store,
                                standbys,
                                workers,
                                work,
                                session_timeout,
                                rebalance_timeout,
                            )
                        )
    finally:
        with open("/proc/loadavg") as f:
            load = f.read().split()[:3]
        doc = {
            "command": "python bench/failover.py " + " ".join(sys.argv[1:]),
            "started_utc": started.isoformat(timespec="seconds"),
            "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "loadavg_at_end": load,
            "killed": "the oldest worker, SIGKILL to its process group",
            "poll_s": POLL_S,
            "results": results,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n")
        click.echo(f"wrote {out}")
    click.echo(table(results))


if __name__ == "__main__":
    main()
