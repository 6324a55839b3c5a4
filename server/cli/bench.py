"""`bandmate bench ...`: the benchmarks (latency, codec, bci, capacity, soak, e2e, quality,
steering), each printing JSON plus a readable table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from server.cli.files import CHECKPOINT_HELP

bench_app = typer.Typer(
    help="Benchmarks: they print JSON plus a readable table.", no_args_is_help=True
)
# Every command's --json; typer only reads an option's declaration, so one serves them all.
JSON_OPTION: Any = typer.Option(None, "--json", help="Also write the JSON report here.")


@bench_app.command("latency")
def bench_latency(
    json_path: Path | None = JSON_OPTION,
    markdown: Path | None = typer.Option(None, help="Also write the table as Markdown here."),
    plot: Path | None = typer.Option(None, help="Also plot the per-hop compute here (PNG)."),
    checkpoint: Path | None = typer.Option(None, help=CHECKPOINT_HELP),
    seconds: float = typer.Option(
        60.0, help="Audio per backend (600 = the 10-minute target's span, ~10x longer)."
    ),
    threads: int = typer.Option(1, help="Threads per backend."),
    backend: list[str] = typer.Option([], help="Only these backends (e.g. onnx-cpu); repeatable."),
    batch: int = typer.Option(
        1, min=1, help="Step this many sessions as one batch (a GPU's figure; 1 = one player)."
    ),
) -> None:
    """Per-frame compute of the step and of encode, generate, decode, for each backend here
    (onnx-cuda and torch-cuda, whose step is a captured CUDA graph, where there is a GPU)."""
    from benchmarks.latency import LatencyBenchConfig, run_latency_benchmark
    from benchmarks.latency_report import markdown_table, plot_latency, print_table

    config = LatencyBenchConfig(checkpoint, seconds, threads, tuple(backend), batch=batch)
    run = run_latency_benchmark(config)
    publish(run.report, json_path, print_table)
    table = markdown_table(run.report)
    typer.echo(table)
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(table)
    if plot is not None:
        plot_latency(run.report, run.samples_ms, plot)
        typer.echo(f"wrote {plot}")


@bench_app.command("codec")
def bench_codec(
    json_path: Path | None = JSON_OPTION,
    markdown: Path | None = typer.Option(None, help="Also write the tables as Markdown here."),
    plot: Path | None = typer.Option(None, help="PNG: spectrograms of one piece, round-tripped."),
    checkpoint: Path | None = typer.Option(None, help=CHECKPOINT_HELP),
    data: Path | None = typer.Option(None, help="A data build (default: data/default if built)."),
    limit: int = typer.Option(8, help="Held-out pieces (each gives a live and a backing crop)."),
    seconds: float = typer.Option(10.0, help="Seconds of each crop, from the piece's start."),
    previous: bool = typer.Option(True, help="Also run the previous (waveform) codec."),
    probes: bool = typer.Option(True, help="Also run the synthetic chord/onset/chirp probes."),
) -> None:
    """What a round trip through the codec keeps: held-out music and synthetic probes, beside
    the time-averaged latent and the previous codec."""
    from benchmarks.codec_bench import PREVIOUS_CODEC, CodecBenchConfig, run_codec_benchmark
    from benchmarks.codec_report import print_table, write_markdown
    from benchmarks.quality import require_quality_packages

    require_quality_packages()
    config = CodecBenchConfig(
        checkpoint=checkpoint, previous=PREVIOUS_CODEC if previous else None, data=data,
        limit=limit, seconds=seconds, probes=probes, plot=plot,
    )  # fmt: skip
    report = run_codec_benchmark(config)
    publish(report, json_path, print_table)
    write_markdown(report, markdown)


@bench_app.command("bci")
def bench_bci(
    json_path: Path | None = JSON_OPTION,
    seconds: float = typer.Option(60.0, help="Seconds of simulated EEG after the first window."),
) -> None:
    """The BCMI loop's processing latency and MIDI timing, with real LSL and JACK MIDI."""
    from benchmarks.bci import BciBenchConfig, print_table, run_bci_benchmark

    report = run_bci_benchmark(BciBenchConfig(seconds=seconds))
    publish(report, json_path, print_table)


