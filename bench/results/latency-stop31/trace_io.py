"""Reads a trace of ``trace.patch`` (one worker's lines): what the three trace scripts share.

Lines: ``S input_s handed_to_batcher_s`` and ``E input_s handed_to_producer_s`` per text
event, ``B start_s end_s texts oldest_submit_s newest_submit_s`` per model batch, ``P`` per
publisher batch, ``D start_s end_s outputs`` per delivery. Times are wall-clock seconds.
"""

from __future__ import annotations

import gzip
import sys
from dataclasses import dataclass

import numpy as np

#: The bench's latency phase: the last 60 s of input.
WINDOW_S = 60


@dataclass
class Trace:
    handed: dict[float, float]  # input time (ms-rounded) -> handed to the batcher
    done: dict[float, float]  # input time (ms-rounded) -> scored event handed to the producer
    batches: np.ndarray  # rows of B
    deliveries: np.ndarray  # rows of D
    keys: list[float]  # input times of the events in the window, with both lines
    t0: float  # the window's start

    def batches_in_window(self) -> np.ndarray:
        return self.batches[self.batches[:, 0] > self.t0]


def read_trace(path: str | None = None) -> Trace:
    """The trace at ``path`` (default: the first argument), plain or gzipped."""
    path = path or sys.argv[1]
    handed: dict[float, float] = {}
    done: dict[float, float] = {}
    rows: dict[str, list[tuple[float, ...]]] = {"B": [], "D": []}
    with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as lines:
        for line in lines:
            kind, *fields = line.split()
            if kind == "S":
                handed.setdefault(round(float(fields[0]), 3), float(fields[1]))
            elif kind == "E":
                done.setdefault(round(float(fields[0]), 3), float(fields[1]))
            elif kind in rows:
                rows[kind].append(tuple(map(float, fields)))
    keys = sorted(k for k in done if k in handed)
    t0 = keys[-1] - WINDOW_S
    return Trace(
        handed,
        done,
        np.array(rows["B"]),
        np.array(rows["D"]),
        [k for k in keys if k > t0],
        t0,
    )
