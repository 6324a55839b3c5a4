"""`bandmate session run` against the EEG simulator: blocks, markers, BIDS, and refusing to
overwrite a participant's session; a session survives bad stamps and a NaN, and one cut short
(Ctrl-C, SIGTERM, the BCMI loop dying) exports what it recorded."""

from __future__ import annotations

import io
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bci.console import Console
from bci.errors import BciError
from bci.experiment.recorder import read_session
from bci.experiment.session_config import RunnerConfig, parse_covariates
from bci.experiment.session_runner import SessionRunner, SessionStopped
from bci.live.loop import WindowProcessor, WindowResult
from bci.live.lsl_input import StreamQuery
from bci.live.simulate import AsymmetryStep, Schedule, Simulator, SimulatorConfig
from tests.bci_probe import StampedOutlet, input_events, read_jsonl, wait_until, windows
from tests.helpers import BANDMATE, assert_valid_bids

# Slow, so not in `make test-quick`: every test here runs `session run` on simulated EEG in real
# time.
pytestmark = pytest.mark.slow

PROTOCOL = """\
name: short test
version: 1
baseline_block: eyes_closed
blocks:
  - {name: eyes_closed, kind: baseline_eyes_closed, instruction: Close your eyes., duration_s: 4}
  - {name: happy, kind: emotion, target_emotion: happy, instruction: Recall joy., duration_s: 4}
  - {name: sad, kind: emotion, target_emotion: sad, instruction: Recall sorrow., duration_s: 4}
  - {name: rest, kind: rest, instruction: Relax., duration_s: 1}
sequence:
  - eyes_closed
  - {counterbalance: [happy, sad], after_each: rest}
"""


def osc_listener(address: str, into: list[str]):  # type: ignore[no-untyped-def]
    """A real OSC server on a free UDP port, appending each message's argument."""
    import threading

    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer

    dispatcher = Dispatcher()
    dispatcher.map(address, lambda _, value: into.append(value))
    server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_session_runs_records_and_exports_bids(tmp_path: Path) -> None:
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    name = f"sim-{uuid.uuid4().hex[:8]}"
    simulator = Simulator(SimulatorConfig(name=name, source_id=name),
                          Schedule((AsymmetryStep(0.0, 0.0), AsymmetryStep(5.0, 0.8))))  # fmt: skip
    simulator.start()
    terminal = io.StringIO()
    instructions: list[str] = []
    osc = osc_listener("/bandmate/instruction", instructions)
    # "sub-P02" is participant 2, BIDS subject "P02": the runner drops the prefix.
    config = RunnerConfig(protocol, "sub-P02", tmp_path / "study", parse_covariates("acting=1"),
                          StreamQuery(name=name), ratings="auto",
                          server_osc=f"127.0.0.1:{osc.server_address[1]}")  # fmt: skip
    try:
        vhdr = SessionRunner(config, Console(terminal)).run()
    finally:
        simulator.stop()
        osc.shutdown()
    assert vhdr.is_file()
    # What a server's page would have shown, block by block, then cleared.
    assert instructions == [
        "Close your eyes.",
        "Recall sorrow.",
        "Relax.",
        "Recall joy.",
        "Relax.",
        "",
    ]
    assert [line.split("]")[1].split(":")[0].strip() for line in block_lines(terminal)] == [
        "eyes_closed", "sad", "rest", "happy", "rest"  # participant 2 gets the second order
    ]  # fmt: skip
    events = pd.read_csv(next(vhdr.parent.glob("*_events.tsv")), sep="\t")
    starts = events[events.trial_type == "block_start"]
    assert list(starts.block) == ["eyes_closed", "sad", "rest", "happy", "rest"]
    assert len(events[events.trial_type == "rating"]) == 2
    participants = pd.read_csv(tmp_path / "study" / "bids" / "participants.tsv", sep="\t")
    assert participants.loc[participants.participant_id == "sub-P02", "acting"].item() == 1
    log = tmp_path / "study" / "raw" / "sub-P02" / "ses-01" / "bcmi_loop.jsonl"
    assert '"phase":"feedback"' in log.read_text()
    assert not (log.parent / "loop.jsonl").exists()  # the loop's log is the one above
    sourcedata = tmp_path / "study" / "bids" / "sourcedata" / "sub-P02" / "ses-01" / "eeg"
    exported_log = sourcedata / log.name
    assert exported_log.read_text() == log.read_text()
    assert_valid_bids(tmp_path / "study" / "bids")


