"""`bandmate bci run|simulate|replay`: the EEG -> music loop, its EEG simulator and a player
for recorded EEG."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from bci.live.harmony import HarmonyConfig


def stop_on_signals() -> threading.Event:
    """An event set by Ctrl-C or SIGTERM, so a command can stop cleanly."""
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    return stopping


bci_app = typer.Typer(help="The brain-computer music interface.", no_args_is_help=True)
HARMONY_HELP = "Chords from the hand-written rules, or from the chord model (--genre)."
GENRE_HELP = "With --harmony model: the genre the chord model plays (bach, palestrina, rock...)."


def harmony_config(harmony: str, genre: str) -> HarmonyConfig:
    """The composer's harmony, checked now: a bad genre or model is one line before any EEG."""
    from bci.live.harmony import HarmonyConfig, make_harmony

    config = HarmonyConfig(kind=harmony, genre=genre)  # type: ignore[arg-type]
    make_harmony(config)
    return config


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
    no_outlets: bool = typer.Option(
        False, "--no-outlets", help="Do not publish valence/music/notes over LSL."
    ),
    synth: bool = typer.Option(True, help="Without --midi-port, play through FluidSynth."),
    synth_driver: str = typer.Option("jack", help="FluidSynth's audio driver (jack, alsa, ...)."),
    server_osc: str | None = typer.Option(
        None, help="HOST:PORT of `bandmate serve --osc-port`: valence steers its band."
    ),
    steer_map: Path | None = typer.Option(
        None,
        help="YAML 'steer: {attribute: gain}': alpha = gain * valence "
        "(default: brightness 1.5, register 1.0).",
    ),
    harmony: str = typer.Option("rules", help=HARMONY_HELP),
    genre: str = typer.Option("bach", help=GENRE_HELP),
) -> None:
    """Turn prefrontal EEG (frontal alpha asymmetry) into music, live, with a status line:
    the calibration countdown, then the valence; each channel's quality; gated windows and
    dropped samples."""
    from bci.console import Console
    from bci.live.bci_session import BciOutputs, BciSession
    from bci.live.live_status import loop_status
    from bci.live.loop import BciRunConfig, WindowResult
    from bci.live.lsl_input import StreamQuery
    from bci.montage import MUSE, load_montage

    config = BciRunConfig(
        query=StreamQuery(name=stream, type=stream_type, source_id=source_id),
        montage=load_montage(montage) if montage else MUSE,
        baseline_s=baseline,
        duration_s=duration,
        seed=seed,
        harmony=harmony_config(harmony, genre),
    )
    from bci.live.valence_steering import load_valence_steering

    outputs = BciOutputs(midi_port, midi_api, midi_clock, log, not no_outlets, server_osc,
                         synth_driver if synth and not midi_port else None,
                         load_valence_steering(steer_map))  # fmt: skip
    console = Console()

    def status(result: WindowResult) -> None:
        console.status(loop_status(session.loop, result.lsl_time))

    session = BciSession(config, outputs, on_window=status)
    if midi_port is None:
        silent = "no --midi-port and --no-synth: the music runs silently (logged only)"
        typer.echo(
            f"no --midi-port: playing through FluidSynth ({synth_driver})" if synth else silent
        )
    typer.echo(f"reading {session.loop.eeg.info.name()!r}; baseline {baseline:g} s, then music")
    signal.signal(signal.SIGINT, lambda *_: session.stop())
    signal.signal(signal.SIGTERM, lambda *_: session.stop())
    summary = session.run()
    console.end_status()
    typer.echo(
        f"{summary.windows} windows ({summary.gated} gated, {summary.non_finite} of them for "
        f"NaN/Inf), {summary.midi_messages} MIDI messages, {summary.dropped} samples dropped, "
        f"{summary.jumps} clock jumps taken out, {summary.reconnects} reconnects"
    )


