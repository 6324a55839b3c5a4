#!/usr/bin/env bash
# Fetch, into .whl/, the wheels scripts/train-gpu.sh installs on a GPU machine that has torch
# but neither these packages nor a network (its python3 is 3.12 on x86_64).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --dest .whl \
  pydantic pyyaml tqdm
du -sh .whl
