"""The loop over a recording: the same seed and the same EEG give the same MIDI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bci.analysis.offline import montage_signals, process_recording, render_midi
from bci.live.loop import BciRunConfig
from bci.live.simulate import AsymmetryStep, Schedule, SimulatorConfig, synthesize
from bci.montage import F3F4_128
from tests.helpers import SPKIT_RATE, spkit_eeg


def simulated(seconds: float) -> tuple[np.ndarray, list[str], float]:
    config = SimulatorConfig()
    schedule = Schedule((AsymmetryStep(0.0, 0.0), AsymmetryStep(8.0, 1.0),
                         AsymmetryStep(28.0, -1.0)))  # fmt: skip
    rate = config.montage.sample_rate
    return synthesize(config, schedule, 0, int(seconds * rate)), list(config.channels), rate


def spkit_recording() -> tuple[np.ndarray, list[str], float]:
    data, labels = spkit_eeg()
    return data.T, labels, SPKIT_RATE


def render(data: np.ndarray, labels: list[str], rate: float, config: BciRunConfig) -> list:
    left, right = montage_signals(data, labels, rate, config)
    return render_midi(process_recording(left, right, rate, config), config)


def test_the_same_seed_and_eeg_give_the_same_midi_and_another_seed_does_not() -> None:
    data, labels, rate = simulated(48.0)
    config = BciRunConfig(baseline_s=8.0, seed=3)
    first = render(data, labels, rate, config)
    assert len(first) > 100
    assert render(data, labels, rate, config) == first
    assert render(data, labels, rate, BciRunConfig(baseline_s=8.0, seed=4)) != first


def test_the_music_follows_the_recording() -> None:
    data, labels, rate = simulated(48.0)
    config = BciRunConfig(baseline_s=8.0)
    left, right = montage_signals(data, labels, rate, config)
    results = process_recording(left, right, rate, config)
    modes = {r.params.mode for r in results if r.params and 12 < r.lsl_time < 28}
    assert modes == {"lydian"}
    modes = {r.params.mode for r in results if r.params and 32 < r.lsl_time < 48}
    assert modes == {"locrian"}


def test_real_eeg_renders_the_same_twice() -> None:
    data, labels, rate = spkit_recording()
    looped = np.tile(data, 4)  # 64 s from the 16 s recording
    config = BciRunConfig(montage=F3F4_128, baseline_s=10.0, seed=1)
    first = render(looped, labels, rate, config)
    assert first and render(looped, labels, rate, config) == first


@pytest.mark.slow
def test_bci_render_writes_the_same_midi_file_for_the_same_seed(tmp_path: Path) -> None:
    render_file = midi_renderer(tmp_path)
    first = render_file(1, "a.mid")
    assert len(first) > 100
    assert render_file(1, "b.mid") == first
    assert render_file(2, "c.mid") != first


def midi_renderer(tmp_path: Path) -> Callable[..., bytes]:
    """`bandmate bci render` of the real spkit EEG (looped 4x, F3/F4) into tmp_path:
    render_file(seed, name, *options) -> the MIDI file's bytes."""
    import subprocess

    from tests.helpers import BANDMATE

    data, labels, rate = spkit_recording()
    recording = tmp_path / "eeg.npz"
    np.savez(recording, data=np.tile(data, 4).T, labels=np.array(labels), rate=np.array(rate))
    montage = tmp_path / "f3f4.yaml"
    montage.write_text("left: F3\nright: F4\nsample_rate: 128\n")

    def render_file(seed: int, name: str, *options: str) -> bytes:
        out = tmp_path / name
        command = [BANDMATE, "bci", "render", str(recording), "--out", str(out),
                   "--montage", str(montage), "--seed", str(seed), *options]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return out.read_bytes()

    return render_file
