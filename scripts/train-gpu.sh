#!/usr/bin/env bash
# Train the generator on one CUDA GPU from a features pack, within 9 minutes:
#
#   scripts/train-gpu.sh DATA_PACK OUT_DIR [CONFIG]
#
# Made for a lent GPU machine: python3 with torch and CUDA, but no audio stack and no network.
# So the pack holds latents, not audio (`bandmate data pack --codec models/checkpoints/default
# --out data/pack.npz`, at most 60 MiB), and the pure-Python packages the trainer needs come as
# wheels in .whl/ (`scripts/gpu-wheels.sh` fetches them here). OUT_DIR gets the run: the
# checkpoint in OUT_DIR/checkpoint, the loss curve, and summary.json. Export and evaluate it on
# the CPU machine like any other (`bandmate export`, `bandmate bench quality`).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/train-gpu.sh DATA_PACK OUT_DIR [CONFIG]"
pack=${1:?$usage}
out=${2:?$usage}
config=${3:-models/configs/generator-gpu.yaml}
python=${PYTHON:-python3}
if ! "$python" -c "import pydantic, yaml, tqdm" 2>/dev/null; then
  "$python" -m pip install -q --no-index --find-links .whl pydantic pyyaml tqdm
fi
# The trainer stops itself at the config's max_minutes; this is the hard stop behind it.
timeout 570 "$python" - "$pack" "$out" "$config" <<'PY'
import json
import sys
import time
from pathlib import Path

from models.train.common import load_train_config
from models.train.generator_trainer import GeneratorTrainConfig, GeneratorTrainer

pack, out, config_path = sys.argv[1:]
config = load_train_config(GeneratorTrainConfig, Path(config_path),
                           {"pack": pack, "run_dir": out, "data": None})
started = time.monotonic()
trainer = GeneratorTrainer(config, progress=False)
validation = trainer.train()
summary = {"steps": trainer.step, "wall_s": round(time.monotonic() - started, 1),
           "device": str(trainer.run.device), "validation": validation}
(Path(out) / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
print(json.dumps(summary))
PY
