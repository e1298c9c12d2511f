"""Backend throughput and parity on real texts (a command, not a test).

    .venv/bin/python bench/backends.py [--texts 300] [--batch 32] [--repeats 3]

Times each CPU build on the same texts (200 Fine Foods test reviews + 100 SMS by default,
length-sorted batches), reports the median seconds, texts/s, the ratio to torch fp32, and label
agreement / max |Δp| against torch fp32.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from models.serving.backends.onnx_cpu import OnnxCpuHandler
from models.serving.backends.torch_cpu import TorchCpuHandler
from models.serving.base import HEAD_NAMES
from models.training.build import ensure_built
from models.training.data import fine_foods, sms_spam


def scores(handler, model, texts: list[str], batch: int) -> np.ndarray:
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.empty((len(texts), len(HEAD_NAMES)), dtype=np.float32)
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        results = handler.run_inference([texts[i] for i in idx], model)
        out[idx] = [[getattr(r.inference, h) for h in HEAD_NAMES] for r in results]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ensure_built(progress=True)
    n_reviews = args.texts * 2 // 3
    texts = [r.text for r in fine_foods("test")[:n_reviews]]
    texts += [r.text for r in sms_spam("test")[: args.texts - n_reviews]]
    builds = {
        "torch-cpu fp32": TorchCpuHandler(),
        "onnx-cpu fp32": OnnxCpuHandler(precision="fp32"),
        "onnx-cpu int8": OnnxCpuHandler(precision="int8"),
    }
    print(f"{len(texts)} texts, batch {args.batch}, torch threads {torch.get_num_threads()}")
    reference, base_s = None, None
    for name, handler in builds.items():
        model = handler.load_model()
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = scores(handler, model, texts, args.batch)
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        reference = result if reference is None else reference
        base_s = base_s or median
        agree = ((result > 0.5) == (reference > 0.5)).mean()
        print(
            f"{name:16s} median {median:6.2f}s  {len(texts) / median:7.1f} texts/s  "
            f"{base_s / median:4.2f}x  agreement {agree:.3f}  max|dp| "
            f"{np.abs(result - reference).max():.2e}"
        )


if __name__ == "__main__":
    main()
