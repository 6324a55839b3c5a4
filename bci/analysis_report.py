"""The analysis as a page a person reads and as tables a script reads.

`write_report` writes one self-contained HTML file (every plot embedded as a base64 PNG, so
the file can be mailed or archived on its own) and tidy CSVs, one table each:

    fixed_effects.csv       term, model_term, estimate, se, ci_low, ci_high, p
    variance_partition.csv  component, kind, variance, share
    r2.csv                  r2_marginal, r2_conditional, random_slope, converged
    faa_by_block.csv        participant, block, target_emotion, faa_mean, faa_sd, n_bins
                            (+ sam_valence, sam_arousal when the data has them)

Plots are drawn on `matplotlib.figure.Figure` objects and rendered by the Agg canvas, never
through pyplot: pyplot keeps global figure state and may pick a GUI backend, neither of which
belongs in a library that a server process might call.

Confidence intervals in the FAA-over-time plot treat participants as the unit: bins are
averaged within each participant first, then a t interval is taken across participants, since
bins of one person are not independent.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from bci.analysis import EMOTIONS, LmeResult
from bci.analysis_checks import ManipulationCheck, Sensitivity, check_manipulation

EMOTION_COLOURS = {"happy": "#d95f02", "sad": "#1b9e77"}
SEED_STUDY_MANIPULATION_SHARE = 0.004  # "A minimalist BCMI...": 0.40 % of FAA variance
SAM_COLUMNS = ("sam_valence", "sam_arousal")


def tidy_tables(result: LmeResult, data: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The CSV tables, keyed by file stem."""
    r2 = pd.DataFrame({
        "r2_marginal": [result.r2_marginal],
        "r2_conditional": [result.r2_conditional],
        "random_slope": [result.random_slope],
        "converged": [result.converged],
    })  # fmt: skip
    return {
        "fixed_effects": result.fixed_effects,
        "variance_partition": result.variance_partition,
        "r2": r2,
        "faa_by_block": faa_by_block(data),
    }


def faa_by_block(data: pd.DataFrame) -> pd.DataFrame:
    keys = ["participant", "block", "target_emotion"]
    aggregations: dict[str, tuple[str, str]] = {
        "faa_mean": ("faa", "mean"),
        "faa_sd": ("faa", "std"),
        "n_bins": ("faa", "count"),
    }
    aggregations |= {name: (name, "first") for name in SAM_COLUMNS if name in data.columns}
    return data.groupby(keys, as_index=False).agg(**aggregations)


def write_report(
    result: LmeResult,
    data: pd.DataFrame,
    path_html: Path,
    csv_dir: Path,
    sensitivity: Sensitivity | None = None,
) -> list[Path]:
    """Write the HTML report and the CSVs; return the paths written. The manipulation check
    is included when the data has SAM valence; the sensitivity when one is passed (it costs
    model fits, so the caller decides)."""
    csv_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, table in tidy_tables(result, data).items():
        path = csv_dir / f"{stem}.csv"
        table.to_csv(path, index=False)
        written.append(path)
    manipulation = check_manipulation(data) if "sam_valence" in data.columns else None
    path_html.parent.mkdir(parents=True, exist_ok=True)
    path_html.write_text(render_html(result, data, manipulation, sensitivity))
    return [path_html, *written]


