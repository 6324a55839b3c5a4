"""One line, not library noise: when JACK or FluidSynth cannot start, our one error line
stands alone, and it says what to do; a run that works prints no library lines either.
FluidSynth, libjack, ALSA and RtMidi write to file descriptors 1 and 2 themselves
(bci/live/library_output.py keeps them off the terminal)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bci.live.simulate import Schedule, Simulator, SimulatorConfig
from engine.jackd import JackServer
from tests.helpers import BANDMATE, models_dir

# What those libraries' lines start with or contain; none of it is ours.
LIBRARY_MARKERS = ("JackShm", "Cannot connect to server", "jack server is not running",
                   "ALSA lib", "fluidsynth:", "jackdmp", "JackTemporaryException")  # fmt: skip


@pytest.fixture
def eeg_stream() -> Iterator[str]:
    """A simulated EEG outlet under a fresh name: `bci run` finds its stream before it
    starts the music."""
    name = f"sim-{uuid.uuid4().hex[:8]}"
    simulator = Simulator(SimulatorConfig(name=name, source_id=name), Schedule())
    simulator.start()
    yield name
    simulator.stop()


def no_jack() -> dict[str, str]:
    """An environment whose JACK server does not exist, and is not started on demand."""
    return {**os.environ, "JACK_DEFAULT_SERVER": f"absent-{uuid.uuid4().hex[:8]}",
            "JACK_NO_START_SERVER": "1"}  # fmt: skip


def bci_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BANDMATE, "bci", "run", "--no-outlets", *args], capture_output=True,
                          text=True, timeout=120, env=env)  # fmt: skip


def library_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if any(m in line for m in LIBRARY_MARKERS)]


def the_one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """A failed command's error line, checked to stand alone: exit 2, no library lines."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert library_lines(done.stdout) == []
    (line,) = done.stderr.strip().splitlines()
    return line


def test_fluidsynth_without_jack_is_one_line_that_names_the_other_drivers(
    eeg_stream: str,
) -> None:
    line = the_one_error_line(
        bci_run("--stream", eeg_stream, "--synth-driver", "jack", env=no_jack())
    )
    assert line.startswith("error: cannot start FluidSynth's jack audio driver (")
    assert line.endswith("start jackd, or use --synth-driver pulseaudio or alsa")


def test_a_midi_port_without_jack_is_one_line(eeg_stream: str) -> None:
    line = the_one_error_line(
        bci_run("--stream", eeg_stream, "--midi-port", "bm-absent", env=no_jack())
    )
    assert line.startswith("error: cannot open MIDI output 'bm-absent' (jack): ")
    assert line.endswith("start jackd first")


def test_a_server_midi_input_without_jack_is_one_line(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    served = models_dir(tmp_path / "models", tiny_checkpoint)
    done = subprocess.run([BANDMATE, "serve", "--port", "0", "--models-dir", str(served),
                           "--midi-in", "bm-absent"], capture_output=True, text=True,
                          timeout=120, env=no_jack())  # fmt: skip
    line = the_one_error_line(done)
    assert line.startswith("error: cannot open MIDI input 'bm-absent' (jack): ")
    assert line.endswith("start jackd first")


@pytest.mark.jack
@pytest.mark.slow
def test_fluidsynth_on_jack_prints_no_library_lines(
    eeg_stream: str, jack_server: JackServer
) -> None:
    done = bci_run("--stream", eeg_stream, "--synth-driver", "jack", "--baseline", "1",
                   "--duration", "3")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "FluidSynth (jack)" in done.stdout
    assert library_lines(done.stdout + done.stderr) == []
