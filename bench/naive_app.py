"""The naive peer for ``bench/pipeline.py``: the Faust app a user writes first.

    KAFKA_BROKER=kafka://127.0.0.1:9092 NAIVE_TOPIC_PREFIX=n1. python bench/naive_app.py worker

One agent over the reviews and chats topics; per event it decodes the JSON, runs the model on a
one-text batch directly in the agent (on the event loop) and sends ``{"event_id", "scores"}`` to
``<prefix>scored-events``. No micro-batching, no validation, no member state.

Settings come from the environment: ``KAFKA_BROKER``, ``NAIVE_TOPIC_PREFIX``, ``NAIVE_APP_ID``,
``NAIVE_PARTITIONS``, ``NAIVE_WEB_PORT``, ``NAIVE_BACKEND`` and ``NAIVE_DATA_DIR``; for
``bench/worker_cost.py``, ``NAIVE_FETCH_MAX_WAIT_MS`` (the worker's fetch wait, default Faust's
1500) and ``NAIVE_TRANSACTIONS=1`` (also read transactions and pass each on unscored, so both
apps handle the same inputs).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import faust

from models.serving.factory import create_handler
from stream.security import KafkaSecurity
from stream.worker import faust_fixes

# Not a speed-up: without it this broker can drop records fetched during the first rebalance
# (see stream/worker/faust_fixes.py), and the benchmark would wait for outputs that never come.
# Fix 7 (no tasks per record) is a speed fix of this project's, not needed to run here: the
# bare app keeps Faust's own record path, the baseline ``bench/worker_cost.py`` compares with.
faust_fixes.apply(
    fetch_max_wait_ms=int(os.environ.get("NAIVE_FETCH_MAX_WAIT_MS", "1500")),
    drain_without_tasks=False,
)

PREFIX = os.environ.get("NAIVE_TOPIC_PREFIX", "naive.")
PARTITIONS = int(os.environ.get("NAIVE_PARTITIONS", "2"))
DATA_DIR = Path(os.environ.get("NAIVE_DATA_DIR", "/tmp/riskstream-naive"))
DATA_DIR.mkdir(parents=True, exist_ok=True)

app = faust.App(
    os.environ.get("NAIVE_APP_ID", f"{PREFIX}naive-scorer"),
    broker=os.environ.get("KAFKA_BROKER", "kafka://127.0.0.1:9092"),
    broker_credentials=KafkaSecurity.from_env().faust_credentials(),  # RISKSTREAM_KAFKA_*
    datadir=str(DATA_DIR / "{conf.name}-data"),
    topic_partitions=PARTITIONS,
    consumer_auto_offset_reset="earliest",
    broker_rebalance_timeout=6,
    broker_session_timeout=10,
    web_port=int(os.environ.get("NAIVE_WEB_PORT", "6067")),
    web_host="127.0.0.1",
)

INPUTS = [
    "reviews",
    "chats",
    *(["transactions"] if os.environ.get("NAIVE_TRANSACTIONS") == "1" else []),
]
texts_topic = app.topic(
    *(PREFIX + name for name in INPUTS),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
scored_topic = app.topic(f"{PREFIX}scored-events", key_serializer="raw", value_serializer="json")

handler = create_handler(os.environ.get("NAIVE_BACKEND", "auto"))
model = handler.load_model()


@app.agent(texts_topic)
async def score(stream: faust.StreamT) -> None:
    """Decode -> score one text -> send, one event at a time (a transaction: no scores)."""
    async for key, value in stream.items():
        event = json.loads(value)
        scores = None
        if "text" in event:
            (result,) = handler.run_inference([event["text"]], model)
            scores = result.inference.as_dict()
        await scored_topic.send(key=key, value={"event_id": event["event_id"], "scores": scores})


if __name__ == "__main__":
    if len(sys.argv) == 1:
        sys.argv += ["worker", "-l", "warn"]
    app.main()
