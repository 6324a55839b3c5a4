"""The `bandmate` command. Subcommands import their packages lazily, so `bandmate --help`
is fast and the runtime commands never import torch."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

app = typer.Typer(
    help="Bandmate: live causal accompaniment and an EEG-driven music loop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(
    help="Training data: render scores into multi-track stems.", no_args_is_help=True
)
app.add_typer(data_app, name="data")


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


@app.command()
def demo(
    out: Path = typer.Option(Path("out/demo"), help="Where to write the demo output."),
) -> None:
    """The main job on the shipped default: for now, a quick data build."""
    data_build(
        out=out / "data",
        seed=0,
        limit=3,
        jobs=1,
        sources="bach,palestrina,band",
        soundfonts="timgm6mb",
        max_seconds=20.0,
    )


def user_error_types() -> tuple[type[Exception], ...]:
    """Errors a user can act on; each is printed as one line, without a traceback."""
    from engine.errors import EngineError
    from models.errors import ModelsError

    return (ModelsError, EngineError)


def main() -> None:
    try:
        app()
    except user_error_types() as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
