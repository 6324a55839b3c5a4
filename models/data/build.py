"""`bandmate data build`: render real scores and the procedural band into multi-track stems.

Layout of a build:
    OUT/manifest.json                  written last, atomically
    OUT/pieces/<piece>/meta.json       one example; the folder appears only when complete
    OUT/pieces/<piece>/stems/*.flac    one stem per voice, 24-bit FLAC at the model rate
    OUT/pieces/<piece>/mix.flac        the sum of the stems
    OUT/pieces/<piece>/notes.json      every stem's notes after augmentation
A re-run skips finished pieces, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import errno
import json
import shutil
import sys
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.data.arrange import Arrangement, AugmentConfig, arrange
from models.data.band import BAND_PIECES_PER_STYLE, band_ids, make_band_piece
from models.data.manifest import (
    ExampleMeta,
    Manifest,
    SkippedPiece,
    Split,
    StemMeta,
    save_manifest,
    write_json_atomic,
)
from models.data.piece import Piece
from models.data.render import FLUID_BLOCK, Renderer, Track
from models.data.scores import SCORE_SOURCES, ScoreError, load_score, score_ids
from models.data.soundfonts import locate_soundfont
from models.errors import ModelsError

SOURCES = ("bach", "palestrina", "band")
# An example whose live part barely plays teaches the model nothing about following it.
MIN_LIVE_NOTES = 4
# After a failed write, this little space left means the disk filled up.
NEARLY_FULL_BYTES = 1024 * 1024


class DiskFullError(ModelsError):
    """The output disk filled up; finished pieces are kept and a re-run resumes."""


@dataclass(frozen=True)
class BuildConfig:
    out: Path
    seed: int = 0
    limit: int | None = None  # build at most this many examples
    sample_rate: int = 48_000
    sources: tuple[str, ...] = SOURCES
    soundfonts: tuple[str, ...] = ("fluidr3", "musescore", "timgm6mb")
    band_pieces_per_style: int = BAND_PIECES_PER_STYLE
    jobs: int = 1
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # A piece is not started with less free space: a 60 s piece of 6 voices is about 30 MB.
    min_free_bytes: int = 64 * 1024 * 1024


def piece_key(seed: int, piece_id: str) -> int:
    return zlib.crc32(f"{seed}:{piece_id}".encode())


def plan(config: BuildConfig) -> list[tuple[str, Split]]:
    """Every candidate piece with its split, in build order.

    Within each source, pieces are ordered by a seeded hash and take splits from a cycle of
    ten (8 train, 1 valid, 1 test), started at a different place for each source. Splits are
    therefore by piece, disjoint, set by the seed, and the same whether or not --limit is
    used. Sources are interleaved, so even a --limit 3 build holds every split.
    """
    cycle: tuple[Split, ...] = ("train", "test", "valid") + ("train",) * 7
    per_source: list[list[tuple[str, Split]]] = []
    for offset, source in enumerate(config.sources):
        if source == "band":
            ids = band_ids(config.band_pieces_per_style)
        elif source in SCORE_SOURCES:
            ids = score_ids(source)
        else:
            raise ValueError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
        ranked = sorted(ids, key=lambda pid: (piece_key(config.seed, pid), pid))
        per_source.append([(pid, cycle[(rank + offset) % 10]) for rank, pid in enumerate(ranked)])
    ordered: list[tuple[str, Split]] = []
    for rank in range(max(len(p) for p in per_source)):
        ordered += [p[rank] for p in per_source if rank < len(p)]
    return ordered


def piece_dir(out: Path, piece_id: str) -> Path:
    return out / "pieces" / piece_id.replace("/", "__")


def load_piece(piece_id: str) -> Piece:
    return make_band_piece(piece_id) if piece_id.startswith("band/") else load_score(piece_id)


@cache
def _renderer(sample_rate: int) -> Renderer:
    # One per worker process: its synths keep their SoundFonts loaded between pieces.
    return Renderer(sample_rate)


def build_piece(
    piece_id: str, split: Split, config: BuildConfig, soundfonts: dict[str, Path]
) -> ExampleMeta:
    """Render one piece into its folder. Raises ScoreError for a score that cannot be used."""
    piece = load_piece(piece_id)
    arrangement = arrange(piece, config.seed, tuple(soundfonts), config.augment)
    live_notes = next(len(v.notes) for v in arrangement.voices if v.name == piece.live_voice)
    if live_notes < MIN_LIVE_NOTES:  # imitative music can leave the top voice out for long
        raise ScoreError(
            f"{piece_id}: the live voice has {live_notes} notes in the first "
            f"{config.augment.max_seconds:g} s, fewer than {MIN_LIVE_NOTES}"
        )
    final = piece_dir(config.out, piece_id)
    partial = final.with_name(f".partial-{final.name}")
    shutil.rmtree(partial, ignore_errors=True)
    if shutil.disk_usage(config.out).free < config.min_free_bytes:
        raise DiskFullError(_disk_full_message(config.out))
    try:
        meta = _render_into(partial, piece, split, arrangement, config, soundfonts)
        partial.rename(final)
    except (OSError, RuntimeError) as exc:  # libsndfile reports failed writes as RuntimeError
        # Measure before cleaning up: removing the partial piece frees the space again.
        full = shutil.disk_usage(config.out).free < NEARLY_FULL_BYTES
        shutil.rmtree(partial, ignore_errors=True)
        if full or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
            raise DiskFullError(_disk_full_message(config.out)) from None
        raise
    return meta


def _render_into(
    folder: Path,
    piece: Piece,
    split: Split,
    arrangement: Arrangement,
    config: BuildConfig,
    soundfonts: dict[str, Path],
) -> ExampleMeta:
    import soundfile as sf

    sr = config.sample_rate
    renderer = _renderer(sr)
    soundfont = soundfonts[arrangement.soundfont]
    n_samples = -(-int(np.ceil(arrangement.duration_s * sr)) // FLUID_BLOCK) * FLUID_BLOCK
    tracks = {v.name: _playable(renderer, soundfont, v.track(sr)) for v in arrangement.voices}
    stems = {name: renderer.render(soundfont, [track], n_samples) for name, track in tracks.items()}
    mix = np.sum(list(stems.values()), axis=0, dtype=np.float32)

    peak = max(float(np.abs(a).max()) for a in [mix, *stems.values()])
    gain = min(0.89 / peak, 16.0) if peak > 0 else 1.0  # -1 dBFS, never boosting noise hugely
    (folder / "stems").mkdir(parents=True)
    stem_metas = []
    for voice_plan, voice in zip(arrangement.voices, piece.voices, strict=True):
        relative = f"{piece_dir(Path(), piece.piece_id)}/stems/{voice.name}.flac"
        sf.write(folder / "stems" / f"{voice.name}.flac", stems[voice.name] * gain, sr, "PCM_24")
        track = tracks[voice.name]
        stem_metas.append(
            StemMeta(
                name=voice.name,
                file=relative,
                role="live" if voice.name == piece.live_voice else "accompaniment",
                voice_role=voice.role,
                bank=track.bank,
                program=track.program,
                volume=track.volume,
                n_notes=len(voice_plan.notes),
            )
        )
    sf.write(folder / "mix.flac", mix * gain, sr, "PCM_24")
    prefix = piece_dir(Path(), piece.piece_id)
    notes = {v.name: [list(n) for n in v.notes] for v in arrangement.voices}
    (folder / "notes.json").write_text(json.dumps(notes))
    meta = ExampleMeta(
        piece_id=piece.piece_id,
        source=piece.source,
        split=split,
        seed=config.seed,
        sample_rate=sr,
        num_samples=n_samples,
        duration_s=n_samples / sr,
        soundfont=arrangement.soundfont,
        transpose=arrangement.transpose,
        bpm=round(arrangement.bpm, 3),
        normalization_gain=gain,
        stems=stem_metas,
        mix_file=f"{prefix}/mix.flac",
        notes_file=f"{prefix}/notes.json",
    )
    write_json_atomic(folder / "meta.json", meta.model_dump_json(indent=1))
    return meta


def _playable(renderer: Renderer, soundfont: Path, track: Track) -> Track:
    """Fall back to program 0 of the same bank when a SoundFont lacks the drawn preset."""
    if renderer.has_preset(soundfont, track.bank, track.program):
        return track
    return replace(track, program=0)


def _disk_full_message(out: Path) -> str:
    free_mb = shutil.disk_usage(out).free / 1e6
    return (
        f"disk full under {out.resolve()} ({free_mb:.0f} MB free): free some space or pass "
        f"another --out; finished pieces are kept and re-running resumes"
    )


def _existing(out: Path, piece_id: str) -> ExampleMeta | None:
    meta = piece_dir(out, piece_id) / "meta.json"
    return ExampleMeta.model_validate_json(meta.read_text()) if meta.is_file() else None


def build_dataset(config: BuildConfig, progress: bool = True) -> Manifest:
    soundfonts = {name: locate_soundfont(name) for name in config.soundfonts}  # fail fast
    out = config.out
    (out / "pieces").mkdir(parents=True, exist_ok=True)
    for stale in (out / "pieces").glob(".partial-*"):  # left by a crash; never complete
        shutil.rmtree(stale, ignore_errors=True)
    candidates = plan(config)
    target = min(config.limit, len(candidates)) if config.limit else len(candidates)
    examples: list[ExampleMeta] = []
    skipped: list[SkippedPiece] = []
    with tqdm(total=target, unit="piece", desc="rendering", disable=not progress) as bar:
        for piece_id, outcome in _outcomes(candidates, target, config, soundfonts):
            if isinstance(outcome, ExampleMeta):
                examples.append(outcome)
                bar.update(1)
            else:
                skipped.append(SkippedPiece(piece_id=piece_id, reason=outcome))
                bar.write(f"warning: skipped {outcome}", file=sys.stderr)
    manifest = Manifest(
        seed=config.seed, sample_rate=config.sample_rate, examples=examples, skipped=skipped
    )
    save_manifest(out, manifest)
    return manifest


def _outcomes(
    candidates: list[tuple[str, Split]],
    target: int,
    config: BuildConfig,
    soundfonts: dict[str, Path],
) -> Iterator[tuple[str, ExampleMeta | str]]:
    """Build pieces in plan order until `target` examples exist; yield each outcome in order.

    A skipped score (ScoreError) is replaced by the next candidate, so --limit N gives N
    examples whenever the corpus has them. With jobs > 1, a few pieces render ahead.
    """
    pool = ProcessPoolExecutor(config.jobs) if config.jobs > 1 else None

    def start(piece_id: str, split: Split) -> Callable[[], ExampleMeta]:
        existing = _existing(config.out, piece_id)
        if existing is not None:
            return lambda: existing
        if pool is None:
            return lambda: build_piece(piece_id, split, config, soundfonts)
        return pool.submit(build_piece, piece_id, split, config, soundfonts).result

    todo = iter(candidates)
    pending: deque[tuple[str, Callable[[], ExampleMeta]]] = deque()
    built = 0
    try:
        while built < target:
            while len(pending) < 2 * config.jobs and built + len(pending) < target:
                candidate = next(todo, None)
                if candidate is None:
                    break
                pending.append((candidate[0], start(*candidate)))
            if not pending:
                return
            piece_id, result = pending.popleft()
            try:
                meta = result()
            except ScoreError as exc:
                yield piece_id, str(exc)
                continue
            built += 1
            yield piece_id, meta
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
