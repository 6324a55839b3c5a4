"""What one client's heavy use must not do to the server or to the others, against a real
`bandmate serve`: parallel device listings (PortAudio re-initialised from several threads
crashed or hung the server), a flood of tiny PCM messages (it wrecked everyone's real time),
and PCM blocks longer than the output FIFO (they shifted the stream's alignment for good),
in the server and in engine.Session.process."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from engine.backends import Backend
from engine.filemode import accompany
from engine.session import Session, SessionConfig
from server.protocol import CloseCode
from tests.helpers import RunningServer, models_dir

# Slow, so not in `make test-quick`: every test here runs real processes (`bandmate serve`, `session
# run`, `bench soak`).
pytestmark = pytest.mark.slow

FLOOD_SECONDS = 20  # the flooder gives up after this; the server closes it long before


@pytest.fixture(scope="module")
def server(
    tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    # The flood runs on "other": sessions of another checkpoint are never stepped in the
    # bystander's batch, whose rows may differ from a solo run by float rounding (see
    # tests/test_engine_session.py), so the bystander can be checked bit for bit.
    models = models_dir(tmp_path_factory.mktemp("models"), tiny_checkpoint, ("default", "other"))
    running = RunningServer(models)
    yield running
    running.stop()


def test_parallel_device_listings_leave_the_server_up_and_answering(
    server: RunningServer,
) -> None:
    def listing(_: int) -> httpx.Response:
        return httpx.get(f"{server.url}/v1/devices", timeout=60)

    for _ in range(3):  # the crash took up to three rounds of eight
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(listing, range(8)))
        assert [a.status_code for a in answers] == [200] * 8, answers[0].text
        assert all(a.json() == answers[0].json() for a in answers)
    assert server.alive()
    assert httpx.get(f"{server.url}/health").status_code == 200


def flood(ws_url: str) -> int | None:
    """In its own process, as an abuser is: open a session and send 1-frame PCM messages as
    fast as possible; returns the close code the server sent, None if it never closed."""

    async def run() -> int | None:
        ws = await connect(f"{ws_url}/v1/stream", max_size=None, max_queue=None)
        await ws.send(json.dumps({"type": "open", "checkpoint": "other"}))
        await ws.recv()
        reader = asyncio.ensure_future(ws.wait_closed())  # reads, so the close frame is seen
        one = np.zeros(1, np.float32).tobytes()
        deadline = time.monotonic() + FLOOD_SECONDS
        try:
            while not reader.done() and time.monotonic() < deadline:
                for _ in range(100):
                    await ws.send(one)
                await asyncio.sleep(0)
        except ConnectionClosed:
            pass
        await ws.close()
        closed = ws.protocol.close_rcvd
        return closed.code if closed is not None else None

    return asyncio.run(run())


def child_ready() -> bool:
    return True  # imported this module, so the flood starts at once when asked


async def stream_timed(ws_url: str, audio: np.ndarray, seed: int) -> tuple[np.ndarray, list[float]]:
    """Stream `audio` at real-time pace in 1024-frame blocks; the accompaniment aligned with
    the input, and each block's round trip in seconds."""
    ws = await connect(f"{ws_url}/v1/stream", max_size=None)
    await ws.send(json.dumps({"type": "open", "seed": seed}))
    latency = int(json.loads(await ws.recv())["latency_samples"])
    padded = np.concatenate([audio, np.zeros(latency, np.float32)])
    blocks = [padded[i : i + 1024] for i in range(0, len(padded), 1024)]
    sent: list[float] = []
    received: list[np.ndarray] = []
    round_trips: list[float] = []

    async def receive() -> None:
        async for message in ws:
            if isinstance(message, bytes):
                round_trips.append(time.perf_counter() - sent[len(received)])
                received.append(np.frombuffer(message, np.float32))
                if len(received) == len(blocks):
                    return

    receiver = asyncio.create_task(receive())
    started = time.perf_counter()
    for index, block in enumerate(blocks):
        sent.append(time.perf_counter())
        await ws.send(block.tobytes())
        await asyncio.sleep(max(0.0, started + (index + 1) * 1024 / 48_000 - time.perf_counter()))
    await asyncio.wait_for(receiver, 30)
    await ws.close()
    assert [len(r) for r in received] == [len(b) for b in blocks]
    return np.concatenate(received)[latency : latency + len(audio)], round_trips