@bench_app.command("chords")
def bench_chords(
    json_path: Path | None = JSON_OPTION,
    markdown: Path | None = typer.Option(None, help="Also write the tables as Markdown here."),
    data: Path = typer.Option(Path("data/chords"), help="A `bandmate data chords` folder."),
    checkpoint: Path | None = typer.Option(
        None, help="The chord model to play (default: models/checkpoints/chords)."
    ),
    seeds: int = typer.Option(3, help="Seeds per trained variant."),
    steps: int = typer.Option(1000, help="Steps of the base and the control-token model."),
    adapter_steps: int = typer.Option(80, help="Steps of each genre's LoRA and IA3 adapter."),
    bars: int = typer.Option(200, help="Bars per mode for the musical checks."),
    recipe: list[Path] = typer.Option(
        [], help="Checkpoints trained as the shipped one (default: it alone); repeatable."
    ),
) -> None:
    """Held-out next-chord accuracy per genre (n-gram, base, control token, LoRA, IA3 over
    seeds), then the musical checks of the chord model against the rules, and its time."""
    from benchmarks.chords import ChordBenchConfig, markdown_tables, run_chord_benchmark
    from benchmarks.report import write_text

    config = ChordBenchConfig(data=data, seeds=seeds, steps=steps, adapter_steps=adapter_steps,
                              bars=bars, checkpoint=checkpoint, recipe=tuple(recipe))  # fmt: skip
    report = run_chord_benchmark(config, log=typer.echo)
    publish(report, json_path, lambda r: typer.echo(markdown_tables(r)))
    write_text(markdown, markdown_tables(report))


@bench_app.command("capacity")
def bench_capacity(
    json_path: Path | None = JSON_OPTION,
    sessions: int | None = typer.Option(
        None, help="Stream exactly N clients through the server; without it, search for N."
    ),
    seconds: float = typer.Option(60.0, help="Seconds each full run streams, at real time."),
    screen_seconds: float = typer.Option(5.0, help="Search: seconds of each screening run."),
    max_sessions: int = typer.Option(64, help="Search: the largest N tried."),
    threads: int = typer.Option(1, help="Inference threads, in the engine and the server."),
    backend: list[str] = typer.Option(
        [], help="Search: engine backends (default onnx-cpu, plus CUDA ones); repeatable."
    ),
    no_server: bool = typer.Option(False, "--no-server", help="Search: the engine only."),
    models_dir: Path | None = typer.Option(None, help="Checkpoints folder (runs 'default')."),
    window: list[float] = typer.Option(
        [],
        help="The server's --batch-window-ms (ms); repeatable, one search each. "
        "Default: the server's default.",
    ),
    repeats: int = typer.Option(
        1, help="Search: full runs per confirmation; N holds when the median run is clean."
    ),
    budget_seconds: float = typer.Option(
        270.0, help="Search: stop confirming when this much time has gone."
    ),
    ray: bool = typer.Option(
        False, "--ray", help="The proxy's cost: round trips direct, then through Ray Serve."
    ),
    replicas: int = typer.Option(1, min=1, help="With --ray: the Ray server's replicas."),
) -> None:
    """The most sessions at real-time pace with zero deadline misses: searched in the engine,
    then confirmed through a real `bandmate serve` (rule: benchmarks/capacity_search.py),
    once per --window. With --sessions N: N WebSocket clients against the server (at the
    first --window), nothing else. With --ray: --sessions clients (2) direct, then through
    Ray Serve's proxy, and the round trip each way."""

    if ray:
        from benchmarks.capacity import CapacityBenchConfig, print_ray_overhead, run_ray_overhead

        chosen = window[0] if window else None
        clients = CapacityBenchConfig(sessions or 2, seconds, models_dir=models_dir,
                                      threads=threads, batch_window_ms=chosen)  # fmt: skip
        report = run_ray_overhead(clients, replicas)
        publish(report, json_path, print_ray_overhead)
        return
    if sessions is not None:
        from benchmarks.capacity import CapacityBenchConfig, print_table, run_capacity_benchmark

        chosen = window[0] if window else None
        fixed = CapacityBenchConfig(sessions, seconds, models_dir=models_dir, threads=threads,
                                    batch_window_ms=chosen)  # fmt: skip
        report = run_capacity_benchmark(fixed)
        publish(report, json_path, print_table)
        return
    from benchmarks.capacity_report import print_search_table
    from benchmarks.capacity_search import CapacitySearchConfig, run_capacity_search

    config = CapacitySearchConfig(
        seconds=seconds, screen_seconds=screen_seconds, max_sessions=max_sessions,
        threads=threads, backends=tuple(backend), models_dir=models_dir, server=not no_server,
        windows=tuple(window), repeats=repeats, budget_seconds=budget_seconds,
    )  # fmt: skip
    report = run_capacity_search(config)
    publish(report, json_path, print_search_table)


