"""`bandmate session run` against the EEG simulator: blocks, markers, BIDS, and refusing to
overwrite a participant's session."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest

from bci.errors import BciError
from bci.lsl_input import StreamQuery
from bci.session_runner import RunnerConfig, SessionRunner, parse_covariates
from bci.simulate import AsymmetryStep, Schedule, Simulator, SimulatorConfig
from tests.helpers import assert_valid_bids

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
    shown: list[str] = []
    instructions: list[str] = []
    osc = osc_listener("/bandmate/instruction", instructions)
    # "sub-P02" is participant 2, BIDS subject "P02": the runner drops the prefix.
    config = RunnerConfig(protocol, "sub-P02", tmp_path / "study", parse_covariates("acting=1"),
                          StreamQuery(name=name), ratings="auto",
                          server_osc=f"127.0.0.1:{osc.server_address[1]}")  # fmt: skip
    try:
        vhdr = SessionRunner(config, show=shown.append).run()
        with pytest.raises(BciError, match="already"):
            SessionRunner(config, show=shown.append)
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
    assert [line.split("]")[1].split(":")[0].strip() for line in shown] == [
        "eyes_closed", "sad", "rest", "happy", "rest"  # participant 2 gets the second order
    ]  # fmt: skip
    events = pd.read_csv(next(vhdr.parent.glob("*_events.tsv")), sep="\t")
    starts = events[events.trial_type == "block_start"]
    assert list(starts.block) == ["eyes_closed", "sad", "rest", "happy", "rest"]
    assert len(events[events.trial_type == "rating"]) == 2
    participants = pd.read_csv(tmp_path / "study" / "bids" / "participants.tsv", sep="\t")
    assert participants.loc[participants.participant_id == "sub-P02", "acting"].item() == 1
    log = tmp_path / "study" / "raw" / "sub-P02" / "bcmi_loop.jsonl"
    assert '"phase":"feedback"' in log.read_text()
    assert_valid_bids(tmp_path / "study" / "bids")


def test_bad_covariates_are_one_line() -> None:
    with pytest.raises(BciError, match="expected NAME=NUMBER"):
        parse_covariates("musical_training=lots")


def test_kill_9_mid_session_leaves_a_readable_recording_missing_under_1_s(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import time

    import pylsl

    from bci.recorder import read_session
    from tests.helpers import simulated_session_run

    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    simulator, command = simulated_session_run(protocol, tmp_path / "study")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        folder = tmp_path / "study" / "raw" / "sub-P01"
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
    assert [m["kind"] for m in recorded.markers][:1] == ["block_start"]
