#!/bin/bash
# Rebuild the shipped default from scratch, as the README describes: data, codec, generator,
# export. Each step resumes where it stopped, so re-running after an interruption is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
mkdir -p runs
$BIN/bandmate data build --out data/default --limit 400 --jobs 2
$BIN/bandmate train codec --config models/configs/codec.yaml
$BIN/bandmate train generator --config models/configs/generator.yaml
# The codec's decoder may have trained on after the generator started: take the latest.
$BIN/bandmate export runs/generator/checkpoint --out models/checkpoints/default --weights-dtype float16 \
  --codec runs/codec/checkpoint