@bench_app.command("soak")
def bench_soak(
    json_path: Path | None = JSON_OPTION,
    clients: int = typer.Option(2, help="Concurrent WebSocket clients (below capacity)."),
    seconds: float = typer.Option(240.0, help="Seconds each client streams (600 = full soak)."),
    warmup: float = typer.Option(30.0, help="Seconds of RSS settling left out of the growth."),
    max_growth_mib: float = typer.Option(16.0, help="Bound on RSS growth after the warm-up."),
    models_dir: Path | None = typer.Option(None, help="Checkpoints folder (runs 'default')."),
) -> None:
    """N clients at real time for minutes against a real `bandmate serve`: RSS every second,
    misses, drops and errors; exits 1 when a bound is broken."""
    from benchmarks.soak import SoakBenchConfig, print_table, run_soak_benchmark

    config = SoakBenchConfig(clients, seconds, warmup, max_growth_mib, models_dir=models_dir)
    report = run_soak_benchmark(config)
    publish(report, json_path, print_table)
    if not report["passed"]:
        raise typer.Exit(1)


@bench_app.command("e2e")
def bench_e2e(
    json_path: Path | None = JSON_OPTION,
    seconds: float = typer.Option(30.0, help="Seconds of chirps through the accompaniment."),
    blocksize: int = typer.Option(256, help="jam's frames per audio callback."),
    jack_period: int = typer.Option(256, help="The JACK server's period (jackd -p)."),
    extra_blocks: int = typer.Option(2, help="jam's --extra-blocks."),
    dry_seconds: float = typer.Option(3.0, help="Seconds of chirps through the dry path."),
    checkpoint: Path | None = typer.Option(None, help=CHECKPOINT_HELP),
    attempts: int = typer.Option(
        3, help="Recordings tried when xruns hide the signal's start from the alignment."
    ),
) -> None:
    """Round-trip latency of `bandmate jam` through a real JACK server, against its own figure."""
    from benchmarks.e2e import E2EBenchConfig, print_table, run_e2e_benchmark

    config = E2EBenchConfig(
        seconds, blocksize, jack_period, extra_blocks, dry_seconds, checkpoint, attempts=attempts
    )
    report = run_e2e_benchmark(config)
    publish(report, json_path, print_table)


@bench_app.command("quality")
def bench_quality(
    json_path: Path | None = JSON_OPTION,
    data: Path | None = typer.Option(
        None,
        help="Data build with a test split (default: data/default if built, else "
        "data/heldout); a folder without one gets the held-out pieces rendered into it.",
    ),
    limit: int = typer.Option(8, help="Held-out pieces to score."),
    seconds: float = typer.Option(20.0, help="Seconds of each piece, from its start."),
    checkpoint: Path | None = typer.Option(None, help=CHECKPOINT_HELP),
    seed: int = typer.Option(0, help="The model's noise seed and the random pairing's."),
    markdown: Path | None = typer.Option(None, help="Also write the table as Markdown here."),
    plot: Path | None = typer.Option(
        None, help="A folder: one PNG per piece (spectrograms and chromagrams)."
    ),
) -> None:
    """Beat, harmony, onset/dynamics and Fréchet scores of the model against baselines."""
    from benchmarks.quality import (
        QualityBenchConfig,
        print_table,
        run_quality_benchmark,
        write_markdown,
    )

    config = QualityBenchConfig(data, checkpoint, limit, seconds, seed, plot=plot)
    report = run_quality_benchmark(config)
    publish(report, json_path, print_table)
    write_markdown(report, markdown)


@bench_app.command("steering")
def bench_steering(
    json_path: Path | None = JSON_OPTION,
    data: Path | None = typer.Option(None, help="As `bench quality`'s --data."),
    limit: int = typer.Option(8, help="Held-out pieces."),
    seconds: float = typer.Option(20.0, help="Seconds of each piece, from its start."),
    checkpoint: Path | None = typer.Option(None, help=CHECKPOINT_HELP),
    seed: int = typer.Option(0, help="The model's noise seed."),
    harmony: bool = typer.Option(True, help="Also transcribe for the harmony check (slow)."),
    markdown: Path | None = typer.Option(None, help="Also write the tables as Markdown here."),
) -> None:
    """Steering at alpha -2..2 per attribute: monotone, dual (Gram-Schmidt vs naive), harmony."""
    from benchmarks.steering_bench import (
        SteeringBenchConfig,
        print_table,
        run_steering_benchmark,
        write_markdown,
    )

    if harmony:
        from benchmarks.quality import require_quality_packages

        require_quality_packages()
    config = SteeringBenchConfig(data, checkpoint, limit, seconds, seed, harmony=harmony)
    report = run_steering_benchmark(config)
    publish(report, json_path, print_table)
    write_markdown(report, markdown)


def publish(
    report: dict[str, Any], json_path: Path | None, print_table: Callable[[dict[str, Any]], None]
) -> None:
    """How the bench commands end: the JSON report (to --json too, when given), the table."""
    from benchmarks.report import write_report

    write_report(report, json_path)
    print_table(report)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
