"""What every benchmark does with its report: summarise timings one way, print the JSON, and
write it where asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def write_report(report: dict[str, Any], path: Path | None) -> None:
    text = json.dumps(report, indent=2)
    print(text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


def write_text(path: Path | None, text: str) -> None:
    """A report's Markdown, when --markdown asks for it."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def targets_markdown(targets: dict[str, dict[str, Any]]) -> str:
    """An issue's acceptance bars as a table: each target's measured value, bar and verdict."""
    lines = ["| target | measured | bar | met |", "|---|---|---|---|"]
    for name, check in targets.items():
        measured = "n/a" if check["measured"] is None else f"{check['measured']:.3f}"
        lines.append(f"| {name} | {measured} | {check['target']:g} | "
                     f"{'yes' if check['met'] else 'NO'} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def distribution_ms(milliseconds: np.ndarray) -> dict[str, float | int]:
    """n, p50, p99, min, max and SD of a set of durations in ms ({"n": 0} when empty)."""
    ms = np.asarray(milliseconds, float)
    if not len(ms):
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "sd_ms": float(ms.std()),
    }
