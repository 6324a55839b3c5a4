"""CLI: `bandmate steer build`, the generator's steering vectors (models/steering.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

steer_app = typer.Typer(
    help="Steer the band: control vectors on the generator.", no_args_is_help=True
)


@steer_app.command("build")
def build(
    checkpoint: Path = typer.Option(
        Path("models/checkpoints/default"), help="The checkpoint whose generator to steer."
    ),
    data: Path = typer.Option(Path("data/default"), help="A `bandmate data build` folder."),
    out: Path | None = typer.Option(
        None, help="Write the steerable checkpoint here (default: in place)."
    ),
    layers: str = typer.Option("2,3", help="Comma-separated layers to steer (0 = first)."),
    quantile: float = typer.Option(0.2, help="Top and bottom share of frames contrasted."),
    max_examples: int = typer.Option(120, help="Training examples to read."),
    cache: Path = typer.Option(Path(".cache/steering"), help="Where the latents are cached."),
    seed: int = typer.Option(0, help="The generator's noise while reading its activations."),
) -> None:
    """Compute difference-in-means steering vectors for every attribute (brightness, density,
    register, loudness), store them in the checkpoint and re-export its ONNX graphs."""
    from models.checkpoint import (
        GENERATOR_WEIGHTS,
        load_codec,
        load_generator,
        save_steering,
        stored_dtype,
    )
    from models.checkpoint_config import (
        CheckpointError,
        read_checkpoint_config,
        write_checkpoint_config,
    )
    from models.data.manifest import load_manifest
    from models.export import export_checkpoint
    from models.steering import SteeringBuildConfig, build_vectors, check_layers
    from models.train.latents import encode_examples

    try:
        chosen = tuple(int(x) for x in layers.split(",") if x.strip())
        config = SteeringBuildConfig(chosen, quantile, max_examples, seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    codec, generator = load_codec(checkpoint), load_generator(checkpoint)
    try:
        check_layers(generator, config)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    manifest = load_manifest(data)
    # Every example is encoded (and cached), as the generator trainer does, so a trainer's
    # run folder serves as the cache; only `max_examples` of them are read.
    cache.mkdir(parents=True, exist_ok=True)
    latents = encode_examples(codec, data, manifest, cache)
    try:
        steering = build_vectors(generator, latents, codec.config.spectral, config)
    except ValueError as exc:
        raise CheckpointError(f"steer build: {exc}") from None
    target = checkpoint if out is None else out
    if target.resolve() != checkpoint.resolve():
        shutil.copytree(checkpoint, target, dirs_exist_ok=True)
    meta = read_checkpoint_config(target)
    meta.steering = {
        "attributes": list(steering.vectors), "layers": list(steering.layers),
        "quantile": steering.quantile, "frames": steering.frames,
        "examples": steering.examples, "data_manifest": manifest.fingerprint(),
        "norms": {k: round(float(v.norm()), 3) for k, v in steering.vectors.items()},
    }  # fmt: skip
    save_steering(target, steering.vectors)
    write_checkpoint_config(target, meta)
    export_checkpoint(target, target, stored_dtype(target / GENERATOR_WEIGHTS))
    typer.echo(
        f"steering vectors for {', '.join(steering.vectors)} at layers {list(chosen)} "
        f"from {steering.frames} frames of {steering.examples} examples -> {target}"
    )


STEER_HELP = "ATTRIBUTE=ALPHA (brightness, density, register, loudness); repeatable."


def parse_steer(values: list[str] | None) -> dict[str, float]:
    """["brightness=1.5", ...] -> {"brightness": 1.5}; a malformed one is a usage error."""
    alphas: dict[str, float] = {}
    for value in values or []:
        name, sep, alpha = value.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            alphas[name.strip()] = float(alpha)
        except ValueError:
            raise typer.BadParameter(
                f"--steer expects ATTRIBUTE=ALPHA, e.g. brightness=1.5, not {value!r}"
            ) from None
    return alphas


def register(app: typer.Typer) -> None:
    app.add_typer(steer_app, name="steer")
