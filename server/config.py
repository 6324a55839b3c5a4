"""`bandmate serve` configuration: one typed model, filled from the command line."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from engine.checkpoint import DEFAULT_CHECKPOINT
from server.errors import ServerError


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    # Clients name checkpoints; only the folders directly inside this one can be named.
    models_dir: Path = DEFAULT_CHECKPOINT.parent
    token: str | None = None
    backend: str = "auto"
    threads: Annotated[int, Field(ge=1)] = 1  # per backend; the event loop needs a core too
    max_sessions: Annotated[int, Field(ge=1)] = 16
    # Aligned rounds (server/host.py): the stepper holds a round open up to this long for the
    # sessions whose next block is due by then, and steps them as one batch. It is added to
    # each session's reported latency and to its deadline (one hop + the window).
    batch_window_ms: Annotated[float, Field(ge=0, le=20)] = 2.0
    # Limits. A larger message closes with 1009; no message for idle_timeout_s closes with
    # 4408; a client that reads too slowly loses its oldest output beyond send_queue_messages;
    # input the model has not caught up with beyond max_backlog_s is dropped. All counted.
    # A session no socket holds goes after idle_timeout_s too.
    max_message_bytes: Annotated[int, Field(ge=1024)] = 1 << 20
    idle_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    send_queue_messages: Annotated[int, Field(ge=2)] = 64
    max_backlog_s: Annotated[float, Field(gt=0)] = 2.0
    telemetry_interval_s: Annotated[float, Field(gt=0)] = 0.5
    # Messages a socket may send per second, on average, with a burst of one second's worth;
    # beyond that it closes with 4420. A real client sends 47 a second (1024-frame blocks at
    # 48 kHz), and 3000 at the extreme (64-frame blocks at 192 kHz).
    max_messages_per_s: Annotated[float, Field(gt=0)] = 3000.0
    # Slow and idle connections: an HTTP request's headers (a WebSocket's upgrade request
    # too) must arrive within handshake_timeout_s of connecting or of the previous response,
    # and a WebSocket's `open` within handshake_timeout_s of the upgrade (else 4408).
    # Connections beyond max_connections are refused at once (each one is a file descriptor:
    # keep `ulimit -n` well above it).
    handshake_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    max_connections: Annotated[int, Field(ge=1)] = 256
    # Browsers' WebSockets are accepted from the page's own origin, and from these.
    allow_origins: tuple[str, ...] = ()
    midi_in: str | None = None
    midi_map: Path | None = None
    osc_port: Annotated[int | None, Field(ge=1, le=65535)] = None
    osc_host: str = "127.0.0.1"  # OSC has no auth: beyond loopback anyone on the network can use it


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(config: ServerConfig) -> None:
    """Refuse, before anything starts, what would expose the server or fail later."""
    if not is_loopback(config.host) and not config.token:
        raise ServerError(
            f"binding to {config.host} exposes the server beyond this machine: "
            "give --token (clients then send it), or bind to 127.0.0.1"
        )
    if config.port == 0:
        return
    try:
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((config.host, config.port))
    except OSError as exc:
        raise ServerError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from None
