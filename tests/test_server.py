"""The server against a real uvicorn process on loopback: REST, the streaming round trip
(equal to file mode), the error paths (each answered while another session keeps
streaming), the limits, and auth."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from clients.errors import ClientError
from clients.stream import StreamOptions, stream_audio
from engine.backends import Backend
from engine.filemode import accompany
from tests.helpers import BANDMATE, RunningServer
from tests.helpers import models_dir as offering

# Slow, so not in `make test-quick`: every test here runs a real `bandmate serve` (uvicorn).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models_dir(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return offering(tmp_path_factory.mktemp("models"), tiny_checkpoint, ("default", "second"))


@pytest.fixture(scope="module")
def server(models_dir: Path) -> Iterator[RunningServer]:
    running = RunningServer(models_dir, "--max-message-bytes", "65536", "--idle-timeout", "3")
    yield running
    running.stop()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def open_socket(server: RunningServer, **fields: Any) -> tuple[ClientConnection, dict]:
    ws = await connect(f"{server.ws_url}/v1/stream", max_size=None)
    await ws.send(json.dumps({"type": "open", **fields}))
    return ws, json.loads(await ws.recv())


async def refused(server: RunningServer, **fields: Any) -> int:
    """Open a socket that the server must close; returns the close code."""
    ws = await connect(f"{server.ws_url}/v1/stream", max_size=None)
    await ws.send(json.dumps({"type": "open", **fields}))
    return await close_code(ws)


async def next_of(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next JSON message of this type, skipping audio and telemetry."""
    while True:
        message = await asyncio.wait_for(ws.recv(), 10)
        if isinstance(message, str) and json.loads(message)["type"] == kind:
            return json.loads(message)


async def close_code(ws: ClientConnection) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


def test_rest_lists_checkpoints_and_manages_sessions(server: RunningServer) -> None:
    assert httpx.get(f"{server.url}/v1/version").json()["protocol"] == 1
    names = [c["name"] for c in httpx.get(f"{server.url}/v1/checkpoints").json()]
    assert names == ["default", "second"]
    made = httpx.post(f"{server.url}/v1/sessions", json={"seed": 5, "sample_rate": 44_100})
    assert made.status_code == 201, made.text
    session = made.json()["id"]
    assert session in [s["id"] for s in httpx.get(f"{server.url}/v1/sessions").json()]
    assert httpx.get(f"{server.url}/v1/sessions/{session}").json()["sample_rate"] == 44_100
    assert httpx.delete(f"{server.url}/v1/sessions/{session}").status_code == 204
    assert httpx.get(f"{server.url}/v1/sessions/{session}").status_code == 404
    outside = httpx.post(f"{server.url}/v1/sessions", json={"checkpoint": "../default"})
    assert outside.status_code == 400 and "unknown checkpoint" in outside.json()["detail"]
    assert httpx.post(f"{server.url}/v1/sessions", json={"sample_rate": 12_345}).status_code == 400
    assert isinstance(httpx.get(f"{server.url}/v1/devices").json(), list)
    metrics = httpx.get(f"{server.url}/metrics").text
    for name in ("bandmate_sessions", "bandmate_frame_compute_seconds_bucket",
                 "bandmate_deadline_misses_total", "bandmate_dropped_messages_total"):  # fmt: skip
        assert name in metrics


def test_websocket_round_trip_equals_file_mode(
    server: RunningServer, onnx_backend: Backend, live_recording: np.ndarray
) -> None:
    audio = live_recording[: 4 * 48_000]
    expected = accompany(audio, 48_000, onnx_backend, seed=3).accompaniment
    options = StreamOptions(server.ws_url, seed=3, blocksize=700, realtime=False)
    result = run(stream_audio(audio, 48_000, options))
    assert result.errors == []
    np.testing.assert_array_equal(result.accompaniment, expected)
    int16 = run(stream_audio(audio, 48_000, StreamOptions(server.ws_url, seed=3, format="int16",
                                                          realtime=False)))  # fmt: skip
    assert np.abs(int16.accompaniment - expected).max() < 0.05  # int16 input, int16 output


