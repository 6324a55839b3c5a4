"""Rules of the codebase that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "engine", "bci", "server", "clients", "benchmarks")
# Dependencies point one way (README, "Layout"): each room and the packages of ours it must
# not import. The room "server" is server/ outside server/cli/: the CLI wing wires every
# package into commands, the service itself runs on the engine alone.
FORBIDDEN = {
    "models": {"engine", "bci", "server", "clients", "benchmarks"},
    "engine": {"server", "bci", "clients", "benchmarks"},
    "bci": {"server", "engine", "clients", "benchmarks"},
    "server": {"benchmarks", "models", "clients"},
    "benchmarks": {"server"},
}
CLI_WING = ROOT / "server" / "cli"
# bci's rooms (README, "Layout"): the experiment runs the live loop, the analysis reads what the
# experiment wrote; neither is imported back. Modules at bci/'s top are shared by all three.
BCI_FORBIDDEN = {
    "live": ("bci.experiment", "bci.analysis"),
    "experiment": ("bci.analysis",),
}
# A module's name says what it holds, so no two share one, but for these: each package's own
# error type; the two sides of the checkpoint format (models/ writes it, engine/ reads it); and
# the CLI's command groups, named after their command (`bandmate session`, `bandmate bci`).
SHARED_NAMES = {"__init__.py", "conftest.py", "errors.py", "session.py", "bci.py", "checkpoint.py"}
# Clients speak the server's protocol and import nothing else of ours, but for one departure
# still open in issue 18: the live client plays through the engine's ring buffer and its
# PortAudio helpers. Listed by module, so any other import from the engine still fails.
CLIENT_DEPARTURES = {
    "clients/live_client.py": ("engine.ringbuffer", "engine.live_engine", "engine.portaudio")
}
BIN = Path(sys.executable).parent


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def room_files(room: str) -> list[Path]:
    files = python_files(room)
    return [p for p in files if CLI_WING not in p.parents] if room == "server" else files


def imports_of_ours(path: Path) -> list[tuple[int, str]]:
    """(line, module) for each import of our packages in a file, lazy ones inside functions
    too; `from a.b import c` gives a.b.c, so a rule can allow one module of a package."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, module) for line, module in found if module.split(".")[0] in PACKAGES]


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def offending(paths: list[Path], allowed: Callable[[Path, str], bool]) -> str:
    """One line per import that breaks a rule, naming its file, line and module."""
    return "\n".join(
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in paths
        for line, module in imports_of_ours(path)
        if not allowed(path, module)
    )


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_dependencies_point_one_way(room: str) -> None:
    def allowed(_path: Path, module: str) -> bool:
        return module.split(".")[0] not in FORBIDDEN[room]

    found = offending(room_files(room), allowed)
    assert not found, f"{room} must not import {sorted(FORBIDDEN[room])}:\n{found}"


@pytest.mark.parametrize("room", sorted(BCI_FORBIDDEN))
def test_bci_rooms_import_one_way(room: str) -> None:
    def allowed(_path: Path, module: str) -> bool:
        return not within(module, BCI_FORBIDDEN[room])

    found = offending(python_files(f"bci/{room}"), allowed)
    assert not found, f"bci/{room} must not import {BCI_FORBIDDEN[room]}:\n{found}"


def test_no_two_modules_share_a_name() -> None:
    by_name: dict[str, list[str]] = {}
    for package in (*PACKAGES, "tests"):
        for path in python_files(package):
            by_name.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    shared = {n: p for n, p in by_name.items() if len(p) > 1 and n not in SHARED_NAMES}
    assert not shared, shared


def test_clients_import_only_the_servers_protocol_of_ours() -> None:
    def allowed(path: Path, module: str) -> bool:
        departures = CLIENT_DEPARTURES.get(str(path.relative_to(ROOT)), ())
        return within(module, ("clients", "server.protocol", *departures))

    found = offending(python_files("clients"), allowed)
    assert not found, f"clients may import only server.protocol of ours:\n{found}"


def test_the_runtime_path_never_imports_torch_at_module_level() -> None:
    """engine, server and bci run on onnxruntime; torch may only be imported inside functions
    of the torch backend."""
    for package in ("engine", "server", "bci", "clients"):
        for path in python_files(package):
            tree = ast.parse(path.read_text())
            top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
            modules = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
            modules |= {n.module or "" for n in top if isinstance(n, ast.ImportFrom)}
            assert not any(m.split(".")[0] == "torch" for m in modules), path


def test_python_files_stay_under_400_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for package in (*PACKAGES, "tests")
        for p in python_files(package)
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long


def test_ruff_is_clean() -> None:
    result = subprocess.run([BIN / "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_mypy_is_clean() -> None:
    result = subprocess.run(
        [BIN / "mypy", "--cache-dir", str(ROOT / ".mypy_cache"), str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout


def test_the_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [BIN / "hadolint", str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
