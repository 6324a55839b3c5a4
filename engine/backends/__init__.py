"""Inference backends: onnxruntime (default) and torch. `create_backend` picks one."""

from __future__ import annotations

from engine.backends.base import Backend, ModelBackend, ModelInfo, ModelState
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


__all__ = [
    "BACKEND_CHOICES",
    "Backend",
    "ModelBackend",
    "ModelInfo",
    "ModelState",
    "create_backend",
]
