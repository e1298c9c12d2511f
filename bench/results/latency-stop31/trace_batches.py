"""Model batches and deliveries in the window, and the batch of each of the slowest events."""

import numpy as np
from trace_io import read_trace

trace = read_trace()
E = np.array([(k, trace.done[k]) for k in sorted(trace.done)])
D = trace.deliveries
# the latency phase: input in the last 60 s
t0 = E[:, 0].max() - 60
e = E[E[:, 0] > t0]
lat = (e[:, 1] - e[:, 0]) * 1000
print("events", len(e), "e2e p50/95/99/max", np.percentile(lat, [50, 95, 99, 100]).round(1))
b = trace.batches[trace.batches[:, 0] > t0]
dur = (b[:, 1] - b[:, 0]) * 1000
size = b[:, 2]
wait = (b[:, 0] - b[:, 3]) * 1000
print(
    "batches", len(b), "size mean", size.mean().round(2), "dist", np.bincount(size.astype(int))[:10]
)
print("inference ms p50/95/99/max", np.percentile(dur, [50, 95, 99, 100]).round(1))
for k in range(1, 6):
    m = size == k
    if m.any():
        print(
            " size",
            k,
            "n",
            m.sum(),
            "dur p50/95/max",
            np.percentile(dur[m], [50, 95, 100]).round(1),
        )
print("oldest queue wait ms p50/95/99/max", np.percentile(wait, [50, 95, 99, 100]).round(1))
d = D[D[:, 0] > t0]
dd = (d[:, 1] - d[:, 0]) * 1000
print("deliver ms p50/95/99/max", np.percentile(dd, [50, 95, 99, 100]).round(1), "n", len(d))
# events slower than p95: decompose: find its batch by submit time range
slow = e[lat > np.percentile(lat, 97)]
for ts, te in slow[:40]:
    # batch whose end <= te and nearest
    i = np.argmin(np.abs(b[:, 1] - te) + (b[:, 1] > te) * 1e9)
    bs, be, n, o, y = b[i]
    print(
        f"lat {1000 * (te - ts):6.1f} oldest_submit-in {1000 * (o - ts):6.1f}",
        f"newest_submit-in {1000 * (y - ts):6.1f} queue {1000 * (bs - y):6.1f}",
        f"batch n={int(n)} inf {1000 * (be - bs):6.1f} after-inf {1000 * (te - be):6.1f}",
    )
