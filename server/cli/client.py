"""`bandmate client`: stream a file or the local audio interface to a Bandmate server."""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from clients.stream import StreamResult

client_app = typer.Typer(help="Talk to a running `bandmate serve`.", no_args_is_help=True)

URL_HELP = "The server's base URL."


@client_app.command("stream")
def stream(
    input_path: Path = typer.Argument(..., metavar="IN", help="Audio file: any rate, channels."),
    output: Path = typer.Option(..., "-o", "--output", help="Accompaniment file to write."),
    url: str = typer.Option("ws://127.0.0.1:8000", help=URL_HELP),
    token: str | None = typer.Option(None, envvar="BANDMATE_TOKEN", help="The server's token."),
    checkpoint: str = typer.Option("default", help="A checkpoint name the server offers."),
    seed: int = typer.Option(0, help="Noise seed: the same seed gives the same accompaniment."),
    blocksize: int = typer.Option(1024, help="Frames per message."),
    fast: bool = typer.Option(False, "--fast", help="Do not pace at real time."),
    format: str = typer.Option("float32", help="PCM on the wire: float32 or int16."),
) -> None:
    """Stream a recording at real-time pace and write the accompaniment that came back
    (latency-compensated: aligned with the input, as `bandmate accompany` writes it), with a
    status line as it goes."""
    from bci.console import Console
    from clients.stream import StreamOptions, stream_audio
    from engine.filemode import read_input, write_audio

    audio, rate = read_input(input_path)
    options = StreamOptions(url, token, checkpoint, seed, blocksize, not fast, format)
    console = Console()

    def progress(result: StreamResult) -> None:
        if result.sent >= rate:  # from the first second on: before, there is nothing to say
            console.status(stream_status(result, rate, fast))

    result = asyncio.run(stream_audio(audio, rate, options, progress))
    console.end_status()
    write_audio(output, result.accompaniment, rate)
    session, summary = result.ready["session"], stream_summary(result, rate, fast)
    typer.echo(
        f"wrote {output}: {len(audio) / rate:.1f} s via {url} (session {session}); {summary}"
    )
    for error in result.errors:
        typer.echo(f"server error: {error['code']}: {error['message']}", err=True)


def stream_status(result: StreamResult, rate: int, fast: bool) -> str:
    sent = f"sent {result.sent / rate:.1f} of {result.total / rate:.1f} s"
    return f"{sent} | {stream_summary(result, rate, fast)}"


def stream_summary(result: StreamResult, rate: int, fast: bool) -> str:
    """The latency the server reports, and the round trip measured on top of it; misses only
    where they mean something: --fast sends ahead of real time, so its blocks queue at the
    server and count as late there, while its output is the real-time stream's."""
    trips = [1e3 * seconds for seconds in result.round_trips_s]
    latency = f"latency {result.server_latency_ms:.1f} ms (server)"
    if fast:
        pace = result.sent / rate / max(result.elapsed_s, 1e-3)
        latency += f"; {pace:.1f}x real time"
    elif trips:
        latency += f" + round trip p50 {statistics.median(trips):.1f} / max {max(trips):.1f} ms"
    last = result.telemetry[-1] if result.telemetry else None
    if last is None:
        return f"{latency}; no telemetry yet"
    misses = "misses not counted with --fast" if fast else f"{last['misses']} misses"
    return f"{latency}; p99 compute {last['p99_ms']:.2f} ms, {misses}"


@client_app.command("live")
def live(
    url: str = typer.Option("ws://127.0.0.1:8000", help=URL_HELP),
    token: str | None = typer.Option(None, envvar="BANDMATE_TOKEN", help="The server's token."),
    checkpoint: str = typer.Option("default", help="A checkpoint name the server offers."),
    seed: int = typer.Option(0, help="Noise seed."),
    input_device: str | None = typer.Option(None, help="Index or part of the name."),
    output_device: str | None = typer.Option(None, help="Index or part of the name."),
    samplerate: int = typer.Option(48_000, help="Hz."),
    blocksize: int = typer.Option(256, help="Frames per audio callback and per message."),
    seconds: float = typer.Option(0.0, help="How long to play; 0 plays until Ctrl-C."),
) -> None:
    """Stream the local audio interface to the server and play the accompaniment."""
    from clients.live_client import LiveClientOptions, run_live_client
    from clients.stream import StreamOptions

    options = StreamOptions(url, token, checkpoint, seed, blocksize)
    live_options = LiveClientOptions(input_device, output_device, samplerate, seconds)
    summary = asyncio.run(run_live_client(options, live_options))
    typer.echo(summary)


def register(app: typer.Typer) -> None:
    app.add_typer(client_app, name="client")
