"""Inference backends: onnxruntime (default) and torch. `create_backend` picks one, `warm_up`
readies it for every batch size it will step."""

from __future__ import annotations

import numpy as np

from engine.backends.base import Backend, GeneratorState, ModelBackend, ModelInfo, ModelState
from engine.checkpoint import EngineCheckpoint
from engine.errors import EngineError

BACKEND_CHOICES = ("auto", "onnx", "torch")


def create_backend(
    checkpoint: EngineCheckpoint, name: str = "auto", threads: int = 1, device: str = "auto"
) -> ModelBackend:
    """'onnx' or 'torch' by name; 'auto' is onnxruntime (CUDA EP if it has a GPU, else CPU),
    the fastest here for a single stream. The chosen backend's `name` says what runs."""
    if name not in BACKEND_CHOICES:
        raise EngineError(f"unknown backend {name!r}: choose one of {', '.join(BACKEND_CHOICES)}")
    if name == "torch":
        from engine.backends.torch_backend import TorchBackend

        return TorchBackend(checkpoint, threads, device)
    from engine.backends.onnx import OnnxBackend

    return OnnxBackend(checkpoint, threads, device)


def warm_up(backend: Backend, batches: int) -> None:
    """Step every batch size once. onnxruntime plans memory per input shape, and the first
    round at a new batch size took 20 ms here (a missed deadline for every player in it);
    paying that at load time keeps it out of a performance."""
    info = backend.info
    for batch in range(1, batches + 1):
        audio = np.zeros((batch, info.hop), np.float32)
        noise = np.zeros((batch, info.noise_dim), np.float32)
        backend.step(backend.initial_state(batch), audio, noise)


__all__ = [
    "BACKEND_CHOICES",
    "Backend",
    "GeneratorState",
    "ModelBackend",
    "ModelInfo",
    "ModelState",
    "create_backend",
    "warm_up",
]
