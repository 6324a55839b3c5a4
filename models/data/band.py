"""A procedural band: drums, bass and chords under a melody, so beat-driven material exists.

Chorales and masses have no drums and little groove; these pieces give the model and the
beat-alignment benchmark music with a pulse. Everything is drawn from a seeded generator,
so a piece id always gives the same notes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from models.data.piece import Note, Piece, Voice

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
# Progressions as scale degrees (0 = tonic), one chord per bar.
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 4), (1, 4, 0, 0), (0, 3, 0, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 4), (0, 3, 6, 2), (0, 5, 3, 4)),
}
# GM percussion keys.
KICK, SIDE_STICK, SNARE, CLOSED_HAT, OPEN_HAT, CRASH, RIDE = 36, 37, 38, 42, 46, 49, 51


@dataclass(frozen=True)
class Style:
    name: str
    beats_per_bar: int
    bpm_range: tuple[float, float]
    kick: tuple[float, ...]  # onsets in beats within a bar
    snare: tuple[float, ...]
    hat: tuple[float, ...]
    bass: tuple[tuple[float, float, int], ...]  # (onset, duration, chord tone: 0 root, 1 third...)
    comp: tuple[tuple[float, float], ...]  # (onset, duration) of chord hits
    swing: float = 0.0  # how far off-beat eighths are pushed late, in beats
    snare_key: int = SNARE
    hat_key: int = CLOSED_HAT
    melody_steps: tuple[float, ...] = (0.5, 1.0, 1.0, 2.0)  # note values the melody draws from


EIGHTHS = tuple(i * 0.5 for i in range(8))
STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        Style("rock", 4, (100, 140), (0, 2.5), (1, 3), EIGHTHS,
              ((0, 0.5, 0), (0.5, 0.5, 0), (1.5, 0.5, 0), (2, 0.5, 0), (2.5, 0.5, 2), (3, 1, 0)),
              ((0, 1.5), (1.5, 1), (2.5, 1.5))),
        Style("funk", 4, (90, 115), (0, 0.75, 2.5), (1, 3), tuple(i * 0.25 for i in range(16)),
              ((0, 0.25, 0), (0.75, 0.25, 0), (1.5, 0.25, 4), (2.5, 0.25, 0), (3.25, 0.5, 2)),
              ((0.5, 0.25), (1.25, 0.25), (2.75, 0.25), (3.5, 0.25)),
              melody_steps=(0.25, 0.5, 0.5, 1.0)),
        Style("bossa", 4, (120, 145), (0, 1.5, 2, 3.5), (0, 1.5, 3), EIGHTHS,
              ((0, 1.5, 0), (1.5, 0.5, 2), (2, 1.5, 2), (3.5, 0.5, 0)),
              ((0, 0.5), (1.5, 0.5), (2.5, 0.5), (3.0, 0.5)), snare_key=SIDE_STICK),
        Style("waltz", 3, (90, 160), (0,), (1, 2), (0, 1, 2),
              ((0, 1, 0), (1, 1, 2), (2, 1, 2)), ((1, 0.75), (2, 0.75))),
        Style("shuffle", 4, (110, 150), (0, 2), (1, 3), EIGHTHS,
              ((0, 1, 0), (1, 1, 1), (2, 1, 2), (3, 1, 1)), ((0.5, 0.5), (1.5, 0.5), (2.5, 0.5),
                                                           (3.5, 0.5)), swing=1 / 6, hat_key=RIDE),
        Style("ballad", 4, (60, 80), (0, 2.5), (2,), EIGHTHS,
              ((0, 2, 0), (2, 1.5, 2), (3.5, 0.5, 0)), ((0, 4),),
              melody_steps=(0.5, 1.0, 1.5, 2.0)),
        Style("disco", 4, (110, 125), (0, 1, 2, 3), (1, 3), (0.5, 1.5, 2.5, 3.5),
              ((0, 0.5, 0), (0.5, 0.5, 0), (1, 0.5, 0), (1.5, 0.5, 0), (2, 0.5, 0), (2.5, 0.5, 0),
               (3, 0.5, 0), (3.5, 0.5, 0)), ((0.5, 0.5), (1.5, 0.5), (2.5, 0.5), (3.5, 0.5)),
              hat_key=OPEN_HAT),
        Style("reggae", 4, (70, 90), (2,), (2,), EIGHTHS,
              ((0, 1, 0), (1.5, 0.5, 2), (2.5, 1, 0)), ((1, 0.4), (3, 0.4))),
    )
}  # fmt: skip
BAND_PIECES_PER_STYLE = 40
SEVENTH_CHORD_STYLES = {"bossa", "funk", "ballad", "shuffle"}


def band_ids(n_per_style: int = BAND_PIECES_PER_STYLE) -> tuple[str, ...]:
    return tuple(f"band/{style}-{k:03d}" for style in STYLES for k in range(n_per_style))


@dataclass(frozen=True)
class BandPlan:
    """What a piece plays, before any note: its style, key and one chord degree per bar."""

    style: Style
    mode: str  # "major" | "minor"
    tonic: int  # MIDI note
    bars: tuple[int, ...]  # scale degree (0 = tonic) of each bar's chord

    @property
    def scale(self) -> tuple[int, ...]:
        return MAJOR if self.mode == "major" else MINOR

    @property
    def chord_tones(self) -> int:
        return 4 if self.style.name in SEVENTH_CHORD_STYLES else 3


def plan_band_piece(piece_id: str) -> tuple[BandPlan, np.random.Generator]:
    """A piece's plan and the generator its notes go on drawing from; the id alone decides."""
    style_name, _ = piece_id.removeprefix("band/").rsplit("-", 1)
    style = STYLES[style_name]
    rng = np.random.default_rng(zlib.crc32(piece_id.encode()))
    mode = "major" if rng.random() < 0.6 else "minor"
    tonic = 48 + int(rng.integers(0, 12))  # C3..B3
    progression = PROGRESSIONS[mode][int(rng.integers(len(PROGRESSIONS[mode])))]
    n_bars = int(rng.choice([8, 12, 16]))
    bars = tuple(progression[b % len(progression)] for b in range(n_bars))
    return BandPlan(style, mode, tonic, bars), rng


