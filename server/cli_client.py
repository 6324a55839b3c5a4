"""`bandmate client`: stream a file or the local audio interface to a Bandmate server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

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
    (latency-compensated: aligned with the input, as `bandmate accompany` writes it)."""
    from clients.stream import StreamOptions, stream_audio
    from engine.filemode import read_input, write_audio

    audio, rate = read_input(input_path)
    options = StreamOptions(url, token, checkpoint, seed, blocksize, not fast, format)
    result = asyncio.run(stream_audio(audio, rate, options))
    write_audio(output, result.accompaniment, rate)
    last = result.telemetry[-1] if result.telemetry else {}
    typer.echo(
        f"wrote {output}: {len(audio) / rate:.1f} s via {url} (session {result.ready['session']}, "
        f"latency {1e3 * result.ready['latency_samples'] / rate:.1f} ms, "
        f"misses {last.get('misses', 0)}, p99 compute {last.get('p99_ms', 0):.2f} ms)"
    )
    for error in result.errors:
        typer.echo(f"server error: {error['code']}: {error['message']}", err=True)


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
    from clients.live import LiveClientOptions, run_live_client
    from clients.stream import StreamOptions

    options = StreamOptions(url, token, checkpoint, seed, blocksize)
    live_options = LiveClientOptions(input_device, output_device, samplerate, seconds)
    summary = asyncio.run(run_live_client(options, live_options))
    typer.echo(summary)


def register(app: typer.Typer) -> None:
    app.add_typer(client_app, name="client")
