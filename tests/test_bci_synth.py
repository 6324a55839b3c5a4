"""The no-DAW default: FluidSynth plays the loop's MIDI into a real JACK server."""

from __future__ import annotations

import threading
import time

import jack
import numpy as np
import pytest

from bci.errors import BciError
from bci.live.synth import FluidSynthSink
from engine.jackd import JackServer

# Slow, so not in `make test-quick`: every test here starts jackd and FluidSynth.
pytestmark = pytest.mark.slow


@pytest.mark.jack
def test_fluidsynth_sink_sounds_on_jack(jack_server: JackServer) -> None:
    sink = FluidSynthSink("jack", client_name="bm-synth-test")
    recorder = jack.Client("bm-synth-recorder", no_start_server=True)
    inputs = [recorder.inports.register(f"in_{i}") for i in range(2)]
    captured: list[np.ndarray] = []
    lock = threading.Lock()

    @recorder.set_process_callback
    def process(frames: int) -> None:
        with lock:
            captured.append(inputs[0].get_array().copy())

    try:
        with recorder:
            sources = recorder.get_ports("bm-synth-test", is_audio=True, is_output=True)
            assert len(sources) >= 2, [p.name for p in recorder.get_ports()]
            for source, target in zip(sources, inputs, strict=False):
                recorder.connect(source, target)
            time.sleep(0.3)
            with lock:
                silence = np.concatenate(captured) if captured else np.zeros(1)
                captured.clear()
            sink.send([0x90, 60, 100])  # middle C on the piano part
            sink.send([0x99, 38, 110])  # a snare on the GM kit
            time.sleep(0.5)
            sink.send([0x80, 60, 0])
            with lock:
                sound = np.concatenate(captured)
    finally:
        sink.close()
    assert np.abs(silence).max() < 1e-6
    assert np.sqrt(np.mean(sound**2)) > 1e-3, "FluidSynth played nothing"


def test_a_missing_audio_driver_is_one_line() -> None:
    with pytest.raises(BciError, match="cannot start FluidSynth's nosuchdriver"):
        FluidSynthSink("nosuchdriver")
