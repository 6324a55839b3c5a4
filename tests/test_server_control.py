"""MIDI CCs (through a real JACK server) and OSC messages change a session's controls, and
the change shows in the stream's telemetry."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rtmidi
from pythonosc.udp_client import SimpleUDPClient
from websockets.asyncio.client import connect

from engine.jackd import JackServer
from tests.helpers import RunningServer, free_udp_port, models_dir

# Slow, so not in `make test-quick`: every test here runs a real `bandmate serve` (uvicorn), some
# with jackd.
pytestmark = pytest.mark.slow


async def telemetry_until(ws: Any, predicate: Any, block: bytes, timeout: float = 10) -> dict:
    """Keep streaming silence; return the first telemetry that satisfies predicate."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await ws.send(block)
        try:
            message = await asyncio.wait_for(ws.recv(), 0.05)
        except TimeoutError:
            continue
        if isinstance(message, str) and json.loads(message)["type"] == "telemetry":
            telemetry = json.loads(message)
            if predicate(telemetry["controls"]):
                return telemetry
    raise AssertionError("the control never showed in telemetry")


@pytest.mark.jack
def test_midi_cc_and_osc_change_controls(jack_server: JackServer, tiny_checkpoint: Path,
                                         tmp_path: Path) -> None:  # fmt: skip
    models = models_dir(tmp_path / "models", tiny_checkpoint)
    osc_port = free_udp_port()
    server = RunningServer(models, "--midi-in", "bandmate-cc", "--osc-port", str(osc_port))
    midi_out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="test-controller")
    try:
        ports = midi_out.get_ports()
        target = next(i for i, name in enumerate(ports) if "bandmate-cc" in name)
        midi_out.open_port(target)
        block = np.zeros(1024, np.float32).tobytes()

        async def scenario() -> None:
            ws = await connect(f"{server.ws_url}/v1/stream")
            await ws.send(json.dumps({"type": "open"}))
            await ws.recv()
            midi_out.send_message([0xB0, 7, 0])  # CC 7 (gain, 0..2) to 0
            await telemetry_until(ws, lambda c: c["gain"] == 0.0, block)
            midi_out.send_message([0xB0, 1, 127])  # mod wheel: dry_wet to 1.0 (stays)
            midi_out.send_message([0xB0, 74, 127])  # CC 74: noise_scale to 2.0
            await telemetry_until(ws, lambda c: c["noise_scale"] == 2.0, block)
            SimpleUDPClient("127.0.0.1", osc_port).send_message("/bandmate/gain", 0.5)
            await telemetry_until(ws, lambda c: c["gain"] == 0.5, block)
            SimpleUDPClient("127.0.0.1", osc_port).send_message("/bandmate/instruction", "Relax.")
            await telemetry_until(ws, lambda c: True, block)  # the next telemetry after it
            seen = await telemetry_until(ws, lambda c: True, block)
            assert seen["instruction"] == "Relax."
            SimpleUDPClient("127.0.0.1", osc_port).send_message("/bandmate/gain", 99.0)
            SimpleUDPClient("127.0.0.1", osc_port).send_message("/bandmate/dry_wet", 0.25)
            seen = await telemetry_until(ws, lambda c: c["dry_wet"] == 0.25, block)
            assert seen["controls"]["gain"] == 0.5  # out of range: ignored
            await ws.close()

        asyncio.run(scenario())
        assert server.alive()
    finally:
        midi_out.close_port()
        server.stop()


@pytest.mark.jack
def test_client_live_streams_the_audio_interface(jack_server: JackServer, tiny_checkpoint: Path,
                                                 tmp_path: Path) -> None:  # fmt: skip
    import subprocess

    import httpx

    from tests.helpers import BANDMATE

    models = models_dir(tmp_path / "models", tiny_checkpoint)
    server = RunningServer(models)
    try:
        done = subprocess.run(
            [BANDMATE, "client", "live", "--url", server.ws_url, "--seconds", "3"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("streamed to"), done.stdout
        metrics = httpx.get(f"{server.url}/metrics").text
        rounds = next(line for line in metrics.splitlines()
                      if line.startswith("bandmate_frame_compute_seconds_count"))  # fmt: skip
        assert float(rounds.split()[-1]) > 50  # ~140 hops in 3 s of real-time audio
    finally:
        server.stop()


def test_the_bcmi_loop_drives_the_server_and_its_telemetry_shows_valence(
    steerable_checkpoint: Path, tmp_path: Path
) -> None:
    import threading

    from bci.live.bci_session import BciOutputs, BciSession
    from bci.live.loop import BciRunConfig
    from bci.live.lsl_input import StreamQuery
    from bci.live.simulate import AsymmetryStep, Schedule, Simulator, SimulatorConfig

    models = models_dir(tmp_path / "models", steerable_checkpoint)
    osc_port = free_udp_port()
    server = RunningServer(models, "--osc-port", str(osc_port))
    name = f"sim-{osc_port}"
    schedule = Schedule((AsymmetryStep(0.0, 0.0), AsymmetryStep(3.0, 1.0)))
    simulator = Simulator(SimulatorConfig(name=name, source_id=name), schedule)
    simulator.start()
    config = BciRunConfig(query=StreamQuery(name=name), baseline_s=3.0, duration_s=30.0)
    session = BciSession(config, BciOutputs(outlets=False, server_osc=f"127.0.0.1:{osc_port}"))
    loop = threading.Thread(target=session.run, daemon=True)
    loop.start()
    block = np.zeros(1024, np.float32).tobytes()
    try:

        async def scenario() -> dict:
            ws = await connect(f"{server.ws_url}/v1/stream")
            await ws.send(json.dumps({"type": "open"}))
            await ws.recv()
            seen = await telemetry_until(
                ws, lambda c: c.get("steer.brightness", 0) > 0.6, block, timeout=20
            )
            await ws.close()
            return seen

        telemetry = asyncio.run(scenario())
        assert telemetry["valence"] is not None and telemetry["valence"] > 0.4
        # The default mapping: brightness 1.5 * valence, register 1.0 * valence.
        controls = telemetry["controls"]
        assert controls["steer.register"] > 0.4
        assert controls["steer.brightness"] == pytest.approx(
            1.5 * controls["steer.register"], rel=0.25
        )
    finally:
        session.stop()
        loop.join(timeout=10)
        simulator.stop()
        server.stop()
