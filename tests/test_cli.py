"""The `bandmate` command itself: its version and the spelling of its flags."""

from __future__ import annotations

import importlib.metadata
import subprocess
from collections.abc import Iterator
from typing import Any

import typer

from server.cli import app
from tests.helpers import BANDMATE


def test_version_prints_the_installed_version() -> None:
    done = subprocess.run([BANDMATE, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"bandmate {importlib.metadata.version('bandmate')}")
    assert len(done.stdout.splitlines()) == 1


def commands(command: Any, path: str = "bandmate") -> Iterator[tuple[str, Any]]:
    """Every command under `command` (typer's own click classes), with its command line."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, f"{path} {name}")


def test_no_flag_is_spelt_no_no() -> None:
    """A bool option named `no_x` without its own flag name gets typer's `--no-no-x` too."""
    flags = [
        (path, flag)
        for path, command in commands(typer.main.get_command(app))
        for param in command.params
        for flag in (*param.opts, *getattr(param, "secondary_opts", ()))
    ]
    assert ("bandmate bci run", "--stream") in flags, "the walk missed the subcommands"
    assert [f"{path} {flag}" for path, flag in flags if flag.startswith("--no-no-")] == []
