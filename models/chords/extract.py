"""Chord-symbol sequences from the music21 corpus and from the procedural band.

Scores go through music21's chordify: every slice where a note starts or stops becomes a set
of pitch classes. Each slice is matched to the chord template (root x quality) that covers
most of its notes and misses fewest; slices shorter than half a beat, and slices that match
no chord well (a unison, a lone passing dissonance), lengthen the chord before them instead
(why: in a chorale those are passing and neighbour notes, not harmony). Consecutive equal
chords merge. Roots are written relative to the key's tonic, and each chord carries its
Roman numeral from music21's analysis.

Key and mode: tonal music (Bach, the quartets) takes music21's key analysis, major as ionian
and minor as aeolian. Modal polyphony (Palestrina, Monteverdi) takes the root of the final
chord as its tonic, as the modal final, and the one of the seven modes whose scale holds the
most of its notes (a tie goes to the plainer mode).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from models.chords.vocab import MODES, QUALITIES, Chord, beat_bin
from models.data.band import STYLES, plan_band_piece
from models.errors import ModelsError

# The corpus collections with enough harmony (four or more voices throughout), by genre.
SCORE_COMPOSERS: dict[str, tuple[str, ...]] = {
    "bach": ("bach",),
    "palestrina": ("palestrina",),
    "monteverdi": ("monteverdi",),
    "classical": ("haydn", "mozart", "beethoven"),
}
MODAL_GENRES = {"palestrina", "monteverdi"}
# A tie between modes goes to the earlier one here.
MODE_PREFERENCE = ("ionian", "aeolian", "dorian", "mixolydian", "phrygian", "lydian", "locrian")
SHORTEST_SLICE = 0.5  # beats; shorter slices lengthen the chord before them
MIN_MATCH = 1.0  # template score below which a slice is not a chord
MIN_CHORDS = 4
NOTE_NAMES = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B")


class ChordExtractionError(ModelsError):
    """A piece cannot be turned into a chord sequence."""


class ChordSequence(BaseModel):
    piece_id: str
    genre: str
    tonic: int  # pitch class of the key's tonic, 0 = C
    key: str  # e.g. "G major", "D dorian"
    mode: str  # a key of MODES
    chords: list[tuple[int, str, float]]  # (root above the tonic, quality, beats)
    roman: list[str]  # each chord's Roman numeral figure

    def chord_symbols(self) -> list[Chord]:
        return [Chord(root, quality, beats) for root, quality, beats in self.chords]


@cache
def corpus_paths(genre: str) -> dict[str, Path]:
    """piece id -> score file, for every piece of a corpus genre, in corpus order."""
    from music21 import corpus

    if genre == "bach":
        # The Riemenschneider list names some chorales twice; a piece must be one piece.
        names = corpus.chorales.Iterator(returnType="filename")
        works = {n.split("/")[-1]: corpus.getWork(n) for n in dict.fromkeys(names)}
        return {f"bach/{k}": Path(str(v)) for k, v in works.items()}
    paths: dict[str, Path] = {}
    for composer in SCORE_COMPOSERS[genre]:
        # MusicXML before Humdrum when a work has both; RomanText files are analyses, not music.
        found = sorted(map(Path, map(str, corpus.getComposer(composer))),
                       key=lambda p: (p.suffix != ".mxl", str(p)))  # fmt: skip
        for path in found:
            if path.suffix == ".rntxt":
                continue
            parts = path.with_suffix("").parts
            name = "-".join(parts[parts.index(composer) :])
            paths.setdefault(f"{genre}/{name}", path)
    return dict(sorted(paths.items()))


def match_chord(pitch_classes: set[int]) -> tuple[int, str, float]:
    """(root, quality, score) of the template that best fits a set of pitch classes: notes it
    covers count +1, notes outside it -1, its notes missing -0.6; the root must sound."""
    best = (0, "maj", float("-inf"))
    for root in sorted(pitch_classes):
        for quality, intervals in QUALITIES.items():
            template = {(root + i) % 12 for i in intervals}
            score = (len(pitch_classes & template) - len(pitch_classes - template)
                     - 0.6 * len(template - pitch_classes))  # fmt: skip
            if score > best[2]:
                best = (root, quality, score)
    return best


def best_mode(weights: dict[int, float]) -> str:
    """The mode whose scale holds the largest weight of these pitch classes (rel. tonic)."""
    held = {m: sum(w for pc, w in weights.items() if pc in MODES[m]) for m in MODE_PREFERENCE}
    return max(MODE_PREFERENCE, key=lambda m: (round(held[m], 6), -MODE_PREFERENCE.index(m)))


def slices(score: Any) -> list[tuple[set[int], float, int]]:
    """(pitch classes, beats, lowest pitch class) of each chordify slice, rests dropped."""
    chordified = score.chordify()
    found = []
    for element in chordified.recurse().getElementsByClass("Chord"):
        beats = float(element.quarterLength)
        if beats <= 0 or not element.pitches:
            continue
        lowest = min(element.pitches, key=lambda p: p.ps)
        found.append(({p.pitchClass for p in element.pitches}, beats, lowest.pitchClass))
    return found


def reduce_slices(raw: list[tuple[set[int], float, int]]) -> list[tuple[int, str, float]]:
    """Absolute (root pitch class, quality, beats) chords: matched, absorbed and merged."""
    chords: list[list] = []  # [root, quality, beats]
    for pitch_classes, beats, _ in raw:
        root, quality, score = match_chord(pitch_classes)
        harmonic = len(pitch_classes) >= 2 and score >= MIN_MATCH
        same = bool(chords) and (chords[-1][0], chords[-1][1]) == (root, quality)
        if chords and (not harmonic or beats < SHORTEST_SLICE or same):
            chords[-1][2] += beats
        elif harmonic:
            chords.append([root, quality, beats])
    return [(int(r), str(q), float(b)) for r, q, b in chords]


def score_sequence(piece_id: str, path: Path, genre: str) -> ChordSequence:
    """One corpus score as a chord sequence; ChordExtractionError when it has no harmony."""
    from music21 import converter

    try:
        score = converter.parse(str(path))
        raw = slices(score)
    except Exception as exc:  # music21 raises many types on bad input
        raise ChordExtractionError(f"cannot parse {piece_id}: {exc}") from exc
    absolute = reduce_slices(raw)
    if len(absolute) < MIN_CHORDS:
        raise ChordExtractionError(f"{piece_id}: {len(absolute)} chords, fewer than {MIN_CHORDS}")
    if genre in MODAL_GENRES:
        tonic = absolute[-1][0]
        weights: dict[int, float] = {}
        for pitch_classes, beats, _ in raw:
            for pc in pitch_classes:
                weights[(pc - tonic) % 12] = weights.get((pc - tonic) % 12, 0.0) + beats
        mode = best_mode(weights)
        key_name = f"{NOTE_NAMES[tonic]} {mode}"
    else:
        key = score.analyze("key")
        tonic, mode = key.tonic.pitchClass, "ionian" if key.mode == "major" else "aeolian"
        key_name = f"{key.tonic.name} {key.mode}"
    relative = [((root - tonic) % 12, quality, beats) for root, quality, beats in absolute]
    return ChordSequence(
        piece_id=piece_id, genre=genre, tonic=tonic, key=key_name, mode=mode,
        chords=relative, roman=[roman_figure(r, q, mode) for r, q, _ in relative],
    )  # fmt: skip


@cache
def roman_figure(root: int, quality: str, mode: str) -> str:
    """music21's Roman numeral of a chord in root position, in C of the mode's major/minor."""
    from music21 import chord, key, roman

    in_key = key.Key("C", "major" if 4 in MODES[mode] else "minor")
    pitches = [60 + root + i for i in QUALITIES[quality]]
    return str(roman.romanNumeralFromChord(chord.Chord(pitches), in_key).figure)


def band_sequence(piece_id: str) -> ChordSequence:
    """A procedural band piece's progression: one chord per bar, repeats merged."""
    plan, _ = plan_band_piece(piece_id)
    scale, bpb = plan.scale, plan.style.beats_per_bar
    chords: list[tuple[int, str, float]] = []
    for degree in plan.bars:
        steps = [degree + 2 * k for k in range(plan.chord_tones)]
        semis = [scale[s % 7] + 12 * (s // 7) for s in steps]
        intervals = tuple(s - semis[0] for s in semis)
        quality = next(q for q, i in QUALITIES.items() if i == intervals)
        if chords and chords[-1][:2] == (semis[0] % 12, quality):
            chords[-1] = (chords[-1][0], quality, chords[-1][2] + bpb)
        else:
            chords.append((semis[0] % 12, quality, float(bpb)))
    mode = "ionian" if plan.mode == "major" else "aeolian"
    return ChordSequence(
        piece_id=piece_id, genre=plan.style.name, tonic=plan.tonic % 12,
        key=f"{NOTE_NAMES[plan.tonic % 12]} {plan.mode}", mode=mode, chords=chords,
        roman=[roman_figure(r, q, mode) for r, q, _ in chords],
    )  # fmt: skip


def band_genre_ids(genre: str, n_per_style: int) -> dict[str, None]:
    if genre not in STYLES:
        raise ValueError(f"unknown band style {genre!r}")
    return {f"band/{genre}-{k:03d}": None for k in range(n_per_style)}


def binned(sequence: ChordSequence) -> list[Chord]:
    """The sequence's chords with lengths on the token grid."""
    return [Chord(r, q, beat_bin(b)) for r, q, b in sequence.chords]