@bci_app.command("simulate")
def simulate(
    schedule: Path | None = typer.Option(None, help="Schedule YAML (asymmetry steps, events)."),
    flip_every: float = typer.Option(20.0, help="Without --schedule: flip asymmetry this often."),
    protocol: Path | None = typer.Option(
        None, help="Follow `session run` of this protocol: each block's asymmetry as it starts."
    ),
    participant: str | None = typer.Option(
        None, help="With --protocol: follow this participant's sessions only (default: any)."
    ),
    effect: float = typer.Option(0.8, help="With --protocol: happy - sad asymmetry (-1..1)."),
    duration: float = typer.Option(0.0, help="Seconds to run; 0 runs until Ctrl-C."),
    name: str = typer.Option("BandmateSim", help="LSL stream name."),
    seed: int = typer.Option(0, help="Noise seed."),
) -> None:
    """An LSL EEG outlet (Muse-like TP9/AF7/AF8/TP10 at 256 Hz) with scripted asymmetry: from
    a schedule, flipping, or following the blocks of a running session (--protocol)."""
    from bci.errors import BciError
    from bci.experiment.experiment_protocol import load_protocol, participant_label
    from bci.experiment.simulate_protocol import PlantedEffect, ProtocolFollower
    from bci.live.simulate import Schedule, Simulator, SimulatorConfig, load_schedule

    if protocol and schedule:
        raise BciError("--protocol plants the asymmetry itself: leave out --schedule")
    if protocol:
        planted, followed = PlantedEffect(effect), load_protocol(protocol)
        plan = Schedule()  # resting (intercept 0) until a block starts
    else:
        plan = load_schedule(schedule) if schedule else Schedule.flipping(flip_every, 24 * 3600.0)
    simulator = Simulator(SimulatorConfig(name=name, seed=seed), plan)
    stopping = stop_on_signals()
    simulator.start()
    typer.echo(f"simulating EEG on LSL stream {name!r}")
    follower = None
    if protocol:
        label = participant_label(participant) if participant else None
        follower = ProtocolFollower(simulator, followed, planted, label, say=typer.echo)
        whose = f"sub-{label}'s sessions" if label else "any session"
        typer.echo(f"following the blocks of {whose} of {protocol.name} (happy - sad {effect:g})")
    started = time.monotonic()
    while not stopping.is_set() and (not duration or time.monotonic() - started < duration):
        time.sleep(0.05)
    if follower is not None:
        follower.stop()
    simulator.stop()
    typer.echo(f"sent {simulator.sent} samples ({simulator.dropped} dropped by the schedule)")


@bci_app.command("replay")
def replay(
    file: Path = typer.Argument(..., help="EEG recording: EDF, BDF, XDF, FIF, .vhdr or npz."),
    name: str = typer.Option("BandmateReplay", help="LSL stream name."),
    loop: bool = typer.Option(False, help="Start over at the end, until Ctrl-C."),
    speed: float = typer.Option(1.0, help="Playback speed (2 plays twice as fast)."),
    stream_name: str | None = typer.Option(None, help="XDF: stream to play (default: first EEG)."),
) -> None:
    """Play a recorded EEG file over LSL with its original timing."""
    from bci.analysis.replay import Replayer, read_recording

    recording = read_recording(file, stream_name=stream_name)
    replayer = Replayer(recording, name=name, loop=loop, speed=speed)
    stopping = stop_on_signals()
    replayer.start()
    channels = ", ".join(recording.labels)
    how = (" looping" if loop else "") + (f" at {speed:g}x speed" if speed != 1 else "")
    typer.echo(
        f"replaying {file.name} ({recording.span_s:.1f} s, {len(recording.labels)} channels "
        f"{channels}, {recording.rate:g} Hz) on LSL stream {name!r}{how}"
    )
    while not stopping.is_set() and not replayer.finished.is_set():
        time.sleep(0.05)
    if not stopping.is_set():
        time.sleep(0.5)  # the last push is queued, not yet sent: let it reach the receivers
    replayer.stop()
    passes = replayer.sent / recording.samples
    typer.echo(f"sent {replayer.sent} samples ({passes:.2f} passes of the recording)")


@bci_app.command("render")
def render(
    recording: Path = typer.Argument(..., help="EEG file: EDF/BDF, XDF, FIF, .vhdr or npz."),
    out: Path = typer.Option(..., "-o", "--out", help="MIDI file to write."),
    montage: Path | None = typer.Option(None, help="Montage YAML (default: Muse AF7/AF8)."),
    baseline: float = typer.Option(10.0, help="Seconds of calibration before the music."),
    seed: int = typer.Option(0, help="Seed of the generative music."),
    stream_name: str | None = typer.Option(None, help="XDF: the EEG stream's name."),
    harmony: str = typer.Option("rules", help=HARMONY_HELP),
    genre: str = typer.Option("bach", help=GENRE_HELP),
) -> None:
    """The loop over a recording, offline and deterministic: the same seed and EEG file give
    the same MIDI file."""
    from bci.analysis.offline import (
        montage_signals,
        process_recording,
        render_midi,
        write_midi_file,
    )
    from bci.live.loop import BciRunConfig
    from bci.montage import MUSE, load_montage
    from bci.recordings import read_recording

    chosen = harmony_config(harmony, genre)
    data = read_recording(recording, stream_name)
    config = BciRunConfig(montage=load_montage(montage) if montage else MUSE,
                          baseline_s=baseline, seed=seed, harmony=chosen)  # fmt: skip
    left, right = montage_signals(data.data, list(data.labels), data.rate, config)
    results = process_recording(left, right, data.rate, config)
    messages = render_midi(results, config)
    write_midi_file(messages, out)
    gated = sum(r.flags.gated for r in results)
    typer.echo(f"wrote {out}: {len(messages)} messages from {len(results)} windows ({gated} gated)")


def register(app: typer.Typer) -> None:
    app.add_typer(bci_app, name="bci")
