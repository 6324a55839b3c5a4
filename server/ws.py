"""WebSocket /v1/stream: one socket drives one session (protocol in docs/protocol.md).

A message the client gets wrong is answered with an `error` and the stream goes on; only
problems with the socket itself close it, each with its documented code. Whatever happens
to one socket, the others keep streaming: every exception here ends this socket only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
from fastapi import WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from server.access import origin_allowed, token_matches
from server.catalog import UnknownCheckpoint
from server.config import ServerConfig
from server.errors import ServerError, SessionBusy, TooManySessions, UnknownSession
from server.host import HostedSession, SessionHost
from server.metrics import ServerMetrics
from server.protocol import (
    PROTOCOL_VERSION,
    STEER_PREFIX,
    CloseCode,
    ControlAck,
    OpenMessage,
    PongMessage,
    ProtocolError,
    ReadyMessage,
    SessionSpec,
    SetControl,
    TelemetryMessage,
    decode_pcm,
    encode_pcm,
    parse_client_message,
)

log = logging.getLogger("bandmate.server")


class Closing(Exception):
    def __init__(self, code: CloseCode, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class Outbox:
    """What the server has yet to send on one socket, bounded: when a slow client lets it
    fill, the oldest audio goes first and is counted, so server memory never grows."""

    def __init__(self, capacity: int, on_drop: Any):
        self._items: deque[bytes | str] = deque()
        self._capacity, self._on_drop = capacity, on_drop
        self._ready = asyncio.Event()

    def put(self, item: bytes | str) -> None:
        if len(self._items) >= self._capacity:
            audio = next((i for i, x in enumerate(self._items) if isinstance(x, bytes)), 0)
            del self._items[audio]
            self._on_drop()
        self._items.append(item)
        self._ready.set()

    def put_all(self, items: list[bytes]) -> None:
        for item in items:
            self.put(item)

    async def run(self, websocket: WebSocket) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._items:
                item = self._items.popleft()
                if isinstance(item, bytes):
                    await websocket.send_bytes(item)
                else:
                    await websocket.send_text(item)


class TokenBucket:
    """At most `rate` messages a second on average, and `burst` at once."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self._tokens, self._at = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class StreamHandler:
    def __init__(self, config: ServerConfig, host: SessionHost, metrics: ServerMetrics):
        self.config, self.host, self.metrics = config, host, metrics

    async def __call__(self, websocket: WebSocket) -> None:
        await websocket.accept()
        hosted: HostedSession | None = None
        owned = False  # made by this socket's `open`, so it goes when the socket does
        tasks: list[asyncio.Task[None]] = []
        try:
            origin = websocket.headers.get("origin")
            if not origin_allowed(origin, websocket.headers.get("host"), self.config.allow_origins):
                reason = f"origin {origin} is not allowed (the server's --allow-origin adds it)"
                raise Closing(CloseCode.FORBIDDEN_ORIGIN, reason)
            opening = await self._receive_open(websocket)
            hosted, owned = await self._attach(opening)
            outbox = Outbox(self.config.send_queue_messages, lambda: self._dropped(hosted))
            loop = asyncio.get_running_loop()
            fmt = opening.format

            def deliver(answers: list[np.ndarray]) -> None:  # on the stepper thread
                loop.call_soon_threadsafe(outbox.put_all, [encode_pcm(a, fmt) for a in answers])

            session = hosted.session
            ready = ReadyMessage(
                session=hosted.id,
                checkpoint=hosted.checkpoint,
                sample_rate=hosted.spec.sample_rate,
                format=fmt,
                hop_samples=session.hop,
                model_sample_rate=session.model_rate,
                latency_samples=session.latency_samples,
                batch_window_ms=1e3 * hosted.window_s,
                steering=list(session.backend.info.steering),
            )
            await websocket.send_text(ready.model_dump_json())
            hosted.deliver = deliver
            self.metrics.streams.inc()
            tasks = [
                asyncio.create_task(outbox.run(websocket)),
                asyncio.create_task(self._telemetry(hosted, outbox)),
            ]
            await self._serve(websocket, opening, hosted, outbox, tasks[0])
        except Closing as closing:
            with contextlib.suppress(Exception):
                await websocket.close(int(closing.code), closing.reason[:120])
        except WebSocketDisconnect:
            pass  # the client went, perhaps mid-message: nothing to answer
        except Exception:
            log.exception("stream failed")
            with contextlib.suppress(Exception):
                await websocket.close(int(CloseCode.SERVER_ERROR), "internal error")
        finally:
            for task in tasks:
                task.cancel()
            if hosted is not None and hosted.deliver is not None:
                hosted.deliver = None
                self.metrics.streams.dec()
            if hosted is not None and owned:
                self.host.remove(hosted.id)
            elif hosted is not None:
                self.host.release(hosted)  # it may expire now, as one never attached does

    def _dropped(self, hosted: HostedSession) -> None:
        hosted.dropped_messages += 1
        self.metrics.dropped.labels("output").inc()

    async def _receive(self, websocket: WebSocket, timeout_s: float) -> Mapping[str, Any]:
        try:
            message = await asyncio.wait_for(websocket.receive(), timeout_s)
        except TimeoutError:
            raise Closing(CloseCode.IDLE, f"nothing for {timeout_s:g} s") from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        return message

    async def _receive_open(self, websocket: WebSocket) -> OpenMessage:
        given = websocket.query_params.get("token")
        header = websocket.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:]
        if given is not None and not token_matches(self.config.token, given):
            raise Closing(CloseCode.UNAUTHORIZED, "wrong token")
        message = await self._receive(websocket, self.config.handshake_timeout_s)
        if message.get("text") is None:
            raise Closing(CloseCode.BAD_OPEN, "the first message must be a JSON `open`")
        try:
            opening = OpenMessage.model_validate_json(message["text"])
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "open"
            reason = f"bad open message: {where}: {first['msg']}"
            raise Closing(CloseCode.BAD_OPEN, reason) from None
        if given is None and not token_matches(self.config.token, opening.token):
            raise Closing(CloseCode.UNAUTHORIZED, "missing or wrong token")
        if opening.protocol != PROTOCOL_VERSION:
            raise Closing(CloseCode.VERSION, f"this server speaks protocol {PROTOCOL_VERSION} only")
        return opening

    async def _attach(self, opening: OpenMessage) -> tuple[HostedSession, bool]:
        if opening.session is None:
            given = {"checkpoint": opening.checkpoint, "seed": opening.seed,
                     "sample_rate": opening.sample_rate}  # fmt: skip
            # Fields left out take SessionSpec's defaults; a 0 stays 0 (and is refused).
            spec = SessionSpec.model_validate({k: v for k, v in given.items() if v is not None})
            try:
                hosted = await asyncio.to_thread(self.host.create, spec, True)
            except TooManySessions as exc:
                raise Closing(CloseCode.TOO_MANY_SESSIONS, str(exc)) from None
            except ServerError as exc:  # an unknown checkpoint, an unsupported rate
                raise Closing(CloseCode.BAD_OPEN, str(exc)) from None
            return hosted, True
        found = self.host.get(opening.session)
        if found is None:
            raise Closing(CloseCode.UNKNOWN_SESSION, f"no session {opening.session!r}")
        for field, own in (("checkpoint", found.checkpoint), ("seed", found.spec.seed),
                           ("sample_rate", found.spec.sample_rate)):  # fmt: skip
            if getattr(opening, field) not in (None, own):
                raise Closing(CloseCode.BAD_OPEN, f"session {found.id} has {field} {own}")
        try:  # from here it is this socket's, and cannot expire or be attached twice
            return self.host.claim(found.id), False
        except UnknownSession as exc:  # it expired a moment ago
            raise Closing(CloseCode.UNKNOWN_SESSION, str(exc)) from None
        except SessionBusy as exc:
            raise Closing(CloseCode.SESSION_BUSY, str(exc)) from None

    async def _serve(self, websocket: WebSocket, opening: OpenMessage, hosted: HostedSession,
                     outbox: Outbox, sender: asyncio.Task[None]) -> None:  # fmt: skip
        rate = self.config.max_messages_per_s
        budget = TokenBucket(rate, burst=rate)  # a second's worth at once: network jitter
        while not sender.done():
            message = await self._receive(websocket, self.config.idle_timeout_s)
            if not budget.take():
                raise Closing(CloseCode.TOO_MANY_MESSAGES, f"over {rate:g} messages a second")
            try:
                if message.get("bytes") is not None:
                    samples, non_finite = decode_pcm(message["bytes"], opening)
                    self.host.submit(hosted, samples)
                    if non_finite:
                        raise ProtocolError(
                            "non_finite", f"{non_finite} NaN/Inf samples were played as silence"
                        )
                elif message.get("text") is not None:
                    await self._control(message["text"], hosted, outbox)
            except ProtocolError as error:
                self.metrics.protocol_errors.labels(error.code).inc()
                outbox.put(error.as_message().model_dump_json())

    async def _control(self, text: str, hosted: HostedSession, outbox: Outbox) -> None:
        message = parse_client_message(text)
        if message.type == "ping":
            outbox.put(PongMessage().model_dump_json())
            return
        if message.type == "reset":
            self.host.command(hosted, "reset")
            return
        if message.type == "steer":
            problem = hosted.session.backend.info.cannot_steer(message.alphas)
            if problem:
                raise ProtocolError("unsupported", f"checkpoint {hosted.checkpoint}: {problem}")
            self.host.command(hosted, "steer", message.alphas)
            for name, alpha in message.alphas.items():
                outbox.put(ControlAck(name=STEER_PREFIX + name, value=alpha).model_dump_json())
            return
        assert isinstance(message, SetControl)
        value = message.value
        if message.name == "anticipation":
            supported = hosted.session.backend.info.anticipation
            if value != supported:
                raise ProtocolError(
                    "unsupported",
                    f"checkpoint {hosted.checkpoint} was trained with anticipation {supported}",
                )
        elif message.name == "checkpoint":
            try:  # load it here, off the stepper, so the switch itself is instant
                await asyncio.to_thread(self.host.catalog.backend, str(value))
            except UnknownCheckpoint as exc:
                raise ProtocolError("unknown_checkpoint", str(exc)) from None
            self.host.command(hosted, "checkpoint", value)
        else:
            self.host.command(hosted, message.name, value)
        outbox.put(ControlAck(name=message.name, value=value).model_dump_json())

    async def _telemetry(self, hosted: HostedSession, outbox: Outbox) -> None:
        while True:
            await asyncio.sleep(self.config.telemetry_interval_s)
            # The engine's summary fills the message's fields of the same names, so a field
            # added to both needs no copying here; the rest is what only the host knows (the
            # latency is the hosted session's: the engine's plus the batch window).
            message = TelemetryMessage.model_validate(
                {
                    **hosted.telemetry(),
                    "dropped_messages": hosted.dropped_messages + hosted.dropped_blocks,
                    "controls": hosted.controls(),
                    "valence": hosted.valence,
                    "instruction": self.host.instruction,
                }
            )
            outbox.put(message.model_dump_json())