def block_lines(terminal: io.StringIO) -> list[str]:
    """The runner's line per block, "[n/N] name: instruction (seconds s)"."""
    return [line for line in terminal.getvalue().splitlines() if line.startswith("[")]


def test_bad_covariates_are_one_line() -> None:
    with pytest.raises(BciError, match="expected NAME=NUMBER"):
        parse_covariates("musical_training=lots")


def test_kill_9_mid_session_leaves_a_readable_recording_missing_under_1_s(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import time

    import pylsl

    from bci.experiment.recorder import read_session
    from tests.helpers import simulated_session_run

    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    simulator, command = simulated_session_run(protocol, tmp_path / "study")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        folder = tmp_path / "study" / "raw" / "sub-P01" / "ses-01"
        deadline = time.monotonic() + 30
        while not (folder / "eeg_timestamps.f64").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(4.0)
        os.kill(process.pid, signal.SIGKILL)
        killed_at = pylsl.local_clock()
        process.wait(timeout=10)
    finally:
        simulator.stop()
    recorded = read_session(folder)
    assert not recorded.complete  # no clean close: it was killed
    first, last = recorded.timestamps[0], recorded.timestamps[-1]
    assert killed_at - last <= 1.0, f"the last {killed_at - last:.2f} s were lost"
    assert recorded.samples.shape[1] >= (last - first) * 256 - 1  # no holes before that
    assert [m["kind"] for m in recorded.markers][:1] == ["cue"]  # the first instruction's


# --- bad input and early ends ----------------------------------------------------------------

TWO_BLOCKS = """\
name: two blocks
version: 1
baseline_block: eyes_closed
blocks:
  - {name: eyes_closed, kind: baseline_eyes_closed, instruction: Close your eyes., duration_s: 4}
  - {name: happy, kind: emotion, target_emotion: happy, instruction: Recall joy., duration_s: 8}
sequence: [eyes_closed, happy]
"""


class SessionRun:
    """A `bandmate session run` process of TWO_BLOCKS, participant P01, reading `outlet`."""

    def __init__(self, outlet: StampedOutlet, tmp_path: Path):
        protocol = tmp_path / "protocol.yaml"
        protocol.write_text(TWO_BLOCKS)
        self.study = tmp_path / "study"
        self.folder = self.study / "raw" / "sub-P01" / "ses-01"
        command = [BANDMATE, "session", "run", str(protocol), "--participant", "P01",
                   "--out", str(self.study), "--stream", outlet.name, "--ratings", "auto",
                   "--synth-driver", "none"]  # fmt: skip
        # As a terminal starts it: a suite run in the background (nohup ... &) hands its
        # children SIGINT ignored, and Python then installs no Ctrl-C handler.
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip

    def records(self) -> list[dict[str, Any]]:
        return read_jsonl(self.folder / "bcmi_loop.jsonl")

    def wait_for_feedback(self, count: int) -> None:
        def met() -> bool:
            assert self.process.poll() is None, "session run ended early"
            return len(windows(self.records(), "feedback")) >= count

        wait_until(met, 60.0, f"{count} feedback windows")

    def finish(self) -> tuple[int, str, str]:
        stdout, stderr = self.process.communicate(timeout=90)
        return self.process.returncode, stdout, stderr

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def exported(self) -> Path:
        eeg = self.study / "bids" / "sub-P01" / "ses-01" / "eeg"
        return eeg / "sub-P01_ses-01_task-bcmi_eeg.vhdr"


def midi_after(records: list[dict[str, Any]], lsl_clock: float) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == "midi" and r["sent"] > lsl_clock + 1.0]


def test_a_session_fed_jittered_stamps_and_a_clock_step_plays_feedback_to_the_end(
    tmp_path: Path,
) -> None:
    outlet = StampedOutlet(jitter_s=0.003)
    outlet.start()
    run = SessionRun(outlet, tmp_path)
    try:
        run.wait_for_feedback(4)
        outlet.step_clock(-5.0)
        code, _, stderr = run.finish()
    finally:
        run.kill()
        outlet.stop()
    assert code == 0, stderr
    records = run.records()
    assert input_events(records, "dropped") == []
    [jumped] = input_events(records, "jumped")
    # The loop played on to the end of the block: feedback windows and notes after the step.
    block_end = [m for m in read_session(run.folder).markers if m["kind"] == "block_end"][-1]
    last = windows(records, "feedback")[-1]["lsl_time"]
    assert block_end["lsl_time"] - last < 1.0 and last - jumped["lsl_clock"] > 3.0
    assert midi_after(records, jumped["lsl_clock"])
    assert run.exported().is_file()


