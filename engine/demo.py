"""`make demo`: the shipped default model accompanies the shipped example recording.

Runs through file mode, so the demo exercises exactly the Session code path a live jam uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.backends import create_backend
from engine.checkpoint import load_engine_checkpoint
from engine.filemode import accompany, read_input, write_audio

# A short melody (the live part of a held-out test piece), rendered by `bandmate data build`
# and committed; see README "The shipped example".
EXAMPLE_RECORDING = (
    Path(__file__).resolve().parent.parent / "models" / "examples" / "live_part.flac"
)


@dataclass(frozen=True)
class DemoResult:
    accompaniment: Path
    mix: Path
    backend: str
    seconds: float
    latency_ms: float
    accompaniment_rms: float


def run_demo(out: Path, checkpoint: Path | None = None, seed: int = 0) -> DemoResult:
    audio, rate = read_input(EXAMPLE_RECORDING)
    backend = create_backend(load_engine_checkpoint(checkpoint))
    result = accompany(audio, rate, backend, seed=seed)
    accompaniment, mix = out / "accompaniment.wav", out / "mix.wav"
    write_audio(accompaniment, result.accompaniment, rate)
    write_audio(mix, audio + result.accompaniment, rate)  # what a listener in the room hears
    return DemoResult(
        accompaniment=accompaniment,
        mix=mix,
        backend=backend.name,
        seconds=len(audio) / rate,
        latency_ms=1e3 * result.latency_samples / rate,
        accompaniment_rms=float(np.sqrt(np.mean(result.accompaniment**2))),
    )
