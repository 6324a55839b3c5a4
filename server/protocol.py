"""The streaming protocol, version 1: the messages a client and the server exchange on one
WebSocket, as pydantic models. docs/protocol.md describes it with examples.

Text frames carry JSON messages with a "type"; binary frames carry PCM. Messages a client
gets wrong are answered with an `error` message and the session goes on; only problems with
the socket itself (auth, the opening message, size, idleness) close it, each with its code.
"""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

PROTOCOL_VERSION = 1


class CloseCode(IntEnum):
    """WebSocket close codes the server uses (4000-4999 is the range for applications)."""

    NORMAL = 1000
    MESSAGE_TOO_BIG = 1009  # over --max-message-bytes
    BAD_OPEN = 4400  # the first message is not a valid `open`
    UNAUTHORIZED = 4401  # missing or wrong token
    FORBIDDEN_ORIGIN = 4403  # a web page from another site (see --allow-origin)
    UNKNOWN_SESSION = 4404  # `open` names a session that does not exist
    IDLE = 4408  # no `open` within --handshake-timeout, or nothing for --idle-timeout seconds
    VERSION = 4426  # a protocol version this server does not speak
    SESSION_BUSY = 4409  # the session already has a stream
    TOO_MANY_MESSAGES = 4420  # over --max-messages-per-s (a flood of tiny messages)
    TOO_MANY_SESSIONS = 4429  # --max-sessions reached
    SERVER_ERROR = 4500


class Strict(BaseModel):
    """No unknown fields, and no coercion: "48000" is not a number, nor is true."""

    model_config = ConfigDict(extra="forbid", strict=True)


class OpenMessage(Strict):
    """The first message on a socket: what the PCM looks like and which session it drives."""

    type: Literal["open"]
    protocol: int = PROTOCOL_VERSION
    token: str | None = None  # alternatively `?token=` on the URL
    session: str | None = None  # attach to a session made with POST /v1/sessions
    # For a new session: defaults "default", 0, 48000. Attaching, they may be left out;
    # given, they must match the session.
    checkpoint: str | None = None  # a name from GET /v1/checkpoints
    seed: Annotated[int | None, Field(ge=0, le=2**32 - 1)] = None
    sample_rate: int | None = None  # of the PCM both ways
    channels: Annotated[int, Field(ge=1, le=32)] = 1
    format: Literal["float32", "int16"] = "float32"
    input_channel: int | None = None  # 0-based; None: the mean of all channels

    @model_validator(mode="after")
    def _channel_exists(self) -> OpenMessage:
        if self.input_channel is not None and not 0 <= self.input_channel < self.channels:
            raise ValueError(f"input_channel {self.input_channel} of {self.channels} channel(s)")
        return self


CONTROL_RANGES: dict[str, tuple[float, float]] = {
    "gain": (0.0, 4.0),  # accompaniment gain, linear
    "dry_wet": (0.0, 1.0),  # 0: only the input comes back, 1: only the accompaniment
    "noise_scale": (0.0, 4.0),  # the generator's noise; 0 is deterministic
    "anticipation": (0, 64),  # frames ahead; a checkpoint supports the one it was trained with
    "seed": (0, 2**32 - 1),  # restarts the noise from this seed
}
CONTROL_NAMES = (*CONTROL_RANGES, "checkpoint")  # checkpoint: a name from /v1/checkpoints


class SessionSpec(Strict):
    """The body of POST /v1/sessions, and what an `open` without a session creates."""

    checkpoint: str = "default"
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    sample_rate: int = 48_000


class SetControl(Strict):
    """Takes effect at the next hop. `value` is a number, except for `checkpoint` (a name)."""

    type: Literal["control"]
    name: Literal["gain", "dry_wet", "noise_scale", "anticipation", "seed", "checkpoint"]
    value: float | int | str

    @model_validator(mode="after")
    def _in_range(self) -> SetControl:
        if self.name == "checkpoint":
            if not isinstance(self.value, str):
                raise ValueError("checkpoint takes a name")
            return self
        low, high = CONTROL_RANGES[self.name]
        if isinstance(self.value, str) or not low <= self.value <= high:
            raise ValueError(f"{self.name} takes a number from {low:g} to {high:g}")
        if self.name in ("seed", "anticipation") and self.value != int(self.value):
            raise ValueError(f"{self.name} takes a whole number")
        return self


STEER_RANGE = (-4.0, 4.0)  # alpha: 0 is unsteered, +-1 moves an attribute about its spread
# A steered attribute as one control (telemetry, acks, MIDI maps, OSC): "steer.brightness".
STEER_PREFIX = "steer."


class Steer(Strict):
    """Steer the band along attributes (a checkpoint built with `bandmate steer build`):
    attribute -> alpha. Attributes not named keep their alpha; it glides there per hop."""

    type: Literal["steer"]
    alphas: dict[str, float]

    @model_validator(mode="after")
    def _in_range(self) -> Steer:
        low, high = STEER_RANGE
        if not self.alphas:
            raise ValueError("steer names at least one attribute")
        for name, alpha in self.alphas.items():
            if not low <= alpha <= high:
                raise ValueError(f"steer {name} takes an alpha from {low:g} to {high:g}")
        return self


class Reset(Strict):
    type: Literal["reset"]


class Ping(Strict):
    type: Literal["ping"]


ClientMessage = Annotated[SetControl | Steer | Reset | Ping, Field(discriminator="type")]
client_message_adapter: TypeAdapter[SetControl | Steer | Reset | Ping] = TypeAdapter(ClientMessage)


