"""Random crops of training audio for the codec, from a rotating in-memory pool of examples.

Decoding FLAC for every crop would cost more than a CPU training step, and the whole build does
not fit in memory; so a pool of examples is held as float16 and one example is swapped for a
new one every few steps. The codec learns every signal the system hears: live parts,
accompaniments and full mixes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data.manifest import ExampleMeta, load_roles

KINDS = ("live", "accompaniment", "mix")


class AudioPool:
    def __init__(
        self,
        root: Path,
        examples: list[ExampleMeta],
        pool_size: int,
        rng: np.random.Generator,
        progress: bool = False,
    ):
        if not examples:
            raise ValueError("no examples to train on")
        self.root, self.examples, self.rng = root, examples, rng
        chosen = rng.choice(len(examples), size=min(pool_size, len(examples)), replace=False)
        from tqdm import tqdm

        self.pool = [
            self._load(examples[i]) for i in tqdm(chosen, "loading audio", disable=not progress)
        ]

    def _load(self, example: ExampleMeta) -> tuple[np.ndarray, np.ndarray]:
        live, accompaniment = load_roles(self.root, example)
        return live.astype(np.float16), accompaniment.astype(np.float16)

    def rotate(self) -> None:
        """Swap one pooled example for a random one from the whole split."""
        slot = int(self.rng.integers(len(self.pool)))
        self.pool[slot] = self._load(self.examples[int(self.rng.integers(len(self.examples)))])

    def crop(self, length: int, min_rms: float = 1e-3, tries: int = 8) -> np.ndarray:
        """A random crop of a live part, an accompaniment or a mix; mostly not silence."""
        for _ in range(tries):
            live, accompaniment = self.pool[int(self.rng.integers(len(self.pool)))]
            start = int(self.rng.integers(0, max(1, len(live) - length)))
            kind = KINDS[int(self.rng.integers(len(KINDS)))]
            if kind == "live":
                audio = live[start : start + length].astype(np.float32)
            elif kind == "accompaniment":
                audio = accompaniment[start : start + length].astype(np.float32)
            else:
                segment = slice(start, start + length)
                audio = live[segment].astype(np.float32) + accompaniment[segment].astype(np.float32)
            audio = np.pad(audio, (0, length - len(audio)))
            if np.sqrt(np.mean(audio**2)) >= min_rms:
                break
        return audio

    def batch(self, batch_size: int, length: int) -> np.ndarray:
        return np.stack([self.crop(length) for _ in range(batch_size)])


def fixed_crops(
    root: Path, examples: list[ExampleMeta], count: int, length: int, seed: int
) -> np.ndarray:
    """The same validation crops every time: `count` crops cycling through the three kinds."""
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        example = examples[i % len(examples)]
        live, accompaniment = load_roles(root, example)
        signal = {"live": live, "accompaniment": accompaniment, "mix": live + accompaniment}[
            KINDS[i % len(KINDS)]
        ]
        start = int(rng.integers(0, max(1, len(signal) - length)))
        crop = signal[start : start + length]
        crops.append(np.pad(crop, (0, length - len(crop))))
    return np.stack(crops).astype(np.float32)
