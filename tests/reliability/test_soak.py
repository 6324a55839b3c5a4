"""The soak, shortened for CI: `bandmate bench soak` with 2 clients for 15 s on the tiny
checkpoint (the full soak is `--seconds 600` on the shipped default: docs/reliability.md)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.soak import SoakBenchConfig, build_report
from clients.stream import StreamResult
from tests.helpers import BANDMATE

# Slow, so not in `make test-quick`: every test here runs real processes (`bandmate serve`, `session
# run`, `bench soak`).
pytestmark = pytest.mark.slow

SECONDS = 15


def test_a_short_soak_holds_its_memory_and_misses_nothing(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    report_path = tmp_path / "soak.json"
    command = [BANDMATE, "bench", "soak", "--clients", "2", "--seconds", str(SECONDS),
               "--warmup", "5", "--models-dir", str(tiny_models_dir),
               "--json", str(report_path)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    report = json.loads(report_path.read_text())
    summary = {k: v for k, v in report.items() if k not in ("rss_samples", "sessions")}
    assert done.returncode == 0 and report["passed"], summary
    assert report["misses_total"] == report["dropped_total"] == report["errors_total"] == 0
    assert report["growth_after_warmup_mib"] <= 16
    assert len(report["sessions"]) == 2
    # Telemetry comes twice a second, so the last one may miss the final half second.
    assert all(s["hops"] >= (SECONDS - 0.5) * 48_000 / 1024 - 1 for s in report["sessions"])
    assert len(report["rss_samples"]) >= SECONDS  # one a second


def stream_result(misses: int = 0, errors: int = 0) -> StreamResult:
    telemetry = {"hops": 100, "p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 3.0, "misses": misses,
                 "dropped_messages": 0}  # fmt: skip
    return StreamResult(np.zeros(0, np.float32), {}, [telemetry],
                        [{"type": "error"}] * errors)  # fmt: skip


def rss(mib_per_s: float) -> list[tuple[float, float]]:
    return [(float(t), 100.0 + mib_per_s * t) for t in range(60)]


@pytest.mark.parametrize(
    ("results", "samples", "passed"),
    [
        ([stream_result(), stream_result()], rss(0.01), True),
        ([stream_result(), stream_result()], rss(1.0), False),  # a leak: 50 MiB after warm-up
        ([stream_result(misses=1), stream_result()], rss(0.0), False),
        ([stream_result(errors=1), stream_result()], rss(0.0), False),
        ([stream_result(), RuntimeError("server closed the stream")], rss(0.0), False),
    ],
    ids=["steady", "leaking", "a-miss", "an-error", "a-client-failed"],
)
def test_the_soak_verdict_holds_every_bound(
    results: list[Any], samples: list[tuple[float, float]], passed: bool
) -> None:
    config = SoakBenchConfig(clients=2, seconds=60, warmup_s=10, max_growth_mib=16)
    report = build_report(config, results, samples)
    assert report["passed"] is passed
    assert report["growth_after_warmup_mib"] == pytest.approx(samples[-1][1] - samples[10][1])
