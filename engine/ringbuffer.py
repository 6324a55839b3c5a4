"""A preallocated single-producer single-consumer ring of float32 samples.

The audio callback and the inference worker talk through these, so neither ever waits on
the other: no locks, no allocation after construction. Only the writer moves `_written` and
only the reader moves `_read`; each is a Python int assigned after the data is copied, and
int assignment is atomic under the GIL, so the other side never sees a half-written block.
Both counters are absolute sample counts, which also tells a reader exactly which sample it
is about to play.
"""

from __future__ import annotations

import numpy as np


class RingBuffer:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._data = np.zeros(capacity, np.float32)
        self._written = 0  # total samples ever written (writer only)
        self._read = 0  # total samples ever read (reader only)

    def available(self) -> int:
        return self._written - self._read

    def space(self) -> int:
        return self.capacity - self.available()

    def write(self, samples: np.ndarray) -> int:
        """Append as many samples as fit; returns how many were written."""
        n = min(len(samples), self.space())
        start = self._written % self.capacity
        first = min(n, self.capacity - start)
        self._data[start : start + first] = samples[:first]
        self._data[: n - first] = samples[first:n]
        self._written += n
        return n

    def read_into(self, out: np.ndarray) -> int:
        """Fill `out` from the oldest samples; returns how many were available (the rest of
        `out` is left untouched)."""
        n = min(len(out), self.available())
        start = self._read % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self._data[start : start + first]
        out[first:n] = self._data[: n - first]
        self._read += n
        return n

    def read(self, n: int) -> np.ndarray:
        """Up to n samples as a new array (not for the audio callback: it allocates)."""
        out = np.empty(min(n, self.available()), np.float32)
        self.read_into(out)
        return out

    def peek(self) -> np.ndarray:
        """Every unread sample as a new array, left unread (a snapshot's copy; allocates)."""
        out = np.empty(self.available(), np.float32)
        start = self._read % self.capacity
        first = min(len(out), self.capacity - start)
        out[:first] = self._data[start : start + first]
        out[first:] = self._data[: len(out) - first]
        return out

    def skip(self, n: int) -> int:
        """Drop up to n of the oldest samples (the reader's side)."""
        n = min(n, self.available())
        self._read += n
        return n
