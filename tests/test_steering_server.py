"""Steering through a real `bandmate serve`: the WebSocket `steer` message and OSC
`/bandmate/steer/<attribute>`, on a steerable and an unsteerable checkpoint."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pythonosc.udp_client import SimpleUDPClient
from websockets.asyncio.client import connect

from bci.osc_addresses import osc_steer_address
from tests.helpers import RunningServer, free_udp_port, models_dir
from tests.test_server_control import telemetry_until

pytestmark = pytest.mark.slow  # a real server


async def next_of(ws: Any, kind: str, block: bytes) -> dict:
    """Stream silence until a message of this type arrives."""
    for _ in range(400):
        await ws.send(block)
        try:
            message = await asyncio.wait_for(ws.recv(), 0.05)
        except TimeoutError:
            continue
        if isinstance(message, str) and json.loads(message)["type"] == kind:
            return json.loads(message)
    raise AssertionError(f"no {kind} message")


def test_steer_over_websocket_and_osc(
    steerable_checkpoint: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    models = models_dir(tmp_path / "models", steerable_checkpoint)
    (models / "plain").symlink_to(tiny_checkpoint)
    osc_port = free_udp_port()
    server = RunningServer(models, "--osc-port", str(osc_port))
    block = np.zeros(1024, np.float32).tobytes()
    try:

        async def scenario() -> None:
            ws = await connect(f"{server.ws_url}/v1/stream")
            await ws.send(json.dumps({"type": "open"}))
            ready = json.loads(await ws.recv())
            assert ready["steering"] == ["brightness", "density", "register", "loudness"]
            await ws.send(json.dumps({"type": "steer", "alphas": {"brightness": 1.5}}))
            ack = await next_of(ws, "control_ack", block)
            assert ack == {"type": "control_ack", "name": "steer.brightness", "value": 1.5}
            await telemetry_until(ws, lambda c: c.get("steer.brightness") == 1.5, block)
            await ws.send(json.dumps({"type": "steer", "alphas": {"tempo": 1.0}}))
            error = await next_of(ws, "error", block)
            assert error["code"] == "unsupported" and "tempo" in error["message"]
            await ws.send(json.dumps({"type": "steer", "alphas": {"register": 9.0}}))
            error = await next_of(ws, "error", block)
            assert error["code"] == "bad_value" and "-4 to 4" in error["message"]
            osc = SimpleUDPClient("127.0.0.1", osc_port)
            osc.send_message(osc_steer_address("register"), -0.5)
            seen = await telemetry_until(ws, lambda c: c.get("steer.register") == -0.5, block)
            assert seen["controls"]["steer.brightness"] == 1.5  # the other keeps its alpha
            await ws.close()

            plain = await connect(f"{server.ws_url}/v1/stream")
            await plain.send(json.dumps({"type": "open", "checkpoint": "plain"}))
            assert json.loads(await plain.recv())["steering"] == []
            await plain.send(json.dumps({"type": "steer", "alphas": {"brightness": 1.0}}))
            error = await next_of(plain, "error", block)
            assert "steer build" in error["message"]
            await plain.close()

        asyncio.run(scenario())
        assert server.alive()
    finally:
        server.stop()
