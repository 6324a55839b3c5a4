"""CLI commands for the model side: data build, training and export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import typer

C = TypeVar("C")  # a trainer's config dataclass


class Trainer(Protocol):
    def train(self) -> dict[str, float]: ...


data_app = typer.Typer(
    help="Training data: render scores into multi-track stems.", no_args_is_help=True
)


@data_app.command("build")
def data_build(
    out: Path = typer.Option(..., "--out", help="Folder to write the build into."),
    seed: int = typer.Option(0, help="Seed for splits and augmentations."),
    limit: int | None = typer.Option(None, help="Build only this many pieces (a quick build)."),
    jobs: int = typer.Option(1, help="Worker processes."),
    sources: str = typer.Option("bach,palestrina,band", help="Comma-separated sources."),
    soundfonts: str = typer.Option(
        "fluidr3,musescore,timgm6mb", help="Comma-separated SoundFont names or paths."
    ),
    max_seconds: float = typer.Option(60.0, help="Cut longer pieces here."),
) -> None:
    """Render the music21 corpus and the procedural band into stems plus a manifest."""
    from models.data.arrange import AugmentConfig
    from models.data.build import BuildConfig, build_dataset

    config = BuildConfig(
        out=out,
        seed=seed,
        limit=limit,
        jobs=jobs,
        sources=tuple(s for s in sources.split(",") if s),
        soundfonts=tuple(s for s in soundfonts.split(",") if s),
        augment=AugmentConfig(max_seconds=max_seconds),
    )
    manifest = build_dataset(config)
    counts = {split: len(manifest.split(split)) for split in ("train", "valid", "test")}
    typer.echo(
        f"built {len(manifest.examples)} examples ({manifest.total_seconds / 3600:.2f} h of audio; "
        f"train {counts['train']}, valid {counts['valid']}, test {counts['test']}; "
        f"{len(manifest.skipped)} skipped) in {out}"
    )


@data_app.command("pack")
def pack(
    data: Path = typer.Option(..., "--data", help="A `bandmate data build` folder."),
    codec: Path = typer.Option(..., "--codec", help="The codec checkpoint whose latents to use."),
    out: Path = typer.Option(..., "--out", help="The .npz pack to write."),
    max_mib: float = typer.Option(60.0, help="Size limit: examples are added until it is hit."),
) -> None:
    """Write the generator's training data as latents, not audio: a features pack small enough
    for a GPU machine (`scripts/train-gpu.sh PACK OUT`)."""
    from models.checkpoint import load_codec
    from models.data.manifest import load_manifest
    from models.train.latents import codec_fingerprint, encode_examples
    from models.train.pack import write_pack

    manifest, model = load_manifest(data), load_codec(codec)
    latents = encode_examples(model, data, manifest, out.parent)
    info = write_pack(latents, out, codec_fingerprint(model), manifest.fingerprint(),
                      manifest.sample_rate, int(max_mib * 2**20))  # fmt: skip
    frames = sum(len(latents.live[i]) for i in range(len(latents.splits)))
    typer.echo(f"wrote {out}: {info.examples} of {len(latents.splits)} examples "
               f"({info.bytes / 2**20:.1f} MiB; the build has {frames} frames in all)")  # fmt: skip


@data_app.command("chords")
def data_chords(
    out: Path = typer.Option(..., "--out", help="Folder for chords.jsonl and manifest.json."),
    seed: int = typer.Option(0, help="Seed of the by-piece splits."),
    genres: str = typer.Option("", help="Comma-separated genres (default: all of them)."),
    max_pieces: int = typer.Option(80, help="At most this many pieces per genre."),
    jobs: int = typer.Option(2, help="Worker processes."),
) -> None:
    """Chord-symbol sequences (root, quality, beats; key and mode) from the music21 corpus and
    the procedural band, tagged by genre, split by piece."""
    from models.chords.dataset import ChordDataConfig, build_chord_data
    from models.chords.vocab import GENRES

    chosen = tuple(g for g in genres.split(",") if g) or GENRES
    config = ChordDataConfig(out=out, seed=seed, genres=chosen, max_pieces=max_pieces, jobs=jobs)
    manifest = build_chord_data(config)
    counts = {s: len(manifest.split(s)) for s in ("train", "valid", "test")}
    chords = sum(p.n_chords for p in manifest.pieces)
    typer.echo(f"{len(manifest.pieces)} pieces, {chords} chords (train {counts['train']}, "
               f"valid {counts['valid']}, test {counts['test']}; {len(manifest.skipped)} "
               f"skipped) in {out}")  # fmt: skip


train_app = typer.Typer(help="Train the codec or the generator.", no_args_is_help=True)


@train_app.command("codec")
def train_codec(
    config: Path = typer.Option(..., "--config", help="YAML with CodecTrainConfig fields."),
    steps: int | None = typer.Option(None, help="Override the config's step count."),
) -> None:
    """Train (or resume) the causal codec; writes RUN_DIR/checkpoint."""
    from models.train.codec_trainer import CodecTrainConfig, CodecTrainer

    run_trainer(CodecTrainer, CodecTrainConfig, config, steps)


@train_app.command("generator")
def train_generator(
    config: Path = typer.Option(..., "--config", help="YAML with GeneratorTrainConfig fields."),
    steps: int | None = typer.Option(None, help="Override the config's step count."),
) -> None:
    """Train (or resume) the generator on a trained codec; writes RUN_DIR/checkpoint."""
    from models.train.generator_trainer import GeneratorTrainConfig, GeneratorTrainer

    run_trainer(GeneratorTrainer, GeneratorTrainConfig, config, steps)


def run_trainer(
    trainer: Callable[[C], Trainer], kind: type[C], config: Path, steps: int | None
) -> None:
    """Both trainers the same way: the YAML config, `--steps` over it, then the validation."""
    from models.train.common import load_train_config

    overrides = {"steps": steps} if steps is not None else {}
    typer.echo(f"validation: {trainer(load_train_config(kind, config, overrides)).train()}")


@train_app.command("chords")
def train_chords(
    data: Path = typer.Option(..., "--data", help="A `bandmate data chords` folder."),
    out: Path = typer.Option(
        Path("models/checkpoints/chords"), "--out", help="Folder for the weights, ONNX, tokens."
    ),
    preset: str = typer.Option("default", help="Model size: tiny, small or default."),
    steps: int = typer.Option(3000, help="Optimiser steps (the shipped model: 3000)."),
    batch_size: int = typer.Option(32, help="Windows per step."),
    learning_rate: float = typer.Option(3e-3, help="Peak learning rate (cosine decay)."),
    seed: int = typer.Option(0, help="Seed of the weights and the batches."),
    threads: int = typer.Option(2, help="torch threads."),
) -> None:
    """Train the chord model (genre and mode tokens) on CPU and export it to ONNX."""
    from models.chords.train import ChordTrainConfig, FitConfig
    from models.chords.train import train_chords as run

    fit = FitConfig(steps=steps, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                    threads=threads)  # fmt: skip
    facts = run(ChordTrainConfig(data=data, out=out, preset=preset, fit=fit), log=typer.echo)
    sizes = facts["bytes"]
    assert isinstance(sizes, dict)
    typer.echo(f"trained in {facts['train_seconds']} s; valid next-chord accuracy "
               f"{facts['valid_accuracy']}; ONNX parity {facts['onnx_parity']:.1e}; "
               f"{sum(sizes.values()) / 2**20:.2f} MiB in {out}")  # fmt: skip


def export(
    checkpoint: Path = typer.Argument(..., help="A checkpoint directory with safetensors."),
    out: Path = typer.Option(..., "--out", help="Directory for the ONNX graphs and config."),
    weights_dtype: str = typer.Option("float32", help="float32, or float16 to ship smaller."),
    codec: Path | None = typer.Option(
        None, help="Take the codec from this checkpoint (its encoder must be the same)."
    ),
    temperature: float | None = typer.Option(
        None, help="The generator's playing temperature (below 1: fewer, clearer notes)."
    ),
) -> None:
    """Export ONNX step graphs (checked against torch) for the engine."""
    from models.export import export_checkpoint

    spec = export_checkpoint(checkpoint, out, weights_dtype, codec_from=codec,
                             temperature=temperature)  # fmt: skip
    parity = ", ".join(f"{k} {v:.1e}" for k, v in spec.parity.items())
    typer.echo(f"exported to {out} (max |onnx - torch|: {parity})")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
    app.add_typer(train_app, name="train")
    app.command("export")(export)
