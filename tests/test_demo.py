"""`bandmate demo`: the shipped example through file mode, on the runtime alone (no torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.checkpoint import DEFAULT_CHECKPOINT, load_engine_checkpoint
from engine.demo import EXAMPLE_RECORDING

# Runs the CLI with torch made unimportable, as on a runtime-only install (`make demo`).
WITHOUT_TORCH = "import sys; sys.modules['torch'] = None; from server.cli import main; main()"


def run_demo(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", WITHOUT_TORCH, "demo", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_the_shipped_default_loads_without_training_or_torch() -> None:
    checkpoint = load_engine_checkpoint(None)
    assert checkpoint.directory == DEFAULT_CHECKPOINT
    size = sum(f.stat().st_size for f in DEFAULT_CHECKPOINT.iterdir())
    assert size <= 25 * 2**20, f"the shipped default is {size / 2**20:.1f} MiB"
    assert EXAMPLE_RECORDING.is_file()


def test_demo_writes_an_aligned_accompaniment_of_the_example(tmp_path: Path) -> None:
    result = run_demo("--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "onnx-cpu" in result.stdout
    example, rate = sf.read(str(EXAMPLE_RECORDING), dtype="float32")
    accompaniment, out_rate = sf.read(str(tmp_path / "accompaniment.wav"), dtype="float32")
    mix, _ = sf.read(str(tmp_path / "mix.wav"), dtype="float32")
    assert out_rate == rate and accompaniment.shape == example.shape
    assert np.isfinite(accompaniment).all()
    assert 1e-4 < float(np.sqrt(np.mean(accompaniment**2))) < 1.0
    np.testing.assert_allclose(mix, example + accompaniment, atol=1e-6)


def test_demo_with_a_missing_checkpoint_is_one_line(tmp_path: Path) -> None:
    result = run_demo("--out", tmp_path, "--checkpoint", tmp_path / "nothing-here")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: ")
    assert "nothing-here" in result.stderr
