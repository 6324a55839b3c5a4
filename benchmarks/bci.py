"""How fast and how steady the BCMI loop is, end to end with real components.

`bandmate bench bci --json FILE` starts a JACK server (dummy driver) and the EEG simulator
(a real LSL outlet), runs `bci run`'s session against them with MIDI on a JACK port, and reads
its log:

- processing latency: from the LSL stamp of a window's last sample to the moment its valence
  and musical parameters are ready (the loop polls every 5 ms, so this includes the wait
  for the poll and the dejittered stamp's offset);
- MIDI timing: for every message, the time it left minus the time it was due (its SD is the
  onset jitter).

Targets (issue 6): processing p99 <= 10 ms, jitter SD <= 1 ms.
"""

from __future__ import annotations

import json
import os
import platform
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np

from benchmarks.report import distribution_ms


@dataclass(frozen=True)
class BciBenchConfig:
    seconds: float = 60.0
    baseline_s: float = 5.0
    flip_every_s: float = 10.0
    seed: int = 0


def run_bci_benchmark(config: BciBenchConfig) -> dict[str, Any]:
    from bci.live.bci_session import BciOutputs, BciSession
    from bci.live.loop import BciRunConfig
    from bci.live.lsl_input import StreamQuery
    from bci.live.simulate import Schedule, Simulator, SimulatorConfig
    from engine.jackd import JackServer

    name = f"bench-{uuid.uuid4().hex[:8]}"
    with JackServer(48_000, 256) as jack, TemporaryDirectory() as folder:
        os.environ.update(jack.client_env())
        schedule = Schedule.flipping(config.flip_every_s, config.seconds + 10)
        simulator = Simulator(SimulatorConfig(name=name, source_id=name), schedule)
        simulator.start()
        log_path = Path(folder) / "bench.jsonl"
        run = BciRunConfig(query=StreamQuery(name=name), baseline_s=config.baseline_s,
                           duration_s=config.seconds, seed=config.seed)  # fmt: skip
        session = BciSession(run, BciOutputs(midi_port=f"{name}-midi", log_path=log_path,
                                             outlets=False))  # fmt: skip
        try:
            summary = session.run()
        finally:
            simulator.stop()
        records = [json.loads(line) for line in log_path.read_text().splitlines()]
    windows = [r for r in records if r["type"] == "window"]
    midi = [r for r in records if r["type"] == "midi" and r["message"][0] & 0xF0 in (0x80, 0x90)]
    latency = np.array([w["processed_at"] - w["lsl_time"] for w in windows])
    lateness = np.array([m["sent"] - m["due"] for m in midi])
    return {
        "config": asdict(config),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "windows": summary.windows,
        "gated": summary.gated,
        "midi_messages": len(midi),
        "processing_latency": distribution_ms(1e3 * latency),
        "midi_send_error": distribution_ms(1e3 * lateness),
        "targets": {"processing_p99_ms": 10.0, "jitter_sd_ms": 1.0},
    }


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"BCMI loop, {report['config']['seconds']:g} s of simulated EEG")
    for column in ("measure", "n", "p50 ms", "p99 ms", "max ms", "SD ms"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for label, key in (("window -> parameters ready", "processing_latency"),
                       ("MIDI sent - due", "midi_send_error")):  # fmt: skip
        row = report[key]
        table.add_row(label, str(row["n"]), f"{row['p50_ms']:.3f}", f"{row['p99_ms']:.3f}",
                      f"{row['max_ms']:.3f}", f"{row['sd_ms']:.3f}")  # fmt: skip
    Console().print(table)
