"""The codec benchmark's readable output: a Markdown table, the same on the terminal, and a
figure of spectrograms for one held-out piece."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.quality_plot import mel_panel
from benchmarks.report import targets_markdown, write_text

HELD_OUT_COLUMNS = {
    "spectral_convergence_db": ("spectral conv. dB", "{:.1f}"),
    "log_mel_l1": ("log-mel L1", "{:.3f}"),
    "chroma_correlation": ("chroma corr.", "{:.3f}"),
    "harmonic_fit_fraction": ("harmonic fit kept", "{:.0%}"),
}
PROBE_COLUMNS = {
    "chords_counted_correctly": ("chords counted", "{:.0%}"),
    "chords_exact_pitches": ("exact pitches", "{:.0%}"),
    "onsets_within_one_hop": ("onsets within 1 hop", "{:.0%}"),
    "onset_error_median_ms": ("onset error ms", "{:.1f}"),
    "chirp_error_median_cents": ("chirp error cents", "{:.0f}"),
}


def _table(rows: dict[str, dict[str, float]], columns: dict[str, tuple[str, str]]) -> list[str]:
    header = ["system", *(label for label, _ in columns.values())]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in rows.items():
        cells = [fmt.format(row[key]) if key in row else "" for key, (_, fmt) in columns.items()]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Held-out: {report['crops']} crops of {report['seconds']:g} s (live parts and "
        f"accompaniments of {len(report['pieces'])} test-split pieces); original harmonic fit "
        f"{report['original_harmonic_fit']:.3f}; codec latency "
        f"{report['codec_latency_ms']:.1f} ms.",
        "",
        *_table(report["systems"], HELD_OUT_COLUMNS),
    ]
    if "probes" in report:
        lines += ["", f"Probes ({report['probes']['count']} signals):", ""]
        lines += _table(report["probes"]["by_system"], PROBE_COLUMNS)
    return "\n".join(lines) + "\n\n" + targets_markdown(report["targets"])


def write_markdown(report: dict[str, Any], path: Path | None) -> None:
    write_text(path, markdown(report))


def print_table(report: dict[str, Any]) -> None:
    print(markdown(report))


def plot_spectrograms(signals: dict[str, np.ndarray], rate: int, title: str, path: Path) -> None:
    """Stacked log-frequency spectrograms (dB), one row per signal, on a shared colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(signals), 1, figsize=(10, 2.4 * len(signals)), sharex=True)
    top = None
    for axis, (name, audio) in zip(np.atleast_1d(axes), signals.items(), strict=True):
        top = mel_panel(axis, audio, rate, top)
        axis.set_title(name, fontsize=10, loc="left")
    np.atleast_1d(axes)[-1].set_xlabel("seconds")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