def make_band_piece(piece_id: str) -> Piece:
    """The notes of one procedural piece; the id alone decides them."""
    plan, rng = plan_band_piece(piece_id)
    style, scale, tonic, bars = plan.style, plan.scale, plan.tonic, list(plan.bars)

    def chord(degree: int) -> list[int]:
        """Triad plus seventh on a scale degree, as pitches above the tonic."""
        steps = [degree + 2 * k for k in range(4)]
        return [tonic + scale[s % 7] + 12 * (s // 7) for s in steps]

    def swung(beat: float) -> float:
        return beat + style.swing if style.swing and (beat % 1) == 0.5 else beat

    def vel(base: int) -> int:
        return int(np.clip(base + rng.integers(-8, 9), 1, 127))

    bpb = style.beats_per_bar
    drums, bass, comp, melody = [], [], [], []
    for bar, degree in enumerate(bars):
        t0 = bar * bpb
        tones = chord(degree)
        for keys, onsets, base in (
            ((KICK,), style.kick, 100),
            ((style.snare_key,), style.snare, 90),
            ((style.hat_key,), style.hat, 65),
        ):
            for onset in onsets:
                drums += [Note(k, t0 + swung(onset), 0.25, vel(base)) for k in keys]
        if bar % 4 == 0:
            drums.append(Note(CRASH, t0, 1.0, vel(85)))
        for onset, dur, tone in style.bass:
            pitch = tones[0] - 12 if tone == 0 else tones[min(tone, 3)] - 12
            if tone == 4:  # the octave above the root
                pitch = tones[0]
            bass.append(Note(pitch, t0 + swung(onset), dur * 0.9, vel(90)))
        voicing = [p + 12 if p < 55 else p for p in tones[: plan.chord_tones]]
        for onset, dur in style.comp:
            comp += [Note(p, t0 + swung(onset), dur * 0.95, vel(70)) for p in voicing]
    melody = _melody(rng, style, bars, chord, scale, tonic, swung, vel)
    voices = [
        Voice("melody", "melody", melody),
        Voice("chords", "harmony", comp),
        Voice("bass", "bass", bass),
        Voice("drums", "drums", drums),
    ]
    return Piece(piece_id, "band", voices, live_voice="melody", bpm_range=style.bpm_range)


def _melody(rng, style, bars, chord, scale, tonic, swung, vel) -> list[Note]:  # type: ignore[no-untyped-def]
    """A random walk over the scale that lands on chord tones at the start of each bar."""
    notes: list[Note] = []
    bpb = style.beats_per_bar
    degree = 7 + int(rng.integers(0, 5))  # scale steps above the tonic, an octave up
    for bar, chord_degree in enumerate(bars):
        t, end = 0.0, float(bpb)
        if bar == 0:
            t = float(bpb) / 2  # a pickup: the melody enters after the band
        chord_steps = {(chord_degree + 2 * k) % 7 for k in range(3)}
        while t < end:
            step = float(rng.choice(style.melody_steps))
            step = min(step, end - t)
            if t == 0.0:  # strong beat: move to the nearest chord tone
                while degree % 7 not in chord_steps:
                    degree += 1 if rng.random() < 0.5 else -1
            elif rng.random() < 0.15:
                t += step  # a rest
                continue
            else:
                degree += int(rng.choice([-2, -1, -1, 1, 1, 2]))
            degree = int(np.clip(degree, 5, 16))
            pitch = tonic + 12 + scale[degree % 7] + 12 * (degree // 7)
            notes.append(Note(pitch, bar * bpb + swung(t), step * 0.9, vel(92)))
            t += step
    return notes
