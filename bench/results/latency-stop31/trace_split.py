import gzip
import sys

import numpy as np


def lines(path):
    return gzip.open(path, "rt") if path.endswith(".gz") else open(path)


S = {}
E = {}
for line in lines(sys.argv[1]):
    f = line.split()
    if f[0] == "S":
        S.setdefault(round(float(f[1]), 3), float(f[2]))
    elif f[0] == "E":
        E.setdefault(round(float(f[1]), 3), float(f[2]))
keys = sorted(k for k in E if k in S)
t0 = keys[-1] - 60
keys = [k for k in keys if k > t0]
edge = np.array([(S[k] - k) * 1000 for k in keys])
rest = np.array([(E[k] - S[k]) * 1000 for k in keys])
tot = edge + rest
print("n", len(keys))
for name, a in (("edge", edge), ("submit->handoff", rest), ("total", tot)):
    print(name, "p50/90/95/99/max", np.percentile(a, [50, 90, 95, 99, 100]).round(1))
k = tot > np.percentile(tot, 98)
print("tail events: edge mean", edge[k].mean().round(1), "rest mean", rest[k].mean().round(1))
