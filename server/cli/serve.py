"""`bandmate serve`: the performance server on uvicorn."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from server.config import ServerConfig
from server.errors import ServerError

DEFAULTS = ServerConfig()


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind; beyond loopback needs a token."),
    port: int = typer.Option(8000, help="TCP port."),
    models_dir: Path = typer.Option(
        DEFAULTS.models_dir, help="Folder of exported checkpoints; clients name them."
    ),
    token: str | None = typer.Option(
        None,
        envvar="BANDMATE_TOKEN",
        help="Clients must send it (HTTP bearer, WS ?token=). Prefer the BANDMATE_TOKEN "
        "environment variable: a --token on the command line shows in `ps` to every user.",
    ),
    backend: str = typer.Option("auto", help="auto, onnx or torch."),
    threads: int = typer.Option(1, help="Inference threads per checkpoint."),
    max_sessions: int = typer.Option(16, help="Sessions open at once."),
    batch_window_ms: float = typer.Option(
        DEFAULTS.batch_window_ms,
        help="Hold each round open this long for sessions due by then, to step them as one "
        "batch; added to every session's latency (0: step each block as it arrives).",
    ),
    max_message_bytes: int = typer.Option(1 << 20, help="Larger WebSocket messages close 1009."),
    idle_timeout: float = typer.Option(
        30.0, help="Seconds of client silence before 4408; a session no socket holds goes too."
    ),
    max_messages_per_s: float = typer.Option(
        DEFAULTS.max_messages_per_s, help="Messages a socket may send a second; beyond, 4420."
    ),
    handshake_timeout: float = typer.Option(
        DEFAULTS.handshake_timeout_s,
        help="Seconds for a request's headers, and for a WebSocket's `open` (else 4408).",
    ),
    max_connections: int = typer.Option(
        DEFAULTS.max_connections, help="Open connections; beyond, 503 (keep `ulimit -n` above)."
    ),
    allow_origin: list[str] = typer.Option(
        [], help="Also accept WebSockets from pages of this origin (repeatable)."
    ),
    midi_in: str | None = typer.Option(None, help="Create this JACK MIDI input for CC control."),
    midi_map: Path | None = typer.Option(None, help="CC mapping YAML (default: built in)."),
    osc_port: int | None = typer.Option(None, help="Accept OSC control on this UDP port."),
    osc_host: str = typer.Option(
        DEFAULTS.osc_host, help="Address for OSC, which has no auth: beyond loopback, warned."
    ),
    ray: bool = typer.Option(
        False, "--ray", help="Serve through Ray Serve (the `scale` extra): local, or RAY_ADDRESS."
    ),
    replicas: int = typer.Option(2, min=1, help="With --ray: replicas of the whole server."),
    cpus_per_replica: float | None = typer.Option(
        None, help="With --ray: CPUs Ray reserves per replica (default: --threads)."
    ),
    gpus_per_replica: float = typer.Option(
        0.0, help="With --ray: GPUs per replica (num_gpus), e.g. 1 on a GPU cluster."
    ),
    rest_headroom: int = typer.Option(
        16,
        min=0,
        help="With --ray: REST calls a replica takes beside its --max-sessions "
        "sockets (0: the proxy sends each replica exactly --max-sessions players).",
    ),
) -> None:
    """Serve sessions over HTTP and WebSocket (protocol: docs/protocol.md); with --ray, as
    replicas behind Ray Serve's proxy (server/ray_serve.py)."""
    import uvicorn

    from server.app import create_app
    from server.config import check_binding
    from server.connections import uvicorn_options

    config = ServerConfig(
        host=host, port=port, models_dir=models_dir, token=token, backend=backend,
        threads=threads, max_sessions=max_sessions, batch_window_ms=batch_window_ms,
        max_message_bytes=max_message_bytes,
        idle_timeout_s=idle_timeout, max_messages_per_s=max_messages_per_s,
        handshake_timeout_s=handshake_timeout, max_connections=max_connections,
        allow_origins=tuple(allow_origin), midi_in=midi_in, midi_map=midi_map,
        osc_port=osc_port, osc_host=osc_host,
    )  # fmt: skip
    # Joining a cluster, the proxies listen on its nodes, not here: the token rule only.
    joining = ray and bool(os.environ.get("RAY_ADDRESS"))
    check_binding(config.model_copy(update={"port": 0}) if joining else config)
    if token is not None and os.environ.get("BANDMATE_TOKEN") != token:
        typer.echo("warning: --token shows in `ps` to every user; set BANDMATE_TOKEN instead",
                   err=True)  # fmt: skip
    if ray:
        options = (replicas, cpus_per_replica or float(threads), gpus_per_replica, rest_headroom)
        serve_ray(config, *options)
        return
    app = create_app(config)
    # The stepper thread needs the GIL back within a fraction of a hop after each model call;
    # Python's default 5 ms switch interval lets the event loop hold it that long per turn.
    sys.setswitchinterval(0.0005)
    offered = ", ".join(app.state.catalog.entries)
    typer.echo(f"bandmate serving http://{host}:{port}/ (checkpoints: {offered}; batch window "
               f"{config.batch_window_ms:g} ms, added to each session's latency)")  # fmt: skip
    uvicorn.run(
        app,
        host=host,
        port=port,
        ws_max_size=config.max_message_bytes,
        log_level="warning",
        lifespan="on",
        **uvicorn_options(config.handshake_timeout_s, config.max_connections),
    )


def serve_ray(config: ServerConfig, replicas: int, cpus: float, gpus: float, rest: int) -> None:
    try:
        from server.ray_serve import RayOptions, serve_on_ray
    except ImportError:
        raise ServerError(
            "--ray needs Ray Serve: pip install 'bandmate[scale]' (ray[serve])"
        ) from None
    serve_on_ray(config, RayOptions(replicas, cpus, gpus, rest))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
