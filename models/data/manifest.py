"""The dataset manifest: which stems exist, which is the live part, and how to load them.

Roles are recorded per stem rather than baked into files, so other role splits (say, the bass
as the live part) can be made later from the same build.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from models.errors import ModelsError

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
Split = Literal["train", "valid", "test"]


class StemMeta(BaseModel):
    name: str
    file: str  # relative to the dataset root
    role: Literal["live", "accompaniment"]
    voice_role: Literal["melody", "harmony", "bass", "drums"]
    bank: int
    program: int  # General MIDI program
    volume: int  # MIDI CC7 used when rendering
    n_notes: int


class ExampleMeta(BaseModel):
    piece_id: str
    source: str
    split: Split
    seed: int
    sample_rate: int
    num_samples: int
    duration_s: float
    soundfont: str
    transpose: int
    bpm: float
    normalization_gain: float  # one factor for every stem and the mix, so sums still hold
    stems: list[StemMeta]
    mix_file: str
    notes_file: str  # per stem: [pitch, start_s, end_s, velocity] after all augmentation

    @property
    def live(self) -> StemMeta:
        return next(s for s in self.stems if s.role == "live")

    @property
    def accompaniment(self) -> list[StemMeta]:
        return [s for s in self.stems if s.role == "accompaniment"]


class SkippedPiece(BaseModel):
    piece_id: str
    reason: str


class Manifest(BaseModel):
    version: int = MANIFEST_VERSION
    seed: int
    sample_rate: int
    examples: list[ExampleMeta]
    skipped: list[SkippedPiece] = []

    def split(self, split: Split) -> list[ExampleMeta]:
        return [e for e in self.examples if e.split == split]

    def fingerprint(self) -> str:
        """A short hash that names this exact build in checkpoint configs."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]

    @property
    def total_seconds(self) -> float:
        return sum(e.duration_s for e in self.examples)


class DatasetError(ModelsError):
    """The dataset on disk is missing, incomplete or from another version."""


def load_manifest(root: Path) -> Manifest:
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"no {MANIFEST_NAME} in {root}: build it with 'bandmate data build'")
    try:
        manifest = Manifest.model_validate_json(path.read_text())
    except ValueError as exc:
        raise DatasetError(f"{path} is not a valid manifest: {exc}") from exc
    if manifest.version != MANIFEST_VERSION:
        raise DatasetError(
            f"{path} has manifest version {manifest.version}, this code reads "
            f"{MANIFEST_VERSION}: rebuild the data"
        )
    return manifest


def write_json_atomic(path: Path, payload: str) -> None:
    """Write then rename, so a reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(payload)
    os.replace(tmp, path)


def save_manifest(root: Path, manifest: Manifest) -> Path:
    path = Path(root) / MANIFEST_NAME
    write_json_atomic(path, manifest.model_dump_json(indent=1))
    return path


def read_audio(root: Path, relative: str) -> np.ndarray:
    import soundfile as sf

    audio, _ = sf.read(Path(root) / relative, dtype="float32", always_2d=False)
    return np.asarray(audio, dtype=np.float32)


def load_stems(root: Path, example: ExampleMeta) -> dict[str, np.ndarray]:
    return {s.name: read_audio(root, s.file) for s in example.stems}


def load_roles(root: Path, example: ExampleMeta) -> tuple[np.ndarray, np.ndarray]:
    """(live part, accompaniment = sum of the other stems), as the model trains on them."""
    stems = load_stems(root, example)
    live = stems[example.live.name]
    accompaniment = np.zeros_like(live)
    for stem in example.accompaniment:
        accompaniment += stems[stem.name]
    return live, accompaniment


def load_notes(root: Path, example: ExampleMeta) -> dict[str, list[list[float]]]:
    return dict(json.loads((Path(root) / example.notes_file).read_text()))
