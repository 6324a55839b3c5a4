"""`bandmate accompany|codec|demo`: the engine on recordings (file mode), through the same
Session code path as a live jam."""

from __future__ import annotations

from pathlib import Path

import typer

from server.cli.steer import STEER_HELP, parse_steer

CHECKPOINT_HELP = "Exported checkpoint directory (default: the shipped one)."
BACKEND_HELP = "onnx, torch, or auto (onnxruntime; its CUDA provider when there is a GPU)."


def accompany_command(
    input_path: Path = typer.Argument(
        ..., metavar="IN", help="Audio file: any rate, any channels."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Accompaniment file to write."),
    mix: Path | None = typer.Option(None, "--mix", help="Also write input + accompaniment here."),
    seed: int = typer.Option(0, help="Noise seed: the same seed gives the same accompaniment."),
    checkpoint: Path | None = typer.Option(None, help=CHECKPOINT_HELP),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
    blocksize: int = typer.Option(256, help="Frames per block, as a sound card would deliver."),
    channel: int | None = typer.Option(None, help="Input channel (0-based); default: downmix."),
    steer: list[str] | None = typer.Option(None, "--steer", help=STEER_HELP),
) -> None:
    """Accompany a recording through the same Session code path as a live jam."""
    from engine.backends import create_backend
    from engine.checkpoint import load_engine_checkpoint
    from engine.filemode import accompany, read_input, write_audio

    audio, rate = read_input(input_path, channel)
    model = create_backend(load_engine_checkpoint(checkpoint), backend)
    typer.echo(f"backend: {model.name}; {len(audio) / rate:.1f} s at {rate} Hz")
    result = accompany(audio, rate, model, seed=seed, blocksize=blocksize,
                       steer=parse_steer(steer))  # fmt: skip
    write_audio(output, result.accompaniment, rate)
    if mix is not None:
        write_audio(mix, audio + result.accompaniment, rate)
    typer.echo(
        f"wrote {output} ({result.hops} hops; reported latency "
        f"{1e3 * result.latency_samples / rate:.1f} ms, compensated in the file)"
    )


def codec_command(
    input_path: Path = typer.Argument(
        ..., metavar="IN", help="Audio file: any rate, any channels."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Round-tripped audio to write."),
    checkpoint: Path | None = typer.Option(None, help=CHECKPOINT_HELP),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
    channel: int | None = typer.Option(None, help="Input channel (0-based); default: downmix."),
) -> None:
    """Round-trip a recording through the checkpoint's codec (encode, then decode), streaming
    and latency-compensated: hear what the codec keeps before the generator plays."""
    from engine.backends import create_backend
    from engine.checkpoint import load_engine_checkpoint
    from engine.codec_roundtrip import roundtrip
    from engine.filemode import read_input, write_audio

    audio, rate = read_input(input_path, channel)
    model = create_backend(load_engine_checkpoint(checkpoint, need_generator=False), backend)
    result = roundtrip(model, audio, rate)
    write_audio(output, result, rate)
    latency = model.info.codec_latency / model.info.sample_rate
    typer.echo(
        f"wrote {output} ({len(audio) / rate:.1f} s on {model.name}; the codec's latency, "
        f"{1e3 * latency:.1f} ms, is compensated in the file)"
    )


def demo_command(
    out: Path = typer.Option(Path("out/demo"), help="Folder for accompaniment.wav and mix.wav."),
    checkpoint: Path | None = typer.Option(None, help=CHECKPOINT_HELP),
) -> None:
    """The main job on the shipped default: accompany the shipped example recording."""
    from engine.demo import EXAMPLE_RECORDING, run_demo

    result = run_demo(out, checkpoint)
    typer.echo(
        f"{EXAMPLE_RECORDING.name}: {result.seconds:.1f} s accompanied by the "
        f"{'shipped default' if checkpoint is None else checkpoint} on {result.backend} "
        f"(accompaniment RMS {result.accompaniment_rms:.4f}, latency {result.latency_ms:.1f} ms)"
    )
    typer.echo(f"wrote {result.accompaniment} and {result.mix}")


def register(app: typer.Typer) -> None:
    app.command("accompany")(accompany_command)
    app.command("codec")(codec_command)
    app.command("demo")(demo_command)
