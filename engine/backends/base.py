"""What every inference backend provides: one streaming step of codec + generator + codec,
for a batch of sessions, with the state explicit and batch-first.

One step takes each session's newest input hop and returns the accompaniment hop for frame
t + a, in three parts that `step` composes and the latency benchmark times one by one:
- encode: the codec's fixed analysis (numpy, models/spectral.py) then its encoder network;
- generate: the generator's step over its rolling KV window;
- decode: the decoder network to log-magnitude frames, then the fixed synthesis (numpy:
  phase reconstruction and overlap-add).
A backend supplies only the three networks (`run_encoder`, `run_generator`, `run_decoder`);
the signal processing around them is the same code for every backend and for training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from engine.checkpoint import EngineCheckpoint, ModelInfo
from engine.errors import EngineError
from models.attributes import ATTRIBUTES
from models.spectral import SpectralCodec

Arrays = list[np.ndarray]


@dataclass
class GeneratorState:
    """The generator's rolling KV window for B sessions (models/generator.py's KVState, as
    numpy arrays), batch-first like every state."""

    position: np.ndarray  # [B] int64: frames stepped so far
    keys: np.ndarray  # [B, layers, H, W, Dh]
    values: np.ndarray  # [B, layers, H, W, Dh]

    @staticmethod
    def concat(states: list[GeneratorState]) -> GeneratorState:
        return GeneratorState(
            position=np.concatenate([s.position for s in states]),
            keys=np.concatenate([s.keys for s in states]),
            values=np.concatenate([s.values for s in states]),
        )

    def row(self, i: int) -> GeneratorState:
        return GeneratorState(
            self.position[i : i + 1], self.keys[i : i + 1], self.values[i : i + 1]
        )

    def copy(self) -> GeneratorState:
        return GeneratorState(self.position.copy(), self.keys.copy(), self.values.copy())


@dataclass
class ModelState:
    """All model-side streaming state of B sessions. Every array's first axis is the batch,
    so batching sessions is a concatenation and un-batching a split."""

    analysis: Arrays  # the input samples the next analysis window still needs
    encoder: Arrays  # the encoder network's state, in its step graph's state order
    generator: GeneratorState | None  # None for a codec-only checkpoint (`bandmate codec`)
    decoder: Arrays  # the decoder network's convolution caches, in its graph's state order
    synthesis: Arrays  # previous log-magnitude and phase, overlap-add tail

    @property
    def batch(self) -> int:
        return int(self.analysis[0].shape[0])

    @staticmethod
    def concat(states: list[ModelState]) -> ModelState:
        def join(arrays: list[Arrays]) -> Arrays:
            return [np.concatenate(column) for column in zip(*arrays, strict=True)]

        generators = [s.generator for s in states if s.generator is not None]
        return ModelState(
            analysis=join([s.analysis for s in states]),
            encoder=join([s.encoder for s in states]),
            generator=GeneratorState.concat(generators) if generators else None,
            decoder=join([s.decoder for s in states]),
            synthesis=join([s.synthesis for s in states]),
        )

    def split(self) -> list[ModelState]:
        def row(i: int) -> ModelState:
            def take(arrays: Arrays) -> Arrays:
                return [a[i : i + 1] for a in arrays]

            return ModelState(
                analysis=take(self.analysis),
                encoder=take(self.encoder),
                generator=None if self.generator is None else self.generator.row(i),
                decoder=take(self.decoder),
                synthesis=take(self.synthesis),
            )

        return [row(i) for i in range(self.batch)]

    def copy(self) -> ModelState:
        """Its own arrays, so a kept state (a session's snapshot) holds whatever happens to
        the one it was taken from."""

        def own(arrays: Arrays) -> Arrays:
            return [a.copy() for a in arrays]

        return ModelState(
            analysis=own(self.analysis),
            encoder=own(self.encoder),
            generator=None if self.generator is None else self.generator.copy(),
            decoder=own(self.decoder),
            synthesis=own(self.synthesis),
        )


class Backend(Protocol):
    name: str  # "onnx-cpu", "onnx-cuda", "torch-cpu", "torch-cuda"
    info: ModelInfo

    def initial_state(self, batch: int = 1) -> ModelState: ...

    def step(
        self,
        state: ModelState,
        audio: np.ndarray,
        noise: np.ndarray,
        steer: np.ndarray | None = None,
    ) -> tuple[ModelState, np.ndarray]:
        """audio [B, hop], noise [B, noise_dim], steer (alpha per steering attribute, in
        models.attributes.ATTRIBUTES order) [B, A] or None, float32
        -> (state, accompaniment [B, hop])."""
        ...


class ModelBackend:
    """The composition every backend shares; subclasses run the three networks."""

    name: str

    def __init__(self, checkpoint: EngineCheckpoint):
        self.info: ModelInfo = checkpoint.info
        self.spectral = SpectralCodec(checkpoint.spectral)

    # -- the networks, per backend ------------------------------------------------------------
    def network_state(self, batch: int) -> tuple[Arrays, GeneratorState | None, Arrays]:
        """Initial (encoder, generator, decoder) state; no generator in a codec-only one."""
        raise NotImplementedError

    def run_encoder(self, bands: np.ndarray, state: Arrays) -> tuple[np.ndarray, Arrays]:
        raise NotImplementedError

    def run_generator(
        self, latent: np.ndarray, noise: np.ndarray, steer: np.ndarray, state: GeneratorState
    ) -> tuple[np.ndarray, GeneratorState]:
        raise NotImplementedError

    def run_decoder(self, latent: np.ndarray, state: Arrays) -> tuple[np.ndarray, Arrays]:
        raise NotImplementedError

    def threads(self) -> dict[str, int]:
        """The threads the runtime really uses (intra_op, inter_op), read back from it."""
        raise NotImplementedError

    # -- the composition ------------------------------------------------------------------------
    def initial_state(self, batch: int = 1) -> ModelState:
        encoder, generator, decoder = self.network_state(batch)
        return ModelState(
            analysis=self.spectral.initial_analysis_state(batch),
            encoder=encoder,
            generator=generator,
            decoder=decoder,
            synthesis=self.spectral.initial_synthesis_state(batch),
        )

    def encode(self, state: ModelState, audio: np.ndarray) -> tuple[np.ndarray, ModelState]:
        """audio [B, hop] -> the live part's latent [B, D]."""
        bands, analysis = self.spectral.analysis_step(state.analysis, audio)
        latent, encoder = self.run_encoder(bands, state.encoder)
        return latent, replace(state, analysis=analysis, encoder=encoder)

    def generate(
        self,
        state: ModelState,
        latent: np.ndarray,
        noise: np.ndarray,
        steer: np.ndarray | None = None,
    ) -> tuple[np.ndarray, ModelState]:
        """The live part's latent for frame t -> the accompaniment latent for frame t + a."""
        if state.generator is None:
            raise EngineError("a codec-only checkpoint cannot generate")
        if steer is None:
            steer = np.zeros((len(latent), len(ATTRIBUTES)), np.float32)
        accompaniment, generator = self.run_generator(latent, noise, steer, state.generator)
        return accompaniment, replace(state, generator=generator)

    def decode(self, state: ModelState, latent: np.ndarray) -> tuple[np.ndarray, ModelState]:
        """An accompaniment latent [B, D] -> one hop of audio [B, hop]."""
        spectrum, decoder = self.run_decoder(latent, state.decoder)
        audio, synthesis = self.spectral.synthesis_step(state.synthesis, spectrum)
        return audio, replace(state, decoder=decoder, synthesis=synthesis)

    def step(
        self,
        state: ModelState,
        audio: np.ndarray,
        noise: np.ndarray,
        steer: np.ndarray | None = None,
    ) -> tuple[ModelState, np.ndarray]:
        latent, state = self.encode(state, audio)
        accompaniment, state = self.generate(state, latent, noise, steer)
        out, state = self.decode(state, accompaniment)
        return state, out