def test_a_session_with_a_nan_sample_plays_on_and_exports_bids(tmp_path: Path) -> None:
    outlet = StampedOutlet()
    outlet.start()
    run = SessionRun(outlet, tmp_path)
    try:
        run.wait_for_feedback(4)
        outlet.send_nan()
        code, _, stderr = run.finish()
    finally:
        run.kill()
        outlet.stop()
    assert code == 0, stderr
    records = run.records()
    [event] = input_events(records, "non_finite")
    holding = [w for w in windows(records) if w["gate"]["non_finite"]]
    assert len(holding) == 8
    later = [w for w in windows(records, "feedback") if w["lsl_time"] > holding[-1]["lsl_time"]]
    assert len(later) >= 8 and not any(w["gate"]["gated"] for w in later)
    assert midi_after(records, event["lsl_clock"])
    assert run.exported().is_file()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_a_session_stopped_by_ctrl_c_or_sigterm_exports_what_it_recorded(
    tmp_path: Path, stop: signal.Signals
) -> None:
    outlet = StampedOutlet()
    outlet.start()
    run = SessionRun(outlet, tmp_path)
    try:
        run.wait_for_feedback(1)
        run.process.send_signal(stop)
        code, _, stderr = run.finish()
    finally:
        run.kill()
        outlet.stop()
    assert code == 130, stderr
    assert "Traceback" not in stderr
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("stopped: interrupted in block 2/2 (happy); what was recorded")
    assert last_line.endswith(f"exported to {run.exported()}")
    recorded = read_session(run.folder)
    assert recorded.complete
    assert recorded.markers[-1]["kind"] == "session_stopped"
    ended = [m["block"] for m in recorded.markers if m["kind"] == "block_end"]
    assert ended == ["eyes_closed"]  # block 2 (happy) was cut
    assert run.exported().is_file()


def test_a_dying_bcmi_loop_stops_the_session_in_one_line_and_exports_what_it_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = WindowProcessor.process

    def fail_after_the_baseline(self: WindowProcessor, *args: Any) -> WindowResult:
        if not self.in_baseline:
            raise RuntimeError("injected fault")
        return process(self, *args)

    monkeypatch.setattr(WindowProcessor, "process", fail_after_the_baseline)
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    name = f"sim-{uuid.uuid4().hex[:8]}"
    simulator = Simulator(SimulatorConfig(name=name, source_id=name), Schedule())
    simulator.start()
    config = RunnerConfig(protocol, "P01", tmp_path / "study", query=StreamQuery(name=name),
                          ratings="auto")  # fmt: skip
    terminal = io.StringIO()
    try:
        with pytest.raises(SessionStopped) as stopped:
            SessionRunner(config, Console(terminal)).run()
    finally:
        simulator.stop()
    message = str(stopped.value)
    assert "\n" not in message
    assert message.startswith(
        "the BCMI loop stopped (RuntimeError: injected fault; its traceback is in "
        "bcmi_loop.jsonl) in block 2/5"
    )
    exported = stopped.value.exported
    assert exported is not None and exported.is_file() and str(exported) in message
    # It stopped at once: the remaining blocks did not run without music.
    folder = tmp_path / "study" / "raw" / "sub-P01" / "ses-01"
    kinds = [m["kind"] for m in read_session(folder).markers]
    assert kinds.count("block_end") == 1 and kinds[-1] == "session_stopped"  # block 2 cut
    assert len(block_lines(terminal)) == 2
    [error] = [r for r in read_jsonl(folder / "bcmi_loop.jsonl") if r["type"] == "error"]
    assert "injected fault" in error["traceback"]


def test_a_stream_that_sends_nothing_stops_the_session_in_one_line_before_any_marker(
    tmp_path: Path,
) -> None:
    from bci.live.simulate import eeg_outlet

    name = f"silent-{uuid.uuid4().hex[:8]}"
    outlet = eeg_outlet(name, name, ("TP9", "AF7", "AF8", "TP10"), 256.0, 8, "test")
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(TWO_BLOCKS)
    done = subprocess.run(
        [BANDMATE, "session", "run", str(protocol), "--participant", "P01", "--out",
         str(tmp_path / "study"), "--stream", name, "--ratings", "auto", "--synth-driver", "none"],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    del outlet
    assert done.returncode == 2
    assert done.stderr == (
        f"error: LSL stream {name!r} sent no samples in 10 s: is the headset streaming?\n"
    )
    assert read_session(tmp_path / "study" / "raw" / "sub-P01" / "ses-01").markers == []
