"""Probing the BCI tools with bad input: an LSL EEG outlet whose stamps and values a test
chooses (jittered chunks, a step of the clock, a NaN), and the tools' JSON-lines logs read as
they grow, so a test can strike once the receiver is where it wants it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pylsl

from bci.live.simulate import PacedOutlet, Schedule, SimulatorConfig, eeg_outlet, synthesize

CHUNK = 8  # samples per push, as the simulator sends at 256 Hz


class StampedOutlet(PacedOutlet):
    """Sample k is stamped `origin + k / rate` plus the clock steps so far, its chunk moved by a
    seeded uniform draw in +-`jitter_s` (a bridge stamping on arrival). `step_clock(by_s)`
    moves every later stamp; `send_nan()` puts NaN on the left channel (AF7) of the next
    sample sent."""

    thread_name = "bci-stamped-outlet"

    def __init__(self, jitter_s: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        name = f"stamped-{uuid.uuid4().hex[:8]}"
        self.config = SimulatorConfig(name=name, source_id=name)
        self.rate = self.config.montage.sample_rate
        self.jitter_s = jitter_s
        self.rng = np.random.default_rng(seed)
        self._clock_step_s = 0.0
        self._nan_due = False

    def step_clock(self, by_s: float) -> None:
        self._clock_step_s += by_s

    def send_nan(self) -> None:
        self._nan_due = True

    @property
    def name(self) -> str:
        return self.config.name

    def _new_outlet(self) -> pylsl.StreamOutlet:
        return eeg_outlet(self.name, self.name, self.config.channels, self.rate, CHUNK, "test")

    def _run(self) -> None:
        assert self._outlet is not None
        left = self.config.channels.index(self.config.montage.left)
        next_index = 0
        while not self._stop.is_set():
            due = int((pylsl.local_clock() - self._origin) * self.rate) + 1
            while next_index + CHUNK <= due:
                indices = np.arange(next_index, next_index + CHUNK)
                samples = synthesize(self.config, Schedule(), next_index, CHUNK).astype(np.float32)
                stamps = self._origin + indices / self.rate + self._clock_step_s
                stamps += self.rng.uniform(-self.jitter_s, self.jitter_s)
                if self._nan_due:
                    samples[left, 0] = np.nan
                    self._nan_due = False
                self._outlet.push_chunk(np.ascontiguousarray(samples.T), stamps.tolist())
                self._sent += CHUNK
                next_index += CHUNK
            self._stop.wait(0.005)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The whole lines of a log still being written (a torn last line is left out)."""
    if not path.is_file():
        return []
    lines = path.read_text().split("\n")[:-1]
    return [json.loads(line) for line in lines]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` every 50 ms; fail the test naming `what` if it is not true in time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        time.sleep(0.05)


def windows(records: list[dict[str, Any]], phase: str | None = None) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == "window" and phase in (None, r["phase"])]


def input_events(records: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == "input" and r["event"] == event]


def run_on_a_terminal(command: list[str], timeout_s: float) -> tuple[int, str, str]:
    """Run `command` with its stdout on a pseudo-terminal, as an experimenter's terminal is
    (status lines are redrawn in place there); its exit code, stdout and stderr."""
    import os
    import pty
    import select
    import subprocess

    main, terminal = pty.openpty()
    process = subprocess.Popen(command, stdout=terminal, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True)  # fmt: skip
    os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if select.select([main], [], [], 0.1)[0]:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # EIO: the command closed the terminal (it exited)
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        else:
            raise AssertionError(f"{command[:3]} ran past {timeout_s:g} s")
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(main)
    return process.returncode, output.decode(errors="replace"), stderr


def status_lines(terminal_output: str) -> list[str]:
    """Every state the status line was drawn in, in order: the pieces between redraws
    (bci/console.py's CLEAR_LINE) and line ends that hold the status's " | " separators."""
    from bci.console import CLEAR_LINE

    pieces = terminal_output.replace("\r\n", "\n").replace(CLEAR_LINE, "\n").split("\n")
    return [piece.strip() for piece in pieces if " | " in piece]
