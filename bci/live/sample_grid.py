"""Placing an EEG stream's LSL stamps on its nominal sample grid: gaps counted, jitter smoothed,
clock jumps taken out.

Why our own grid, not liblsl's `proc_dejitter`: that regresses stamps on the *count* of samples
received, so a 0.5 s dropout smears into stamps drifting apart for many seconds (measured,
pylsl 1.18) and gaps cannot be counted. Nor `proc_monotonize`: it clamps a stamp that goes
back to the one before, so a 5 s step back of the sender's clock arrives as 5 s of equal
stamps instead of one step that can be seen and taken out.

Each sample is judged by the interval since the previous sample's stamp, after the jumps so
far are taken out:
- up to `tolerance` longer or shorter than one period: the next sample. Bluetooth bridges stamp
  chunks on arrival, moving whole chunks by milliseconds, more than a sample period at 256 Hz;
- longer: a gap of round(interval * rate) - 1 missing samples, unless it is longer than the
  local time since the previous chunk arrived (plus `jump_slack_s`): samples cannot go
  missing faster than time passes, so that is the sender's clock stepping forward;
- further back than `tolerance`: the sender's clock stepping back.
A jump is taken out of that sample's stamp and every later one, so the placed timeline stays
continuous and increasing (the samples kept coming at the nominal rate; only their stamps
moved); each jump is reported for the input to log. Gaps shorter than `tolerance` cannot be
told from jitter: they move the timeline rather than count as dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GridConfig:
    # Stamp jitter taken for the next sample, never a gap. 20 ms: at 256 Hz a lost Muse packet
    # (12 samples, 47 ms) still counts, while chunks moved by up to +-10 ms do not. Never less
    # than half a period (the strict rule, for slow streams).
    tolerance_s: float = 0.02
    smoothing_s: float = 1.0  # time constant of the placed timeline's offset
    jump_slack_s: float = 1.0  # delivery may bunch up: a gap may exceed the wait this much

    def __post_init__(self) -> None:
        if not (self.tolerance_s >= 0 and self.smoothing_s > 0 and self.jump_slack_s >= 0):
            raise ValueError("need tolerance_s >= 0, smoothing_s > 0 and jump_slack_s >= 0")


@dataclass(frozen=True)
class Jump:
    at: float  # placed stamp of the first sample after the jump
    by_s: float  # how far the sender's stamps stepped (negative: back)


@dataclass(frozen=True)
class Placement:
    stamps: np.ndarray  # [n] dejittered, continuous across jumps
    indices: np.ndarray  # [n] int64 grid slot of each sample: strictly increasing, gaps skipped
    missing: int  # samples missing before and between these
    jumps: tuple[Jump, ...]


class NominalGrid:
    """Places clock-corrected stamps on the nominal grid (rules in the module docstring). Each
    sample gets its grid index and the stamp `offset + index / rate`, the offset smoothing the
    residuals (time constant `smoothing_s`). Steps follow stamp intervals, not the grid, so a
    device a little off its nominal rate shows no false gaps."""

    def __init__(self, rate: float, config: GridConfig | None = None) -> None:
        self.rate = rate
        self.config = config or GridConfig()
        self._tolerance = max(self.config.tolerance_s, 0.5 / rate)
        self._index = 0  # grid index of the newest sample
        self._last_stamp: float | None = None  # newest stamp, jumps taken out
        self._shift = 0.0  # sum of the jumps so far: sender stamps minus our timeline
        self._offset: float | None = None

    def place(self, stamps: np.ndarray, waited_s: float = math.inf) -> Placement:
        """Place stamps [n > 0], received `waited_s` (local time) after the previous ones."""
        period = 1.0 / self.rate
        steady = stamps - self._shift
        previous = steady[0] - period if self._last_stamp is None else self._last_stamp
        intervals = np.diff(steady, prepend=previous)
        late = intervals > period + self._tolerance
        jumped = late & (intervals > waited_s + self.config.jump_slack_s)
        jumped |= intervals < -self._tolerance
        moved = np.where(jumped, intervals - period, 0.0)
        steady -= np.cumsum(moved)
        self._shift += float(moved.sum())
        gaps = late & ~jumped
        steps = np.where(gaps, np.rint(intervals * self.rate), 1).astype(np.int64)
        indices = self._index + np.cumsum(steps)
        missing = int(indices[-1] - self._index) - len(stamps)
        residual = float(np.mean(steady - indices * period))
        if self._offset is None:
            self._offset = residual
        else:
            gain = -math.expm1(-len(stamps) / (self.config.smoothing_s * self.rate))
            self._offset += gain * (residual - self._offset)
        self._index, self._last_stamp = int(indices[-1]), float(steady[-1])
        placed = self._offset + indices * period
        jumps = tuple(Jump(float(placed[i]), float(moved[i])) for i in np.flatnonzero(jumped))
        return Placement(placed, indices, missing, jumps)
