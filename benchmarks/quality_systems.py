"""What `bandmate bench quality` evaluates: held-out pieces, and the systems that accompany them.

Held-out pieces come from the data build's test split. When the data folder has no build
yet, only test-split pieces are rendered into it (the same pieces, bit for bit, that
`bandmate data build` would render there), so the benchmark never needs a training build.

Systems, each run the same way on the same crop of every piece:
- `model`: the checkpoint through `engine.filemode.accompany`, i.e. exactly as a live
  stream would play, latency-compensated;
- `model, no past context`: the same, with the generator's past live context removed;
- `ground truth`: the real accompaniment (the ceiling);
- `random pairing`: the real accompaniment of another held-out piece (real music that does
  not follow this live part);
- `echo`: the live part itself, one hop late: what any metric that rewards copying the
  melody would rank high, and an accompaniment must beat where it counts (harmony per
  frame against the real accompaniment);
- `silence`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import zip_longest
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine.backends import Backend, GeneratorState, ModelInfo, ModelState
from engine.filemode import accompany
from models.data.build import BuildConfig, build_piece, piece_dir, plan
from models.data.manifest import (
    MANIFEST_NAME,
    DatasetError,
    ExampleMeta,
    Manifest,
    SkippedPiece,
    load_manifest,
    load_roles,
    save_manifest,
)
from models.data.scores import ScoreError
from models.data.soundfonts import locate_soundfont

SYSTEMS = (
    "model",
    "model, no past context",
    "ground truth",
    "random pairing",
    "echo",
    "silence",
)
ECHO_DELAY_S = 1024 / 48_000  # one hop of the model


@dataclass(frozen=True)
class HeldOutPiece:
    piece_id: str
    source: str
    sample_rate: int
    live: np.ndarray  # mono float32, cropped
    accompaniment: np.ndarray  # the real one: every other stem, summed


class WithoutPastContext:
    """The model with its past live context removed: a backend whose generator forgets
    everything before the current frame.

    LiveBand's generator predicts the accompaniment latent for frame t + a from the causally
    available live-part context m_<=t (plus noise), which it reaches through attention over its
    rolling KV window. Emptying that window (and its position) before every step leaves
    attention only the current frame, so the output becomes f(m_t, noise_t): the same trained
    weights with a context of one frame. This is the faithful ablation at the cost of nothing
    (no retraining, no new graph): the generator's state, its KV window, is reset per hop.
    The codec's analysis, decoder and synthesis state are kept: they are the codec's own
    window overlap, which makes m_t and continuous audio, not the generator's context.
    """

    def __init__(self, backend: Backend):
        self.backend = backend
        self.name = f"{backend.name}, no past context"
        self.info: ModelInfo = backend.info
        self._empty_generator: dict[int, GeneratorState | None] = {}

    def initial_state(self, batch: int = 1) -> ModelState:
        return self.backend.initial_state(batch)

    def step(
        self,
        state: ModelState,
        audio: np.ndarray,
        noise: np.ndarray,
        steer: np.ndarray | None = None,
    ) -> tuple[ModelState, np.ndarray]:
        batch = state.batch
        if batch not in self._empty_generator:  # the graphs never write into their inputs
            self._empty_generator[batch] = self.backend.initial_state(batch).generator
        forgotten = replace(state, generator=self._empty_generator[batch])
        return self.backend.step(forgotten, audio, noise, steer)


def build_held_out(
    out: Path, count: int, recipe: BuildConfig | None = None, progress: bool = True
) -> Manifest:
    """Render the first `count` usable test-split pieces of a build (`recipe`, default: the
    default build's) into `out`, keeping pieces already there, and write a manifest that
    lists only them."""
    config = replace(recipe or BuildConfig(out=out), out=out)
    soundfonts = {name: locate_soundfont(name) for name in config.soundfonts}  # fail fast
    (out / "pieces").mkdir(parents=True, exist_ok=True)
    examples: list[ExampleMeta] = []
    skipped: list[SkippedPiece] = []
    candidates = (pid for pid, split in plan(config) if split == "test")
    with tqdm(
        total=count, unit="piece", desc="rendering held-out pieces", disable=not progress
    ) as bar:
        for piece_id in candidates:
            if len(examples) == count:
                break
            done = piece_dir(out, piece_id) / "meta.json"
            if done.is_file():
                examples.append(ExampleMeta.model_validate_json(done.read_text()))
            else:
                try:
                    examples.append(build_piece(piece_id, "test", config, soundfonts))
                except ScoreError as exc:
                    skipped.append(SkippedPiece(piece_id=piece_id, reason=str(exc)))
                    continue
            bar.update(1)
    manifest = Manifest(
        seed=config.seed, sample_rate=config.sample_rate, examples=examples, skipped=skipped
    )
    save_manifest(out, manifest)
    return manifest


def held_out_manifest(
    data: Path, count: int, recipe: BuildConfig | None = None, progress: bool = True
) -> Manifest:
    """The build in `data`; when there is none, or it is a held-out-only build with too few
    pieces, render the missing test pieces first."""
    if (data / MANIFEST_NAME).is_file():
        manifest = load_manifest(data)
        only_test = all(e.split == "test" for e in manifest.examples)
        if not (only_test and len(manifest.examples) < count):
            return manifest
    return build_held_out(data, count, recipe, progress)


def select_pieces(manifest: Manifest, limit: int) -> list[ExampleMeta]:
    """Up to `limit` test examples, taking the sources in turn (chorales, masses, band), so a
    small subset still holds every kind of music."""
    by_source: dict[str, list[ExampleMeta]] = {}
    for example in manifest.split("test"):
        by_source.setdefault(example.source, []).append(example)
    interleaved = [e for row in zip_longest(*by_source.values()) for e in row if e is not None]
    return interleaved[:limit]


def load_held_out(
    data: Path,
    limit: int,
    seconds: float,
    recipe: BuildConfig | None = None,
    progress: bool = True,
) -> list[HeldOutPiece]:
    manifest = held_out_manifest(data, limit, recipe, progress)
    chosen = select_pieces(manifest, limit)
    if not chosen:
        raise DatasetError(
            f"{data} has no held-out (test split) pieces; point --data at a build made by "
            f"'bandmate data build', or at an empty folder to render some"
        )
    pieces = []
    for example in chosen:
        live, accompaniment = load_roles(data, example)
        crop = min(len(live), int(seconds * example.sample_rate))
        pieces.append(
            HeldOutPiece(
                example.piece_id,
                example.source,
                example.sample_rate,
                np.ascontiguousarray(live[:crop]),
                np.ascontiguousarray(accompaniment[:crop]),
            )
        )
    return pieces


def derangement(count: int, seed: int) -> list[int]:
    """A seeded permutation with no fixed point: piece i gets the accompaniment of piece
    pairing[i], never its own. Empty for fewer than two pieces (nothing to pair with)."""
    if count < 2:
        return []
    rng = np.random.default_rng(seed)
    while True:
        order = [int(i) for i in rng.permutation(count)]
        if all(i != j for i, j in enumerate(order)):
            return order


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros(length, np.float32)
    out[: min(length, len(audio))] = audio[:length]
    return out


def system_outputs(
    pieces: list[HeldOutPiece], backend: Backend, seed: int
) -> Iterator[tuple[str, int, np.ndarray]]:
    """(system, piece index, output at the piece's rate) for every system and piece; random
    pairing is left out when there is only one piece."""
    pairing = derangement(len(pieces), seed)
    ablated = WithoutPastContext(backend)
    for index, piece in enumerate(pieces):
        n = len(piece.live)
        yield "model", index, accompany(piece.live, piece.sample_rate, backend, seed).accompaniment
        yield (
            "model, no past context",
            index,
            accompany(piece.live, piece.sample_rate, ablated, seed).accompaniment,
        )
        yield "ground truth", index, piece.accompaniment
        if pairing:
            yield "random pairing", index, fit_length(pieces[pairing[index]].accompaniment, n)
        delay = round(ECHO_DELAY_S * piece.sample_rate)
        yield (
            "echo",
            index,
            fit_length(np.concatenate([np.zeros(delay, np.float32), piece.live]), n),
        )
        yield "silence", index, np.zeros(n, np.float32)
