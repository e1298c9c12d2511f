import gzip
import sys

import numpy as np


def lines(path):
    return gzip.open(path, "rt") if path.endswith(".gz") else open(path)


S = {}
E = {}
B = []
for line in lines(sys.argv[1]):
    f = line.split()
    if f[0] == "S":
        S.setdefault(round(float(f[1]), 3), float(f[2]))
    elif f[0] == "E":
        E.setdefault(round(float(f[1]), 3), float(f[2]))
    elif f[0] == "B":
        B.append(tuple(map(float, f[1:])))
keys = sorted(k for k in E if k in S)
t0 = keys[-1] - 60
keys = [k for k in keys if k > t0]
lat = np.array([(E[k] - k) * 1000 for k in keys])
ts = np.array(keys) - t0
thr = np.percentile(lat, 98)
slow = ts[lat > thr]
print(f"slow events (>p98={thr:.0f} ms) at seconds:", np.round(slow, 1))
B = np.array(B)
b = B[B[:, 0] > t0 + keys[0] - keys[0]]
b = B[B[:, 0] > keys[0]]
dur = (b[:, 1] - b[:, 0]) * 1000
# inference per-text time vs time: 1s bins
bins = np.floor(b[:, 0] - keys[0]).astype(int)
pt = dur / b[:, 2]
per = [np.median(pt[bins == i]) for i in range(60) if (bins == i).any()]
print("median ms/text per second:", np.round(per, 0))
base = keys[0] - (keys[0] - t0)  # t0
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
    gaps = [
        (k - t0, (S[k] - k) * 1000, (E[k] - k) * 1000)
        for k in keys
        if ep - 0.35 < k - t0 < ep + 0.25
    ]
    for g in gaps:
        print("   evt in {:.3f} edge {:.0f} total {:.0f}".format(*g))
