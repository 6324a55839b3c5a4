"""The checkpoint directory's config.json: one schema for trainer, exporter and engine.

This module never imports torch, so the runtime (engine, server) can read exported
checkpoints with onnxruntime alone.

A checkpoint directory holds:
    config.json                 this schema
    codec.safetensors           codec weights (torch backend, training, export)
    generator.safetensors       generator weights, if trained
    steering.safetensors        steering vectors, one named tensor per attribute, if built
    encoder_step.onnx, decoder_step.onnx, generator_step.onnx   after `bandmate export`
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from models.errors import ModelsError

CHECKPOINT_FORMAT = "bandmate-checkpoint"
# 3: the spectral codec (log semitone-band latents, numpy analysis and synthesis around the
#    ONNX graphs, a latency of its own); 2: the waveform codec with unit-RMS latents; 1: a VAE.
CHECKPOINT_VERSION = 3
CONFIG_NAME = "config.json"


class CheckpointError(ModelsError):
    """A checkpoint that is missing, corrupt, from another version or for another rate."""


class StateSpec(BaseModel):
    """One state tensor of an ONNX step graph: its input/output names and shape (batch first)."""

    input: str
    output: str
    shape: list[int]  # without the batch dimension
    dtype: Literal["float32", "int64"] = "float32"


class GraphSpec(BaseModel):
    file: str
    inputs: list[str]  # the non-state inputs, in order
    outputs: list[str]  # the non-state outputs, in order
    state: list[StateSpec]


class OnnxSpec(BaseModel):
    opset: int
    encoder: GraphSpec
    decoder: GraphSpec
    generator: GraphSpec | None = None
    parity: dict[str, float] = {}  # max |onnx - torch| measured at export, per graph


class CheckpointConfig(BaseModel):
    format: Literal["bandmate-checkpoint"] = "bandmate-checkpoint"
    version: int = CHECKPOINT_VERSION
    sample_rate: int
    hop: int
    latent_dim: int
    codec_latency: int  # samples from input to output of analysis + synthesis (the codec's)
    codec: dict[str, Any]  # CodecConfig fields, its SpectralConfig nested under "spectral"
    generator: dict[str, Any] | None = None  # GeneratorConfig fields
    data_manifest: str | None = None  # fingerprint of the data build it was trained on
    git_commit: str | None = None
    training: dict[str, Any] = {}  # steps, wall time, validation figures
    onnx: OnnxSpec | None = None
    # `bandmate steer build`'s record (attributes, layers, quantile, frames); the vectors
    # themselves are steering.safetensors. None: the generator cannot be steered.
    steering: dict[str, Any] | None = None

    @property
    def window(self) -> int | None:
        return None if self.generator is None else int(self.generator["window"])

    @property
    def anticipation(self) -> int | None:
        return None if self.generator is None else int(self.generator["anticipation"])


def read_checkpoint_config(directory: Path, sample_rate: int | None = None) -> CheckpointConfig:
    """Read and check a checkpoint's config.json; every problem is one CheckpointError line."""
    path = Path(directory) / CONFIG_NAME
    if not Path(directory).is_dir():
        raise CheckpointError(f"checkpoint {directory}: no such directory")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {directory}: no {CONFIG_NAME}")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a Bandmate checkpoint config (format field)")
    if raw.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {raw.get('version')!r}, this Bandmate reads version "
            f"{CHECKPOINT_VERSION} only (version 3 brought the spectral codec); retrain it"
        )
    try:
        config = CheckpointConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CheckpointError(f"{path}: field {where}: {first['msg']}") from None
    if sample_rate is not None and config.sample_rate != sample_rate:
        raise CheckpointError(
            f"{path}: sample rate mismatch: the checkpoint runs at {config.sample_rate} Hz, "
            f"{sample_rate} Hz was expected"
        )
    return config


def write_checkpoint_config(directory: Path, config: CheckpointConfig) -> Path:
    path = Path(directory) / CONFIG_NAME
    tmp = path.with_name(f".{CONFIG_NAME}.tmp")
    tmp.write_text(config.model_dump_json(indent=1))
    tmp.replace(path)
    return path


def git_commit() -> str | None:
    """The commit the code runs from, with '+dirty' when the tree has changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=5,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if commit and dirty else commit or None
