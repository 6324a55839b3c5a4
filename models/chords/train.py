"""Training the chord model on CPU: the control-token model, a genre-blind base, and adapters.

Batches balance the genres: each row draws a genre uniformly, then a piece, then a window of
its chords behind the (genre, mode) prefix, so a genre with long pieces (Palestrina's masses)
does not drown one with short ones (the band's 8-bar loops). The loss is cross-entropy on
every token after the prefix; padding is ignored.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.chords.dataset import ChordData
from models.chords.extract import ChordSequence, binned
from models.chords.model import CHORD_PRESETS, ChordModel, ChordModelConfig
from models.chords.vocab import ANY_GENRE, PREFIX, Vocabulary
from models.errors import ModelsError


@dataclass(frozen=True)
class FitConfig:
    steps: int = 1500
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 50
    seed: int = 0
    threads: int = 2


@dataclass
class Tokenised:
    """Each genre's sequences as token ids, the genre token left to the caller."""

    by_genre: dict[str, list[list[int]]] = field(default_factory=dict)

    @classmethod
    def of(cls, sequences: Sequence[ChordSequence], vocab: Vocabulary) -> Tokenised:
        found = cls()
        for s in sequences:
            found.by_genre.setdefault(s.genre, []).append(vocab.encode(s.genre, s.mode, binned(s)))
        return found


def sample_batch(
    rng: np.random.Generator, data: Tokenised, batch: int, block: int, genre_token: int | None
) -> tuple[Tensor, Tensor]:
    """(inputs, targets) [B, block]; genre_token replaces every genre token when given (the
    genre-blind base, and adapters on it)."""
    genres = sorted(data.by_genre)
    rows = np.zeros((batch, block + 1), np.int64)  # 0 is the padding token
    for row in range(batch):
        pieces = data.by_genre[genres[rng.integers(len(genres))]]
        ids = pieces[rng.integers(len(pieces))]
        n_chords = (len(ids) - PREFIX) // 2
        start = int(rng.integers(n_chords))
        body = ids[PREFIX + 2 * start : PREFIX + 2 * start + block + 1 - PREFIX]
        window = [genre_token if genre_token is not None else ids[0], ids[1], *body]
        rows[row, : len(window)] = window
    tokens = torch.from_numpy(rows)
    targets = tokens[:, 1:].clone()
    targets[targets == 0] = -100
    targets[:, : PREFIX - 1] = -100  # the mode token is given, not predicted
    return tokens[:, :-1], targets


def fit(
    model: ChordModel,
    data: Tokenised,
    config: FitConfig,
    genre_token: int | None = None,
    adapters_only: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> dict[str, float]:
    """Train in place; the last loss and the seconds it took."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    if adapters_only:
        for p in model.parameters():
            p.requires_grad_(False)
        params = model.adapter_parameters()
        for p in params:
            p.requires_grad_(True)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    decay = 0.0 if adapters_only else config.weight_decay
    optimiser = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=decay)
    model.train()
    started, loss_value = time.perf_counter(), float("nan")
    for step in range(config.steps):
        lr = config.learning_rate * min(1.0, (step + 1) / config.warmup)
        lr *= 0.5 * (1 + math.cos(math.pi * step / config.steps))
        for group in optimiser.param_groups:
            group["lr"] = lr
        inputs, targets = sample_batch(rng, data, config.batch_size, model.config.block_size,
                                       genre_token)  # fmt: skip
        logits = model(inputs)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        loss_value = float(loss.detach())
        if on_step is not None:
            on_step(step, loss_value)
    model.eval()
    return {"loss": loss_value, "seconds": time.perf_counter() - started}


def new_model(preset: ChordModelConfig, vocab: Vocabulary, seed: int) -> ChordModel:
    torch.manual_seed(seed)
    return ChordModel(replace(preset, vocab_size=len(vocab)))


@torch.no_grad()
def next_chord_hits(
    model: ChordModel, vocab: Vocabulary, sequences: Sequence[ChordSequence],
    genre_token: int | None = None,
) -> tuple[int, int]:  # fmt: skip
    """(correct, total) next-chord predictions, teacher-forced, the argmax over chord tokens.

    A sequence longer than the block is read in windows that overlap by half, each behind the
    prefix; a chord is scored once, in the window where it has at least half a block of past.
    """
    model.eval()
    chord_ids = torch.tensor(vocab.chord_ids())
    body_len = model.config.block_size - PREFIX  # tokens of chords per window
    body_len -= body_len % 2
    stride = body_len // 2 - (body_len // 2) % 2  # even: chord tokens stay at even offsets
    correct = total = 0
    for s in sequences:
        ids = vocab.encode(s.genre, s.mode, binned(s))
        prefix = [genre_token if genre_token is not None else ids[0], ids[1]]
        body = ids[PREFIX:]
        start = 0
        while True:
            window = body[start : start + body_len]
            tokens = torch.tensor([prefix + window])
            logits = model(tokens)[0, :, chord_ids]  # [L, chords]
            guess = chord_ids[logits.argmax(-1)]
            first = 0 if start == 0 else body_len - stride  # the rest was scored before
            for j in range(first, len(window), 2):  # chord tokens sit at even body offsets
                correct += int(guess[PREFIX - 1 + j] == window[j])
                total += 1
            if start + body_len >= len(body):
                break
            start += stride
    return correct, total


def genre_blind_token(vocab: Vocabulary) -> int:
    return vocab.genre_id(ANY_GENRE)


def train_split(data: ChordData, vocab: Vocabulary, genre: str | None = None) -> Tokenised:
    return Tokenised.of(data.split("train", genre), vocab)


@dataclass(frozen=True)
class ChordTrainConfig:
    """`bandmate train chords`: the control-token model, trained and exported."""

    data: Path
    out: Path
    preset: str = "default"
    fit: FitConfig = field(default_factory=FitConfig)


def train_chords(config: ChordTrainConfig, log: Callable[[str], None] = print) -> dict[str, object]:
    """Train on the build's train split, score the valid split per genre, save and export."""
    from models.chords.chord_checkpoint import save_chord_model
    from models.chords.dataset import load_chord_data

    if config.preset not in CHORD_PRESETS:
        raise ModelsError(f"unknown preset {config.preset!r}; known: {', '.join(CHORD_PRESETS)}")
    data, vocab = load_chord_data(config.data), Vocabulary.build()
    model = new_model(CHORD_PRESETS[config.preset], vocab, config.fit.seed)
    every = max(1, config.fit.steps // 10)

    def report(step: int, loss: float) -> None:
        if (step + 1) % every == 0:
            log(f"step {step + 1}/{config.fit.steps}: loss {loss:.3f}")

    trained = fit(model, train_split(data, vocab), config.fit, on_step=report)
    valid: dict[str, float] = {}
    for genre in data.genres:
        correct, total = next_chord_hits(model, vocab, data.split("valid", genre))
        valid[genre] = correct / total if total else float("nan")
    mode_counts = Counter(s.mode for s in data.split("train"))
    facts = {"steps": config.fit.steps, "train_seconds": round(trained["seconds"], 1),
             "final_loss": round(trained["loss"], 4), "valid_accuracy": valid,
             "parameters": sum(p.numel() for p in model.parameters()),
             "genres": data.genres, "mode_counts": dict(mode_counts)}  # fmt: skip
    return save_chord_model(model, vocab, config.out, facts)
