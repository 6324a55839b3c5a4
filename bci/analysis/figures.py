"""The analysis report's plots, drawn on `matplotlib.figure.Figure` objects.

They are rendered by the Agg canvas, never through pyplot: pyplot keeps global figure state and
may pick a GUI backend, neither of which belongs in a library that a server process might call.
Every figure uses the constrained layout, which places labels, titles and legends so that
they do not overlap one another (tests/test_bci_pilot_report.py checks the drawn boxes).

Confidence intervals in the FAA-over-time plot treat participants as the unit: bins are
averaged within each participant first, then a t interval is taken across participants, since
bins of one person are not independent.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from bci.analysis.mixed_model import EMOTIONS, LmeResult

EMOTION_COLOURS = {"happy": "#d95f02", "sad": "#1b9e77"}
PANEL_COLUMNS = 4  # participants per row in the per-participant plot


def faa_by_participant_figure(bins: pd.DataFrame) -> Figure:
    """One panel per participant: every block's FAA over its time bins, coloured by emotion."""
    participants = sorted(bins["participant"].unique())
    columns = min(PANEL_COLUMNS, len(participants))
    rows = math.ceil(len(participants) / columns)
    figure = Figure(figsize=(2.6 * columns + 0.8, 2.0 * rows + 0.9), layout="constrained")
    axes = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    for panel, participant in zip(axes.flat, participants, strict=False):
        own = bins[bins["participant"] == participant]
        for _, rows_of in own.groupby(["session", "block"], sort=False):
            emotion = rows_of["target_emotion"].iloc[0]
            panel.plot(60 * rows_of["time"], rows_of["faa"], marker="o", markersize=3,
                       color=EMOTION_COLOURS.get(emotion, "#444444"), alpha=0.8)  # fmt: skip
        panel.set_title(participant, fontsize="medium")
        _sparse_seconds(panel, bins["time"])
    for panel in axes.flat[len(participants) :]:
        panel.set_visible(False)
    figure.supxlabel("seconds from block start")
    figure.supylabel("FAA (ln P right - ln P left)")
    handles = [axes.flat[0].plot([], [], color=EMOTION_COLOURS[e], marker="o")[0] for e in EMOTIONS]
    figure.legend(handles, EMOTIONS, loc="outside upper right", ncols=len(EMOTIONS))
    return figure


def _sparse_seconds(axes: Axes, minutes: pd.Series) -> None:
    """Few x ticks, in seconds: a short pilot block has a single bin, at 0, around which
    matplotlib would otherwise spread crowded fractions of a second."""
    seconds = sorted(set(60 * minutes))
    if len(seconds) == 1:
        axes.set_xticks(seconds)
    else:
        axes.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))


def faa_over_time_figure(data: pd.DataFrame) -> Figure:
    """Mean FAA per time bin and emotion with t intervals across participants."""
    per_participant = data.groupby(["target_emotion", "time_bin", "participant"], as_index=False)
    means = per_participant.agg(faa=("faa", "mean"), time=("time", "mean"))
    figure = Figure(figsize=(6.4, 3.6), layout="constrained")
    axes = figure.add_subplot()
    seconds = np.unique(60 * means["time"])
    dodge = 0.04 * (np.diff(seconds).min() if len(seconds) > 1 else 1.0)  # bars side by side
    for side, emotion in zip((-1, 1), EMOTIONS, strict=True):
        rows = means[means["target_emotion"] == emotion]
        summary = rows.groupby("time_bin").agg(
            time=("time", "mean"), mean=("faa", "mean"), sd=("faa", "std"), n=("faa", "count")
        )
        critical = stats.t.ppf(0.975, np.maximum(summary["n"] - 1, 1))
        margin = np.nan_to_num(critical * summary["sd"] / np.sqrt(summary["n"]))
        axes.errorbar(60 * summary["time"] + side * dodge, summary["mean"], yerr=margin,
                      marker="o", capsize=3, color=EMOTION_COLOURS[emotion],
                      label=emotion)  # fmt: skip
    _sparse_seconds(axes, data["time"])
    axes.set_xlabel("seconds from block start")
    axes.set_ylabel("FAA")
    axes.set_title("mean over participants, 95 % CI across them", fontsize="medium")
    axes.legend()
    return figure


def participant_intercepts_figure(result: LmeResult) -> Figure:
    """Each participant's random-intercept deviation (BLUP), sorted."""
    effects = result.participant_effects.sort_values("intercept")
    figure = Figure(figsize=(6.4, max(2.0, 0.25 * len(effects) + 1.2)), layout="constrained")
    axes = figure.add_subplot()
    axes.scatter(effects["intercept"], effects["participant"], color="#444444")
    axes.axvline(0.0, color="#999999", linewidth=1)
    axes.set_xlabel("intercept deviation from the fixed effects (BLUP, FAA)")
    axes.set_title(f"fitted SD {np.sqrt(result.participant_variance):.3g}", fontsize="medium")
    return figure


def sam_check_figure(data: pd.DataFrame) -> Figure:
    """Per participant: mean SAM valence after sad blocks and after happy blocks."""
    blocks = data.groupby(["participant", "block"], as_index=False).first()
    means = blocks.pivot_table(index="participant", columns="target_emotion",
                               values="sam_valence", aggfunc="mean").dropna()  # fmt: skip
    figure = Figure(figsize=(4.0, 3.6), layout="constrained")
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
