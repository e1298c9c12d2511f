"""The served model alone (onnx-cpu), one demo text a call: ms per text, by token length.

    .venv/bin/python bench/results/latency-stop31/single_text_ms.py [--texts 600] [--save F.npy]

``--save`` keeps the times (ms, in text order) for ``queue_sim.py``.
"""

import argparse
import sys
import time

import numpy as np

sys.path.insert(0, "bench")
from pipeline import text_events

from models.serving.factory import create_handler
from models.serving.tokenizer import tokenize

parser = argparse.ArgumentParser()
parser.add_argument("--texts", type=int, default=600)
parser.add_argument("--save", default=None)
args = parser.parse_args()
texts = [e.text for e in text_events(args.texts, 7)]
h = create_handler("onnx-cpu")
m = h.load_model()
for t in texts[:50]:
    h.run_inference([t], m)
lens = np.array([len(x) for x in tokenize(m.tokenizer, texts)])
ts = []
for t in texts:
    s = time.perf_counter()
    h.run_inference([t], m)
    ts.append((time.perf_counter() - s) * 1000)
ts = np.array(ts)
if args.save:
    np.save(args.save, ts)
print(
    "single ms p50/95/99/max",
    np.percentile(ts, [50, 95, 99, 100]).round(1),
    "mean",
    ts.mean().round(1),
    "-> texts/s",
    1000 / ts.mean(),
)
print("tokens p50/95/99/max", np.percentile(lens, [50, 95, 99, 100]))
for lo, hi in [(0, 32), (32, 64), (64, 128), (128, 200), (200, 257)]:
    k = (lens >= lo) & (lens < hi)
    if k.any():
        print(f"len {lo}-{hi}: n {k.sum()} ms p50 {np.median(ts[k]):.1f} max {ts[k].max():.1f}")
