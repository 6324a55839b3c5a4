"""`bandmate client stream` says what is happening: its progress as it streams, the latency
the server reports with the round trip it measured on top, and, with --fast (which sends
ahead of real time, so its blocks queue at the server), no misses as if they were real."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from engine.backends import Backend
from engine.session import Session, SessionConfig
from tests.helpers import BANDMATE, RunningServer, models_dir

# Slow, so not in `make test-quick`: every test here streams to a real `bandmate serve` (uvicorn).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(
    tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = RunningServer(models_dir(tmp_path_factory.mktemp("models"), tiny_checkpoint))
    yield running
    running.stop()


def stream(server: RunningServer, audio: np.ndarray, folder: Path, *options: str) -> str:
    take = folder / "take.wav"
    sf.write(take, audio, 48_000, subtype="FLOAT")
    done = subprocess.run([BANDMATE, "client", "stream", str(take), "-o", str(folder / "out.wav"),
                           "--url", server.ws_url, *options],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_client_stream_shows_its_progress(
    server: RunningServer, live_recording: np.ndarray, tmp_path: Path
) -> None:
    """Into a pipe the status is a line every 5 s (bci/console.py), from the first second."""
    stdout = stream(server, live_recording[: 7 * 48_000], tmp_path)
    sent = [float(s) for s in re.findall(r"^status: sent (\d+\.\d) of 7\.\d s \| ", stdout, re.M)]
    assert len(sent) >= 2 and sent == sorted(sent) and sent[0] < sent[-1], stdout


def test_client_stream_reports_the_servers_latency_and_the_round_trip(
    server: RunningServer, live_recording: np.ndarray, onnx_backend: Backend, tmp_path: Path
) -> None:
    stdout = stream(server, live_recording[: 2 * 48_000], tmp_path)
    session = Session(onnx_backend, SessionConfig(device_rate=48_000))
    summary = re.search(r"^wrote .*; latency (\d+\.\d) ms \(server\) \+ round trip "
                        r"p50 (\d+\.\d) / max (\d+\.\d) ms; p99 compute (\d+\.\d\d) ms, "
                        r"(\d+) misses$", stdout, re.M)  # fmt: skip
    assert summary, stdout
    # The session's latency plus the server's batch window, which a block may wait.
    window_ms = httpx.get(f"{server.url}/health").json()["batch_window_ms"]
    assert float(summary[1]) == round(1e3 * session.latency_samples / 48_000 + window_ms, 1)
    assert 0 < float(summary[2]) <= float(summary[3])
    assert float(summary[4]) > 0


def test_client_stream_fast_does_not_count_misses(
    server: RunningServer, live_recording: np.ndarray, tmp_path: Path
) -> None:
    """A short --fast stream ends before the server's first telemetry; its summary waits for
    the one after the last answer instead of printing zeros."""
    stdout = stream(server, live_recording[: 2 * 48_000], tmp_path, "--fast")
    summary = re.search(r"^wrote .*; latency \d+\.\d ms \(server\); \d+\.\dx real time; "
                        r"p99 compute (\d+\.\d\d) ms, misses not counted with --fast$",
                        stdout, re.M)  # fmt: skip
    assert summary, stdout
    assert float(summary[1]) > 0
    assert not re.search(r"\d misses", stdout), stdout
