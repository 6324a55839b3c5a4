"""Messages a real `bandmate serve` must answer without closing the stream: text that no
JSON parser turns into a message (huge numbers, deep nesting), and values of the wrong type,
which strict validation refuses rather than converts (in `open`, controls and REST)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.protocol import CloseCode
from tests.helpers import RunningServer

# Slow, so not in `make test-quick`: every test here runs real processes (`bandmate serve`, `session
# run`, `bench soak`).
pytestmark = pytest.mark.slow

HUGE = "9" * 5000  # Python refuses to convert integers of over 4300 digits
DEEP = 100_000  # levels: past any parser's recursion limit


@pytest.fixture(scope="module")
def server(tiny_models_dir: Path) -> Iterator[RunningServer]:
    running = RunningServer(tiny_models_dir)
    yield running
    running.stop()


async def answers_then_streams_on(server: RunningServer, text: str) -> dict[str, Any]:
    """Send `text` on an open stream; its `error`, after checking that a PCM block sent next
    is still answered."""
    async with connect(f"{server.ws_url}/v1/stream", max_size=None) as ws:
        await ws.send(json.dumps({"type": "open"}))
        await ws.recv()
        await ws.send(text)
        await ws.send(np.zeros(1024, np.float32).tobytes())
        error: dict[str, Any] | None = None
        while True:
            message = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(message, bytes):
                assert len(message) == 4096
                break
            if json.loads(message)["type"] == "error":
                error = json.loads(message)
        assert error is not None, "no error came before the answer"
        return error


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"type": "control", "name": "gain", "value": ' + HUGE + "}", "malformed_json"),
        ("[" * DEEP + "]" * DEEP, "malformed_json"),
        ('{"type": "control", "name": "gain", "value": ' + "[" * DEEP + "]" * DEEP + "}",
         "malformed_json"),
        ('{"type": "control", "name": "gain", "value": 1e999}', "bad_value"),
        ('{"type": "control", "name": "gain", "value": true}', "bad_value"),
        ('{"type": "control", "name": "gain", "value": "0.5"}', "bad_value"),
        ('{"type": "control", "name": "seed", "value": ' + "9" * 4000 + "}", "bad_value"),
    ],
    ids=["huge-number", "deep-nesting", "deep-value", "infinity", "true-as-gain",
         "string-as-gain", "4000-digit-seed"],
)  # fmt: skip
def test_a_message_no_parser_can_use_gets_an_error_and_the_stream_goes_on(
    server: RunningServer, text: str, code: str
) -> None:
    # Before, the first three closed the socket with 4500 and logged a traceback.
    error = asyncio.run(answers_then_streams_on(server, text))
    assert error["code"] == code, error
    assert server.alive()


async def open_refusal(server: RunningServer, opening: dict[str, Any]) -> tuple[int, str]:
    async with connect(f"{server.ws_url}/v1/stream") as ws:
        await ws.send(json.dumps({"type": "open", **opening}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


@pytest.mark.parametrize(
    ("opening", "named"),
    [
        ({"sample_rate": 0}, "unsupported sample rate 0"),  # before: silently 48000
        ({"sample_rate": "48000"}, "sample_rate"),
        ({"sample_rate": 48_000.0}, "sample_rate"),
        ({"seed": True}, "seed"),
        ({"channels": "2"}, "channels"),
        ({"protocol": "1"}, "protocol"),
    ],
    ids=["rate-0", "rate-as-string", "rate-as-float", "seed-as-bool", "channels-as-string",
         "protocol-as-string"],
)  # fmt: skip
def test_an_open_of_the_wrong_type_or_rate_is_refused_4400_naming_the_field(
    server: RunningServer, opening: dict[str, Any], named: str
) -> None:
    code, reason = asyncio.run(open_refusal(server, opening))
    assert code == CloseCode.BAD_OPEN and named in reason, reason


@pytest.mark.parametrize(
    ("body", "status"),
    [({"sample_rate": "48000"}, 422), ({"seed": True}, 422), ({"sample_rate": 0}, 400)],
    ids=["rate-as-string", "seed-as-bool", "rate-0"],
)
def test_a_session_body_of_the_wrong_type_is_refused(
    server: RunningServer, body: dict[str, Any], status: int
) -> None:
    answer = httpx.post(f"{server.url}/v1/sessions", json=body)
    assert answer.status_code == status, answer.text
    assert httpx.get(f"{server.url}/v1/sessions").json() == []
