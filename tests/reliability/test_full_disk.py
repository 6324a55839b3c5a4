"""A disk that fills up during a recorded session, on a real (tiny) tmpfs: the session stops
at once, keeps what reached the disk, and names the disk in one line."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bci.errors import BciError
from bci.experiment.recorder import SessionRecorder, read_session
from tests.helpers import simulated_session_run, tmpfs
from tests.test_session_runner import PROTOCOL

# Slow, so not in `make test-quick`: every test here runs real processes (`bandmate serve`, `session
# run`, `bench soak`).
pytestmark = pytest.mark.slow

RATE = 256.0


@pytest.fixture
def nearly_full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB filesystem with 48 KiB left: a session fills it within seconds."""
    with tmpfs(tmp_path / "disk", "1m") as disk:
        (disk / "ballast").write_bytes(b"\x00" * (1024 - 48) * 1024)
        yield disk


def test_the_recorder_keeps_every_whole_sample_up_to_a_full_disk_and_names_it(
    nearly_full_disk: Path,
) -> None:
    folder = nearly_full_disk / "session"
    recorder = SessionRecorder(folder, ["AF7", "AF8"], RATE, flush_interval_s=0.05)
    written = 0
    while written < 1_000_000:  # far faster than real time, until the disk refuses
        stamps = (written + np.arange(64)) / RATE
        try:
            recorder.write_eeg(stamps, np.vstack([stamps, -stamps]).astype(np.float32))
        except BciError:
            break
        written += 64
        time.sleep(0.01)
    assert recorder.failed.is_set(), "the disk never filled"
    with pytest.raises(BciError) as failure:
        recorder.close()
    message = str(failure.value)
    assert "no space left on device" in message and str(nearly_full_disk) in message
    recorded = read_session(folder)
    assert not recorded.complete  # a cut session is not marked as cleanly closed
    kept = recorded.timestamps.size
    assert kept > 0
    # Exactly the first `kept` samples, in order: nothing lost before the disk filled.
    np.testing.assert_array_equal(recorded.timestamps, np.arange(kept) / RATE)
    np.testing.assert_array_equal(recorded.samples[1], -(np.arange(kept) / RATE).astype(np.float32))


def test_a_session_run_stops_at_a_full_disk_keeping_its_recording(
    nearly_full_disk: Path, tmp_path: Path
) -> None:
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL)  # 5 blocks, 14 s: the disk fills in the first ones
    simulator, command = simulated_session_run(protocol, nearly_full_disk / "study")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        simulator.stop()
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    folder = nearly_full_disk / "study" / "raw" / "sub-P01" / "ses-01"
    assert lines[0].startswith(f"error: recording to {folder} stopped: no space left on device")
    assert f"the disk mounted at {nearly_full_disk}" in lines[0]
    recorded = read_session(folder)
    kinds = [m["kind"] for m in recorded.markers]
    assert "block_start" in kinds and "session_end" not in kinds  # stopped, not run out
    assert kinds.count("block_start") < 5
    first, last = recorded.timestamps[0], recorded.timestamps[-1]
    assert last - first > 1.0
    assert recorded.samples.shape[1] >= (last - first) * RATE - 1  # no holes in what was kept
    assert not (nearly_full_disk / "study" / "bids").exists()  # no export from a cut session
