"""Emotion -> music: valence (and optional arousal) in [-1, 1] mapped to musical parameters.

The mapping follows the usual findings of music-emotion research: brighter modes, faster
tempi, busier, higher and louder playing read as more positive; arousal is carried mostly by
tempo. Every parameter is a plain linear or binned function of its input, so a listener (and
a test) can predict what a given valence sounds like.

| input           | parameter  | at -1            | at +1            | shape                      |
|-----------------|------------|------------------|------------------|----------------------------|
| valence         | mode       | locrian          | lydian           | 7 equal bins, hysteresis   |
| arousal*        | tempo_bpm  | tempo_range[0]   | tempo_range[1]   | linear                     |
| valence         | density    | density_range[0] | density_range[1] | linear                     |
| valence         | register   | register_range[0]| register_range[1]| linear, rounded semitones  |
| valence         | velocity   | velocity_range[0]| velocity_range[1]| linear, rounded            |

(*) tempo follows valence when no arousal is given.

Modes are ordered from brightest to darkest by how many scale degrees are raised relative
to the tonic (lydian raises the 4th; each next mode lowers one more degree, ending with
locrian's flat 2nd and flat 5th). The 7 bins split [-1, 1] equally: valence 0 sits in the
middle of the dorian bin. Near a bin boundary an EEG estimate jitters from frame to frame,
so the mode only changes when valence goes past the current bin's edge by
`MappingConfig.hysteresis`; the other parameters are continuous and need no such guard.

Inputs are clipped to [-1, 1] first (why: a decoder can overshoot a little, and a louder or
faster extreme than configured is never wanted); NaN raises, because it means the EEG side
is broken and silently mapping it to some mode would hide that.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from models.chords.vocab import MODES as SCALES

# Semitones of each of the 7 scale degrees above the mode's tonic, brightest -> darkest: one
# table for the composer and the chord model's data (a plain-Python module, no torch).
MODE_INTERVALS: dict[str, tuple[int, ...]] = SCALES
MODES: tuple[str, ...] = tuple(MODE_INTERVALS)

MODE_BIN_WIDTH = 2.0 / len(MODES)


@dataclass(frozen=True)
class MappingConfig:
    tonic: int = 60  # MIDI note of the key's tonic (C4)
    tempo_range: tuple[float, float] = (70.0, 130.0)  # BPM at -1 .. +1
    density_range: tuple[float, float] = (0.25, 0.85)  # probability that a melody step sounds
    register_range: tuple[int, int] = (-5, 7)  # semitones of melody transposition, low..high
    velocity_range: tuple[int, int] = (55, 105)
    # Valence must cross a mode boundary by this much to change mode (why: no flicker).
    hysteresis: float = 0.05

    def __post_init__(self) -> None:
        if not 0 <= self.tonic <= 127:
            raise ValueError(f"tonic must be a MIDI note 0..127, got {self.tonic}")
        if not 0 < self.tempo_range[0] <= self.tempo_range[1]:
            raise ValueError(f"tempo_range must be positive and ordered, got {self.tempo_range}")
        if not 0 <= self.density_range[0] <= self.density_range[1] <= 1:
            raise ValueError(f"density_range must be ordered within 0..1: {self.density_range}")
        if self.register_range[0] > self.register_range[1]:
            raise ValueError(f"register_range must be ordered, got {self.register_range}")
        if not 1 <= self.velocity_range[0] <= self.velocity_range[1] <= 127:
            raise ValueError(f"velocity_range must be ordered within 1..127: {self.velocity_range}")
        # A margin as wide as a bin would make some modes unreachable once left.
        if not 0 <= self.hysteresis < MODE_BIN_WIDTH / 2:
            raise ValueError(
                f"hysteresis must be in [0, {MODE_BIN_WIDTH / 2:.3f}), got {self.hysteresis}"
            )


@dataclass(frozen=True)
class MusicParams:
    mode: str
    tempo_bpm: float
    density: float
    register: int
    velocity: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def clipped_unit(value: float, name: str) -> float:
    """Clip to [-1, 1]; NaN raises (it means an upstream failure, not an emotion)."""
    if math.isnan(value):
        raise ValueError(f"{name} is NaN")
    return min(1.0, max(-1.0, float(value)))


def interpolate(unit: float, low: float, high: float) -> float:
    """-1 -> low, +1 -> high, linear in between (this form hits both ends exactly)."""
    weight = (unit + 1.0) / 2.0
    return low * (1.0 - weight) + high * weight


def brightness_bin(valence: float) -> int:
    """0 (darkest, valence -1) .. len(MODES) - 1 (brightest, valence +1)."""
    return min(len(MODES) - 1, int((valence + 1.0) / MODE_BIN_WIDTH))


class ParameterMapper:
    """Stateful only in the current mode, which the hysteresis needs; reset() forgets it."""

    def __init__(self, config: MappingConfig) -> None:
        self.config = config
        self.current_bin: int | None = None

    def reset(self) -> None:
        self.current_bin = None

    def map(self, valence: float, arousal: float | None = None) -> MusicParams:
        valence = clipped_unit(valence, "valence")
        tempo_driver = valence if arousal is None else clipped_unit(arousal, "arousal")
        config = self.config
        self.current_bin = self.mode_bin(valence)
        return MusicParams(
            mode=MODES[len(MODES) - 1 - self.current_bin],
            tempo_bpm=interpolate(tempo_driver, *config.tempo_range),
            density=interpolate(valence, *config.density_range),
            register=round(interpolate(valence, *config.register_range)),
            velocity=round(interpolate(valence, *config.velocity_range)),
        )

    def mode_bin(self, valence: float) -> int:
        target = brightness_bin(valence)
        if self.current_bin is None or target == self.current_bin:
            return target
        low_edge = -1.0 + self.current_bin * MODE_BIN_WIDTH
        high_edge = low_edge + MODE_BIN_WIDTH
        margin = self.config.hysteresis
        if low_edge - margin < valence < high_edge + margin:
            return self.current_bin
        return target
