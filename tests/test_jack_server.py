"""The JACK fixture gives PortAudio a real-time duplex device, and stops jackd by its PID."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from engine import portaudio
from engine.jackd import JackServer

# Slow, so not in `make test-quick`: every test here starts jackd.
pytestmark = pytest.mark.slow


def test_portaudio_sees_the_jack_device_and_runs_a_duplex_stream(jack_server: JackServer) -> None:
    import sounddevice as sd

    portaudio.rescan()
    jack_api = next(i for i, api in enumerate(sd.query_hostapis()) if "JACK" in api["name"])
    device = next(d for d in sd.query_devices() if d["hostapi"] == jack_api)
    assert device["max_input_channels"] >= 2 and device["max_output_channels"] >= 2
    assert device["default_samplerate"] == jack_server.sample_rate

    callback_frames: list[int] = []

    def callback(indata: np.ndarray, outdata: np.ndarray, frames: int, *_: object) -> None:
        outdata.fill(0)
        callback_frames.append(frames)

    with sd.Stream(device=(device["index"], device["index"]), channels=2, callback=callback,
                   samplerate=jack_server.sample_rate):  # fmt: skip
        time.sleep(0.5)
    # The dummy driver runs in real time: 0.5 s is about 94 periods of 256 frames.
    assert 60 <= len(callback_frames) <= 110
    assert set(callback_frames) == {jack_server.period}


def test_stop_ends_the_jackd_process_by_pid() -> None:
    server = JackServer(name=f"bandmate-stop-test-{os.getpid()}").start()
    pid = server.pid
    assert pid is not None and server.is_ready()
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
