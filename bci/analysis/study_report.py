"""The analysis as a page a person reads and as tables a script reads.

`write_report` writes one self-contained HTML file (every plot embedded as a base64 PNG, so
the file can be mailed or archived on its own) and tidy CSVs, one table each:

    faa_bins.csv            the tidy bins the model reads (bci/analysis/study.py)
    signal_quality.csv      participant, session, channel, windows, gated, gated_share, the
                            checks, non_finite_samples, dropped_samples
    faa_by_block.csv        participant, block, target_emotion, faa_mean, faa_sd, n_bins
                            (+ sam_valence, sam_arousal when the data has them)
    fixed_effects.csv       term, model_term, estimate, se, ci_low, ci_high, p
    variance_partition.csv  component, kind, variance, share
    r2.csv                  r2_marginal, r2_conditional, random_slope, converged

The descriptive part (the first three, and their plots) is always written; the model's tables
only when a model was fitted (bci/analysis/study_analysis.py says when), and stale ones from an
earlier run are removed so that a folder never mixes two analyses.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from bci.analysis.checks import ManipulationCheck, Sensitivity
from bci.analysis.figures import (
    faa_by_participant_figure,
    faa_over_time_figure,
    participant_intercepts_figure,
    sam_check_figure,
)
from bci.analysis.mixed_model import LmeResult
from bci.analysis.study_analysis import StudyAnalysis, collected_warnings

SEED_STUDY_MANIPULATION_SHARE = 0.004  # "A minimalist BCMI...": 0.40 % of FAA variance
SAM_COLUMNS = ("sam_valence", "sam_arousal")
MODEL_TABLES = ("fixed_effects", "variance_partition", "r2")


def tidy_tables(analysis: StudyAnalysis) -> dict[str, pd.DataFrame]:
    """The CSV tables, keyed by file stem: the model's only when there is one."""
    bins = analysis.study.bins
    tables = {
        "faa_bins": bins,
        "signal_quality": analysis.study.quality,
        "faa_by_block": faa_by_block(bins),
    }
    result = analysis.model
    if result is not None:
        tables |= {
            "fixed_effects": result.fixed_effects,
            "variance_partition": result.variance_partition,
            "r2": pd.DataFrame({
                "r2_marginal": [result.r2_marginal],
                "r2_conditional": [result.r2_conditional],
                "random_slope": [result.random_slope],
                "converged": [result.converged],
            }),
        }  # fmt: skip
    return tables


def faa_by_block(data: pd.DataFrame) -> pd.DataFrame:
    keys = ["participant", "block", "target_emotion"]
    aggregations: dict[str, tuple[str, str]] = {
        "faa_mean": ("faa", "mean"),
        "faa_sd": ("faa", "std"),
        "n_bins": ("faa", "count"),
    }
    aggregations |= {name: (name, "first") for name in SAM_COLUMNS if name in data.columns}
    return data.groupby(keys, as_index=False).agg(**aggregations)


def write_report(analysis: StudyAnalysis, path_html: Path, csv_dir: Path) -> list[Path]:
    """Write the HTML report and the CSVs; return the paths written, the report first."""
    csv_dir.mkdir(parents=True, exist_ok=True)
    written = []
    tables = tidy_tables(analysis)
    for stem in MODEL_TABLES:
        if stem not in tables:
            (csv_dir / f"{stem}.csv").unlink(missing_ok=True)
    for stem, table in tables.items():
        path = csv_dir / f"{stem}.csv"
        table.to_csv(path, index=False)
        written.append(path)
    path_html.parent.mkdir(parents=True, exist_ok=True)
    path_html.write_text(render_html(analysis))
    return [path_html, *written]


def render_html(analysis: StudyAnalysis) -> str:
    notes = list(analysis.library_warnings)
    with collected_warnings(notes):  # drawing can warn too: those go to the report as well
        sections = [*_descriptive_sections(analysis), *_model_sections(analysis)]
    if notes:
        sections += [
            "<h2>What the libraries warned</h2>",
            _paragraph("Collected while reading, fitting and drawing (nothing is printed on "
                       "the terminal):"),
            "<ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in notes) + "</ul>",
        ]  # fmt: skip
    body = "\n".join(sections)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Bandmate BCMI analysis</title><style>"
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #ccc}"
        f"img{{max-width:100%}}</style></head><body>\n{body}\n</body></html>\n"
    )


def _descriptive_sections(analysis: StudyAnalysis) -> list[str]:
    bins, quality = analysis.study.bins, analysis.study.quality
    sessions = bins[["participant", "session"]].drop_duplicates()
    return [
        "<h1>Does instructed emotion move frontal alpha asymmetry?</h1>",
        _paragraph(
            f"{analysis.n_participants} participants ({len(sessions)} sessions), "
            f"{bins['block'].groupby(bins['participant']).nunique().sum()} emotion blocks, "
            f"{len(bins)} time bins with clean EEG."
        ),
        "<h2>FAA over time, per block and participant</h2>",
        _image(faa_by_participant_figure(bins)),
        "<h2>Signal quality</h2>",
        _paragraph(
            "Per channel, every analysed 2 s window judged on that channel alone: how many "
            "were gated, and by which check (a window can fail several); the model uses the "
            "windows that pass on both channels. non_finite_samples counts NaN or Inf samples "
            "on the channel; dropped_samples the samples the stream lost (LSL stamps), which "
            "every channel of a session shares."
        ),
        _table(quality),
        "<h2>FAA by emotion over the block</h2>",
        _image(faa_over_time_figure(bins)),
    ]


