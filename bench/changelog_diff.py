"""Two worker runs of the same input on one broker: do their member changelogs differ, and where?

    .venv/bin/python bench/changelog_diff.py [--events 20000]

Runs ``bench/worker_cost.py``'s worker run twice (stub model, 2 partitions, demo mix, seed 7),
reads each run's member changelog end to end, prints records and bytes per run and, for the
first member whose last value differs, the fields that differ. Run it from a worktree to check
another commit (it imports the ``stream`` package of the checkout it is in).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402

from bench import worker_cost as wc  # noqa: E402
from stream.ops.broker import EmbeddedBroker  # noqa: E402


async def read_all(bootstrap: str, topic: str) -> list[tuple[int, int, bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[tuple[int, int, bytes, bytes]] = []
        while batches := await consumer.getmany(timeout_ms=500, max_records=20_000):
            for tp, messages in batches.items():
                found += [(tp.partition, m.offset, m.key, m.value) for m in messages]
        return found
    finally:
        await consumer.stop()


async def compare(events: int, run_dir: Path) -> None:
    opts = wc.Options(
        events=events,
        runs=1,
        partitions=2,
        app="worker",
        mix=wc.parse_mix("40:35:25"),
        seed=7,
        settle_s=3.0,
        start_timeout_s=120.0,
        stall_s=30.0,
        json_path=run_dir / "unused.json",
        run_dir=run_dir,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    records = wc.demo_events(events, opts.mix, opts.seed)
    changelogs = []
    with EmbeddedBroker(log_path=run_dir / "broker.log") as broker:
        for number in (1, 2):
            result = await wc.one_run("worker", number, broker, records, opts)
            topic = result["prefix"] + "riskstream-member-to-profile-changelog"
            changelogs.append(await read_all(broker.bootstrap, topic))
    for number, log in enumerate(changelogs, 1):
        size = sum(len(value) for *_, value in log)
        click.echo(f"run {number}: {len(log)} records, {size / events:.1f} bytes per event")
    last = [{key: value for *_, key, value in log} for log in changelogs]
    for key, value in last[0].items():
        other = last[1].get(key)
        if other is not None and other != value:
            first, second = orjson.loads(value), orjson.loads(other)
            for field in first:
                if first[field] != second.get(field):
                    click.echo(
                        f"{key!r} {field}: {first[field]!r:.200} | {second.get(field)!r:.200}"
                    )
            break
    else:
        click.echo("every member's last value is the same in both runs")


@click.command()
@click.option("--events", type=int, default=20_000, show_default=True)
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path("/tmp/changelog-diff"))
def main(events: int, run_dir: Path) -> None:
    asyncio.run(compare(events, run_dir))


if __name__ == "__main__":
    main()