def test_a_tiny_message_flood_is_closed_4420_while_a_real_time_stream_keeps_its_pace(
    server: RunningServer, onnx_backend: Backend, live_recording: np.ndarray
) -> None:
    audio = live_recording[: 6 * 48_000]
    expected = accompany(audio, 48_000, onnx_backend, seed=5).accompaniment
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        assert pool.submit(child_ready).result()

        async def both() -> tuple[np.ndarray, list[float]]:
            stream = asyncio.create_task(stream_timed(server.ws_url, audio, seed=5))
            await asyncio.sleep(0.5)  # the flood starts into a running stream
            abuser = asyncio.wrap_future(pool.submit(flood, server.ws_url))
            result, code = await asyncio.gather(stream, abuser)
            assert code == CloseCode.TOO_MANY_MESSAGES
            return result

        accompaniment, round_trips = asyncio.run(both())
    np.testing.assert_array_equal(accompaniment, expected)
    # Unchecked, the flood took the median round trip from 9 ms to 1.7 s, and some blocks
    # never came back. A loaded 2-core machine needs the margin.
    assert np.median(round_trips) < 0.25, f"median round trip {np.median(round_trips):.3f} s"
    assert server.alive()


def test_a_pcm_block_longer_than_the_output_fifo_is_answered_whole_and_in_line(
    server: RunningServer, onnx_backend: Backend, live_recording: np.ndarray
) -> None:
    sizes = [1024, 90_000, 1024, 1024, 4096]  # 90,000 frames overflowed (80,896 and up did)
    audio = live_recording[: sum(sizes)]
    expected = accompany(audio, 48_000, onnx_backend, seed=2).accompaniment
    blocks = np.split(audio, np.cumsum(sizes)[:-1])
    latency, answers, errors = asyncio.run(exchange(server, blocks, seed=2))
    assert errors == []
    assert [len(a) for a in answers] == sizes
    streamed = np.concatenate(answers)[latency:]
    np.testing.assert_array_equal(streamed, expected[: len(streamed)])


def test_a_pcm_block_over_two_seconds_gets_an_error_and_the_stream_stays_in_line(
    server: RunningServer, onnx_backend: Backend, live_recording: np.ndarray
) -> None:
    audio = live_recording[:8192]
    expected = accompany(audio, 48_000, onnx_backend, seed=3).accompaniment
    too_long = np.zeros(2 * 48_000 + 1, np.float32)
    blocks = [audio[:4096], too_long, audio[4096:]]
    latency, answers, errors = asyncio.run(exchange(server, blocks, seed=3))
    assert [e["code"] for e in errors] == ["bad_pcm"]
    assert "at most 96000 frames" in errors[0]["message"]
    assert [len(a) for a in answers] == [4096, 4096]  # none for the refused block
    streamed = np.concatenate(answers)[latency:]
    np.testing.assert_array_equal(streamed, expected[: len(streamed)])


async def exchange(
    server: RunningServer, blocks: list[np.ndarray], seed: int
) -> tuple[int, list[np.ndarray], list[dict[str, Any]]]:
    """Send the blocks one at a time, each after the answer or error to the one before;
    the stream's latency_samples, the answers and the errors."""
    ws = await connect(f"{server.ws_url}/v1/stream", max_size=None)
    await ws.send(json.dumps({"type": "open", "seed": seed}))
    latency = int(json.loads(await ws.recv())["latency_samples"])
    answers: list[np.ndarray] = []
    errors: list[dict[str, Any]] = []
    for block in blocks:
        await ws.send(np.ascontiguousarray(block, np.float32).tobytes())
        while True:
            message = await asyncio.wait_for(ws.recv(), 30)
            if isinstance(message, bytes):
                answers.append(np.frombuffer(message, np.float32))
                break
            if json.loads(message)["type"] == "error":
                errors.append(json.loads(message))
                break
    await ws.close()
    return latency, answers, errors


@pytest.mark.parametrize("rate", [48_000, 44_100])
def test_session_process_answers_a_block_longer_than_its_fifo_whole_and_in_line(
    onnx_backend: Backend, live_recording: np.ndarray, rate: int
) -> None:
    audio = live_recording[: 3 * 48_000]  # as samples at `rate`: only the length matters here
    in_blocks = Session(onnx_backend, SessionConfig(device_rate=rate, seed=1))
    expected = np.concatenate([in_blocks.process(audio[i : i + 1024])
                               for i in range(0, len(audio), 1024)])  # fmt: skip
    whole = Session(onnx_backend, SessionConfig(device_rate=rate, seed=1))
    answered = whole.process(audio)
    assert len(answered) == len(audio) and whole.underruns == 0
    np.testing.assert_array_equal(answered, expected)
