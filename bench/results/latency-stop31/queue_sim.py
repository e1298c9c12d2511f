"""The model's queue at 45 texts/s on measured single-text times: when results go out.

    .venv/bin/python bench/results/latency-stop31/queue_sim.py F.npy   # single_text_ms.py --save

Policies for a batch's texts: ``end`` (every result at the batch's end), ``fifo`` / ``sjf``
(each text's result when its own turn ends, in arrival / shortest-first order); results are
published in arrival order; ``infl`` scales the model's times (1.5: as slow as in the worker).
"""

import sys

import numpy as np

ts = np.load(sys.argv[1]) / 1000  # ms -> s


def sim(rate, policy, infl=1.0, jitter=0.02, seed=0, maxb=64):
    rng = np.random.default_rng(seed)
    n = len(ts) * 2
    arr = np.sort(np.arange(n) / rate + rng.uniform(0, jitter, n))
    svc = np.tile(ts, 2) * infl
    fin = np.empty(n)
    t = 0.0
    i = 0
    while i < n:
        t = max(t, arr[i])
        j = i
        while j < n and arr[j] <= t and j - i < maxb:
            j += 1
        idx = np.arange(i, j)
        if policy == "end":
            t += svc[idx].sum()
            fin[idx] = t
        elif policy == "fifo":
            for k in idx:
                t += svc[k]
                fin[k] = t
        elif policy == "sjf":
            for k in idx[np.argsort(svc[idx])]:
                t += svc[k]
                fin[k] = t
        i = j
    rel = np.maximum.accumulate(fin)  # in-order publication
    return np.percentile((rel - arr) * 1000, [50, 95, 99]).round(1)


for infl in (1.0, 1.5):
    for pol in ("end", "fifo", "sjf"):
        print(infl, pol, sim(45, pol, infl))
