"""`bandmate session`: experiment studies (analysis; the protocol runner comes next)."""

from __future__ import annotations

from pathlib import Path

import typer

session_app = typer.Typer(help="Experiment sessions and their analysis.", no_args_is_help=True)


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
    """FAA per block and time bin, a linear mixed model (FAA ~ emotion * time + covariates +
    (1 | participant)), R², variance partition, manipulation check and sensitivity."""
    from bci.analysis import fit_lme
    from bci.analysis_checks import sensitivity_analysis
    from bci.analysis_report import write_report
    from bci.study import PARTICIPANT_COLUMNS, StudyConfig, load_study

    data = load_study(bids_root, StudyConfig(task=task, bin_s=bin_s))
    fixed = {"participant", "block", "target_emotion", "time_bin", "time", "faa",
             "sam_valence", "sam_arousal"} | PARTICIPANT_COLUMNS  # fmt: skip
    covariates = tuple(c for c in data.columns
                       if c not in fixed and data[c].nunique() > 1)  # fmt: skip
    result = fit_lme(data, covariates=covariates)
    sensitivity = sensitivity_analysis(result, data, n_simulations=simulations)
    written = write_report(result, data, report, csv_dir or report.parent / "tables", sensitivity)
    emotion = result.emotion_effect
    typer.echo(
        f"{result.n_participants} participants, {result.n_observations} bins: happy - sad FAA "
        f"{emotion.estimate:+.3f} (95 % CI {emotion.ci_low:+.3f} to {emotion.ci_high:+.3f}, "
        f"p = {emotion.p:.3g}); R² marginal {result.r2_marginal:.3f}, conditional "
        f"{result.r2_conditional:.3f}; wrote {', '.join(str(p) for p in written[:1])} and CSVs"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(session_app, name="session")