class ReadyMessage(BaseModel):
    type: Literal["ready"] = "ready"
    protocol: int = PROTOCOL_VERSION
    session: str
    checkpoint: str
    sample_rate: int
    format: str
    hop_samples: int  # the model's hop at its own rate
    model_sample_rate: int
    latency_samples: int  # output sample m is the accompaniment for input sample m - this
    # The server holds a round open this long to batch sessions together: a block's answer may
    # come this much later, so the session's latency (telemetry's latency_ms) includes it.
    batch_window_ms: float = 0.0
    # Attributes this checkpoint can be steered along (a `steer` message); empty for none.
    steering: list[str] = []


class ErrorMessage(BaseModel):
    type: Literal["error"] = "error"
    code: Literal[
        "malformed_json",
        "unknown_message",
        "unknown_control",
        "bad_value",
        "bad_pcm",
        "non_finite",
        "unsupported",
        "unknown_checkpoint",
    ]
    message: str


class TelemetryMessage(BaseModel):
    type: Literal["telemetry"] = "telemetry"
    hops: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    misses: int
    real_time_factor: float
    latency_ms: float
    dropped_messages: int
    controls: dict[str, float | int | str]
    valence: float | None = None  # when the BCMI loop runs
    instruction: str | None = None  # when an experiment session runs


class ControlAck(BaseModel):
    type: Literal["control_ack"] = "control_ack"
    name: str
    value: float | int | str


class PongMessage(BaseModel):
    """The answer to a `ping`: the session is alive and its messages get through."""

    type: Literal["pong"] = "pong"


ServerMessage = Annotated[
    ReadyMessage | ErrorMessage | TelemetryMessage | ControlAck | PongMessage,
    Field(discriminator="type"),
]
server_message_adapter: TypeAdapter[
    ReadyMessage | ErrorMessage | TelemetryMessage | ControlAck | PongMessage
] = TypeAdapter(ServerMessage)


def parse_server_message(
    text: str,
) -> ReadyMessage | ErrorMessage | TelemetryMessage | ControlAck | PongMessage:
    """A text frame from the server as its model; pydantic's ValidationError if it is none
    of them (a newer server's message, say: a client may skip it)."""
    return server_message_adapter.validate_json(text)


class ProtocolError(Exception):
    """A client message the server cannot use: answered with an `error`, the stream goes on."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message

    def as_message(self) -> ErrorMessage:
        return ErrorMessage(code=self.code, message=self.message)  # type: ignore[arg-type]


def parse_client_message(text: str) -> SetControl | Steer | Reset | Ping:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"not JSON: {exc.msg} at column {exc.colno}"
        raise ProtocolError("malformed_json", message) from None
    except ValueError:  # Python refuses to convert integers of over 4300 digits
        raise ProtocolError("malformed_json", "not usable JSON: a number is too long") from None
    except RecursionError:
        raise ProtocolError("malformed_json", "not usable JSON: nested too deeply") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError("unknown_message", 'a message is a JSON object with a "type"')
    kind = data["type"]
    if kind not in ("control", "steer", "reset", "ping"):
        raise ProtocolError("unknown_message", f"unknown message type {kind!r}")
    if kind == "control" and data.get("name") not in CONTROL_NAMES:
        names = ", ".join(CONTROL_NAMES)
        raise ProtocolError("unknown_control", f"unknown control {data.get('name')!r}: use {names}")
    try:
        return client_message_adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or kind
        raise ProtocolError("bad_value", f"{where}: {first['msg']}") from None


SAMPLE_BYTES = {"float32": 4, "int16": 2}
MAX_FULL_SCALE = 16.0  # float32 far beyond this is not audio: likely int16 sent as float32


def decode_pcm(data: bytes, spec: OpenMessage) -> tuple[np.ndarray, int]:
    """Little-endian interleaved PCM -> mono float32, and how many non-finite samples were
    replaced by silence (a block keeps its length, so the stream keeps its timing)."""
    frame_bytes = SAMPLE_BYTES[spec.format] * spec.channels
    if not data or len(data) % frame_bytes:
        raise ProtocolError(
            "bad_pcm",
            f"a PCM message holds whole frames of {frame_bytes} bytes ({spec.channels} channel(s) "
            f"of {spec.format}); this one has {len(data)} bytes",
        )
    frames = pcm_to_float(data, spec.format).reshape(-1, spec.channels)
    mono = frames[:, spec.input_channel] if spec.input_channel is not None else frames.mean(1)
    finite = np.isfinite(mono)
    bad = int(len(mono) - np.count_nonzero(finite))
    if bad:
        mono = np.where(finite, mono, np.float32(0))
    if np.abs(mono).max() > MAX_FULL_SCALE:
        raise ProtocolError(
            "bad_pcm", f"samples reach {np.abs(mono).max():.3g}: is the format really float32?"
        )
    return np.ascontiguousarray(mono, np.float32), bad


def pcm_to_float(data: bytes, format: str) -> np.ndarray:
    if format == "int16":
        return np.frombuffer(data, "<i2").astype(np.float32) / np.float32(32768)
    return np.frombuffer(data, "<f4").astype(np.float32)


def encode_pcm(samples: np.ndarray, format: str) -> bytes:
    if format == "int16":
        return (np.clip(samples, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()
    return samples.astype("<f4").tobytes()
