"""Edge cost of the field policy: ``decode_record`` per demo event (3,000 events of the demo
traffic, 200 members), with the pseudonymisation key and without one; median of 5 passes.

    .venv/bin/python bench/edge_policy_cost.py
"""

from __future__ import annotations

import statistics
import time

from stream.core.policy import Pseudonymiser
from stream.core.steps import RawRecord, decode_record
from stream.ops.simulate import DemoCorpus, DemoTraffic


def main() -> None:
    traffic = DemoTraffic(DemoCorpus.load(), seed=1, members=200, malformed_ratio=0.0)
    records = [traffic.next_record() for _ in range(3000)]
    raws = [RawRecord(r.topic, 0, i, r.key, r.value) for i, r in enumerate(records)]

    def per_event_us(**options) -> float:
        started = time.perf_counter()
        for raw in raws:
            decode_record(raw, **options)
        return (time.perf_counter() - started) / len(raws) * 1e6

    for name, options in (
        ("with a key", {"pseudonymiser": Pseudonymiser(b"k" * 32)}),
        ("without a key", {}),
    ):
        median = statistics.median(per_event_us(**options) for _ in range(5))
        print(f"decode_record {name}: {median:.1f} µs/event (median of 5 passes)")


if __name__ == "__main__":
    main()