def _model_sections(analysis: StudyAnalysis) -> list[str]:
    sections = ["<h2>Model</h2>"]
    result = analysis.model
    if result is None:
        sections.append(_paragraph(_sentences(analysis.model_notes)))
    else:
        if analysis.model_notes:
            sections.append(_paragraph(
                "A smaller model than the full one was fitted. " + _sentences(analysis.model_notes)
            ))  # fmt: skip
        sections += _fit_sections(result)
    sections.append("<h2>Manipulation check (SAM valence)</h2>")
    if analysis.manipulation is None:
        sections.append(_paragraph(_sentences((f"not run: {analysis.manipulation_note}",))))
    else:
        sections += [_paragraph(_describe_manipulation(analysis.manipulation)),
                     _image(sam_check_figure(analysis.study.bins))]  # fmt: skip
    if analysis.sensitivity is not None:
        sensitivity = _describe_sensitivity(analysis.sensitivity)
        sections += ["<h2>Sensitivity</h2>", _paragraph(sensitivity)]
    return sections


def _fit_sections(result: LmeResult) -> list[str]:
    emotion = result.emotion_effect
    with_time = "time_centred" in result.formula
    warned = [_paragraph(f"statsmodels warned about this fit: {_listed(result.fit_warnings)}.")]
    warned = warned if result.fit_warnings else []
    confidence = f"{100 * (1 - result.alpha):g} %"
    structure = "random intercept and slope for time" if result.random_slope else (
        "random intercept" + (f" (slope dropped: {result.slope_rejected_because})"
                              if result.slope_rejected_because else ""))  # fmt: skip
    return [
        _paragraph(
            f"{result.n_participants} participants, {result.n_observations} time bins. "
            f"Model: <code>{html.escape(result.formula)}</code>, by participant, with a "
            f"{html.escape(structure)}; REML, converged: {result.converged}"
            f"{', singular fit' if result.singular else ''}."
            + (
                f" Time is centred at {result.time_centre:.3g} min, so the emotion effect is "
                "the happy - sad difference in FAA at mid-block."
                if with_time
                else ""
            )
        ),
        _paragraph(
            f"Happy - sad: {emotion['estimate']:.3g} FAA ({confidence} CI "
            f"{emotion['ci_low']:.3g} to {emotion['ci_high']:.3g}), p = {emotion['p']:.3g}. "
            f"The manipulation explains {100 * result.manipulation_share:.2f} % of FAA "
            f"variance (seed study: {100 * SEED_STUDY_MANIPULATION_SHARE:.2f} %), "
            f"participants {100 * result.participant_share:.1f} %. "
            f"R2 marginal {result.r2_marginal:.3f}, conditional {result.r2_conditional:.3f}."
        ),
        *warned,
        "<h3>Fixed effects</h3>",
        _table(result.fixed_effects),
        "<h3>Variance partition</h3>",
        _paragraph(
            "Fixed-effect variance is split among terms by covariance shares (see "
            "bci/analysis/mixed_model.py); target_emotion includes its interaction with time."
        ),
        _table(result.variance_partition),
        "<h3>Participant intercepts</h3>",
        _image(participant_intercepts_figure(result)),
    ]


def _listed(messages: tuple[str, ...]) -> str:
    """Messages in one sentence, each without its own full stop."""
    return html.escape("; ".join(message.rstrip(".") for message in messages))


def _sentences(notes: tuple[str, ...]) -> str:
    """Notes as sentences: capitalised, each ending in a full stop."""
    return " ".join(html.escape(note[:1].upper() + note[1:]) + "." for note in notes)


def _describe_manipulation(check: ManipulationCheck) -> str:
    verdict = "passed" if check.passed else "did not pass"
    return (
        f"Mean valence {check.mean_happy:.2f} after happy blocks, {check.mean_sad:.2f} after "
        f"sad ones: difference {check.mean_difference:.2f} (95 % CI {check.ci_low:.2f} to "
        f"{check.ci_high:.2f}), t({check.df}) = {check.t:.2f}, p = {check.p:.3g}, "
        f"d_z = {check.cohens_dz:.2f}. The check {verdict}."
    )


def _describe_sensitivity(sensitivity: Sensitivity) -> str:
    how = (
        f"{sensitivity.n_simulations} simulated refits"
        if sensitivity.method == "simulation"
        else "the analytic Wald approximation"
    )
    return (
        f"Smallest happy - sad difference detected with {100 * sensitivity.power:.0f} % power "
        f"at alpha = {sensitivity.alpha:g} ({how}): {sensitivity.minimal_effect:.3g} FAA, "
        f"{sensitivity.minimal_effect_sd:.2f} SD of FAA around the fixed effects, a "
        f"{100 * sensitivity.minimal_variance_share:.2f} % share of variance (analytic: "
        f"{sensitivity.analytic_effect:.3g} FAA)."
    )


def _image(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<p><img src="data:image/png;base64,{encoded}" alt=""></p>'


def _table(table: pd.DataFrame) -> str:
    return str(table.to_html(index=False, border=0, float_format=lambda value: f"{value:.4g}"))


def _paragraph(text: str) -> str:
    return f"<p>{text}</p>"
