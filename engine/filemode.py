"""`bandmate accompany`: a file through the same Session code path as live audio, block by block.

The written accompaniment is latency-compensated: the session's reported latency is trimmed
from the front and flushed at the end, so the output lines up with the input sample for
sample and can be mixed with it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.backends import Backend
from engine.errors import EngineError
from engine.session import Session, SessionConfig


@dataclass(frozen=True)
class FileResult:
    accompaniment: np.ndarray  # at the input rate, aligned with the input
    sample_rate: int
    latency_samples: int
    hops: int


def read_input(path: Path, channel: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 audio: the chosen channel (0-based), or the mean of all channels."""
    import soundfile as sf

    # libsndfile says only "System error" for a path that is missing or not a file.
    if not path.exists():
        raise EngineError(f"cannot read audio file {path}: no such file")
    if path.is_dir():
        raise EngineError(f"cannot read audio file {path}: it is a folder")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        reason = str(exc).split(":")[-1].strip() or type(exc).__name__
        raise EngineError(f"cannot read audio file {path}: {reason}") from None
    if audio.shape[0] == 0:
        raise EngineError(f"audio file {path} holds no samples")
    if channel is None:
        return audio.mean(axis=1), int(rate)
    if not 0 <= channel < audio.shape[1]:
        raise EngineError(
            f"{path} has {audio.shape[1]} channel(s); channel {channel} does not exist"
        )
    return np.ascontiguousarray(audio[:, channel]), int(rate)


def accompany(
    audio: np.ndarray,
    rate: int,
    backend: Backend,
    seed: int = 0,
    blocksize: int = 256,
    steer: dict[str, float] | None = None,
) -> FileResult:
    """`steer`: attribute -> alpha for the whole file (gliding in from 0 over the first
    hops, as a knob would)."""
    if blocksize < 1:
        raise EngineError(f"block size must be positive, not {blocksize}")
    session = Session(backend, SessionConfig(device_rate=rate, seed=seed))
    if steer:
        session.steer(steer)
    latency = session.latency_samples
    # Flush the latency at the end with silence, so every input sample gets its accompaniment.
    padded = np.concatenate([audio, np.zeros(latency, np.float32)])
    out = np.concatenate(
        [session.process(padded[i : i + blocksize]) for i in range(0, len(padded), blocksize)]
    )
    if session.underruns:
        raise EngineError(f"internal timing error: {session.underruns} samples were not ready")
    return FileResult(out[latency : latency + len(audio)], rate, latency, session.telemetry.hops)


def write_audio(path: Path, audio: np.ndarray, rate: int) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        sf.write(str(path), audio, rate, subtype="FLOAT" if path.suffix.lower() == ".wav" else None)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise EngineError(f"cannot write {path}: {exc}") from None
