"""`bandmate serve`: the performance server on uvicorn."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from server.config import ServerConfig


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind; beyond loopback needs --token."),
    port: int = typer.Option(8000, help="TCP port."),
    models_dir: Path = typer.Option(
        ServerConfig().models_dir, help="Folder of exported checkpoints; clients name them."
    ),
    token: str | None = typer.Option(
        None, envvar="BANDMATE_TOKEN", help="Clients must send it (HTTP bearer, WS ?token=)."
    ),
    backend: str = typer.Option("auto", help="auto, onnx or torch."),
    threads: int = typer.Option(1, help="Inference threads per checkpoint."),
    max_sessions: int = typer.Option(16, help="Sessions open at once."),
    max_message_bytes: int = typer.Option(1 << 20, help="Larger WebSocket messages close 1009."),
    idle_timeout: float = typer.Option(30.0, help="Seconds of client silence before 4408."),
    midi_in: str | None = typer.Option(None, help="Create this JACK MIDI input for CC control."),
    midi_map: Path | None = typer.Option(None, help="CC mapping YAML (default: built in)."),
    osc_port: int | None = typer.Option(None, help="Accept OSC control on this UDP port."),
) -> None:
    """Serve sessions over HTTP and WebSocket (protocol: docs/protocol.md)."""
    import uvicorn

    from server.app import create_app
    from server.config import check_binding

    config = ServerConfig(
        host=host, port=port, models_dir=models_dir, token=token, backend=backend,
        threads=threads, max_sessions=max_sessions, max_message_bytes=max_message_bytes,
        idle_timeout_s=idle_timeout, midi_in=midi_in, midi_map=midi_map, osc_port=osc_port,
    )  # fmt: skip
    check_binding(config)
    app = create_app(config)
    # The stepper thread needs the GIL back within a fraction of a hop after each model call;
    # Python's default 5 ms switch interval lets the event loop hold it that long per turn.
    sys.setswitchinterval(0.0005)
    offered = ", ".join(app.state.catalog.entries)
    typer.echo(f"bandmate serving http://{host}:{port}/ (checkpoints: {offered})")
    uvicorn.run(
        app,
        host=host,
        port=port,
        ws_max_size=config.max_message_bytes,
        log_level="warning",
        lifespan="on",
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
