"""A seeded stochastic composer: one bar at a time, four parts, always inside the current mode.

The caller asks for the music bar by bar, handing over the MusicParams of that moment, so a
change of valence is heard from the next bar boundary on and never in the middle of a bar
(why: a mode or tempo change mid-bar sounds like a mistake; at a bar line it sounds composed).

Each bar draws its randomness from its own generator, seeded from (seed, bar). The only state
carried from bar to bar is musical (the harmony's recent chords and the melody's scale step),
so the same seed and the same sequence of MusicParams always give the same notes.

The parts, all pitched notes taken from the mode's scale on `tonic`:
- chords (channel 0): one chord per bar from the harmony (bci/live/harmony.py): by default
  the rules, a diatonic triad whose degree walks over I / ii / IV / V / vi and returns to I
  at the start of each 4-bar phrase; or the learned chord model, pointed at a genre, which
  may also play sevenths, suspensions and other in-scale chords.
- bass (channel 1): the chord's root two octaves down (fifths on busier patterns); busier
  patterns become more likely as density rises.
- melody (channel 2): a walk on an 8th-note grid (16ths once density passes 0.6) around
  tonic + 12 + register; each step sounds with probability density, moves mostly by scale
  steps with occasional leaps, and lands on a chord tone on the beat more often than not.
- drums (channel 9, General MIDI percussion): kick on even beats, snare on odd beats, closed
  hi-hat on the melody's grid with probability density.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bci.live.harmony import SCALE_LENGTH, Harmony, RuleHarmony
from bci.live.mapping import MODE_INTERVALS, MusicParams

PART_CHANNELS: dict[str, int] = {"chords": 0, "bass": 1, "melody": 2, "drums": 9}
KICK, SNARE, CLOSED_HAT = 36, 38, 42  # General MIDI percussion notes

# Melody intervals in scale steps; small steps dominate, leaps stay possible.
MELODY_MOVES: tuple[int, ...] = (-1, -1, -1, 1, 1, 1, 0, -2, 2, -2, 2, -3, 3, -4, 4)
MELODY_REACH = 7  # scale steps the melody may wander from its centre before it is pulled back
CHORD_TONE_ON_BEAT = 0.7
SIXTEENTHS_ABOVE_DENSITY = 0.6


@dataclass(frozen=True)
class NoteEvent:
    beat: float  # onset in beats from the start of the piece
    duration: float  # in beats
    part: str  # "chords" | "bass" | "melody" | "drums"
    channel: int  # 0-based MIDI channel, PART_CHANNELS[part]
    pitch: int
    velocity: int


def into_midi_range(pitch: int) -> int:
    """Shift by whole octaves into 0..127, which keeps the pitch class (and so the mode)."""
    while pitch < 0:
        pitch += 12
    while pitch > 127:
        pitch -= 12
    return pitch


def clamp_velocity(velocity: float) -> int:
    return max(1, min(127, round(velocity)))


class Composer:
    """Seeded: the same seed and the same sequence of MusicParams give the same notes."""

    def __init__(
        self, seed: int, tonic: int = 60, beats_per_bar: int = 4, harmony: Harmony | None = None
    ) -> None:
        if not 0 <= tonic <= 127:
            raise ValueError(f"tonic must be a MIDI note 0..127, got {tonic}")
        if beats_per_bar < 1:
            raise ValueError(f"beats_per_bar must be at least 1, got {beats_per_bar}")
        self.seed = seed
        self.tonic = tonic
        self.beats_per_bar = beats_per_bar
        self.harmony: Harmony = harmony if harmony is not None else RuleHarmony()
        self.melody_step: int | None = None  # scale step of the last melody note

    def scale_pitch(self, intervals: tuple[int, ...], step: int) -> int:
        """Pitch of scale step `step` (0 = tonic, 7 = tonic an octave up, -1 = 7th below)."""
        octave, degree = divmod(step, SCALE_LENGTH)
        return self.tonic + 12 * octave + intervals[degree]

    def compose_bar(self, bar: int, params: MusicParams) -> list[NoteEvent]:
        """All notes of bar `bar` (onsets in [bar, bar + 1) * beats_per_bar), sorted by onset."""
        if params.mode not in MODE_INTERVALS:
            raise ValueError(f"unknown mode {params.mode!r}; known: {sorted(MODE_INTERVALS)}")
        rng = random.Random(f"bandmate-bci:{self.seed}:{bar}")
        intervals = MODE_INTERVALS[params.mode]
        start = float(bar * self.beats_per_bar)
        chord_steps = self.harmony.chord_steps(rng, bar, params.mode, intervals)
        grid = 4 if params.density > SIXTEENTHS_ABOVE_DENSITY else 2  # steps per beat
        events = [
            *self.chords(start, intervals, chord_steps, params),
            *self.bass(rng, start, intervals, chord_steps[0], params),
            *self.melody(rng, start, intervals, chord_steps, grid, params),
            *self.drums(rng, start, grid, params),
        ]
        return sorted(events, key=lambda event: (event.beat, event.channel, event.pitch))

    def chords(
        self, start: float, intervals: tuple[int, ...], chord_steps: list[int], params: MusicParams
    ) -> list[NoteEvent]:
        velocity = clamp_velocity(params.velocity * 0.7)  # why: the pad sits under the melody
        return [
            self.event(
                start, self.beats_per_bar, "chords", self.scale_pitch(intervals, s), velocity
            )
            for s in chord_steps
        ]

    def bass(
        self,
        rng: random.Random,
        start: float,
        intervals: tuple[int, ...],
        root_step: int,
        params: MusicParams,
    ) -> list[NoteEvent]:
        root = self.scale_pitch(intervals, root_step - 2 * SCALE_LENGTH)
        fifth = self.scale_pitch(intervals, root_step + 4 - 2 * SCALE_LENGTH)
        velocity = clamp_velocity(params.velocity * 0.9)
        bar = self.beats_per_bar
        if rng.random() > params.density:  # calm: one long root
            return [self.event(start, bar, "bass", root, velocity)]
        half = bar / 2
        if rng.random() > params.density:  # moderate: root, then root or fifth
            second = rng.choice((root, fifth))
            return [
                self.event(start, half, "bass", root, velocity),
                self.event(start + half, bar - half, "bass", second, velocity),
            ]
        # Busy: a note on every beat, mostly the root.
        pitches = [root, *(rng.choice((root, root, fifth)) for _ in range(bar - 1))]
        return [self.event(start + b, 1.0, "bass", p, velocity) for b, p in enumerate(pitches)]

    def melody(
        self,
        rng: random.Random,
        start: float,
        intervals: tuple[int, ...],
        chord_steps: list[int],
        grid: int,
        params: MusicParams,
    ) -> list[NoteEvent]:
        # Octave-shifted into MIDI range, so an extreme tonic still leaves the melody notes.
        centre_pitch = into_midi_range(self.tonic + 12 + params.register)
        centre = self.nearest_step(intervals, centre_pitch)
        low, high = self.melody_bounds(intervals, centre)
        step = centre if self.melody_step is None else self.melody_step
        onsets: list[tuple[float, int]] = []
        for index in range(self.beats_per_bar * grid):
            if rng.random() >= params.density:
                continue
            step += rng.choice(MELODY_MOVES)
            if abs(step - centre) > MELODY_REACH:  # pulled back toward the centre
                step = centre + (step - centre) // 2
            if index % grid == 0 and rng.random() < CHORD_TONE_ON_BEAT:
                step = self.nearest_chord_step(step, chord_steps)
            step = min(high, max(low, step))
            onsets.append((index / grid, step))
        self.melody_step = step
        events = []
        for i, (offset, note_step) in enumerate(onsets):
            # A note lasts until the next one (legato), at most a beat, never past the bar.
            next_offset = onsets[i + 1][0] if i + 1 < len(onsets) else self.beats_per_bar
            duration = min(next_offset - offset, 1.0)
            velocity = clamp_velocity(params.velocity + rng.randint(-6, 6))
            pitch = self.scale_pitch(intervals, note_step)
            events.append(self.event(start + offset, duration, "melody", pitch, velocity))
        return events

    def drums(
        self, rng: random.Random, start: float, grid: int, params: MusicParams
    ) -> list[NoteEvent]:
        hit = 0.1  # drum notes only need a short gate
        events = []
        for beat in range(self.beats_per_bar):
            drum = KICK if beat % 2 == 0 else SNARE
            events.append(self.event(start + beat, hit, "drums", drum, params.velocity))
        hat_velocity = clamp_velocity(params.velocity * 0.6)
        for index in range(self.beats_per_bar * grid):
            if rng.random() < params.density:
                offbeat_accent = 0 if index % grid == 0 else -8
                velocity = clamp_velocity(hat_velocity + offbeat_accent)
                events.append(self.event(start + index / grid, hit, "drums", CLOSED_HAT, velocity))
        return events

    def event(
        self, beat: float, duration: float, part: str, pitch: int, velocity: int
    ) -> NoteEvent:
        channel = PART_CHANNELS[part]
        return NoteEvent(beat, float(duration), part, channel, into_midi_range(pitch), velocity)

    def nearest_step(self, intervals: tuple[int, ...], pitch: int) -> int:
        base = (pitch - self.tonic) // 12 * SCALE_LENGTH
        candidates = range(base - SCALE_LENGTH, base + 2 * SCALE_LENGTH)
        return min(candidates, key=lambda s: (abs(self.scale_pitch(intervals, s) - pitch), s))

    def melody_bounds(self, intervals: tuple[int, ...], centre: int) -> tuple[int, int]:
        """Scale steps within MELODY_REACH of the centre whose pitches are valid MIDI notes."""
        steps = [
            s
            for s in range(centre - MELODY_REACH, centre + MELODY_REACH + 1)
            if 0 <= self.scale_pitch(intervals, s) <= 127
        ]
        return steps[0], steps[-1]

    @staticmethod
    def nearest_chord_step(step: int, chord_steps: list[int]) -> int:
        """The chord tone (in any octave) closest to `step`, in scale steps."""
        candidates = [c + SCALE_LENGTH * round((step - c) / SCALE_LENGTH) for c in chord_steps]
        return min(candidates, key=lambda c: (abs(c - step), c))
