"""What ``RISKSTREAM_MODEL_THREADS`` costs: the served model's offline rate with ONNX Runtime's
own thread count (one per core) and with one thread per session (no pool).

    .venv/bin/python bench/model_threads.py [--runs 3] [--sample 256] [--processes 1]

The worker's handler (``stream.worker.app._default_handler``: the English student and the
multilingual one behind the language router, on ``onnx-cpu``) scores the demo's text mix in
batches of 32 after a warm-up pass, each setting in its own fresh process, settings
alternating run by run. ``--processes N`` starts N such processes at once per run (N workers
sharing the host's cores, as the scale-out test runs three on two) and sums their rates.
Prints texts/s (median of the runs, and each run) and CPU ms per text.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"ort default (one per core)": None, "1 (no pool)": 1}


def child(threads: int | None, sample: int) -> None:
    """One process: load the worker's handler, score the sample, print its figures."""
    sys.path.insert(0, str(ROOT))
    from stream.config import Settings
    from stream.ops.simulate import DemoCorpus, DemoTraffic
    from stream.worker.app import _default_handler

    settings = Settings(
        KAFKA_BROKER="kafka://127.0.0.1:1", backend="onnx-cpu", model_threads=threads
    )
    handler = _default_handler(settings)
    model = handler.load_model()
    traffic = DemoTraffic(DemoCorpus.load(), seed=7, members=200, malformed_ratio=0.0)
    texts: list[str] = []
    while len(texts) < sample:
        value = json.loads(traffic.next_record().value)
        if value.get("text"):
            texts.append(value["text"])
    batches = [texts[i : i + 32] for i in range(0, len(texts), 32)]
    for batch in batches:  # warm-up
        handler.run_inference(batch, model)
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        handler.run_inference(batch, model)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        json.dumps({"texts_per_s": len(texts) / wall, "cpu_ms_per_text": 1000 * cpu / len(texts)})
    )


def one_run(threads: int | None, sample: int, processes: int) -> dict[str, float]:
    argv = [sys.executable, __file__, "--child", "none" if threads is None else str(threads)]
    argv += ["--sample", str(sample)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return {
        "texts_per_s": sum(r["texts_per_s"] for r in results),
        "cpu_ms_per_text": statistics.mean(r["cpu_ms_per_text"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sample", type=int, default=256)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(None if args.child == "none" else int(args.child), args.sample)
        return
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
    for _ in range(args.runs):
        for name, threads in SETTINGS.items():
            runs[name].append(one_run(threads, args.sample, args.processes))
    print(
        f"| model threads ({args.processes} process(es)) | texts/s, median (runs) | CPU ms/text |"
    )
    print("|---|---:|---:|")
    for name, results in runs.items():
        rates = [r["texts_per_s"] for r in results]
        cpu = statistics.median(r["cpu_ms_per_text"] for r in results)
        listed = " / ".join(f"{rate:.0f}" for rate in rates)
        print(f"| {name} | {statistics.median(rates):.0f} ({listed}) | {cpu:.1f} |")


if __name__ == "__main__":
    main()