def render_html(
    result: LmeResult,
    data: pd.DataFrame,
    manipulation: ManipulationCheck | None,
    sensitivity: Sensitivity | None,
) -> str:
    emotion = result.emotion_effect
    confidence = f"{100 * (1 - result.alpha):g} %"
    structure = "random intercept and slope for time" if result.random_slope else (
        "random intercept" + (f" (slope dropped: {result.slope_rejected_because})"
                              if result.slope_rejected_because else ""))  # fmt: skip
    sections = [
        "<h1>Does instructed emotion move frontal alpha asymmetry?</h1>",
        _paragraph(
            f"{result.n_participants} participants, {result.n_observations} time bins. "
            f"Model: <code>{html.escape(result.formula)}</code>, by participant, with a "
            f"{html.escape(structure)}; REML, converged: {result.converged}"
            f"{', singular fit' if result.singular else ''}. Time is centred at "
            f"{result.time_centre:.3g} min, so the emotion effect is the happy - sad "
            "difference in FAA at mid-block."
        ),
        _paragraph(
            f"Happy - sad: {emotion['estimate']:.3g} FAA ({confidence} CI "
            f"{emotion['ci_low']:.3g} to {emotion['ci_high']:.3g}), p = {emotion['p']:.3g}. "
            f"The manipulation explains {100 * result.manipulation_share:.2f} % of FAA "
            f"variance (seed study: {100 * SEED_STUDY_MANIPULATION_SHARE:.2f} %), "
            f"participants {100 * result.participant_share:.1f} %. "
            f"R2 marginal {result.r2_marginal:.3f}, conditional {result.r2_conditional:.3f}."
        ),
        "<h2>Fixed effects</h2>",
        _table(result.fixed_effects),
        "<h2>Variance partition</h2>",
        _paragraph(
            "Fixed-effect variance is split among terms by covariance shares (see "
            "bci/analysis.py); target_emotion includes its interaction with time."
        ),
        _table(result.variance_partition),
        "<h2>FAA by emotion over the block</h2>",
        _image(faa_over_time_figure(data)),
        "<h2>Participant intercepts</h2>",
        _image(participant_intercepts_figure(result)),
    ]
    if manipulation is not None:
        sections += ["<h2>Manipulation check (SAM valence)</h2>",
                     _paragraph(_describe_manipulation(manipulation)),
                     _image(sam_check_figure(data))]  # fmt: skip
    if sensitivity is not None:
        sections += ["<h2>Sensitivity</h2>", _paragraph(_describe_sensitivity(sensitivity))]
    body = "\n".join(sections)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Bandmate BCMI analysis</title><style>"
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #ccc}"
        f"img{{max-width:100%}}</style></head><body>\n{body}\n</body></html>\n"
    )


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


def faa_over_time_figure(data: pd.DataFrame) -> Figure:
    """Mean FAA per time bin and emotion with t intervals across participants."""
    per_participant = data.groupby(["target_emotion", "time_bin", "participant"], as_index=False)
    means = per_participant.agg(faa=("faa", "mean"), time=("time", "mean"))
    figure = Figure(figsize=(6.4, 3.6))
    axes = figure.add_subplot()
    for emotion in EMOTIONS:
        rows = means[means["target_emotion"] == emotion]
        summary = rows.groupby("time_bin").agg(
            time=("time", "mean"), mean=("faa", "mean"), sd=("faa", "std"), n=("faa", "count")
        )
        critical = stats.t.ppf(0.975, np.maximum(summary["n"] - 1, 1))
        margin = np.nan_to_num(critical * summary["sd"] / np.sqrt(summary["n"]))
        colour = EMOTION_COLOURS[emotion]
        axes.plot(summary["time"], summary["mean"], marker="o", color=colour, label=emotion)
        axes.fill_between(summary["time"], summary["mean"] - margin, summary["mean"] + margin,
                          color=colour, alpha=0.2)  # fmt: skip
    axes.set_xlabel("minutes from block start")
    axes.set_ylabel("FAA (mean over participants, 95 % CI)")
    axes.legend()
    return figure


def participant_intercepts_figure(result: LmeResult) -> Figure:
    """Each participant's random-intercept deviation (BLUP), sorted."""
    effects = result.participant_effects.sort_values("intercept")
    figure = Figure(figsize=(6.4, max(2.0, 0.25 * len(effects) + 1.0)))
    axes = figure.add_subplot()
    axes.scatter(effects["intercept"], effects["participant"], color="#444444")
    axes.axvline(0.0, color="#999999", linewidth=1)
    axes.set_xlabel(
        f"intercept deviation from the fixed effects (BLUP, FAA); fitted SD "
        f"{np.sqrt(result.participant_variance):.3g}"
    )
    return figure


def sam_check_figure(data: pd.DataFrame) -> Figure:
    """Per participant: mean SAM valence after sad blocks and after happy blocks."""
    blocks = data.groupby(["participant", "block"], as_index=False).first()
    means = blocks.pivot_table(index="participant", columns="target_emotion",
                               values="sam_valence", aggfunc="mean").dropna()  # fmt: skip
    figure = Figure(figsize=(4.0, 3.6))
    axes = figure.add_subplot()
    for _, row in means.iterrows():
        axes.plot([0, 1], [row["sad"], row["happy"]], color="#999999", marker="o")
    axes.plot([0, 1], [means["sad"].mean(), means["happy"].mean()], color="black",
              linewidth=3, marker="o", label="mean")  # fmt: skip
    axes.set_xticks([0, 1], ["sad", "happy"])
    axes.set_ylim(0.5, 9.5)
    axes.set_ylabel("SAM valence (1-9)")
    axes.legend()
    return figure


def _image(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<p><img src="data:image/png;base64,{encoded}" alt=""></p>'


def _table(table: pd.DataFrame) -> str:
    return str(table.to_html(index=False, border=0, float_format=lambda value: f"{value:.4g}"))


def _paragraph(text: str) -> str:
    return f"<p>{text}</p>"
