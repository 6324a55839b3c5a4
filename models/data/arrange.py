"""Seeded choices that turn a Piece into something to render: the augmentations.

Every choice comes from a generator keyed by (build seed, piece id), so a piece renders the
same whatever else is in the build and in whatever order the build runs.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from models.data.piece import Piece, Role
from models.data.render import DRUM_CHANNEL, PERCUSSION_BANK, Track, note_events

# General MIDI programs that suit each role; a piece draws one per voice.
PROGRAM_POOLS: dict[Role, tuple[int, ...]] = {
    # piano, e-piano, vibes, organ, nylon/jazz guitar, violin, trumpet, sax, oboe, clarinet, flute
    "melody": (0, 4, 11, 16, 24, 26, 40, 56, 65, 68, 71, 73, 74, 80),
    # piano, e-piano, organs, guitars, viola, cello, strings, choir, horn, bassoon, pad
    "harmony": (0, 4, 16, 19, 24, 25, 41, 42, 48, 49, 52, 60, 70, 89),
    # acoustic/electric/fretless/synth bass, cello, contrabass, bassoon, tuba, trombone
    "bass": (32, 33, 34, 35, 38, 42, 43, 57, 58, 70),
    # standard, room, power, electronic, TR-808, jazz, brush kits
    "drums": (0, 8, 16, 24, 25, 32, 40),
}
PITCHED_CHANNELS = tuple(c for c in range(16) if c != DRUM_CHANNEL)


@dataclass(frozen=True)
class AugmentConfig:
    transpose_semitones: int = 4  # up to this many semitones either way
    tempo_jitter: float = 0.1  # +- this fraction around a tempo drawn from the piece's range
    volume_range: tuple[int, int] = (80, 127)  # MIDI CC7 per voice: the gain augmentation
    max_seconds: float = 60.0  # longer pieces are cut here
    tail_seconds: float = 1.0  # room for the last release


@dataclass(frozen=True)
class VoicePlan:
    name: str
    channel: int
    bank: int
    program: int
    volume: int
    notes: tuple[tuple[int, float, float, int], ...]  # (pitch, start_s, end_s, velocity)

    def track(self, sample_rate: int) -> Track:
        events = note_events(list(self.notes), sample_rate)
        return Track(self.channel, self.bank, self.program, self.volume, events)


@dataclass(frozen=True)
class Arrangement:
    piece_id: str
    soundfont: str
    transpose: int
    bpm: float
    duration_s: float
    voices: tuple[VoicePlan, ...]


def piece_rng(seed: int, piece_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(piece_id.encode())])


def arrange(
    piece: Piece, seed: int, soundfonts: tuple[str, ...], config: AugmentConfig
) -> Arrangement:
    rng = piece_rng(seed, piece.piece_id)
    soundfont = soundfonts[int(rng.integers(len(soundfonts)))]
    low, high = piece.pitch_range()
    # Keep every pitch on the piano keyboard after transposing.
    shift_low = max(-config.transpose_semitones, 21 - low)
    shift_high = min(config.transpose_semitones, 108 - high)
    transpose = int(rng.integers(shift_low, shift_high + 1)) if shift_low <= shift_high else 0
    bpm = float(rng.uniform(*piece.bpm_range)) * (
        1.0 + float(rng.uniform(-config.tempo_jitter, config.tempo_jitter))
    )
    seconds_per_beat = 60.0 / bpm
    shaped = piece.transposed(transpose).truncated(config.max_seconds / seconds_per_beat)

    voices: list[VoicePlan] = []
    pitched = iter(PITCHED_CHANNELS)
    for voice in shaped.voices:
        if voice.is_drums:
            channel, bank = DRUM_CHANNEL, PERCUSSION_BANK
        else:
            channel, bank = next(pitched), 0
        program = int(rng.choice(PROGRAM_POOLS[voice.role]))
        volume = int(rng.integers(config.volume_range[0], config.volume_range[1] + 1))
        notes = tuple(
            (
                n.pitch,
                n.start * seconds_per_beat,
                (n.start + n.duration) * seconds_per_beat,
                n.velocity,
            )
            for n in voice.notes
        )
        voices.append(VoicePlan(voice.name, channel, bank, program, volume, notes))
    end = max((n[2] for v in voices for n in v.notes), default=0.0)
    return Arrangement(
        piece_id=piece.piece_id,
        soundfont=soundfont,
        transpose=transpose,
        bpm=bpm,
        duration_s=end + config.tail_seconds,
        voices=tuple(voices),
    )