def test_a_session_made_over_rest_streams_once_and_keeps_its_settings(
    server: RunningServer, live_recording: np.ndarray
) -> None:
    session = httpx.post(f"{server.url}/v1/sessions", json={"seed": 9}).json()["id"]

    async def scenario() -> None:
        ws, ready = await open_socket(server, session=session)
        assert ready["type"] == "ready" and ready["session"] == session
        assert await refused(server, session=session) == 4409
        assert await refused(server, session=session, seed=1) == 4400
        assert await refused(server, session="nope") == 4404
        await ws.close()

    run(scenario())
    assert httpx.get(f"{server.url}/v1/sessions/{session}").status_code == 200
    httpx.delete(f"{server.url}/v1/sessions/{session}")


def test_controls_take_effect_and_show_in_telemetry(
    server: RunningServer, live_recording: np.ndarray
) -> None:
    block = live_recording[:1024]

    async def scenario() -> None:
        ws, ready = await open_socket(server, seed=1)
        await ws.send(json.dumps({"type": "control", "name": "gain", "value": 0.0}))
        assert (await next_of(ws, "control_ack"))["name"] == "gain"
        await ws.send(json.dumps({"type": "control", "name": "dry_wet", "value": 0.25}))
        await next_of(ws, "control_ack")
        for _ in range(20):  # gain 0: what comes back is the input at 0.75, `latency` late
            await ws.send(block.tobytes())
        outputs: list[np.ndarray] = []
        while len(outputs) < 20:
            message = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(message, bytes):
                outputs.append(np.frombuffer(message, np.float32))
        # The same block over and over: delayed by the session's latency, it is a rotation.
        delayed = np.roll(block, int(ready["latency_samples"]))
        np.testing.assert_allclose(outputs[-1], 0.75 * delayed, atol=1e-6)
        telemetry = await next_of(ws, "telemetry")
        assert telemetry["controls"]["gain"] == 0.0 and telemetry["controls"]["dry_wet"] == 0.25
        assert telemetry["hops"] >= 19
        await ws.send(json.dumps({"type": "control", "name": "anticipation", "value": 7}))
        assert (await next_of(ws, "error"))["code"] == "unsupported"
        await ws.send(json.dumps({"type": "control", "name": "checkpoint", "value": "second"}))
        await next_of(ws, "control_ack")
        await ws.send(block.tobytes())
        assert (await next_of(ws, "telemetry"))["controls"]["checkpoint"] == "second"
        await ws.close()

    run(scenario())


def test_bad_messages_are_answered_while_another_session_streams_on(
    server: RunningServer, onnx_backend: Backend, live_recording: np.ndarray
) -> None:
    audio = live_recording[: 6 * 48_000]
    expected = accompany(audio, 48_000, onnx_backend, seed=4).accompaniment
    bad_messages: list[tuple[str, str | bytes]] = [
        ("malformed_json", "{not json"),
        ("unknown_control", json.dumps({"type": "control", "name": "volume", "value": 1})),
        ("bad_value", json.dumps({"type": "control", "name": "gain", "value": "loud"})),
        ("unknown_message", json.dumps({"type": "dance"})),
        ("bad_pcm", b"\x00" * 1023),  # not a whole number of float32 frames
        ("bad_pcm", np.full(256, 30_000.0, np.float32).tobytes()),  # int16 values as float32
        ("non_finite", np.array([0.1, np.nan, np.inf, 0.2], np.float32).tobytes()),
        ("unknown_checkpoint",
         json.dumps({"type": "control", "name": "checkpoint", "value": "../default"})),
    ]  # fmt: skip

    async def misbehave() -> None:
        ws, _ = await open_socket(server)
        for code, message in bad_messages:
            await ws.send(message)
            assert (await next_of(ws, "error"))["code"] == code
        await ws.send(b"\x00" * 70_000)  # over --max-message-bytes
        assert await close_code(ws) == 1009
        assert await refused(server, checkpoint="/etc") == 4400
        not_open = await connect(f"{server.ws_url}/v1/stream")
        await not_open.send(b"\x00\x00")
        assert await close_code(not_open) == 4400
        vanish_mid_frame(server.port)
        idle, _ = await open_socket(server)
        assert await close_code(idle) == 4408  # --idle-timeout 3

    async def both() -> Any:
        bystander = stream_audio(audio, 48_000, StreamOptions(server.ws_url, seed=4))
        return await asyncio.gather(bystander, misbehave())

    result, _ = run(both())
    np.testing.assert_array_equal(result.accompaniment, expected)
    assert server.alive()
    assert httpx.get(f"{server.url}/v1/sessions").json() == []  # nothing left behind


