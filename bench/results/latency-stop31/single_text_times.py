import sys
import time

import numpy as np

sys.path.insert(0, "bench")
from pipeline import text_events

from models.serving.factory import create_handler

evs = text_events(3000, 7)
texts = [e.text for e in evs][:1500]
h = create_handler("onnx-cpu")
m = h.load_model()
for t in texts[:50]:
    h.run_inference([t], m)
ts = []
for t in texts:
    s = time.perf_counter()
    h.run_inference([t], m)
    ts.append(time.perf_counter() - s)
ts = np.array(ts)
np.save("/tmp/single_ts.npy", ts)
print("mean ms", ts.mean() * 1000)
