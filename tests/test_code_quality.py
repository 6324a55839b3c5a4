"""Rules of the codebase that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "engine", "bci", "server", "clients", "benchmarks")
# Dependencies point one way (DEVELOPERS.md): package -> the packages it must not import.
FORBIDDEN = {
    "models": {"engine", "bci", "server", "clients", "benchmarks"},
    "engine": {"server", "bci", "clients", "benchmarks"},
    "bci": {"server", "engine", "clients", "benchmarks"},
}
BIN = Path(sys.executable).parent


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_point_one_way(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_top_levels(path) & FORBIDDEN[package])
        for path in python_files(package)
    }
    assert not {k: v for k, v in offenders.items() if v}


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
