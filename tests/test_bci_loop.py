"""The whole BCMI loop with real LSL (the simulator's outlet) and real JACK MIDI: valence
follows scripted asymmetry flips, artefacts are gated, a killed stream is survived, jittered
or stepping stamps and a NaN sample are survived by `bci run`, and bad input is one line."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
import pytest
import rtmidi

from bci.live.bci_session import BciOutputs, BciSession
from bci.live.loop import BciRunConfig, RunSummary
from bci.live.lsl_input import StreamQuery
from bci.live.mapping import MODE_INTERVALS, MODES
from bci.live.simulate import AsymmetryStep, Event, Schedule, Simulator, SimulatorConfig
from engine.jackd import JackServer
from tests.bci_probe import StampedOutlet, input_events, read_jsonl, wait_until, windows
from tests.helpers import BANDMATE

# Slow, so not in `make test-quick`: every test here runs the loop on real LSL outlets, some with
# jackd.
pytestmark = pytest.mark.slow


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class MidiRecorder:
    """A JACK MIDI input connected to the session's port, keeping (local_clock, message)."""

    def __init__(self, port_name: str):
        self.messages: list[tuple[float, list[int]]] = []
        self.midi_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=unique("recorder"))
        ports = self.midi_in.get_ports()
        self.midi_in.open_port(next(i for i, p in enumerate(ports) if port_name in p))
        self.midi_in.set_callback(
            lambda event, _: self.messages.append((pylsl.local_clock(), event[0]))
        )

    def close(self) -> None:
        self.midi_in.close_port()


SessionRun = tuple[RunSummary, list[dict[str, Any]], Simulator, "MidiRecorder | None"]


def run_session(
    schedule: Schedule, baseline_s: float, duration_s: float, tmp_path: Path, midi: bool = True
) -> SessionRun:
    name, port = unique("sim"), unique("bci-out")
    simulator = Simulator(SimulatorConfig(name=name, source_id=name), schedule)
    simulator.start()
    config = BciRunConfig(
        query=StreamQuery(name=name), baseline_s=baseline_s, duration_s=duration_s, seed=1
    )
    log_path = tmp_path / "run.jsonl"
    session = BciSession(
        config, BciOutputs(midi_port=port if midi else None, log_path=log_path, outlets=False)
    )
    recorder = MidiRecorder(port) if midi else None
    try:
        summary = session.run()
    finally:
        simulator.stop()
        if recorder is not None:
            recorder.close()
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    for record in records:  # seconds since the simulator's sample 0
        for key in ("lsl_time", "sent", "due"):
            if key in record:
                record[key] -= simulator.origin
    if recorder is not None:
        recorder.messages = [(t - simulator.origin, m) for t, m in recorder.messages]
    return summary, records, simulator, recorder


def scale_classes(mode: str) -> set[int]:
    return {interval % 12 for interval in MODE_INTERVALS[mode]}  # the tonic is C (60)


@pytest.mark.jack
@pytest.mark.slow
def test_valence_follows_asymmetry_flips_and_ignores_artefacts(
    jack_server: JackServer, tmp_path: Path
) -> None:
    flips = [(8.0, 1.0), (28.0, -1.0), (48.0, 1.0)]
    schedule = Schedule(
        asymmetry=(AsymmetryStep(0.0, 0.0), *(AsymmetryStep(t, a) for t, a in flips)),
        events=(Event(17.0, "blink", 0.3), Event(38.0, "emg", 0.5)),
    )
    summary, records, _, recorder = run_session(schedule, 8.0, 54.0, tmp_path)
    windows = [r for r in records if r["type"] == "window" and r["phase"] == "feedback"]
    assert windows and summary.midi_messages > 0
    bounds = [t for t, _ in flips] + [windows[-1]["lsl_time"] + 0.01]
    for (flip, sign), end in zip(flips, bounds[1:], strict=True):
        settled = [w for w in windows if flip + 3.0 <= w["lsl_time"] < end]
        assert settled, f"no windows after the flip at {flip} s"
        wrong = [
            (round(w["lsl_time"], 2), round(w["valence"], 2))
            for w in settled
            if np.sign(w["valence"]) != sign
        ]
        assert not wrong, f"valence did not follow the flip at {flip} s to {sign}: {wrong[:5]}"
        modes = {w["params"]["mode"] for w in settled}
        bright = {m for m in modes if MODES.index(m) < 3}
        assert (bright == modes) if sign > 0 else not bright, (flip, modes)
        # Notes heard in the segment (after a bar's delay) fit the modes logged in it.
        logged = {w["params"]["mode"] for w in windows if flip <= w["lsl_time"] < end}
        allowed = set().union(*(scale_classes(m) for m in logged))
        assert recorder is not None
        heard = {
            m[1] % 12
            for t, m in recorder.messages
            if flip + 6.0 <= t < end and m[0] & 0xF0 == 0x90 and m[0] & 0x0F != 9
        }
        assert heard and heard <= allowed, (flip, heard - allowed)
    for start, kind in ((17.0, "blink"), (38.0, "emg")):
        hit = [w for w in windows if start + 0.3 < w["lsl_time"] < start + 1.8]
        assert hit and all(w["gate"][kind] for w in hit), f"{kind} at {start} s was not gated"
        around = [w for w in windows if start - 1.0 < w["lsl_time"] < start + 3.0]
        steps = np.abs(np.diff([w["valence"] for w in around]))
        assert steps.max() < 0.15, f"valence jumped by {steps.max():.2f} on the {kind}"


