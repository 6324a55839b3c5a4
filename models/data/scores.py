"""Pieces from the music21 corpus, which ships inside the wheel and needs no network."""

from __future__ import annotations

from functools import cache

from models.data.piece import Note, Piece, Role, Voice
from models.errors import ModelsError

# Score sources and the tempi (quarter notes per minute) they sound right at. Chorales have no
# tempo marks; Palestrina is notated in long values, so its quarter is quick.
SCORE_SOURCES: dict[str, tuple[float, float]] = {
    "bach": (66.0, 96.0),
    "palestrina": (150.0, 210.0),
}
MIN_VOICES = 4


class ScoreError(ModelsError):
    """A score in the corpus cannot be turned into a Piece."""


@cache
def score_ids(source: str) -> tuple[str, ...]:
    """Every candidate piece of a score source, in corpus order."""
    from music21 import corpus

    if source == "bach":
        # The Riemenschneider list names 371 chorales but only 350 files: some are listed twice.
        # Duplicates would be one piece in two splits, so keep each file once.
        names = corpus.chorales.Iterator(returnType="filename")
        return tuple(dict.fromkeys(f"bach/{name.split('/')[-1]}" for name in names))
    if source == "palestrina":
        return tuple(f"palestrina/{p.stem}" for p in corpus.getComposer("palestrina"))
    raise ValueError(f"unknown score source {source!r}")


def load_score(piece_id: str) -> Piece:
    """Parse one corpus score into voices of notes (in beats); the top part is the live part."""
    from music21 import corpus

    source, name = piece_id.split("/", 1)
    try:
        score = corpus.parse(f"{source}/{name}")
        parts = list(score.parts)
    except Exception as exc:  # music21 raises many types on bad input
        raise ScoreError(f"cannot parse score {piece_id}: {exc}") from exc
    if len(parts) < MIN_VOICES:
        raise ScoreError(f"score {piece_id} has {len(parts)} voices, fewer than {MIN_VOICES}")

    voices: list[Voice] = []
    taken: set[str] = set()
    for index, part in enumerate(parts):
        notes = _part_notes(part)
        if not notes:
            continue
        name_base = (part.partName or f"voice{index}").strip().lower().replace(" ", "_")
        voices.append(Voice(_unique(name_base, taken), _score_role(index, len(parts)), notes))
    if len(voices) < MIN_VOICES:
        raise ScoreError(f"score {piece_id} has fewer than {MIN_VOICES} voices with notes")
    return Piece(
        piece_id=piece_id,
        source=source,
        voices=voices,
        live_voice=voices[0].name,
        bpm_range=SCORE_SOURCES[source],
    )


def _part_notes(part: object) -> list[Note]:
    flat = part.stripTies().flatten()  # type: ignore[attr-defined]
    notes: list[Note] = []
    for element in flat.notes:
        duration = float(element.quarterLength)
        if duration <= 0:  # grace notes have no duration of their own
            continue
        velocity = element.volume.velocity if element.volume.velocity is not None else 80
        for pitch in element.pitches:
            notes.append(Note(int(pitch.midi), float(element.offset), duration, int(velocity)))
    return notes


def _score_role(index: int, n_parts: int) -> Role:
    if index == 0:
        return "melody"
    return "bass" if index == n_parts - 1 else "harmony"


def _unique(name: str, taken: set[str]) -> str:
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}{k}", k + 1
    taken.add(candidate)
    return candidate
