"""A participant's second visit is their next BIDS session (ses-02), not a refusal; a session
named again on purpose is refused in one line that names --overwrite."""

from __future__ import annotations

import io
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from bci.console import Console
from bci.experiment.session_config import RunnerConfig
from bci.experiment.session_runner import SessionRunner
from bci.live.lsl_input import StreamQuery
from bci.live.simulate import Schedule, Simulator, SimulatorConfig
from tests.helpers import BANDMATE, assert_valid_bids

# Slow, so not in `make test-quick`: every test here runs `session run` on simulated EEG in real
# time.
pytestmark = pytest.mark.slow

PROTOCOL = """\
name: two short blocks
version: 1
baseline_block: eyes_closed
blocks:
  - {name: eyes_closed, kind: baseline_eyes_closed, instruction: Close your eyes., duration_s: 4}
  - {name: happy, kind: emotion, target_emotion: happy, instruction: Recall joy., duration_s: 3}
sequence: [eyes_closed, happy]
"""


@pytest.fixture(scope="module")
def two_visits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Participant P01 recorded twice into one study folder, by two runners."""
    work = tmp_path_factory.mktemp("visits")
    protocol = work / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    name = f"sim-{uuid.uuid4().hex[:8]}"
    simulator = Simulator(SimulatorConfig(name=name, source_id=name), Schedule())
    simulator.start()
    try:
        for mood in (3.0, 7.0):
            config = RunnerConfig(protocol, "P01", work / "study", {"mood": mood},
                                  StreamQuery(name=name), ratings="auto", ready_s=0.0)  # fmt: skip
            SessionRunner(config, Console(io.StringIO())).run()
    finally:
        simulator.stop()
    yield work / "study"


def test_a_second_visit_is_exported_as_session_02(two_visits: Path) -> None:
    bids = two_visits / "bids"
    for session in ("01", "02"):
        eeg = (
            bids
            / "sub-P01"
            / f"ses-{session}"
            / "eeg"
            / f"sub-P01_ses-{session}_task-bcmi_eeg.vhdr"
        )
        assert eeg.is_file()
        assert (two_visits / "raw" / "sub-P01" / f"ses-{session}" / "closed.json").is_file()
    sessions = pd.read_csv(bids / "sub-P01" / "sub-P01_sessions.tsv", sep="\t")
    assert dict(zip(sessions.session_id, sessions.mood, strict=True)) == {
        "ses-01": 3.0,
        "ses-02": 7.0,
    }
    assert_valid_bids(bids)


def test_a_session_named_again_is_refused_in_one_line_naming_overwrite(
    two_visits: Path, tmp_path: Path
) -> None:
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    done = subprocess.run(
        [BANDMATE, "session", "run", str(protocol), "--participant", "P01", "--out",
         str(two_visits), "--session", "01", "--ratings", "auto"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        f"error: sub-P01 already has session 01 in {two_visits}; leave out --session to record "
        "the next one (ses-03), or give --overwrite to replace it\n"
    )
