"""Per-hop compute times and deadline misses, summarised as a host or a benchmark needs them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TelemetrySummary:
    hops: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    misses: int
    real_time_factor: float  # compute time / audio time; below 1 keeps up
    latency_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


class Telemetry:
    """Compute times of the most recent `window` hops (a fixed array, no growth)."""

    def __init__(self, hop_seconds: float, window: int = 4096):
        self.hop_seconds = hop_seconds
        self._times = np.zeros(window)
        self._count = 0
        self.misses = 0
        self.latency_ms = 0.0

    def record(self, seconds: float) -> None:
        self._times[self._count % len(self._times)] = seconds
        self._count += 1

    def miss(self, count: int = 1) -> None:
        self.misses += count

    @property
    def hops(self) -> int:
        return self._count

    def summary(self) -> TelemetrySummary:
        times = self._times[: min(self._count, len(self._times))] * 1e3
        if len(times) == 0:
            return TelemetrySummary(0, 0.0, 0.0, 0.0, self.misses, 0.0, self.latency_ms)
        return TelemetrySummary(
            hops=self._count,
            p50_ms=float(np.percentile(times, 50)),
            p99_ms=float(np.percentile(times, 99)),
            max_ms=float(times.max()),
            misses=self.misses,
            real_time_factor=float(times.mean() / 1e3 / self.hop_seconds),
            latency_ms=self.latency_ms,
        )
