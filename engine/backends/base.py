"""What every inference backend provides: one streaming step of codec + generator + codec,
for a batch of sessions, with the state explicit and batch-first.

One step takes each session's newest input hop and returns the accompaniment hop for frame
t + a: encode the hop to a mix latent, generate the accompaniment latent, decode it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engine.checkpoint import ModelInfo


@dataclass
class ModelState:
    """All model-side streaming state of B sessions. Every array's first axis is the batch,
    so batching sessions is a concatenation and un-batching a split."""

    encoder: list[np.ndarray]
    decoder: list[np.ndarray]
    generator: list[np.ndarray]  # position [B], keys, values [B, layers, H, W, Dh]

    @property
    def batch(self) -> int:
        return int(self.generator[0].shape[0])

    @property
    def position(self) -> int:
        """The frame the (first) stream is at: how many hops it has stepped."""
        return int(self.generator[0][0])

    @staticmethod
    def concat(states: list[ModelState]) -> ModelState:
        def join(group: str) -> list[np.ndarray]:
            columns = zip(*(getattr(s, group) for s in states), strict=True)
            return [np.concatenate(column) for column in columns]

        return ModelState(join("encoder"), join("decoder"), join("generator"))

    def split(self) -> list[ModelState]:
        return [
            ModelState(
                [a[i : i + 1] for a in self.encoder],
                [a[i : i + 1] for a in self.decoder],
                [a[i : i + 1] for a in self.generator],
            )
            for i in range(self.batch)
        ]

    def copy(self) -> ModelState:
        return ModelState(
            [a.copy() for a in self.encoder],
            [a.copy() for a in self.decoder],
            [a.copy() for a in self.generator],
        )


class Backend(Protocol):
    name: str  # "onnx-cpu", "onnx-cuda", "torch-cpu", "torch-cuda"
    info: ModelInfo

    def initial_state(self, batch: int = 1) -> ModelState: ...

    def step(
        self, state: ModelState, audio: np.ndarray, noise: np.ndarray
    ) -> tuple[ModelState, np.ndarray]:
        """audio [B, hop], noise [B, noise_dim] float32 -> (state, accompaniment [B, hop])."""
        ...
