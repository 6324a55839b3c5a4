"""`bandmate codec`: a recording through a checkpoint's codec alone, encoded then decoded hop by
hop exactly as the engine streams it, latency-compensated, so a user hears what the codec
keeps (and the codec benchmark measures it)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from engine.checkpoint import ModelInfo


class StreamingCodec(Protocol):
    """What a round trip needs: every ModelBackend has it (so does the codec benchmark's
    adapter for the previous checkpoint version's graphs)."""

    info: ModelInfo

    def initial_state(self, batch: int = 1) -> Any: ...

    def encode(self, state: Any, audio: np.ndarray) -> tuple[np.ndarray, Any]: ...

    def decode(self, state: Any, latent: np.ndarray) -> tuple[np.ndarray, Any]: ...


def encode_stream(backend: StreamingCodec, audio: np.ndarray) -> np.ndarray:
    """Model-rate audio [B, T] -> latents [B, T // hop, D], one streaming step per hop."""
    hop = backend.info.hop
    state = backend.initial_state(audio.shape[0])
    latents = []
    for start in range(0, audio.shape[1] - hop + 1, hop):
        latent, state = backend.encode(state, np.ascontiguousarray(audio[:, start : start + hop]))
        latents.append(latent)
    return np.stack(latents, axis=1)


def decode_stream(backend: StreamingCodec, latents: np.ndarray) -> np.ndarray:
    """Latents [B, F, D] -> audio [B, F * hop], `codec_latency` samples late."""
    state = backend.initial_state(latents.shape[0])
    hops = []
    for frame in range(latents.shape[1]):
        audio, state = backend.decode(state, np.ascontiguousarray(latents[:, frame]))
        hops.append(audio)
    return np.concatenate(hops, axis=1)


def roundtrip(backend: StreamingCodec, audio: np.ndarray, rate: int) -> np.ndarray:
    """Mono audio at any supported rate -> the codec's rendering of it, aligned sample for
    sample with the input (the codec's latency trimmed; the tail flushed with silence)."""
    import soxr

    model_rate, hop, lag = backend.info.sample_rate, backend.info.hop, backend.info.codec_latency
    resampled = audio if rate == model_rate else soxr.resample(audio, rate, model_rate, "VHQ")
    frames = -(-(len(resampled) + lag) // hop)
    padded = np.zeros((1, frames * hop), np.float32)
    padded[0, : len(resampled)] = resampled
    decoded = decode_stream(backend, encode_stream(backend, padded))[0, lag : lag + len(resampled)]
    if rate != model_rate:
        decoded = soxr.resample(decoded, model_rate, rate, "VHQ")[: len(audio)]
    return np.pad(decoded, (0, len(audio) - len(decoded))).astype(np.float32)
