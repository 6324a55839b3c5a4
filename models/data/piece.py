"""The symbolic layer between sources (scores, the procedural band) and the renderer.

Times are in beats (quarter notes) until a tempo is chosen, so augmenting tempo never
touches the sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Role = Literal["melody", "harmony", "bass", "drums"]


@dataclass(frozen=True)
class Note:
    pitch: int  # MIDI note number
    start: float  # beats
    duration: float  # beats
    velocity: int = 80


@dataclass
class Voice:
    name: str  # stem name, unique in the piece: "soprano", "bass", "drums"...
    role: Role
    notes: list[Note] = field(default_factory=list)

    @property
    def is_drums(self) -> bool:
        return self.role == "drums"

    @property
    def end(self) -> float:
        return max((n.start + n.duration for n in self.notes), default=0.0)


@dataclass
class Piece:
    """One piece of music, before tempo, transposition and instruments are chosen."""

    piece_id: str  # "bach/bwv269", "palestrina/Agnus_01", "band/funk-007"
    source: str  # "bach", "palestrina", "band"
    voices: list[Voice]
    live_voice: str  # the voice the musician plays; every other voice is accompaniment
    bpm_range: tuple[float, float]  # tempi at which this piece sounds right

    @property
    def end(self) -> float:
        return max((v.end for v in self.voices), default=0.0)

    def voice(self, name: str) -> Voice:
        for v in self.voices:
            if v.name == name:
                return v
        raise KeyError(f"piece {self.piece_id} has no voice {name!r}")

    def transposed(self, semitones: int) -> Piece:
        """All pitched voices shifted; drums keep their GM kit note numbers."""
        voices = [
            v
            if v.is_drums
            else replace(v, notes=[replace(n, pitch=n.pitch + semitones) for n in v.notes])
            for v in self.voices
        ]
        return replace(self, voices=voices)

    def pitch_range(self) -> tuple[int, int]:
        pitches = [n.pitch for v in self.voices if not v.is_drums for n in v.notes]
        return (min(pitches), max(pitches)) if pitches else (60, 60)

    def truncated(self, max_beats: float) -> Piece:
        """Notes starting after max_beats are dropped; notes crossing it are shortened."""

        def cut(notes: list[Note]) -> list[Note]:
            kept = [n for n in notes if n.start < max_beats]
            return [replace(n, duration=min(n.duration, max_beats - n.start)) for n in kept]

        return replace(self, voices=[replace(v, notes=cut(v.notes)) for v in self.voices])
