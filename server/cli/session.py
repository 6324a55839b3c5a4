"""`bandmate session run|analyze`: experiment sessions and the study's analysis."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import typer

session_app = typer.Typer(help="Experiment sessions and their analysis.", no_args_is_help=True)


@session_app.command("run")
def run(
    protocol: Path = typer.Argument(
        ..., help="Protocol YAML (e.g. bci/experiment/protocols/seed_study.yaml)."
    ),
    participant: str = typer.Option(..., help="Participant ID, e.g. P01 (sets counterbalancing)."),
    out: Path = typer.Option(..., help="Study folder: raw/ sessions and the bids/ dataset."),
    covariates: str | None = typer.Option(None, help="e.g. musical_training=5,acting=0"),
    stream: str | None = typer.Option(None, help="LSL EEG stream name (default: any EEG)."),
    montage: Path | None = typer.Option(None, help="Montage YAML (default: Muse AF7/AF8)."),
    midi_port: str | None = typer.Option(None, help="Virtual MIDI output port for the music."),
    synth_driver: str | None = typer.Option(
        "jack", help="Without --midi-port: FluidSynth's audio driver; 'none' for silence."
    ),
    ratings: str = typer.Option(
        "page", help="page (SAM on the participant page), prompt (typed here) or auto (all 5s)."
    ),
    session: str | None = typer.Option(
        None, help="BIDS session label (default: the participant's next, 01 on a first visit)."
    ),
    overwrite: bool = typer.Option(
        False, help="Replace the session given by --session (default: the latest)."
    ),
    seed: int = typer.Option(0, help="Seed of the music."),
    server_osc: str | None = typer.Option(
        None, help="HOST:PORT of `bandmate serve --osc-port`: instructions on its page."
    ),
    time_scale: float = typer.Option(
        1.0, help="Multiply every duration (0.1 runs the seed study in 72 s, for pilots)."
    ),
    dry_run: bool = typer.Option(
        False, help="Print the participant's schedule and its total duration, and stop."
    ),
    page: bool = typer.Option(True, help="Serve the participant page on loopback."),
    page_port: int = typer.Option(0, help="The participant page's port (0: any free one)."),
) -> None:
    """Run one participant through a protocol: the participant page (instructions, fixation
    cross, countdowns, the end-of-block tone, SAM scales), markers, the BCMI loop, and a
    recording that survives a crash, exported as BIDS at the end. Type p and Enter to pause,
    r and Enter to resume. Ctrl-C or SIGTERM stops the session early, keeping and exporting
    what was recorded (exit 130)."""
    from bci.console import Console
    from bci.experiment.session_config import RunnerConfig, parse_covariates, schedule_lines
    from bci.experiment.session_runner import SessionInterrupted, SessionRunner
    from bci.live.lsl_input import StreamQuery
    from bci.montage import MUSE, load_montage

    config = RunnerConfig(
        protocol=protocol, participant=participant, out=out,
        covariates=parse_covariates(covariates), query=StreamQuery(name=stream),
        montage=load_montage(montage) if montage else MUSE, midi_port=midi_port,
        synth_driver=None if synth_driver == "none" else synth_driver, ratings=ratings,
        overwrite=overwrite, seed=seed, server_osc=server_osc, time_scale=time_scale,
        session=session, page_port=page_port if page else None,
    )  # fmt: skip
    if dry_run:
        typer.echo("\n".join(schedule_lines(config)))
        return
    # SIGTERM (a scheduler, `kill`) ends the session as Ctrl-C does: exported, not lost.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        written = SessionRunner(config, Console(typed=sys.stdin)).run()
    except SessionInterrupted as stopped:
        typer.echo(f"stopped: {stopped}", err=True)
        raise typer.Exit(130) from None
    typer.echo(f"session recorded in {config.out / 'raw'} and exported to {written}")


@session_app.command("analyze")
def analyze(
    bids_root: Path = typer.Argument(..., help="The study's BIDS folder."),
    report: Path = typer.Option(Path("report.html"), help="Self-contained HTML report."),
    csv_dir: Path | None = typer.Option(None, help="Tidy CSVs (default: beside the report)."),
    task: str = typer.Option("bcmi", help="BIDS task label."),
    bin_s: float = typer.Option(10.0, help="Seconds per time bin within a block."),
    simulations: int = typer.Option(
        200, help="Simulated refits for the sensitivity (0: analytic)."
    ),
) -> None:
    """FAA per block and time bin, signal quality, and a linear mixed model (FAA ~ emotion *
    time + covariates + (1 | participant)) as far as the data allow: R², variance partition,
    manipulation check and sensitivity. A pilot too small for the model still gets the
    descriptive report, which says why."""
    from bci.analysis.study import StudyConfig
    from bci.analysis.study_analysis import analyse_bids
    from bci.analysis.study_report import write_report

    analysis = analyse_bids(bids_root, StudyConfig(task=task, bin_s=bin_s), simulations)
    written = write_report(analysis, report, csv_dir or report.parent / "tables")
    typer.echo(f"{analysis.summary()}; wrote {written[0]} and CSVs in {written[1].parent}")


def register(app: typer.Typer) -> None:
    app.add_typer(session_app, name="session")
