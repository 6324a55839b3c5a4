"""The `bandmate` command. Subcommands import their packages lazily, so `bandmate --help`
is fast and the runtime commands never import torch."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    help="Bandmate: live causal accompaniment and an EEG-driven music loop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

from server import (  # noqa: E402  (register their commands)
    cli_bci,
    cli_client,
    cli_engine,
    cli_live,
    cli_models,
    cli_serve,
    cli_session,
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


cli_models.register(app)
cli_live.register(app)
cli_engine.register(app)
cli_serve.register(app)
cli_client.register(app)
cli_bci.register(app)
cli_session.register(app)


def user_error_types() -> tuple[type[Exception], ...]:
    """Errors a user can act on; each is printed as one line, without a traceback."""
    from bci.errors import BciError
    from bci.midi_out import MidiOutError
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


if __name__ == "__main__":  # `python -m server.cli`, as torchrun runs it
    main()
