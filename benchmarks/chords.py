"""`bandmate bench chords`: the genre-adaptation question at our scale, and the shipped model's
music.

Held-out next-chord accuracy (the test split, by piece), per genre, over `seeds` seeds:
- n-gram: a trigram per genre and mode, backing off to the pool (models/chords/ngram.py);
- base: one model trained with a genre-blind token, every genre pooled;
- control token: the same model trained with each genre's token (what ships);
- LoRA / IA3: an adapter per genre trained on that genre alone over the frozen base;
- shipped recipe: control-token models trained as the shipped one is (`bandmate train chords`
  defaults: the default preset, 3000 steps), read from `recipe` checkpoints (default: the
  shipped model alone), since training three of them here would triple the bench's time.
The first four trained models are the same size (the small preset) and trained for the same
steps; the adapters get `adapter_steps` more on their genre. The musical checks and the
timing are in benchmarks/chords_music.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DATA = Path("data/chords")
VARIANTS = ("ngram", "base", "control", "lora", "ia3", "recipe")


@dataclass(frozen=True)
class ChordBenchConfig:
    data: Path = DEFAULT_DATA
    seeds: int = 3
    preset: str = "small"
    steps: int = 1000  # the base and the control-token model, 32 windows a step
    adapter_steps: int = 80  # each adapter, on its genre, 16 windows a step
    lora_rank: int = 4
    bars: int = 200  # per mode, for the musical checks
    checkpoint: Path | None = None  # the chord model to play (default: the shipped one)
    recipe: tuple[Path, ...] = ()  # checkpoints of the shipped recipe (default: the shipped one)


def accuracy_table(config: ChordBenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """{variant: {genre: {"mean", "sd", "runs"}}} plus the test-set sizes and the run time."""
    import torch

    from models.chords.dataset import load_chord_data
    from models.chords.model import CHORD_PRESETS
    from models.chords.ngram import NGram
    from models.chords.train import (
        FitConfig,
        genre_blind_token,
        new_model,
        train_split,
    )
    from models.chords.vocab import Vocabulary

    data, vocab = load_chord_data(config.data), Vocabulary.build()
    genres, blind = data.genres, genre_blind_token(vocab)
    runs: dict[str, dict[str, list[float]]] = {v: {g: [] for g in genres} for v in VARIANTS}
    sizes = {g: next_chord_hits_total(data.split("test", g)) for g in genres}
    ngram = NGram(vocab).fit(data.split("train"))
    for g in genres:
        correct, total = ngram.hits(data.split("test", g))
        runs["ngram"][g] = [correct / total] * config.seeds
    preset = CHORD_PRESETS[config.preset]
    started = time.perf_counter()
    for seed in range(config.seeds):
        fit = FitConfig(steps=config.steps, seed=seed)
        pooled = train_split(data, vocab)
        for variant, token in (("control", None), ("base", blind)):
            model = new_model(preset, vocab, seed)
            from models.chords.train import fit as train

            train(model, pooled, fit, genre_token=token)
            for g in genres:
                runs[variant][g].append(_accuracy(model, vocab, data.split("test", g), token))
            if variant == "base":
                base_state = {k: v.clone() for k, v in model.state_dict().items()}
            log(f"seed {seed}: {variant} trained ({time.perf_counter() - started:.0f} s)")
        for variant, adapter in (("lora", {"lora_rank": config.lora_rank}), ("ia3", {"ia3": True})):
            for g in genres:
                model = new_model(replace(preset, **adapter), vocab, seed)
                model.load_base(base_state)
                adapter_fit = replace(fit, steps=config.adapter_steps, batch_size=16,
                                      learning_rate=1e-2, warmup=10)  # fmt: skip
                train(model, train_split(data, vocab, g), adapter_fit, genre_token=blind,
                      adapters_only=True)  # fmt: skip
                runs[variant][g].append(_accuracy(model, vocab, data.split("test", g), blind))
            log(f"seed {seed}: {variant} adapters trained ({time.perf_counter() - started:.0f} s)")
        torch.manual_seed(0)
    from bci.live.harmony import SHIPPED_CHORD_MODEL
    from models.chords.chord_checkpoint import load_chord_model

    for checkpoint in config.recipe or (SHIPPED_CHORD_MODEL,):
        model, _ = load_chord_model(checkpoint)
        for g in genres:
            runs["recipe"][g].append(_accuracy(model, vocab, data.split("test", g), None))
    table = {v: {g: _summary(runs[v][g]) for g in genres} for v in VARIANTS}
    for v in VARIANTS:
        n_runs = len(runs[v][genres[0]])
        table[v]["macro"] = _summary(
            [float(np.mean([runs[v][g][s] for g in genres])) for s in range(n_runs)]
        )
    wins = {v: [g for g in genres if table[v][g]["mean"] > table["ngram"][g]["mean"]]
            for v in ("control", "recipe")}  # fmt: skip
    return {"accuracy": table, "test_chords": sizes, "beats_ngram": wins,
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def next_chord_hits_total(sequences: list[Any]) -> int:
    return sum(len(s.chords) for s in sequences)


def _accuracy(model: Any, vocab: Any, sequences: list[Any], token: int | None) -> float:
    from models.chords.train import next_chord_hits

    correct, total = next_chord_hits(model, vocab, sequences, token)
    return correct / total if total else float("nan")


def _summary(values: list[float]) -> dict[str, Any]:
    return {"mean": float(np.mean(values)), "sd": float(np.std(values)), "runs": values}


def run_chord_benchmark(
    config: ChordBenchConfig, log: Callable[[str], None] = print
) -> dict[str, Any]:
    from bci.live.harmony import SHIPPED_CHORD_MODEL
    from benchmarks.chords_music import musical_checks

    model_dir = config.checkpoint or SHIPPED_CHORD_MODEL
    accuracy = accuracy_table(config, log)
    genres = [g for g in accuracy["test_chords"]]
    music = musical_checks(config.data, model_dir, genres, config.bars)
    facts = json.loads((model_dir / "config.json").read_text())
    shipped = {"bytes": sum(p.stat().st_size for p in model_dir.iterdir()),
               "train_seconds": facts.get("train_seconds"), "steps": facts.get("steps"),
               "parameters": facts.get("parameters")}  # fmt: skip
    return {"config": {k: str(v) for k, v in asdict(config).items()}, **accuracy,
            "music": music, "shipped_model": shipped}  # fmt: skip


def markdown_tables(report: dict[str, Any]) -> str:
    """The accuracy table (mean +- SD over seeds, %), then the musical checks."""
    table = report["accuracy"]
    names = {"ngram": "n-gram", "base": "base (no genre)", "control": "control token",
             "lora": "LoRA", "ia3": "IA3", "recipe": "control token, shipped recipe"}  # fmt: skip
    lines = ["| genre | test chords | " + " | ".join(names[v] for v in VARIANTS) + " |",
             "|---|---|" + "---|" * len(VARIANTS)]  # fmt: skip
    for genre in [*report["test_chords"], "macro"]:
        cells = []
        for v in VARIANTS:
            cell = table[v][genre]
            spread = v != "ngram" and len(cell["runs"]) > 1
            cells.append(f"{100 * cell['mean']:.1f}" + (f" ± {100 * cell['sd']:.1f}"
                                                        if spread else ""))  # fmt: skip
        size = report["test_chords"].get(genre, sum(report["test_chords"].values()))
        lines.append(f"| {genre} | {size} | " + " | ".join(cells) + " |")
    wins = report["beats_ngram"]
    lines += ["", f"Better than the n-gram: control token in {len(wins['control'])} of "
              f"{len(report['test_chords'])} genres, shipped recipe in {len(wins['recipe'])} "
              f"({len(table['recipe']['bach']['runs'])} runs)."]  # fmt: skip
    music = report["music"]
    lines += ["", f"Musical checks, {music['bars_per_mode']} bars in each of the 7 modes "
              "(model: every genre):", "",
              "| harmony | chord notes in the mode's scale | phrase ends that cadence |",
              "|---|---|---|"]  # fmt: skip
    for source, values in music["mean"].items():
        lines.append(f"| {source} | {100 * values['key_consistency']:.1f} % | "
                     f"{100 * values['cadences']:.1f} % |")  # fmt: skip
    clf = music["genre_classifier"]
    per_genre = ", ".join(f"{g} {100 * a:.0f}" for g, a in clf["model"].items() if g != "all")
    lines += [
        "",
        "| genre classifier (chord 1-2-grams, 8-chord segments) | accuracy |",
        "|---|---|",
        f"| chance | {100 * clf['chance']:.1f} % |",
        f"| real held-out pieces | {100 * clf['real_held_out']['all']:.1f} % |",
        f"| model's progressions | {100 * clf['model']['all']:.1f} % ({per_genre}) |",
        f"| rules' progressions (one for every genre) | at most {100 * clf['rules']:.1f} % |",
    ]
    time_ms = music["chord_time"]
    shipped = report["shipped_model"]
    lines += ["", f"Model chord: p50 {time_ms['p50_ms']:.3f} ms, p99 {time_ms['p99_ms']:.3f} ms, "
              f"max {time_ms['max_ms']:.2f} ms over {time_ms['n']} chords. Shipped model: "
              f"{shipped['parameters']} parameters, {shipped['bytes'] / 2**20:.2f} MiB, trained "
              f"{shipped['steps']} steps in {shipped['train_seconds']} s."]  # fmt: skip
    return "\n".join(lines) + "\n"
