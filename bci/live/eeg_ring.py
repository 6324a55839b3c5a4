"""The EEG input's ring: the newest samples with their stamps and grid slots, preallocated."""

from __future__ import annotations

import numpy as np


class EegRing:
    """Preallocated ring of (timestamps, grid indices, samples [channels]); the newest N read
    as arrays. Grid indices (bci.live.sample_grid) count the slots a sample took, gaps included, so
    the samples missing from a stretch are counted on them, whatever the stamps did."""

    def __init__(self, channels: int, capacity: int) -> None:
        self.capacity = capacity
        self._timestamps = np.zeros(capacity)
        self._indices = np.zeros(capacity, dtype=np.int64)
        self._samples = np.zeros((channels, capacity))
        self._total = 0  # samples ever written; the next one goes to slot total % capacity

    @property
    def total(self) -> int:
        return self._total

    def write(self, timestamps: np.ndarray, samples: np.ndarray, indices: np.ndarray) -> None:
        """Append `timestamps` [n], `samples` [channels, n] and their grid `indices` [n]."""
        n = len(timestamps)
        if samples.shape != (len(self._samples), n) or len(indices) != n:
            raise ValueError(f"samples {samples.shape} or indices do not match {n} stamps")
        kept = np.arange(max(0, n - self.capacity), n)  # older ones would be overwritten anyway
        slots = (self._total + kept) % self.capacity
        self._timestamps[slots] = timestamps[kept]
        self._indices[slots] = indices[kept]
        self._samples[:, slots] = samples[:, kept]
        self._total += n

    def latest(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the newest n (fewer if not filled): (timestamps [n], samples [channels, n])."""
        return self.ending_at(self._total, n)

    def ending_at(self, end: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Like `latest`, for the n samples before sample number `end` (counting every sample
        ever written from 0); only those still held."""
        slots = self._slots(end, n)
        return self._timestamps[slots], self._samples[:, slots]

    def indices_ending_at(self, end: int, n: int) -> np.ndarray:
        """The grid indices of the samples `ending_at(end, n)` returns."""
        return self._indices[self._slots(end, n)]

    def _slots(self, end: int, n: int) -> np.ndarray:
        end = min(end, self._total)
        return np.arange(max(end - n, self._total - self.capacity, 0), end) % self.capacity
