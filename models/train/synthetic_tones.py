"""Synthetic tones for codec training: partials at any frequency, not only the equal-tempered
ones the rendered scores hold.

The decoder learns where inside a semitone band a partial sits from the band energies around
it. The rendered music puts partials near semitone centres (and at the harmonics of notes on
them), so a decoder trained on it alone hedges elsewhere: a sine between two semitones came
back with a second peak beside it, and a chord probe of pure tones counted extra notes. Mixed
into a share of the batches, these signals teach it to place any partial: 1-4 tones (a sine,
or a few harmonics of random strength), log-uniform from 55 Hz to 4 kHz, starting and ending
at random times, some gliding.
"""

from __future__ import annotations

import numpy as np

RATE = 48_000


def synthetic_crop(length: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(length) / RATE
    out = np.zeros(length)
    for _ in range(int(rng.integers(1, 5))):
        f0 = float(np.exp(rng.uniform(np.log(55.0), np.log(4000.0))))
        glide = 2 ** (rng.uniform(-1, 1) * t / t[-1]) if rng.random() < 0.2 else 1.0
        phase = 2 * np.pi * np.cumsum(f0 * glide) / RATE
        partials = 1 if rng.random() < 0.5 else int(rng.integers(2, 7))
        amplitudes = rng.uniform(0.1, 1.0, partials) / np.arange(1, partials + 1)
        tone = sum(
            a * np.sin(k * phase) for k, a in zip(range(1, partials + 1), amplitudes, strict=True)
        )
        start, stop = sorted(rng.integers(0, length, 2))
        if rng.random() < 0.5:  # half sound through the whole crop
            start, stop = 0, length
        ramp = np.clip(np.minimum(t - t[start], t[stop - 1] - t) / 0.01, 0, 1)
        out += (
            rng.uniform(0.05, 0.3) * tone * np.where((t >= t[start]) & (t <= t[stop - 1]), ramp, 0)
        )
    return out.astype(np.float32)