def vanish_mid_frame(port: int) -> None:
    """Handshake, send the first half of a binary frame, and drop the TCP connection."""
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.sendall(
            b"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        assert b"101" in raw.recv(1024).split(b"\r\n")[0]
        # A masked binary frame announcing 4096 bytes, of which only 10 are sent.
        raw.sendall(
            bytes([0x82, 0xFE]) + (4096).to_bytes(2, "big") + b"\x01\x02\x03\x04" + b"x" * 10
        )


def test_eight_sessions_stream_in_real_time_without_misses_and_bounded_memory(
    server: RunningServer, live_recording: np.ndarray
) -> None:
    audio = live_recording[: 5 * 48_000]
    options = [StreamOptions(server.ws_url, seed=i, blocksize=1024) for i in range(8)]

    async def eight() -> Any:
        return await asyncio.gather(*(stream_audio(audio, 48_000, o) for o in options))

    run(eight())  # warm up: allocator pools, onnxruntime arenas
    before = server.rss_bytes()
    results = run(eight())
    growth = server.rss_bytes() - before
    for result in results:
        assert result.errors == []
        assert len(result.accompaniment) == len(audio)
        assert result.telemetry and result.telemetry[-1]["misses"] == 0
        assert result.telemetry[-1]["dropped_messages"] == 0
    assert growth < 20 * 2**20, f"RSS grew {growth / 2**20:.1f} MiB on the second run"


def test_a_token_guards_http_and_websocket(models_dir: Path) -> None:
    guarded = RunningServer(models_dir, "--token", "s3cret")
    try:
        assert httpx.get(f"{guarded.url}/health").status_code == 200
        assert httpx.get(f"{guarded.url}/v1/sessions").status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.get(f"{guarded.url}/v1/sessions", headers=wrong).status_code == 401
        right = {"Authorization": "Bearer s3cret"}
        assert httpx.get(f"{guarded.url}/v1/sessions", headers=right).status_code == 200

        async def scenario() -> None:
            assert await refused(guarded, token="nope") == 4401
            ws, ready = await open_socket(guarded, token="s3cret")
            assert ready["type"] == "ready"
            await ws.close()
            with pytest.raises(ClientError, match="4401"):
                await stream_audio(np.zeros(2048, np.float32), 48_000,
                                   StreamOptions(guarded.ws_url, token="wrong"))  # fmt: skip

        run(scenario())
    finally:
        guarded.stop()


def test_binding_beyond_loopback_without_a_token_is_refused(models_dir: Path) -> None:
    done = subprocess.run([BANDMATE, "serve", "--host", "0.0.0.0", "--models-dir", str(models_dir)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: binding to 0.0.0.0")
    assert "Traceback" not in done.stderr + done.stdout


def test_client_stream_cli_writes_what_accompany_writes(
    server: RunningServer, models_dir: Path, live_recording: np.ndarray, tmp_path: Path
) -> None:
    import soundfile as sf

    take = tmp_path / "take.wav"
    sf.write(take, live_recording[: 3 * 44_100], 44_100, subtype="FLOAT")  # resampled both ways
    streamed, offline = tmp_path / "streamed.wav", tmp_path / "offline.wav"
    client = [BANDMATE, "client", "stream", str(take), "-o", str(streamed), "--url", server.ws_url,
              "--seed", "2", "--fast"]  # fmt: skip
    done = subprocess.run(client, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    accompany_cli = [BANDMATE, "accompany", str(take), "-o", str(offline), "--seed", "2",
                     "--checkpoint", str(models_dir / "default")]  # fmt: skip
    assert subprocess.run(accompany_cli, capture_output=True, timeout=120).returncode == 0
    np.testing.assert_array_equal(sf.read(streamed)[0], sf.read(offline)[0])
    refused = subprocess.run([*client[:6], "--url", "ws://127.0.0.1:1"], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2 and refused.stderr.startswith("error: cannot connect")
