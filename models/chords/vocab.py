"""Chord symbols and their tokens: one vocabulary shared by the data, the model and the player.

A chord is (root, quality, beats): the root in semitones above the key's tonic, a quality from
QUALITIES, and its length in beats. A sequence is tokenised as

    genre, mode, chord_1, beats_1, chord_2, beats_2, ...

so the first two tokens say which music and which mode it is, and every chord token is
followed by its length. A chord token is root x quality (12 x 10); a length is one of
BEAT_BINS. The vocabulary is written to `tokens.json` beside the ONNX graph, so the composer
(which imports nothing of ours) reads the same table the model was trained with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

# Intervals above the root, in semitones. Triads come first: a tie in the template match
# goes to the simpler chord.
QUALITIES: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "sus4": (0, 5, 7),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "m7b5": (0, 3, 6, 10),
    "dim7": (0, 3, 6, 9),
}
BEAT_BINS: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
# The modes brightest to darkest (valence picks along this order in bci/live/mapping.py, which
# reads this table), and the scale of each above its tonic.
MODES: dict[str, tuple[int, ...]] = {
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "ionian": (0, 2, 4, 5, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "aeolian": (0, 2, 3, 5, 7, 8, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
}
# The corpus collections and the procedural band's styles; "any" is the genre-blind token a
# shared base model is trained with (the adapters' starting point).
SCORE_GENRES: tuple[str, ...] = ("bach", "palestrina", "monteverdi", "classical")
BAND_GENRES: tuple[str, ...] = (
    "rock", "funk", "bossa", "waltz", "shuffle", "ballad", "disco", "reggae",
)  # fmt: skip
GENRES: tuple[str, ...] = (*SCORE_GENRES, *BAND_GENRES)
ANY_GENRE = "any"
PAD = "<pad>"
PREFIX = 2  # genre and mode tokens before the first chord


@dataclass(frozen=True)
class Chord:
    root: int  # semitones above the tonic, 0..11
    quality: str  # a key of QUALITIES
    beats: float

    def pitch_classes(self) -> tuple[int, ...]:
        """Pitch classes relative to the tonic."""
        return tuple((self.root + i) % 12 for i in QUALITIES[self.quality])


def beat_bin(beats: float) -> float:
    """The nearest length in BEAT_BINS, nearest on a log scale (1.5 sits between 1 and 2)."""
    clipped = min(max(beats, BEAT_BINS[0]), BEAT_BINS[-1])
    return min(BEAT_BINS, key=lambda b: (abs(math.log(b / clipped)), b))


@dataclass(frozen=True)
class Vocabulary:
    tokens: tuple[str, ...]

    @classmethod
    def build(cls) -> Vocabulary:
        chords = [f"{root}:{q}" for root in range(12) for q in QUALITIES]
        beats = [f"d{b:g}" for b in BEAT_BINS]
        genres = [f"g:{g}" for g in (*GENRES, ANY_GENRE)]
        modes = [f"m:{m}" for m in MODES]
        return cls((PAD, *genres, *modes, *chords, *beats))

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        return self.index[token]

    @property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def chord_ids(self) -> list[int]:
        return [i for i, t in enumerate(self.tokens) if ":" in t and t[0].isdigit()]

    def genre_id(self, genre: str) -> int:
        return self.id(f"g:{genre}")

    def mode_id(self, mode: str) -> int:
        return self.id(f"m:{mode}")

    def chord_id(self, chord: Chord) -> int:
        return self.id(f"{chord.root}:{chord.quality}")

    def beats_id(self, beats: float) -> int:
        return self.id(f"d{beat_bin(beats):g}")

    def encode(self, genre: str, mode: str, chords: list[Chord]) -> list[int]:
        ids = [self.genre_id(genre), self.mode_id(mode)]
        for chord in chords:
            ids += [self.chord_id(chord), self.beats_id(chord.beats)]
        return ids


def write_tokens(path: Path, vocab: Vocabulary, extra: dict[str, object]) -> None:
    """tokens.json: the vocabulary, every chord token's pitch classes and the run's facts."""
    chord_tokens = [vocab.tokens[i] for i in vocab.chord_ids()]
    chords = {t: list(Chord(int(t.split(":")[0]), t.split(":")[1], 1.0).pitch_classes())
              for t in chord_tokens}  # fmt: skip
    payload = {"tokens": list(vocab.tokens), "chord_pitch_classes": chords,
               "modes": {m: list(s) for m, s in MODES.items()}, **extra}  # fmt: skip
    path.write_text(json.dumps(payload, indent=1) + "\n")
