"""`bandmate bci run|simulate`: the EEG -> music loop and its EEG simulator."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import typer

bci_app = typer.Typer(help="The brain-computer music interface.", no_args_is_help=True)


@bci_app.command("run")
def run(
    stream: str | None = typer.Option(None, help="LSL stream name (default: any of --type)."),
    stream_type: str = typer.Option("EEG", "--type", help="LSL stream type."),
    source_id: str | None = typer.Option(None, help="LSL source id."),
    montage: Path | None = typer.Option(None, help="Montage YAML (default: Muse AF7/AF8)."),
    midi_port: str | None = typer.Option(None, help="Create this virtual MIDI output port."),
    midi_api: str = typer.Option("jack", help="jack, alsa, coremidi or auto."),
    midi_clock: bool = typer.Option(False, help="Also send MIDI clock."),
    baseline: float = typer.Option(10.0, help="Seconds of calibration before the music."),
    duration: float = typer.Option(0.0, help="Seconds to run; 0 runs until Ctrl-C."),
    seed: int = typer.Option(0, help="Seed of the generative music."),
    log: Path | None = typer.Option(None, "--log", help="JSON-lines log file."),
    no_outlets: bool = typer.Option(False, help="Do not publish valence/music/notes over LSL."),
) -> None:
    """Turn prefrontal EEG (frontal alpha asymmetry) into music, live."""
    from bci.loop import BciRunConfig
    from bci.lsl_input import StreamQuery
    from bci.montage import MUSE, load_montage
    from bci.session_run import BciOutputs, BciSession

    config = BciRunConfig(
        query=StreamQuery(name=stream, type=stream_type, source_id=source_id),
        montage=load_montage(montage) if montage else MUSE,
        baseline_s=baseline,
        duration_s=duration,
        seed=seed,
    )
    outputs = BciOutputs(midi_port, midi_api, midi_clock, log, not no_outlets)
    session = BciSession(config, outputs)
    if midi_port is None:
        typer.echo("no --midi-port: the music runs silently (logged only)")
    typer.echo(f"reading {session.loop.eeg.info.name()!r}; baseline {baseline:g} s, then music")
    signal.signal(signal.SIGINT, lambda *_: session.stop())
    signal.signal(signal.SIGTERM, lambda *_: session.stop())
    summary = session.run()
    typer.echo(
        f"{summary.windows} windows ({summary.gated} gated), {summary.midi_messages} MIDI "
        f"messages, {summary.dropped} samples dropped, {summary.reconnects} reconnects"
    )


@bci_app.command("simulate")
def simulate(
    schedule: Path | None = typer.Option(None, help="Schedule YAML (asymmetry steps, events)."),
    flip_every: float = typer.Option(20.0, help="Without --schedule: flip asymmetry this often."),
    duration: float = typer.Option(0.0, help="Seconds to run; 0 runs until Ctrl-C."),
    name: str = typer.Option("BandmateSim", help="LSL stream name."),
    seed: int = typer.Option(0, help="Noise seed."),
) -> None:
    """An LSL EEG outlet (Muse-like TP9/AF7/AF8/TP10 at 256 Hz) with scripted asymmetry."""
    from bci.simulate import Schedule, Simulator, SimulatorConfig, load_schedule

    plan = load_schedule(schedule) if schedule else Schedule.flipping(flip_every, 24 * 3600.0)
    simulator = Simulator(SimulatorConfig(name=name, seed=seed), plan)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    simulator.start()
    typer.echo(f"simulating EEG on LSL stream {name!r}")
    started = time.monotonic()
    while not stopping and (not duration or time.monotonic() - started < duration):
        time.sleep(0.05)
    simulator.stop()
    typer.echo(f"sent {simulator.sent} samples ({simulator.dropped} dropped by the schedule)")


def register(app: typer.Typer) -> None:
    app.add_typer(bci_app, name="bci")
