"""Where the composer's chords come from: hand-written rules, or a small learned chord model.

Both give the chord of each bar as scale steps of the current mode (0 = the tonic's degree;
root first, then each chord tone above it), so everything the composer builds on a chord
(voicing, bass, the melody's chord tones) stays inside the mode.

- rules: a random walk over the I / ii / IV / V / vi-like degrees, back to I at the start of
  each 4-bar phrase (why: a regular return to the tonic makes a mode recognisable).
- model: the chord model trained by `bandmate train chords` (models/chords/), run on
  onnxruntime from the files it exported: `chords.onnx` and `tokens.json`. The window of
  tokens is [genre, mode, chord, length, chord, length, ...]: the experimenter's genre, the
  mode valence selected and the newest chords, each a bar long. Its next-chord distribution
  is restricted to the chords whose notes all lie in the mode's scale, and at the start of each
  4-bar phrase to those on the tonic (the model still picks which: major or minor, seventh or
  triad), as the rules return to I; it is sampled with the bar's own random generator, so the
  same seed and the same modes give the same chords.
  A mode the training data never had (lydian, locrian) plays with the nearest mode by
  brightness that it had, as tokens.json says, and still only with its own scale's chords.

This module reads the model's files by path and imports nothing of ours outside bci.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from bci.errors import BciError

SCALE_LENGTH = 7
PHRASE_BARS = 4
# Chord degrees (0 = I) and where the random walk may go from each; repeats weight a choice.
CHORD_WALK: dict[int, tuple[int, ...]] = {
    0: (3, 3, 4, 4, 5, 1),  # I  -> IV, V, vi, ii
    1: (4, 4, 4, 3),  # ii -> V, IV
    3: (4, 4, 0, 0, 1, 5),  # IV -> V, I, ii, vi
    4: (0, 0, 0, 5, 5, 3),  # V  -> I, vi, IV
    5: (3, 3, 1, 1, 4),  # vi -> IV, ii, V
}
SHIPPED_CHORD_MODEL = Path(__file__).resolve().parents[2] / "models" / "checkpoints" / "chords"
HarmonyKind = Literal["rules", "model"]


@dataclass(frozen=True)
class HarmonyConfig:
    kind: HarmonyKind = "rules"
    genre: str = "bach"  # the model's genre token (model only)
    model_dir: Path = SHIPPED_CHORD_MODEL
    # False lets the model play any chord, in the scale or not, on the tonic at a phrase start
    # or not: only `bench chords` does, to measure what the mode token alone has learned.
    scale_only: bool = True


class Harmony(Protocol):
    def chord_steps(
        self, rng: random.Random, bar: int, mode: str, intervals: tuple[int, ...]
    ) -> list[int]:
        """The chord of bar `bar` as ascending scale steps, root first."""
        ...


class RuleHarmony:
    def __init__(self) -> None:
        self.degree = 0  # the musical state carried from bar to bar

    def chord_steps(
        self, rng: random.Random, bar: int, mode: str, intervals: tuple[int, ...]
    ) -> list[int]:
        self.degree = 0 if bar % PHRASE_BARS == 0 else rng.choice(CHORD_WALK[self.degree])
        return [self.degree + 2 * i for i in range(3)]  # root, third, fifth


@dataclass(frozen=True)
class ChordTable:
    """What the player needs from tokens.json."""

    tokens: tuple[str, ...]
    chord_pitch_classes: dict[int, tuple[int, ...]]  # token id -> pitch classes above the tonic
    modes: dict[str, tuple[int, ...]]
    mode_tokens: dict[str, str]  # mode -> the mode whose token it plays with
    block_size: int

    @classmethod
    def read(cls, path: Path) -> ChordTable:
        try:
            raw = json.loads(path.read_text())
        except OSError as exc:
            raise BciError(f"cannot read the chord model's {path}: {exc.strerror}") from None
        index = {t: i for i, t in enumerate(raw["tokens"])}
        chords = {index[t]: tuple(pcs) for t, pcs in raw["chord_pitch_classes"].items()}
        modes = {m: tuple(s) for m, s in raw["modes"].items()}
        return cls(tuple(raw["tokens"]), chords, modes, raw["mode_tokens"], raw["block_size"])

    def id(self, token: str) -> int:
        return self.tokens.index(token)

    def genres(self) -> list[str]:
        return [t[2:] for t in self.tokens if t.startswith("g:") and t != "g:any"]

    def in_scale(self, mode: str) -> np.ndarray:
        """Token ids of the chords whose notes all lie in the mode's scale."""
        scale = set(self.modes[mode])
        return np.array(sorted(i for i, pcs in self.chord_pitch_classes.items()
                               if set(pcs) <= scale))  # fmt: skip


