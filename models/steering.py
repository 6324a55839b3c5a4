"""`bandmate steer build`: difference-in-means steering vectors for a trained generator.

The activation-steering seed paper finds, in a music transformer's residual stream, a
direction per attribute as the mean activation over examples high in the attribute minus the
mean over examples low in it (DiffMean), and adds alpha times it at inference. Here:
- the generator runs over the training data's live parts (with noise, as it plays) and its
  residual stream after every layer is read at every frame t;
- frame t is ranked by the attribute of the *real* accompaniment at t + a, the frame that
  output t plays (models/attributes.py, the one definition of the attributes);
- per attribute and layer, the vector is the mean residual over frames in the top quantile
  minus the mean over the bottom quantile, among frames where the accompaniment sounds.
Vectors are kept for the chosen layers only (zero elsewhere) and ship in the checkpoint as
named tensors (models/checkpoint.py); the ONNX step graph takes alpha as an input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from models.attributes import ATTRIBUTES, frame_attributes
from models.generator import Generator
from models.spectral import SpectralConfig
from models.train.latents import LatentSet

# Frames where the accompaniment is within this of the quietest sounding level are left out:
# the attributes of near-silence (the centroid of the floor) say nothing about the music.
SOUNDING_ABOVE_FLOOR_DB = 20.0


@dataclass(frozen=True)
class SteeringBuildConfig:
    layers: tuple[int, ...] = (2, 3)  # where vectors are added (0 = after the first block)
    quantile: float = 0.2  # top and bottom share of frames contrasted
    max_examples: int | None = 120  # training examples read (None: all)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.quantile <= 0.5:
            raise ValueError(f"quantile must be in (0, 0.5], not {self.quantile}")


@dataclass(frozen=True)
class SteeringVectors:
    vectors: dict[str, torch.Tensor]  # attribute -> [layers, d_model]
    layers: tuple[int, ...]
    quantile: float
    frames: int  # sounding frames the means were taken over
    examples: int


def _chunks(length: int, window: int) -> list[tuple[int, int, int]]:
    """(start, end, keep_from) chunks of at most 2W frames; every kept frame has its whole
    W-frame context inside its chunk, as in a stream."""
    chunks, start = [], 0
    while start < length:
        context = 0 if start == 0 else window
        begin = start - context
        end = min(length, begin + 2 * window)
        chunks.append((begin, end, context))
        start = end
    return chunks


def accompaniment_attributes(
    generator: Generator, latents: np.ndarray, spectral: SpectralConfig
) -> np.ndarray:
    """Standardised latents [T, D] -> attributes [T, len(ATTRIBUTES)]."""
    with torch.no_grad():
        log_energy = generator.log_energy(torch.from_numpy(latents.astype(np.float32)))
    return frame_attributes(log_energy.numpy(), spectral)


def check_layers(generator: Generator, config: SteeringBuildConfig) -> None:
    """Before any data is read: the layers must exist in this generator."""
    n_layers = generator.config.n_layers
    if any(not 0 <= layer < n_layers for layer in config.layers):
        raise ValueError(f"layers must be within 0..{n_layers - 1}, not {config.layers}")


def build_vectors(
    generator: Generator,
    latents: LatentSet,
    spectral: SpectralConfig,
    config: SteeringBuildConfig,
    progress: bool = True,
) -> SteeringVectors:
    c = generator.config
    check_layers(generator, config)
    ids = latents.indices("train") or list(range(len(latents.live)))
    ids = ids[: config.max_examples]
    a = c.anticipation
    floor_db = 10 * np.log10(spectral.bands * spectral.floor**2)
    # Pass 1 (numpy only): the attributes of every sounding target frame, for the quantiles.
    targets = []
    for i in ids:
        attributes = accompaniment_attributes(generator, latents.accompaniment[i], spectral)[a:]
        sounding = attributes[:, ATTRIBUTES.index("loudness")] > floor_db + SOUNDING_ABOVE_FLOOR_DB
        targets.append((attributes, sounding))
    pooled = np.concatenate([t[sounding] for t, sounding in targets])
    if len(pooled) < 10:
        raise ValueError("too few sounding accompaniment frames to build steering vectors")
    low = np.quantile(pooled, config.quantile, axis=0)
    high = np.quantile(pooled, 1 - config.quantile, axis=0)
    # Pass 2: the generator's residual stream, summed over each attribute's top and bottom.
    shape = (len(ATTRIBUTES), c.n_layers, c.d_model)
    sums = {
        "high": torch.zeros(shape, dtype=torch.float64),
        "low": torch.zeros(shape, dtype=torch.float64),
    }
    counts = {"high": np.zeros(len(ATTRIBUTES)), "low": np.zeros(len(ATTRIBUTES))}
    torch.manual_seed(config.seed)
    generator.eval()
    for i, (attributes, sounding) in tqdm(
        list(zip(ids, targets, strict=True)), desc="steering vectors", unit="example",
        disable=not progress,
    ):  # fmt: skip
        live = torch.from_numpy(latents.live[i].astype(np.float32))[: len(attributes)]
        for begin, end, keep in _chunks(len(live), c.window):
            noise = torch.randn(1, end - begin, c.noise_dim)
            with torch.no_grad():
                residual = generator.residuals(live[None, begin:end], noise)[0, keep:]
            frames = slice(begin + keep, end)
            for k in range(len(ATTRIBUTES)):
                values, mask = attributes[frames, k], sounding[frames]
                for side, chosen in (("high", values >= high[k]), ("low", values <= low[k])):
                    pick = torch.from_numpy(mask & chosen)
                    sums[side][k] += residual[pick].double().sum(0)
                    counts[side][k] += int(pick.sum())
    vectors: dict[str, torch.Tensor] = {}
    keep_layers = torch.zeros(c.n_layers, 1, dtype=torch.float64)
    keep_layers[list(config.layers)] = 1.0
    for k, name in enumerate(ATTRIBUTES):
        if min(counts["high"][k], counts["low"][k]) == 0:
            raise ValueError(f"no frames in the top or bottom quantile of {name}")
        difference = sums["high"][k] / counts["high"][k] - sums["low"][k] / counts["low"][k]
        vectors[name] = (difference * keep_layers).float()
    return SteeringVectors(vectors, config.layers, config.quantile, len(pooled), len(ids))
