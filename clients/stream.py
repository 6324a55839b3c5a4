"""The Python client: stream audio to a Bandmate server and collect the accompaniment.

`stream_audio` sends a recording block by block, at real-time pace or as fast as the server
answers, then the server's reported latency of silence so every input sample gets its
accompaniment, and returns the accompaniment aligned with the input (the first
`latency_samples` trimmed), as `bandmate accompany` writes it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from clients.errors import ClientError
from server.protocol import (
    ErrorMessage,
    OpenMessage,
    ReadyMessage,
    SetControl,
    TelemetryMessage,
    encode_pcm,
    parse_server_message,
    pcm_to_float,
)


@dataclass(frozen=True)
class StreamOptions:
    url: str = "ws://127.0.0.1:8000"  # the server's base URL (ws://, wss://, http://, https://)
    token: str | None = None
    checkpoint: str = "default"
    seed: int = 0
    blocksize: int = 1024  # frames per message
    realtime: bool = True  # False: send as fast as the server answers (--fast)
    format: str = "float32"
    controls: tuple[tuple[str, float | int | str], ...] = ()  # sent right after `ready`


@dataclass
class StreamResult:
    accompaniment: np.ndarray  # aligned with the input, at its rate
    # The server's messages, each validated by its protocol model and kept as that model's
    # dict: the CLI, the benchmarks and the tests read them as rows.
    ready: dict[str, Any]
    telemetry: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    # Per message: from sending it to receiving the last sample of its answer. The server's
    # latency is in the audio; this is what the network and the server's queue add to it.
    round_trips_s: list[float] = field(default_factory=list)
    sent: int = 0  # samples sent so far (the input, then the latency's worth of silence)
    total: int = 0  # samples to send in all
    elapsed_s: float = 0.0  # since the first message, as of the last one sent
    final_telemetry: bool = False  # the last telemetry came after the last answer

    @property
    def server_latency_ms(self) -> float:
        """The latency the server reports: in its telemetry, or else in `ready` (the session's
        latency plus the server's batch window)."""
        if self.telemetry:
            return float(self.telemetry[-1]["latency_ms"])
        model_ms = 1e3 * self.ready["latency_samples"] / self.ready["sample_rate"]
        return model_ms + float(self.ready["batch_window_ms"])


def stream_url(base: str, token: str | None = None) -> str:
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ClientError(f"not a server URL: {base!r} (expected ws://HOST:PORT)")
    query = urlencode({"token": token}) if token else ""
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/v1/stream", query, ""))


async def open_stream(options: StreamOptions, rate: int) -> tuple[ClientConnection, ReadyMessage]:
    url = stream_url(options.url, options.token)
    # Built before connecting: what the server's models would refuse fails here, in one line.
    # exclude_unset: the fields we leave out take the server's defaults, as they always have.
    opening = _dumped(OpenMessage, type="open", checkpoint=options.checkpoint,
                      seed=options.seed, sample_rate=rate, format=options.format)  # fmt: skip
    controls = [
        _dumped(SetControl, type="control", name=name, value=value)
        for name, value in options.controls
    ]
    try:
        socket = await connect(url, max_size=None, open_timeout=10)
    except (OSError, TimeoutError) as exc:
        raise ClientError(f"cannot connect to {options.url}: {exc}") from None
    try:  # a refusal (e.g. 4401 for a ?token= that is wrong) can come before our `open` is out
        await socket.send(opening)
        answer = json.loads(await socket.recv())
    except ConnectionClosed as exc:
        raise ClientError(f"server closed the stream: {_close_reason(exc)}") from None
    if answer.get("type") != "ready":
        raise ClientError(f"server answered {answer}")
    ready = ReadyMessage.model_validate(answer)
    for control in controls:
        await socket.send(control)
    return socket, ready


def _dumped(model: type[OpenMessage | SetControl], **fields: Any) -> str:
    """A message as JSON, or a ClientError naming the field the protocol refuses."""
    try:
        message = model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise ClientError(f"not a valid {model.__name__}: {where}: {first['msg']}") from None
    return message.model_dump_json(exclude_unset=True)


async def stream_audio(
    audio: np.ndarray,
    rate: int,
    options: StreamOptions,
    on_progress: Callable[[StreamResult], None] | None = None,
) -> StreamResult:
    """`on_progress(result)` is called after every message sent (a status line)."""
    socket, ready = await open_stream(options, rate)
    latency = ready.latency_samples
    padded = np.concatenate([audio.astype(np.float32), np.zeros(latency, np.float32)])
    result = StreamResult(np.zeros(0, np.float32), ready.model_dump(), total=len(padded))
    received: list[np.ndarray] = []
    got = 0
    done, progress = asyncio.Event(), asyncio.Event()
    in_flight = rate // 2  # --fast: at most half a second ahead, well inside the server's backlog
    awaited: deque[tuple[int, float]] = deque()  # (end of a message's samples, when it went)

    async def receive() -> None:
        nonlocal got
        async for message in socket:
            if isinstance(message, bytes):
                received.append(pcm_to_float(message, options.format))
                got += len(received[-1])
                while awaited and awaited[0][0] <= got:
                    result.round_trips_s.append(time.perf_counter() - awaited.popleft()[1])
                progress.set()
                if got >= len(padded):
                    done.set()
            else:  # pongs and control acks need nothing from us
                try:
                    reply = parse_server_message(message)
                except ValidationError:  # a newer server's message: nothing for us
                    continue
                if isinstance(reply, ErrorMessage):
                    result.errors.append(reply.model_dump())
                elif isinstance(reply, TelemetryMessage):
                    result.telemetry.append(reply.model_dump())
                    if done.is_set():
                        result.final_telemetry = True

    receiver = asyncio.create_task(receive())
    try:
        started = time.perf_counter()
        for index, start in enumerate(range(0, len(padded), options.blocksize)):
            block = padded[start : start + options.blocksize]
            awaited.append((start + len(block), time.perf_counter()))
            await socket.send(encode_pcm(block, options.format))
            result.sent, result.elapsed_s = start + len(block), time.perf_counter() - started
            if on_progress is not None:
                on_progress(result)
            if options.realtime:
                due = started + (index + 1) * options.blocksize / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            while start - got > in_flight and not receiver.done():
                progress.clear()
                await asyncio.wait_for(progress.wait(), 30)
        wait = asyncio.create_task(done.wait())
        finished, _ = await asyncio.wait(
            {wait, receiver}, timeout=30, return_when=asyncio.FIRST_COMPLETED
        )
        wait.cancel()
        if receiver in finished and not done.is_set():
            error = receiver.exception()
            reason = _close_reason(error) if isinstance(error, ConnectionClosed) else error
            raise ClientError(f"server closed the stream: {reason}")
        if not done.is_set():
            raise ClientError(f"timed out: {got} of {len(padded)} samples came back")
        await _final_telemetry(result, receiver)
    finally:
        receiver.cancel()
        await socket.close()
    result.accompaniment = np.concatenate(received)[latency : latency + len(audio)]
    return result


async def _final_telemetry(result: StreamResult, receiver: asyncio.Task[None]) -> None:
    """Wait for the telemetry after the last answer, so the summary covers the whole stream
    (a short --fast stream may be over before the first; the server sends it twice a second)."""
    deadline = time.perf_counter() + 1.5
    while not result.final_telemetry and not receiver.done() and time.perf_counter() < deadline:
        await asyncio.sleep(0.02)


def _close_reason(exc: ConnectionClosed) -> str:
    frame = exc.rcvd
    return f"{frame.code} {frame.reason}" if frame is not None else "connection lost"
