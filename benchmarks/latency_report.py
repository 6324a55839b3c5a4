"""The latency report for people: a rich table, a Markdown table and a plot."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.latency import backend_names
from benchmarks.latency_components import COMPONENTS

PART_COLORS = {"step": "black", "encode": "tab:blue", "generate": "tab:orange",
               "decode": "tab:green"}  # fmt: skip


def _rows(report: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(backend, part, stats) for the whole step and each part, backends in report order."""
    rows = []
    for name in backend_names(report):
        entry = report[name]
        rows.append((name, "step", entry))
        rows += [(name, part, entry["components"][part]) for part in COMPONENTS]
    return rows


def _cells(backend: str, part: str, stats: dict[str, Any], report: dict[str, Any]) -> list[str]:
    threads = report[backend].get("threads", {}).get("intra_op", report["threads"])
    return [
        backend if part == "step" else "",
        part,
        str(threads) if part == "step" else "",
        f"{stats['p50_ms']:.3f}",
        f"{stats['p99_ms']:.3f}",
        f"{stats['max_ms']:.2f}",
        f"{stats['p50_over_hop']:.1%}",
        f"{stats['p99_over_hop']:.1%}",
        f"{stats['real_time_factor']:.3f}",
        str(stats["misses"]) if part == "step" else "",
        f"{stats['p50_vs_first_backend']:.2f}" if part == "step" else "",
    ]


COLUMNS = ("backend", "part", "threads", "p50 ms", "p99 ms", "max ms", "p50/hop", "p99/hop",
           "RTF", "misses", "p50 vs first")  # fmt: skip


def model_line(report: dict[str, Any]) -> str:
    model = report["model"]
    sizes = (
        f"ONNX {model['onnx_bytes'] / 1e6:.1f} MB, weights {model['weights_bytes'] / 1e6:.1f} MB"
    )
    parameters = model.get("parameters")
    if not parameters:
        return f"model: {sizes}"
    parts = ", ".join(f"{part} {parameters[part] / 1e6:.2f} M" for part in COMPONENTS)
    dtypes = "/".join(sorted(set(model.get("weights_dtype", {}).values())))
    return f"model: {parameters['total'] / 1e6:.2f} M parameters ({parts}); {sizes} ({dtypes})"


def title(report: dict[str, Any]) -> str:
    batch = report.get("batch", 1)
    return (f"per-frame compute, hop {report['hop_ms']:.2f} ms, {report['threads']} thread(s), "
            f"{report['audio_seconds_per_backend']:g} s of audio per backend"
            + (f", {batch} sessions per step" if batch > 1 else ""))  # fmt: skip


def print_table(report: dict[str, Any]) -> None:
    """The terminal's version: the Markdown table's numbers in fewer, narrower columns."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title(report), caption=model_line(report))
    table.add_column("backend / part", no_wrap=True)
    for column in ("p50 ms", "p99 ms", "max ms", "p50/hop", "p99/hop", "RTF", "misses"):
        table.add_column(column, justify="right")
    for backend, part, stats in _rows(report):
        cells = _cells(backend, part, stats, report)
        label = f"{backend} step" if part == "step" else f"  {part}"
        table.add_row(label, *cells[3:10])
    Console().print(table)


def slow_part_notes(report: dict[str, Any]) -> dict[str, str]:
    """Per backend where a part's slowest hop was slower than the whole step's, why that can
    be: a reader would otherwise take it for a mistake."""
    notes = {}
    for name in backend_names(report):
        entry = report[name]
        slower = [p for p in COMPONENTS if entry["components"][p]["max_ms"] > entry["max_ms"]]
        if slower:
            parts = " and ".join(f"{p} ({entry['components'][p]['max_ms']:.2f} ms)" for p in slower)
            notes[name] = (
                f"{name}: the slowest {parts} took longer than the slowest step "
                f"({entry['max_ms']:.2f} ms): the parts are timed in a second session, on other "
                f"hops than the step, so a stall can hit one and not the other"
            )
    return notes


def markdown_table(report: dict[str, Any]) -> str:
    lines = [f"{title(report)}; {model_line(report)}.", ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for backend, part, stats in _rows(report):
        lines.append("| " + " | ".join(_cells(backend, part, stats, report)) + " |")
    methods = {name: report[name]["components_method"] for name in backend_names(report)}
    lines += ["", *(f"- {name} parts: {method}." for name, method in methods.items())]
    lines += [f"- {note}." for note in slow_part_notes(report).values()]
    return "\n".join(lines) + "\n"


def _ms_label(value: float, _position: float) -> str:
    return f"{value:g}"


def _share_label(value: float, _position: float) -> str:
    return f"{100 * value:g} %"


def latency_figure(report: dict[str, Any], samples_ms: dict[str, dict[str, np.ndarray]]) -> Any:
    """Per backend, the fraction of hops slower than x for the step and each part (log-log,
    so the tail up to the slowest hop stays visible), against the hop deadline. The legend
    sits beside the plots, where it hides no curve, and the axes are labelled at 1-2-5 steps
    (a log axis labels only decades by default)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display here, nor needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    names = list(samples_ms)
    figure, axes = plt.subplots(len(names), 1, figsize=(10, 3.4 * len(names)), sharex=True,
                                squeeze=False, layout="constrained")  # fmt: skip
    hop_ms = report["hop_ms"]
    notes = slow_part_notes(report)
    for axis, name in zip(axes[:, 0], names, strict=True):
        for part, ms in samples_ms[name].items():
            ordered = np.sort(ms)
            slower = 1.0 - np.arange(len(ordered)) / len(ordered)  # fraction at or above x
            axis.step(ordered, slower, where="post", color=PART_COLORS.get(part),
                      linewidth=2 if part == "step" else 1, label=part)  # fmt: skip
        axis.axvline(hop_ms, color="red", linestyle="--", label=f"hop deadline {hop_ms:.2f} ms")
        axis.axhline(0.01, color="grey", linestyle=":", linewidth=1, label="1 % (p99)")
        axis.set(xscale="log", yscale="log", ylabel="share of hops ≥ x")
        # A note goes between the title and the plot, not on it, where it would hide curves.
        note = textwrap.wrap(notes.get(name, ""), 120)
        axis.annotate("\n".join(note), (0, 1), xycoords="axes fraction", xytext=(0, 4),
                      textcoords="offset points", va="bottom", fontsize="x-small")  # fmt: skip
        axis.set_title(name, fontsize="medium", pad=8 + 10 * len(note))
        for ticks in (axis.xaxis, axis.yaxis):
            ticks.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ticks.set_minor_formatter(NullFormatter())
        axis.xaxis.set_major_formatter(FuncFormatter(_ms_label))
        axis.yaxis.set_major_formatter(FuncFormatter(_share_label))
        axis.tick_params(labelbottom=True)
        axis.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right upper", fontsize="small")
    axes[-1, 0].set_xlabel(f"compute per hop, ms (batch {report.get('batch', 1)})")
    figure.suptitle(title(report), fontsize="medium")
    return figure


def plot_latency(report: dict[str, Any], samples_ms: dict[str, dict[str, np.ndarray]],
                 path: Path) -> None:  # fmt: skip
    import matplotlib.pyplot as plt

    figure = latency_figure(report, samples_ms)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
