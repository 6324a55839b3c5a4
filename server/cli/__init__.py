"""The `bandmate` command: the root app, `--version`, and one-line user errors. Each command
group is a module here (models, live, files, bench, serve, client, bci, session) that
registers itself; commands import their packages lazily, so `bandmate --help` is fast and the
runtime commands never import torch. This package is the only part of `server/` that may
import `models`, `clients` and `benchmarks`."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    help="Bandmate: live causal accompaniment and an EEG-driven music loop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

from server.cli import (  # noqa: E402  (register their commands)
    bci,
    bench,
    client,
    files,
    live,
    models,
    serve,
    session,
    steer,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        from models.checkpoint_config import git_commit
        from server.version import version

        commit = git_commit()
        typer.echo(f"bandmate {version()}" + (f" (git {commit})" if commit else ""))
        raise typer.Exit()


@app.callback()
def _options(
    _version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version (and the git commit, in a checkout) and exit.",
    ),
) -> None:
    pass  # only --version, which is handled in its callback


models.register(app)
live.register(app)
files.register(app)
bench.register(app)
serve.register(app)
client.register(app)
bci.register(app)
session.register(app)
steer.register(app)


def user_error_types() -> tuple[type[Exception], ...]:
    """Errors a user can act on; each is printed as one line, without a traceback."""
    from bci.errors import BciError
    from bci.live.midi_out import MidiOutError
    from clients.errors import ClientError
    from engine.errors import EngineError
    from models.errors import ModelsError
    from server.errors import ServerError

    return (ModelsError, EngineError, ServerError, ClientError, BciError, MidiOutError)


def main() -> None:
    try:
        app()
    except user_error_types() as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
