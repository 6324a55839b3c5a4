"""CLI commands for live audio: `bandmate devices` and `bandmate jam`."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from server.cli.steer import STEER_HELP, parse_steer

if TYPE_CHECKING:
    from bci.console import Console
    from engine.live_engine import LiveEngine
    from server.jam_status import JamStatus

T = TypeVar("T")


def devices() -> None:
    """List the audio devices PortAudio sees (on Linux without a sound card: start jackd)."""
    from engine.live_engine import list_devices

    found = _portaudio_errors_as_engine_errors(list_devices)
    if not found:
        typer.echo("no audio devices found")
        return
    typer.echo(f"{'index':>5}  {'in':>3}  {'out':>3}  {'rate':>7}  host API / name")
    for d in found:
        marks = [k for k, on in (("input", d.default_input), ("output", d.default_output)) if on]
        default = f" (default {'/'.join(marks)})" if marks else ""
        typer.echo(
            f"{d.index:>5}  {d.inputs:>3}  {d.outputs:>3}  {d.default_rate:>7.0f}  "
            f"{d.hostapi} / {d.name}{default}"
        )


def jam(
    input_device: str | None = typer.Option(None, help="Index or part of the name."),
    output_device: str | None = typer.Option(None, help="Index or part of the name."),
    samplerate: int | None = typer.Option(None, help="Hz; the input device's default if unset."),
    blocksize: int = typer.Option(256, help="Frames per audio callback."),
    input_channel: int = typer.Option(0, help="The input channel to accompany (0-based)."),
    output_channels: int = typer.Option(0, help="First channel of the output pair (0-based)."),
    dry_gain: float = typer.Option(0.0, help="Your own input in the monitor mix (linear)."),
    wet_gain: float = typer.Option(1.0, help="The accompaniment in the monitor mix (linear)."),
    extra_blocks: int = typer.Option(2, help="Blocks of buffering for inference to fit in."),
    seconds: float = typer.Option(0.0, help="How long to play; 0 plays until Ctrl-C."),
    checkpoint: Path | None = typer.Option(None, help="Exported checkpoint directory."),
    backend: str = typer.Option("auto", help="auto, onnx or torch."),
    threads: int = typer.Option(1, help="Inference threads."),
    seed: int = typer.Option(0, help="Seed of the generator's noise."),
    steer: list[str] | None = typer.Option(None, "--steer", help=STEER_HELP),
) -> None:
    """Accompany live input from an audio device, in real time, with a status line: the input
    meter, the misses and the device's xruns."""
    from bci.console import Console
    from engine import portaudio
    from engine.backends import create_backend
    from engine.checkpoint import load_engine_checkpoint
    from engine.jack_fit import check_jack_rate, fit_buffer_to_period, jack_period, on_jack
    from engine.live_engine import (
        DeviceLostError,
        LiveConfig,
        LiveEngine,
        check_channels,
        find_device,
        list_devices,
    )
    from engine.session import Session, SessionConfig, check_rate
    from server.jam_status import JamStatus

    try:
        found = _portaudio_errors_as_engine_errors(list_devices)
        device_in = find_device(found, input_device, "input")
        device_out = find_device(found, output_device, "output")
        rate = samplerate if samplerate is not None else round(device_in.default_rate)
        check_rate(rate)  # before anything opens: the session supports a fixed set
        config = LiveConfig(
            input_device=device_in.index,
            output_device=device_out.index,
            samplerate=rate,
            blocksize=blocksize,
            input_channel=input_channel,
            output_channel=output_channels,
            dry_gain=dry_gain,
            wet_gain=wet_gain,
            extra_blocks=extra_blocks,
        )
        check_channels(config, device_in, device_out)
        if on_jack(device_in, device_out):
            check_jack_rate(rate, device_in if on_jack(device_in) else device_out)
            period = jack_period()
            if period is not None:
                config, note = fit_buffer_to_period(config, period)
                if note:
                    typer.echo(f"jam: {note}")
        model = create_backend(load_engine_checkpoint(checkpoint), backend, threads)
        session = Session(model, SessionConfig(device_rate=rate, seed=seed))
        session.steer(parse_steer(steer))
        pair = min(output_channels + 2, device_out.outputs)
        engine = LiveEngine(session, config, output_channels=pair)
        # The callback thread needs the GIL within a fraction of a block; Python's default
        # 5 ms switch interval is a whole block at 256 frames.
        sys.setswitchinterval(0.0005)
        # A service manager's stop (SIGTERM) ends a jam as Ctrl-C does, with its telemetry.
        # Ctrl-C alone is not enough for scripts: a job started with `&` in a shell without
        # job control inherits SIGINT ignored (bench e2e met exactly that).
        signal.signal(signal.SIGTERM, _interrupt)
        lost: DeviceLostError | None = None
        console, status = Console(), JamStatus(engine)
        with engine:
            outs = f"{output_channels}" + (f"-{pair - 1}" if pair - 1 > output_channels else "")
            typer.echo(
                f"jam: backend {model.name}; in {device_in.name!r} ch {input_channel}, "
                f"out {device_out.name!r} ch {outs}; "
                f"{rate} Hz, block {blocksize}; latency {engine.latency_ms:.1f} ms "
                f"= {engine.latency_samples} samples "
                f"(model {_ms(session.latency_samples, rate)}, "
                f"buffer {_ms(engine.extra_samples, rate)}, "
                f"device {_ms(engine.stream_latency_samples, rate)})"
            )
            try:
                engine.run(seconds, on_tick=lambda: show_status(console, status, engine, rate))
            except KeyboardInterrupt:  # Ctrl-C is how a jam ends
                pass
            except DeviceLostError as exc:
                lost = exc
        console.end_status()
        t = session.telemetry.summary()
        typer.echo(
            f"telemetry: {t.hops} hops, p50 {t.p50_ms:.2f} ms, p99 {t.p99_ms:.2f} ms, "
            f"{t.misses} misses, real-time factor {t.real_time_factor:.3f}, "
            f"{engine.xruns} device xruns, {engine.input_dropped} input samples dropped"
        )
        if lost is not None:
            # PortAudio would hang in its exit handlers (see LiveEngine.close): skip them.
            print(f"error: {lost}", file=sys.stderr, flush=True)
            os._exit(2)
    finally:
        portaudio.release()  # let go of JACK now, not at interpreter exit


def show_status(console: Console, status: JamStatus, engine: LiveEngine, rate: int) -> None:
    if engine.played >= rate:  # from the first second on: before, the meter has had nothing
        console.status(status.line(time.monotonic()))


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _ms(samples: int, rate: int) -> str:
    return f"{1e3 * samples / rate:.1f} ms"


def _portaudio_errors_as_engine_errors(query: Callable[[], T]) -> T:
    """PortAudio's errors become one EngineError line."""
    import sounddevice as sd

    from engine.errors import EngineError
    from engine.live_engine import portaudio_message

    try:
        return query()
    except sd.PortAudioError as exc:
        raise EngineError(f"audio device error: {portaudio_message(exc)}") from None


def register(app: typer.Typer) -> None:
    app.command("devices")(devices)
    app.command("jam")(jam)