class ModelHarmony:
    """Chords drawn from the ONNX chord model; one model call per bar."""

    def __init__(self, config: HarmonyConfig, beats_per_bar: int = 4):
        import onnxruntime as ort

        self.table = ChordTable.read(config.model_dir / "tokens.json")
        known = self.table.genres()
        if config.genre not in known:
            raise BciError(f"unknown genre {config.genre!r}; known: {', '.join(known)}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one small graph per bar; threads only add overhead
        graph = config.model_dir / "chords.onnx"
        try:
            self.session = ort.InferenceSession(str(graph), options,
                                                providers=["CPUExecutionProvider"])  # fmt: skip
        except Exception as exc:  # onnxruntime raises its own types for a missing or bad file
            raise BciError(f"cannot load the chord model {graph}: {exc}") from None
        self.genre = self.table.id(f"g:{config.genre}")
        lengths = {float(t[1:]): i for i, t in enumerate(self.table.tokens) if t[:1] == "d"}
        self.bar_length = lengths[min(lengths, key=lambda b: abs(b - beats_per_bar))]
        # The newest chords, a bar each: a fixed window of (chord, length) token pairs.
        self.pairs = (self.table.block_size - 2) // 2
        self.window = np.zeros((1, 2 + 2 * self.pairs), np.int64)
        self.filled = 0  # chords in the window
        every = np.array(sorted(self.table.chord_pitch_classes))
        self.allowed = {m: self.table.in_scale(m) if config.scale_only else every
                        for m in self.table.modes}  # fmt: skip
        on_tonic = [i for i in every if self.table.chord_pitch_classes[i][0] == 0]
        self.phrase_start = {m: np.intersect1d(self.allowed[m], on_tonic) if config.scale_only
                             else every for m in self.table.modes}  # fmt: skip

    def next_chord(self, rng: random.Random, mode: str, phrase_start: bool = False) -> int:
        """Sample the next chord token (in the mode's scale; on the tonic at a phrase start)
        and append it to the window."""
        mode_token = self.table.id(f"m:{self.table.mode_tokens[mode]}")
        self.window[0, :2] = (self.genre, mode_token)
        tokens = self.window[:, : 2 + 2 * self.filled]
        logits = self.session.run(None, {"tokens": tokens})[0][0].astype(np.float64)
        allowed = (self.phrase_start if phrase_start else self.allowed)[mode]
        chosen = logits[allowed]
        probabilities = np.exp(chosen - chosen.max())
        cumulative = np.cumsum(probabilities / probabilities.sum())
        pick = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        token = int(allowed[min(pick, len(allowed) - 1)])
        if self.filled == self.pairs:  # full: drop the oldest chord
            self.window[0, 2:-2] = self.window[0, 4:]
            self.filled -= 1
        self.window[0, 2 + 2 * self.filled : 4 + 2 * self.filled] = (token, self.bar_length)
        self.filled += 1
        return token

    def chord_steps(
        self, rng: random.Random, bar: int, mode: str, intervals: tuple[int, ...]
    ) -> list[int]:
        token = self.next_chord(rng, mode, phrase_start=bar % PHRASE_BARS == 0)
        return scale_steps(self.table.chord_pitch_classes[token], intervals)


def scale_steps(pitch_classes: tuple[int, ...], intervals: tuple[int, ...]) -> list[int]:
    """Chord tones (pitch classes above the tonic, root first, all in the scale) as ascending
    scale steps: the root's degree, then each tone on the first step above the previous."""
    steps = [intervals.index(pitch_classes[0])]
    for pc in pitch_classes[1:]:
        degree = intervals.index(pc)
        step = steps[-1] - steps[-1] % SCALE_LENGTH + degree
        steps.append(step if step > steps[-1] else step + SCALE_LENGTH)
    return steps


def make_harmony(config: HarmonyConfig, beats_per_bar: int = 4) -> Harmony:
    if config.kind == "rules":
        return RuleHarmony()
    if config.kind == "model":
        return ModelHarmony(config, beats_per_bar)
    raise BciError(f"unknown harmony {config.kind!r}; known: rules, model")