@pytest.mark.jack
@pytest.mark.slow
def test_a_killed_stream_is_survived_and_counted(jack_server: JackServer, tmp_path: Path) -> None:
    schedule = Schedule(
        asymmetry=(AsymmetryStep(0.0, 0.0), AsymmetryStep(4.0, 1.0)),
        events=(Event(10.0, "kill", 5.0),),
    )
    summary, records, simulator, recorder = run_session(schedule, 4.0, 24.0, tmp_path)
    assert summary.reconnects == 1
    # The 5 s the outlet was gone, plus the few samples its successor sent before the inlet
    # reconnected, which no inlet received either (tests/test_bci_lsl.py counts them exactly).
    assert simulator.dropped == 5 * 256
    assert simulator.dropped <= summary.dropped < simulator.dropped + 64
    reconnected = [r for r in records if r["type"] == "input" and r["event"] == "reconnected"]
    assert reconnected and reconnected[0]["lsl_clock"] - simulator.origin < 15.0 + 5.0
    assert recorder is not None
    during = [t for t, m in recorder.messages if 10.5 < t < 14.5 and m[0] & 0xF0 == 0x90]
    assert during, "the music stopped while the stream was away"


def bci_run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BANDMATE, "bci", "run", "--no-outlets", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_no_stream_is_one_line(tmp_path: Path) -> None:
    started = time.monotonic()
    done = bci_run("--stream", unique("absent"))
    assert done.returncode == 2 and time.monotonic() - started < 20
    assert (
        done.stderr.strip().startswith("error: no LSL stream") and "\n" not in done.stderr.strip()
    )


def test_missing_labels_and_a_wrong_rate_are_one_line(tmp_path: Path) -> None:
    name = unique("eeg")
    info = pylsl.StreamInfo(name, "EEG", 2, 256.0, "float32", name)
    channels = info.desc().append_child("channels")
    for label in ("F3", "F4"):
        channels.append_child("channel").append_child_value("label", label)
    outlet = pylsl.StreamOutlet(info)
    done = bci_run("--stream", name)
    assert done.returncode == 2 and "AF7, AF8" in done.stderr and "F3, F4" in done.stderr
    montage = tmp_path / "f3f4.yaml"
    montage.write_text("left: F3\nright: F4\nsample_rate: 128\n")
    done = bci_run("--stream", name, "--montage", str(montage))
    assert done.returncode == 2 and "256" in done.stderr and "128" in done.stderr
    assert "Traceback" not in done.stderr
    del outlet


# --- bad stamps and values, through `bci run` (tests/bci_probe.py's outlet) ----------------


