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

from server import cli_live, cli_models  # noqa: E402  (register their commands)

cli_models.register(app)
cli_live.register(app)

from server import cli_engine  # noqa: E402  (registers accompany, demo and bench)

cli_engine.register(app)


@app.command()
def demo(
    out: Path = typer.Option(Path("out/demo"), help="Where to write the demo output."),
) -> None:
    """The main job on the shipped default: for now, a quick data build."""
    from server.cli_models import data_build

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


if __name__ == "__main__":  # `python -m server.cli`, as torchrun runs it
    main()
