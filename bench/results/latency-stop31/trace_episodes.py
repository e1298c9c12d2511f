"""When the slowest events came, and the model batches and events around three of them."""

import numpy as np
from trace_io import read_trace

trace = read_trace()
keys, t0, B = trace.keys, trace.t0, trace.batches
lat = np.array([(trace.done[k] - k) * 1000 for k in keys])
ts = np.array(keys) - t0
thr = np.percentile(lat, 98)
slow = ts[lat > thr]
print(f"slow events (>p98={thr:.0f} ms) at seconds:", np.round(slow, 1))
b = B[B[:, 0] > keys[0]]
dur = (b[:, 1] - b[:, 0]) * 1000
# inference per-text time vs time: 1s bins
bins = np.floor(b[:, 0] - keys[0]).astype(int)
pt = dur / b[:, 2]
per = [np.median(pt[bins == i]) for i in range(60) if (bins == i).any()]
print("median ms/text per second:", np.round(per, 0))
for ep in (3.7, 17.8, 50.5):
    print("--- episode", ep)
    for row in B:
        s = row[0] - t0
        if ep - 0.35 < s < ep + 0.25:
            print(
                f"  start {s:7.3f} end {row[1] - t0:7.3f} n {int(row[2])}",
                f"dur {1000 * (row[1] - row[0]):6.1f}",
                f"oldest-submit {s - (row[3] - t0):.3f}s before start",
            )
    for k in keys:
        if ep - 0.35 < k - t0 < ep + 0.25:
            edge, total = (trace.handed[k] - k) * 1000, (trace.done[k] - k) * 1000
            print(f"   evt in {k - t0:.3f} edge {edge:.0f} total {total:.0f}")
