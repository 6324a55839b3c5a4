"""EEG steers the band, end to end: simulated EEG whose valence flips, the BCMI loop sending
steering over OSC (`bci run --server-osc`), a real server, and a client streaming a live part
in real time. The brightness of what the client gets back follows the flip within 3 s."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from clients.stream import StreamOptions, stream_audio
from models.attributes import ATTRIBUTES, frame_attributes
from models.data.manifest import Manifest, read_audio
from models.spectral import SpectralCodec, SpectralConfig
from tests.helpers import RunningServer, free_udp_port, models_dir

pytestmark = pytest.mark.slow  # a real server, real-time streaming for half a minute

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "checkpoints" / "default"
RATE = 48_000
BASELINE_S, DARK_S, BRIGHT_S = 3.0, 4.0, 12.0  # simulator time: calibrate, then -1, then +1
FOLLOW_S = 3.0


def brightness_track(audio: np.ndarray, spectral: SpectralConfig) -> tuple[np.ndarray, float]:
    """Brightness per latent frame (Hz) and the frame period (s)."""
    bands = SpectralCodec(spectral).analyse(audio[None].astype(np.float32))[0]
    track = frame_attributes(bands, spectral)[:, ATTRIBUTES.index("brightness")]
    return track, spectral.hop / spectral.sample_rate


def test_valence_flip_steers_the_streamed_band(
    tiny_data: tuple[Path, Manifest], tmp_path: Path
) -> None:
    from bci.live.bci_session import BciOutputs, BciSession
    from bci.live.loop import BciRunConfig
    from bci.live.lsl_input import StreamQuery
    from bci.live.simulate import AsymmetryStep, Schedule, Simulator, SimulatorConfig

    root, manifest = tiny_data
    live = np.concatenate([read_audio(root, e.live.file) for e in manifest.examples])
    live = np.tile(live, 3)[: 26 * RATE].astype(np.float32)
    models = models_dir(tmp_path / "models", SHIPPED)
    osc_port = free_udp_port()
    server = RunningServer(models, "--osc-port", str(osc_port))
    name = f"sim-{osc_port}"
    steps = (AsymmetryStep(0.0, 0.0), AsymmetryStep(BASELINE_S, -1.0), AsymmetryStep(BRIGHT_S, 1.0))
    simulator = Simulator(SimulatorConfig(name=name, source_id=name), Schedule(steps))
    log = tmp_path / "bci.jsonl"
    config = BciRunConfig(query=StreamQuery(name=name), baseline_s=BASELINE_S, duration_s=40.0)
    outputs = BciOutputs(outlets=False, server_osc=f"127.0.0.1:{osc_port}", log_path=log)
    try:
        simulator.start()
        eeg_started = time.perf_counter()
        session = BciSession(config, outputs)
        loop = threading.Thread(target=session.run, daemon=True)
        loop.start()
        streamed_from = time.perf_counter()
        result = asyncio.run(stream_audio(live, RATE, StreamOptions(url=server.ws_url)))
    finally:
        simulator.stop()
        server.stop()
    session.stop()
    loop.join(timeout=10)
    assert not result.errors, result.errors
    spectral = SpectralConfig(
        **json.loads((SHIPPED / "config.json").read_text())["codec"]["spectral"]
    )
    track, period = brightness_track(result.accompaniment, spectral)
    # Output sample i answers input sample i, which was sent at streamed_from + i / RATE.
    flip = eeg_started + BRIGHT_S - streamed_from  # seconds into the stream
    times = np.arange(len(track)) * period
    dark = np.median(track[(times > flip - 4) & (times < flip - 0.5)])
    bright = np.median(track[(times > flip + FOLLOW_S) & (times < flip + FOLLOW_S + 4)])
    assert bright > dark * 1.15, (dark, bright)
    # Within FOLLOW_S of the flip, a second of output is already past the midpoint.
    midpoint = (dark + bright) / 2
    smooth = np.convolve(track, np.ones(47) / 47, mode="same")
    crossed = times[(times > flip) & (smooth > midpoint)]
    assert len(crossed) and crossed[0] - flip <= FOLLOW_S, (crossed[:1], flip)
    # The mapping is logged on the LSL clock with everything else.
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    steered = [e for e in entries if e["type"] == "steer"]
    assert steered and all("lsl_clock" in e for e in steered)
    assert steered[-1]["alphas"]["brightness"] > 0 > min(e["alphas"]["brightness"] for e in steered)
