"""Per text event: produced -> handed to the batcher, -> scored event handed to the producer."""

import numpy as np
from trace_io import read_trace

trace = read_trace()
keys = trace.keys
edge = np.array([(trace.handed[k] - k) * 1000 for k in keys])
rest = np.array([(trace.done[k] - trace.handed[k]) * 1000 for k in keys])
tot = edge + rest
print("n", len(keys))
for name, a in (("edge", edge), ("submit->handoff", rest), ("total", tot)):
    print(name, "p50/90/95/99/max", np.percentile(a, [50, 90, 95, 99, 100]).round(1))
k = tot > np.percentile(tot, 98)
print("tail events: edge mean", edge[k].mean().round(1), "rest mean", rest[k].mean().round(1))
