"""A JACK client that stands where the sound card would be for a running `bandmate jam`: it
plays a signal into jam's input port and records jam's output port, both on JACK's frame
clock. `bandmate bench e2e` and the live tests use it.

The probe's process callback only copies into preallocated arrays. Recorded index r is the
r-th frame since recording began; `feed_started_at` is the recorded index of the JACK period
in which the probe wrote the signal's first sample, so a lag measured between the two is
counted on one clock: from the probe's output port, through JACK and jam, to its input port.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from engine.errors import EngineError

# jam's first line: "jam: backend B; ... latency X ms = N samples (model M ms, buffer F ms,
# device D ms)" (server/cli/live.py).
JAM_LATENCY = re.compile(
    r"^jam: backend (?P<backend>\S+);.*latency (?P<ms>\d+\.\d) ms = (?P<samples>\d+) samples "
    r"\(model (?P<model_ms>\d+\.\d) ms, buffer (?P<buffer_ms>\d+\.\d) ms, "
    r"device (?P<device_ms>\d+\.\d) ms\)",
    re.M,
)


@dataclass(frozen=True)
class ReportedLatency:
    """What `bandmate jam` printed about its own latency."""

    backend: str
    samples: int
    model_ms: float
    buffer_ms: float
    device_ms: float


def parse_jam_latency(stdout: str) -> ReportedLatency:
    found = JAM_LATENCY.search(stdout)
    if found is None:
        raise EngineError(f"bandmate jam did not report its latency: {stdout.strip()[:200]!r}")
    return ReportedLatency(
        backend=found["backend"],
        samples=int(found["samples"]),
        model_ms=float(found["model_ms"]),
        buffer_ms=float(found["buffer_ms"]),
        device_ms=float(found["device_ms"]),
    )


def jam_command(*options: str) -> list[str]:
    """`bandmate jam` run by this interpreter, so it needs no entry script on PATH."""
    return [sys.executable, "-m", "server.cli", "jam", *options]


class JamProbe:
    """Records jam's output and, once told, plays `feed` into jam's input."""

    def __init__(self, feed: np.ndarray, seconds: float, name: str = "bandmate-probe"):
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.rate = int(self.client.samplerate)
        self.feed_port = self.client.outports.register("feed")
        self.capture_port = self.client.inports.register("capture")
        self.feed, self.recorded = feed, np.zeros(int(seconds * self.rate), np.float32)
        self.fed = self.captured = 0
        self.recording = self.feeding = False
        self.feed_started_at: int | None = None  # recorded index of the first fed sample
        self.xruns: list[int] = []  # recorded index when JACK reported each xrun
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(lambda _delay_us: self.xruns.append(self.captured))
        self.client.activate()
        # Ports that exist before jam starts; jam's are the new ones.
        self.known_ports = {p.name for p in self.client.get_ports()}

    def _process(self, frames: int) -> None:
        if self.recording:
            n = min(frames, len(self.recorded) - self.captured)
            self.recorded[self.captured : self.captured + n] = self.capture_port.get_array()[:n]
            if self.feeding and self.feed_started_at is None:
                self.feed_started_at = self.captured
            self.captured += n
        out = self.feed_port.get_array()
        chunk = self.feed[self.fed : self.fed + frames] if self.feeding else self.feed[:0]
        out[: len(chunk)] = chunk
        out[len(chunk) :] = 0
        self.fed += len(chunk)

    @property
    def finished_feeding(self) -> bool:
        return self.fed >= len(self.feed)

    def wait_for_jam_ports(self, jam: subprocess.Popen[str], timeout: float = 120) -> None:
        """Connect the new PortAudio client's in_0 and out_0 (and cut in_0 off the dummy
        capture, which PortAudio connected it to)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if jam.poll() is not None:
                _, stderr = jam.communicate()
                raise EngineError(f"bandmate jam exited early: {stderr.strip()[-300:]}")
            ports = self.client.get_ports(is_audio=True)
            new = [p for p in ports if p.name not in self.known_ports]
            inputs = [p for p in new if p.is_input and p.name.endswith(":in_0")]
            outputs = [p for p in new if p.is_output and p.name.endswith(":out_0")]
            if inputs and outputs:
                for source in self.client.get_all_connections(inputs[0]):
                    self.client.disconnect(source, inputs[0])
                self.client.connect(self.feed_port, inputs[0])
                self.client.connect(outputs[0], self.capture_port)
                return
            time.sleep(0.01)
        raise EngineError(f"bandmate jam's PortAudio ports did not appear within {timeout:.0f} s")

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def find_exactly(window: np.ndarray, within: np.ndarray) -> int | None:
    """Where `window` occurs in `within` sample for sample, if it does."""
    starts = np.flatnonzero(within[: len(within) - len(window) + 1] == window[0])
    return next((int(s) for s in starts if np.array_equal(within[s : s + len(window)], window)),
                None)  # fmt: skip
