"""`bandmate data chords`: every genre's chord sequences, split by piece, with a manifest.

Within each genre, pieces are ordered by a seeded hash and take train/valid/test from a cycle
of ten (80/10/10), as `bandmate data build` does; `max_pieces` then keeps the first pieces of
that order, so a piece keeps its split whatever the cap. Sequences go to `chords.jsonl`, one
piece a line; `manifest.json` (written last) lists every piece with its genre and split, and
the pieces skipped with the reason.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel
from tqdm import tqdm

from models.chords.extract import (
    ChordExtractionError,
    ChordSequence,
    band_genre_ids,
    band_sequence,
    corpus_paths,
    score_sequence,
)
from models.chords.vocab import BAND_GENRES, GENRES, SCORE_GENRES
from models.errors import ModelsError

Split = Literal["train", "valid", "test"]
CYCLE: tuple[Split, ...] = ("train", "test", "valid") + ("train",) * 7
MANIFEST = "manifest.json"
SEQUENCES = "chords.jsonl"
BAND_PIECES_PER_STYLE = 40


@dataclass(frozen=True)
class ChordDataConfig:
    out: Path
    seed: int = 0
    genres: tuple[str, ...] = GENRES
    max_pieces: int = 80  # per genre: the quartets take ~5 s a movement to chordify
    jobs: int = 2


class PieceEntry(BaseModel):
    piece_id: str
    genre: str
    split: Split
    mode: str
    n_chords: int


class ChordManifest(BaseModel):
    version: int = 1
    seed: int
    max_pieces: int
    pieces: list[PieceEntry]
    skipped: dict[str, str]  # piece id -> why

    def split(self, split: Split) -> list[PieceEntry]:
        return [p for p in self.pieces if p.split == split]


def genre_pieces(genre: str) -> list[str]:
    if genre in SCORE_GENRES:
        return list(corpus_paths(genre))
    if genre in BAND_GENRES:
        return list(band_genre_ids(genre, BAND_PIECES_PER_STYLE))
    raise ModelsError(f"unknown genre {genre!r}; known: {', '.join(GENRES)}")


def plan(config: ChordDataConfig) -> list[tuple[str, str, Split]]:
    """(piece id, genre, split) of every piece to extract, capped per genre."""
    planned = []
    for offset, genre in enumerate(config.genres):
        ids = genre_pieces(genre)
        ranked = sorted(ids, key=lambda pid: (zlib.crc32(f"{config.seed}:{pid}".encode()), pid))
        chosen = [(pid, genre, CYCLE[(rank + offset) % 10]) for rank, pid in enumerate(ranked)]
        planned += chosen[: config.max_pieces]
    return planned


def extract(piece_id: str, genre: str) -> ChordSequence:
    if genre in BAND_GENRES:
        return band_sequence(piece_id)
    return score_sequence(piece_id, corpus_paths(genre)[piece_id], genre)


def _extract_or_reason(job: tuple[str, str]) -> ChordSequence | str:
    try:
        return extract(*job)
    except ChordExtractionError as exc:
        return str(exc)


def build_chord_data(config: ChordDataConfig, progress: bool = True) -> ChordManifest:
    planned = plan(config)
    config.out.mkdir(parents=True, exist_ok=True)
    jobs = [(pid, genre) for pid, genre, _ in planned]
    pieces, skipped = [], {}
    partial = config.out / f".{SEQUENCES}.partial"
    with partial.open("w") as sink:
        for (pid, genre, split), result in zip(planned, _results(jobs, config.jobs, progress),
                                               strict=True):  # fmt: skip
            if isinstance(result, str):
                skipped[pid] = result
                continue
            sink.write(result.model_dump_json() + "\n")
            pieces.append(PieceEntry(piece_id=pid, genre=genre, split=split, mode=result.mode,
                                     n_chords=len(result.chords)))  # fmt: skip
    os.replace(partial, config.out / SEQUENCES)
    manifest = ChordManifest(seed=config.seed, max_pieces=config.max_pieces, pieces=pieces,
                             skipped=skipped)  # fmt: skip
    tmp = config.out / f".{MANIFEST}.partial"
    tmp.write_text(manifest.model_dump_json(indent=1) + "\n")
    os.replace(tmp, config.out / MANIFEST)
    return manifest


def _results(
    jobs: list[tuple[str, str]], workers: int, progress: bool
) -> Iterator[ChordSequence | str]:
    bar = tqdm(total=len(jobs), desc="chords", unit="piece", disable=not progress)
    if workers <= 1:
        for job in jobs:
            yield _extract_or_reason(job)
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for result in pool.map(_extract_or_reason, jobs, chunksize=2):
                yield result
                bar.update()
    bar.close()


@dataclass(frozen=True)
class ChordData:
    """A chord build in memory: each split's sequences."""

    manifest: ChordManifest
    sequences: dict[str, ChordSequence]  # piece id -> sequence

    def split(self, split: Split, genre: str | None = None) -> list[ChordSequence]:
        return [self.sequences[p.piece_id] for p in self.manifest.split(split)
                if genre is None or p.genre == genre]  # fmt: skip

    @property
    def genres(self) -> list[str]:
        return [g for g in GENRES if any(p.genre == g for p in self.manifest.pieces)]


def load_chord_data(root: Path) -> ChordData:
    try:
        manifest = ChordManifest.model_validate_json((root / MANIFEST).read_text())
        lines = (root / SEQUENCES).read_text().splitlines()
    except OSError:
        hint = f"run `bandmate data chords --out {root}`"
        raise ModelsError(f"{root} is not a chord build: {hint}") from None
    sequences = [ChordSequence.model_validate(json.loads(line)) for line in lines if line]
    return ChordData(manifest, {s.piece_id: s for s in sequences})
