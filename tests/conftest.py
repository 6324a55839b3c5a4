"""Shared fixtures: a small real data build, and a real JACK server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine import portaudio
from engine.backends import Backend, create_backend
from engine.checkpoint import load_engine_checkpoint
from engine.jackd import JackServer
from models.data.build import build_dataset
from models.data.manifest import Manifest, read_audio
from tests.helpers import tiny_build_config, train_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    root = tmp_path_factory.mktemp("tiny_data")
    return root, build_dataset(tiny_build_config(root), progress=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(
    tiny_data: tuple[Path, Manifest], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A tiny codec + generator, trained for a few steps on tiny_data and exported to ONNX."""
    return train_tiny_checkpoint(tiny_data[0], tmp_path_factory.mktemp("tiny_checkpoint"))


@pytest.fixture(scope="session")
def steerable_checkpoint(
    tiny_checkpoint: Path,
    tiny_data: tuple[Path, Manifest],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The tiny checkpoint after `bandmate steer build` (the real command)."""
    out = tmp_path_factory.mktemp("steerable") / "checkpoint"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "steer",
            "build",
            "--checkpoint",
            str(tiny_checkpoint),
            "--data",
            str(tiny_data[0]),
            "--out",
            str(out),
            "--layers",
            "0",
            "--cache",
            str(out.parent / "cache"),
            "--quantile",
            "0.5",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture
def checkpoint_copy(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny checkpoint, to damage."""
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "checkpoint"))


@pytest.fixture(scope="session")
def onnx_backend(tiny_checkpoint: Path) -> Backend:
    return create_backend(load_engine_checkpoint(tiny_checkpoint), "onnx")


@pytest.fixture(scope="session")
def live_recording(tiny_data: tuple[Path, Manifest]) -> np.ndarray:
    """Eight seconds of a real rendered live part at 48 kHz."""
    root, manifest = tiny_data
    audio = read_audio(root, manifest.examples[0].live.file)[: 8 * 48_000].astype(np.float32)
    assert np.abs(audio).max() > 1e-3, "the fixture recording is silent"
    return audio


@pytest.fixture(scope="module")
def jack_server() -> Iterator[JackServer]:
    """jackd -d dummy at 48 kHz / 256 frames, under its own name; stopped by PID afterwards."""
    if shutil.which("jackd") is None:
        pytest.fail("jackd is missing: `make test` installs the Debian package jackd2")
    server = JackServer(sample_rate=48_000, period=256).start()
    saved = {k: os.environ.get(k) for k in server.client_env()}
    os.environ.update(server.client_env())
    try:
        yield server
    finally:
        if "sounddevice" in sys.modules:
            portaudio.release()  # before jackd goes, or PortAudio's JACK host API aborts at exit
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
