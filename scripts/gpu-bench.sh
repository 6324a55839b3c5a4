#!/usr/bin/env bash
# Latency, batch sweep and capacity on one CUDA GPU, as JSON, in under 8 minutes:
#
#   scripts/gpu-bench.sh OUT_DIR [--dry-run] [--checkpoint DIR] [--max-batch 512]
#
# OUT_DIR gets latency.json, batch.json, capacity.json and summary.json (what each holds:
# benchmarks/gpu_bench.py). Without a GPU it refuses (exit 2) and writes nothing; --dry-run
# runs the same code on the CPU with tiny durations, to check it (tests/test_gpu_bench.py).
#
# Made for a lent GPU machine: python3 with torch, onnx and onnxruntime, but no audio stack and
# no network. The pure-Python packages the engine needs beyond those (pydantic) come as wheels
# in .whl/ (`scripts/gpu-wheels.sh` fetches them here; carry .whl with the tree).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 1 || $1 == -* ]]; then
  echo "usage: scripts/gpu-bench.sh OUT_DIR [--dry-run] [--checkpoint DIR] [--max-batch N]" >&2
  exit 2
fi
python=${PYTHON:-python3}
if ! "$python" -c "import pydantic, tqdm" 2>/dev/null; then
  if [[ ! -d .whl ]]; then
    echo "gpu-bench: pydantic is missing and there is no .whl/ (run scripts/gpu-wheels.sh)" >&2
    exit 2
  fi
  "$python" -m pip install -q --no-index --find-links .whl --target /tmp/gpu-bench-site \
    pydantic tqdm
  export PYTHONPATH=/tmp/gpu-bench-site${PYTHONPATH:+:$PYTHONPATH}
fi
# The bench keeps to its own budget (400 s); this is the hard stop behind it.
exec timeout 470 "$python" -m benchmarks.gpu_bench "$@"
