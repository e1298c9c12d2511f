#!/usr/bin/env bash
# The GPU host benchmark in one command, for a machine with no network (the lent H200 device):
# if .bundle/ is there (bench/gpu_bundle.py builds it), install its wheels into a scratch folder,
# unpack the Tansu broker and the encoder, point the project at them, then run
# bench/gpu_host.py with what is left of the time budget. Without a bundle it just runs the
# driver (this machine, CI).
#
#   bash bench/gpu_host.sh --out "$OUT" [bench/gpu_host.py flags]    # GPU host: torch-cuda
#   bash bench/gpu_host.sh --dry-run --out /tmp/gh                   # stub model, CPU
#
# Device `run` call (the lead's checkout travels; build the bundle there first):
#   command: set -o pipefail; PYTHONUNBUFFERED=1 bash bench/gpu_host.sh --out $OUT 2>&1 | tee $OUT/console.log
#   carry: [".bundle"]   timeout_s: 560
#
# Environment: GPU_HOST_BUDGET_S (480: whole run, set-up included), GPU_HOST_BUNDLE (.bundle),
# GPU_HOST_WORK (/tmp/gpu-host: scratch), PYTHON (python3: the image's, with torch).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
budget=${GPU_HOST_BUDGET_S:-480}
py=${PYTHON:-python3}
bundle=${GPU_HOST_BUNDLE:-.bundle}
work=${GPU_HOST_WORK:-/tmp/gpu-host}
extra=()
if [ -d "$bundle/wheels" ]; then
  bundle=$(cd "$bundle" && pwd)
  echo "gpu_host.sh: setting up from $bundle into $work"
  mkdir -p "$work"
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --disable-pip-version-check --upgrade --target "$work/site" "$bundle"/wheels/*.whl
  export PYTHONPATH="$work/site:$bundle/py:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  "$py" - "$bundle/tansu.xz" "$work/tansu" <<'EOF'
import lzma, os, shutil, sys
with lzma.open(sys.argv[1]) as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
os.chmod(sys.argv[2], 0o755)
EOF
  export CALF_TANSU_BIN="$work/tansu"
  if [ -f "$bundle/lib/libgomp.so.1" ] && ! ldconfig -p 2>/dev/null | grep -q 'libgomp\.so\.1 '; then
    export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$bundle/lib"  # for lightgbm
  fi
  "$py" bench/device_transport.py unpack "$bundle/encoder/part0" --out "$work/encoder"
  export RISKSTREAM_ENCODER_DIR="$work/encoder"
  export RISKSTREAM_CACHE_DIR="${RISKSTREAM_CACHE_DIR:-$work/cache}"
  export HF_HUB_OFFLINE=1
  extra+=(--corpus "$bundle/corpus.json.gz")
  echo "gpu_host.sh: set up in $(($(date +%s) - started)) s"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv || true
fi
left=$((budget - ($(date +%s) - started)))
exec "$py" bench/gpu_host.py --budget-s "$left" "${extra[@]}" "$@"
