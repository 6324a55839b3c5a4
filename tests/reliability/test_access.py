"""Who can reach a real `bandmate serve`, beyond its token: web pages of other sites (their
WebSockets), pages on other host names that resolve to loopback (DNS rebinding), OSC from the
network, the API description on a guarded server; and the warnings risky settings earn."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pythonosc.udp_client import SimpleUDPClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.protocol import CloseCode
from tests.helpers import BANDMATE, RunningServer

# Slow, so not in `make test-quick`: every test here runs real processes (`bandmate serve`, `session
# run`, `bench soak`).
pytestmark = pytest.mark.slow

TOKEN = "s3cret"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tiny_models_dir: Path) -> Iterator[RunningServer]:
    running = RunningServer(tiny_models_dir, "--allow-origin", "http://allowed.example")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def exposed(tiny_models_dir: Path) -> Iterator[tuple[RunningServer, int]]:
    """Bound to every address, as a server for a band's network is, with OSC on; the token
    comes from the environment."""
    osc_port = free_udp_port()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BANDMATE_TOKEN", TOKEN)
        running = RunningServer(tiny_models_dir, "--host", "0.0.0.0", "--osc-port", str(osc_port))
    yield running, osc_port
    running.stop()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def opened_with(server: RunningServer, headers: dict[str, str]) -> dict | int:
    """The answer to an `open` on a socket opened with these handshake headers: the `ready`
    message, or the close code."""
    ws = await connect(f"{server.ws_url}/v1/stream", additional_headers=headers)
    try:
        await ws.send(json.dumps({"type": "open"}))
        ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
    except ConnectionClosed:
        closed = ws.protocol.close_rcvd
        assert closed is not None, "closed without a close frame"
        return closed.code
    await ws.close()
    return dict(ready)


def test_a_websocket_from_another_sites_page_is_closed_4403(server: RunningServer) -> None:
    # Before, such a page got a session, streamed and set controls; 16 of them filled the
    # server for its real user.
    answer = asyncio.run(opened_with(server, {"Origin": "http://evil.example"}))
    assert answer == CloseCode.FORBIDDEN_ORIGIN


@pytest.mark.parametrize(
    "origin", ["own", "http://allowed.example", None], ids=["own-page", "allowed", "no-browser"]
)
def test_the_servers_own_page_allowed_origins_and_other_clients_may_stream(
    server: RunningServer, origin: str | None
) -> None:
    headers = {} if origin is None else {"Origin": origin}
    if origin == "own":
        headers["Origin"] = server.url  # the page at / of this very server
    answer = asyncio.run(opened_with(server, headers))
    assert isinstance(answer, dict) and answer["type"] == "ready", answer


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "[::1]"])
def test_a_loopback_server_answers_requests_addressed_to_a_loopback_name(
    server: RunningServer, name: str
) -> None:
    headers = {"Host": f"{name}:{server.port}"}
    assert httpx.get(f"{server.url}/v1/sessions", headers=headers).status_code == 200


def test_a_loopback_server_refuses_requests_for_other_host_names(server: RunningServer) -> None:
    # A page of attacker.example whose DNS turned to 127.0.0.1 (DNS rebinding) sends this.
    headers = {"Host": f"attacker.example:{server.port}"}
    assert httpx.get(f"{server.url}/v1/sessions", headers=headers).status_code == 400
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(
            f"GET /v1/stream HTTP/1.1\r\nHost: attacker.example:{server.port}\r\n".encode()
            + b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        assert raw.recv(4096).startswith(b"HTTP/1.1 400")  # no upgrade, so no socket


def network_address() -> str:
    """This machine's address on its network (not loopback), or skip where it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # TEST-NET-3: routed, nothing is sent
        except OSError:
            pytest.skip("this machine has no network address")
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        pytest.skip("this machine has no network address")
    return address


def test_osc_listens_on_loopback_even_when_the_server_binds_every_address(
    exposed: tuple[RunningServer, int],
) -> None:
    running, osc_port = exposed
    session = httpx.post(f"{running.url}/v1/sessions", json={}, headers=BEARER).json()["id"]
    # Before, this set a protected session's gain from the network without the token.
    SimpleUDPClient(network_address(), osc_port).send_message("/bandmate/gain", 0.0)
    SimpleUDPClient("127.0.0.1", osc_port).send_message("/bandmate/dry_wet", 0.25)
    deadline = time.monotonic() + 10
    while (controls := session_controls(running, session))["dry_wet"] != 0.25:
        assert time.monotonic() < deadline, "OSC on loopback never arrived"
        time.sleep(0.05)
    assert controls["gain"] == 1.0


def session_controls(running: RunningServer, session: str) -> dict[str, object]:
    found = httpx.get(f"{running.url}/v1/sessions/{session}", headers=BEARER)
    return dict(found.json()["controls"])


@pytest.mark.parametrize("path", ["/docs", "/openapi.json"])
def test_the_api_description_of_a_guarded_server_needs_the_token(
    exposed: tuple[RunningServer, int], path: str
) -> None:
    running, _ = exposed
    assert httpx.get(f"{running.url}{path}").status_code == 401
    assert httpx.get(f"{running.url}{path}", headers=BEARER).status_code == 200


def test_a_token_on_the_command_line_and_osc_beyond_loopback_are_each_warned_in_one_line(
    tiny_models_dir: Path,
) -> None:
    osc_port = free_udp_port()
    running = RunningServer(tiny_models_dir, "--token", TOKEN, "--osc-host", "0.0.0.0",
                            "--osc-port", str(osc_port))  # fmt: skip
    lines = running.stop().splitlines()
    token_warnings = [line for line in lines if "shows in `ps`" in line]
    assert token_warnings == ["warning: --token shows in `ps` to every user; set BANDMATE_TOKEN "
                              "instead"]  # fmt: skip
    osc_warnings = [line for line in lines if "reachable from the network" in line]
    assert len(osc_warnings) == 1 and f"0.0.0.0:{osc_port}" in osc_warnings[0]


def test_a_token_from_the_environment_is_not_warned_about(tiny_models_dir: Path) -> None:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BANDMATE_TOKEN", TOKEN)
        running = RunningServer(tiny_models_dir)
    assert "warning" not in running.stop()


def test_serve_help_recommends_the_environment_for_the_token() -> None:
    done = subprocess.run([BANDMATE, "serve", "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "300"}, timeout=60)  # fmt: skip
    assert "Prefer the BANDMATE_TOKEN environment variable" in done.stdout
    assert "shows in `ps`" in done.stdout


def test_an_osc_flood_logs_at_most_one_warning_per_five_seconds(tiny_models_dir: Path) -> None:
    osc_port = free_udp_port()
    running = RunningServer(tiny_models_dir, "--osc-port", str(osc_port))
    try:
        session = httpx.post(f"{running.url}/v1/sessions", json={}).json()["id"]
        flood = SimpleUDPClient("127.0.0.1", osc_port)
        for _ in range(2000):  # before: one line each (17,895 lines in 15 s)
            flood.send_message("/bandmate/gain", 99.0)
        deadline = time.monotonic() + 30
        while session_controls(running, session)["dry_wet"] != 0.25:  # the flood was read
            assert time.monotonic() < deadline, "the server never read the flood"
            flood.send_message("/bandmate/dry_wet", 0.25)  # again: a full buffer drops some
            time.sleep(0.05)
    finally:
        output = running.stop()
    ignored = [line for line in output.splitlines() if line.startswith("ignored control gain")]
    assert 1 <= len(ignored) <= 2, output[-2000:]
