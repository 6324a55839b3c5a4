"""CLI commands for the engine: file mode, the demo, and the latency benchmark."""

from __future__ import annotations

from pathlib import Path

import typer

bench_app = typer.Typer(
    help="Benchmarks: they print JSON plus a readable table.", no_args_is_help=True
)

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
) -> None:
    """Accompany a recording through the same Session code path as a live jam."""
    from engine.backends import create_backend
    from engine.checkpoint import load_engine_checkpoint
    from engine.filemode import accompany, read_input, write_audio

    audio, rate = read_input(input_path, channel)
    model = create_backend(load_engine_checkpoint(checkpoint), backend)
    typer.echo(f"backend: {model.name}; {len(audio) / rate:.1f} s at {rate} Hz")
    result = accompany(audio, rate, model, seed=seed, blocksize=blocksize)
    write_audio(output, result.accompaniment, rate)
    if mix is not None:
        write_audio(mix, audio + result.accompaniment, rate)
    typer.echo(
        f"wrote {output} ({result.hops} hops; reported latency "
        f"{1e3 * result.latency_samples / rate:.1f} ms, compensated in the file)"
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


@bench_app.command("latency")
def bench_latency(
    json_path: Path | None = typer.Option(None, "--json", help="Also write the JSON report here."),
    checkpoint: Path | None = typer.Option(None, help=CHECKPOINT_HELP),
    seconds: float = typer.Option(600.0, help="Audio per backend (600 s = the 10-minute target)."),
    threads: int = typer.Option(1, help="Threads per backend."),
    backend: list[str] = typer.Option([], help="Only these backends (e.g. onnx-cpu); repeatable."),
) -> None:
    """Per-frame compute (encode + generate + decode) for each backend available here."""
    from benchmarks.latency import LatencyBenchConfig, print_table, run_latency_benchmark
    from benchmarks.report import write_report

    config = LatencyBenchConfig(checkpoint, seconds, threads, tuple(backend))
    report = run_latency_benchmark(config)
    write_report(report, json_path)
    print_table(report)


@bench_app.command("codec")
def bench_codec(
    json_path: Path | None = typer.Option(None, "--json", help="Also write the JSON report here."),
    checkpoint: Path | None = typer.Option(None, help="Checkpoint with codec weights."),
) -> None:
    """Does the codec use its latents? Real vs time-averaged vs another crop's (needs torch)."""
    from benchmarks.codec_probe import CodecProbeConfig, print_table, run_codec_probe
    from benchmarks.report import write_report

    report = run_codec_probe(CodecProbeConfig(checkpoint))
    write_report(report, json_path)
    print_table(report)


@bench_app.command("bci")
def bench_bci(
    json_path: Path | None = typer.Option(None, "--json", help="Also write the JSON report here."),
    seconds: float = typer.Option(60.0, help="Seconds of simulated EEG after the first window."),
) -> None:
    """The BCMI loop's processing latency and MIDI timing, with real LSL and JACK MIDI."""
    from benchmarks.bci import BciBenchConfig, print_table, run_bci_benchmark
    from benchmarks.report import write_report

    report = run_bci_benchmark(BciBenchConfig(seconds=seconds))
    write_report(report, json_path)
    print_table(report)


@bench_app.command("capacity")
def bench_capacity(
    json_path: Path | None = typer.Option(None, "--json", help="Also write the JSON report here."),
    sessions: int = typer.Option(8, help="Concurrent sessions."),
    seconds: float = typer.Option(20.0, help="Seconds each session streams, at real time."),
    models_dir: Path | None = typer.Option(None, help="Checkpoints folder for the server."),
) -> None:
    """N sessions at real-time pace against a real `bandmate serve` on loopback."""
    from benchmarks.capacity import CapacityBenchConfig, print_table, run_capacity_benchmark
    from benchmarks.report import write_report

    report = run_capacity_benchmark(CapacityBenchConfig(sessions, seconds, models_dir=models_dir))
    write_report(report, json_path)
    print_table(report)


def register(app: typer.Typer) -> None:
    app.command("accompany")(accompany_command)
    app.command("demo")(demo_command)
    app.add_typer(bench_app, name="bench")
