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