class BciRun:
    """A `bandmate bci run` process reading `outlet` (2 s baseline, silent), logging to
    `log`; `stop()` ends it with Ctrl-C, as a user would."""

    def __init__(self, outlet: StampedOutlet, log: Path):
        self.log = log
        command = [BANDMATE, "bci", "run", "--no-outlets", "--no-synth", "--stream", outlet.name,
                   "--baseline", "2", "--log", str(log)]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def records(self) -> list[dict[str, Any]]:
        return read_jsonl(self.log)

    def wait_for(self, condition: Callable[[list[dict[str, Any]]], bool], what: str) -> None:
        """Until `condition(records)`; fails at once, with its stderr, if the process ends."""

        def met() -> bool:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read() if self.process.stderr else ""
                raise AssertionError(f"bci run ended (exit {self.process.returncode}): {stderr}")
            return condition(self.records())

        wait_until(met, 60.0, what)

    def stop(self) -> tuple[int, str, str]:
        self.process.send_signal(signal.SIGINT)
        stdout, stderr = self.process.communicate(timeout=30)
        return self.process.returncode, stdout, stderr

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def after(records: list[dict[str, Any]], lsl_time: float) -> list[dict[str, Any]]:
    """Feedback windows whose last sample is later than `lsl_time`."""
    return [w for w in windows(records, "feedback") if w["lsl_time"] > lsl_time]


def test_bci_run_takes_chunk_stamps_jittered_by_3_ms_as_jitter_not_as_drops(
    tmp_path: Path,
) -> None:
    # A Bluetooth bridge that stamps on arrival: whole chunks move by up to +-3 ms, under one
    # sample period (3.9 ms). It used to count false gaps and crash after 2 s.
    outlet = StampedOutlet(jitter_s=0.003)
    outlet.start()
    run = BciRun(outlet, tmp_path / "run.jsonl")
    try:
        run.wait_for(lambda r: len(windows(r, "feedback")) >= 16, "4 s of feedback windows")
        code, stdout, stderr = run.stop()
    finally:
        run.kill()
        outlet.stop()
    assert code == 0, stderr
    records = run.records()
    assert input_events(records, "dropped") == []
    assert not any(w["gate"]["drops"] for w in windows(records))
    assert "0 samples dropped" in stdout


def test_bci_run_takes_a_5_s_step_back_of_the_stamps_out_and_logs_it(tmp_path: Path) -> None:
    outlet = StampedOutlet()
    outlet.start()
    run = BciRun(outlet, tmp_path / "run.jsonl")
    try:
        run.wait_for(lambda r: len(windows(r, "feedback")) >= 4, "feedback windows")
        outlet.step_clock(-5.0)
        run.wait_for(
            lambda r: any(len(after(r, e["at"])) >= 12 for e in input_events(r, "jumped")),
            "3 s of windows after the step",
        )
        code, stdout, stderr = run.stop()
    finally:
        run.kill()
        outlet.stop()
    assert code == 0, stderr
    records = run.records()
    [jumped] = input_events(records, "jumped")
    assert jumped["by_s"] == pytest.approx(-5.0, abs=1e-3)
    # The samples kept coming at 256 Hz: the windows' timeline runs on, with nothing dropped.
    times = [w["lsl_time"] for w in windows(records)]
    assert np.all(np.diff(times) == pytest.approx(0.25, abs=0.01))
    assert input_events(records, "dropped") == []
    assert "1 clock jumps taken out" in stdout


def test_bci_run_gates_the_windows_holding_a_nan_sample_and_plays_on(tmp_path: Path) -> None:
    outlet = StampedOutlet()
    outlet.start()
    run = BciRun(outlet, tmp_path / "run.jsonl")
    try:
        run.wait_for(lambda r: len(windows(r, "feedback")) >= 4, "feedback windows")
        outlet.send_nan()
        run.wait_for(
            lambda r: any(len(after(r, e["at"])) >= 12 for e in input_events(r, "non_finite")),
            "3 s of windows after the NaN",
        )
        code, stdout, stderr = run.stop()
    finally:
        run.kill()
        outlet.stop()
    assert code == 0, stderr
    records = run.records()
    [event] = input_events(records, "non_finite")
    assert event["channel"] == "AF7"
    # A 2 s window every 0.25 s: 8 windows hold the sample, each gated; the ones after are not.
    holding = [w for w in windows(records) if w["gate"]["non_finite"]]
    assert len(holding) == 8 and all(w["gate"]["gated"] for w in holding)
    later = after(records, holding[-1]["lsl_time"])
    assert later and not any(w["gate"]["gated"] for w in later)
    assert [r for r in records if r["type"] == "midi" and r["sent"] > event["lsl_clock"]]
    assert "8 of them for NaN/Inf" in stdout
