"""Connections and sessions that are held without being used, against a real `bandmate
serve`: silent, half-sent and half-upgraded connections, a WebSocket that never opens, more
connections than the cap, and sessions made over REST that no stream ever attaches to."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.protocol import CloseCode
from tests.helpers import RunningServer

# Slow, so not in `make test-quick`: every test here runs real processes (`bandmate serve`, `session
# run`, `bench soak`).
pytestmark = pytest.mark.slow

HANDSHAKE_TIMEOUT_S = 2
IDLE_TIMEOUT_S = 6  # longer than the handshake timeout, so the two are told apart
MAX_CONNECTIONS = 24


@pytest.fixture(scope="module")
def server(tiny_models_dir: Path) -> Iterator[RunningServer]:
    running = RunningServer(tiny_models_dir, "--handshake-timeout", str(HANDSHAKE_TIMEOUT_S),
                            "--idle-timeout", str(IDLE_TIMEOUT_S),
                            "--max-connections", str(MAX_CONNECTIONS))  # fmt: skip
    yield running
    running.stop()


def seconds_until_closed(raw: socket.socket, limit_s: float) -> float:
    """Read until the server closes the connection; how long that took (AssertionError if it
    is still open after `limit_s`)."""
    started = time.monotonic()
    raw.settimeout(limit_s)
    try:
        while raw.recv(4096):
            pass
    except TimeoutError:
        raise AssertionError(f"still open after {limit_s} s") from None
    return time.monotonic() - started


UPGRADE_HEADERS = (
    b"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", UPGRADE_HEADERS],
    ids=["nothing", "half-the-headers", "half-a-websocket-handshake"],
)
def test_a_connection_that_does_not_finish_its_headers_is_cut_after_the_handshake_timeout(
    server: RunningServer, sent: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(sent)
        # Before, such connections stayed open for over 130 s.
        assert seconds_until_closed(raw, 4 * HANDSHAKE_TIMEOUT_S) >= HANDSHAKE_TIMEOUT_S - 0.5
    assert server.alive()


def test_a_keep_alive_connection_that_trickles_its_next_request_is_cut(
    server: RunningServer,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 200")
        raw.sendall(b"GET /health HTTP/1.1\r\n")  # the next request, never finished
        seconds_until_closed(raw, 4 * HANDSHAKE_TIMEOUT_S)


def test_a_websocket_without_an_open_message_is_closed_4408_after_the_handshake_timeout(
    server: RunningServer,
) -> None:
    async def silent() -> tuple[int, float]:
        ws = await connect(f"{server.ws_url}/v1/stream")
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 4 * IDLE_TIMEOUT_S)
        assert closed.value.rcvd is not None
        return closed.value.rcvd.code, time.monotonic() - started

    code, waited = asyncio.run(silent())
    assert code == CloseCode.IDLE
    assert waited < (HANDSHAKE_TIMEOUT_S + IDLE_TIMEOUT_S) / 2  # not the idle timeout


def test_connections_beyond_the_cap_are_answered_503_at_once_and_the_server_recovers(
    server: RunningServer,
) -> None:
    with ExitStack() as held:
        for _ in range(MAX_CONNECTIONS):  # idle, as an attacker's are
            held.enter_context(socket.create_connection(("127.0.0.1", server.port)))
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", server.port)) as surplus:
                surplus.settimeout(HANDSHAKE_TIMEOUT_S / 2)  # at once, not when the idle go
                assert surplus.recv(4096).startswith(b"HTTP/1.1 503")
        # The idle connections are cut after the handshake timeout; then clients get in.
        deadline = time.monotonic() + 4 * HANDSHAKE_TIMEOUT_S
        while not healthy(server):
            assert time.monotonic() < deadline, "the server never recovered"
            time.sleep(0.2)
    assert server.alive()


def healthy(server: RunningServer) -> bool:
    try:
        return httpx.get(f"{server.url}/health").status_code == 200
    except httpx.TransportError:  # refused while still full
        return False


def test_a_session_made_over_rest_that_no_stream_attaches_to_expires(
    server: RunningServer,
) -> None:
    made = httpx.post(f"{server.url}/v1/sessions", json={}).json()["id"]
    started = time.monotonic()
    while httpx.get(f"{server.url}/v1/sessions/{made}").status_code == 200:
        # Before, 16 of these filled the server for good.
        assert time.monotonic() - started < 3 * IDLE_TIMEOUT_S, "the session never expired"
        time.sleep(0.2)
    assert time.monotonic() - started >= IDLE_TIMEOUT_S - 1


def test_a_session_expires_only_after_its_stream_has_gone_for_the_idle_timeout(
    server: RunningServer,
) -> None:
    made = httpx.post(f"{server.url}/v1/sessions", json={}).json()["id"]

    async def attach_for(seconds: float) -> None:
        ws = await connect(f"{server.ws_url}/v1/stream")
        await ws.send(json.dumps({"type": "open", "session": made}))
        assert json.loads(await ws.recv())["type"] == "ready"
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:  # a client that keeps talking is never idle
            await ws.send(json.dumps({"type": "ping"}))
            while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "pong":
                pass  # telemetry
            await asyncio.sleep(1)
        await ws.close()

    asyncio.run(attach_for(IDLE_TIMEOUT_S + 2))  # longer than the idle timeout: kept
    assert httpx.get(f"{server.url}/v1/sessions/{made}").status_code == 200
    detached = time.monotonic()
    while httpx.get(f"{server.url}/v1/sessions/{made}").status_code == 200:
        assert time.monotonic() - detached < 3 * IDLE_TIMEOUT_S, "the session never expired"
        time.sleep(0.2)
