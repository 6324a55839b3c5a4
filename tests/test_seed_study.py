"""The shipped seed study, unchanged, from simulated EEG to the report: what the README's
experimenter walkthrough does, for two participants at a tenth of its durations.

Per participant, two real processes: `bandmate bci simulate --protocol` (EEG whose asymmetry
follows that participant's blocks: happy +0.4, sad -0.4) and `bandmate session run
--time-scale 0.1`. The two participants run side by side. Then `bandmate session analyze`."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from bci.experiment.experiment_protocol import EXAMPLE_PROTOCOL, load_protocol
from tests.helpers import BANDMATE, assert_valid_bids

# Slow, so not in `make test-quick`: every test here runs whole `session run`s on simulated EEG.
pytestmark = pytest.mark.slow

PARTICIPANTS = ("P01", "P02")


@pytest.fixture(scope="module")
def seed_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    study = tmp_path_factory.mktemp("seed") / "study"
    simulators: list[subprocess.Popen[str]] = []
    sessions: list[subprocess.Popen[str]] = []
    try:
        for number, participant in enumerate(PARTICIPANTS, start=1):
            stream = f"SeedSim{participant}"
            simulators.append(subprocess.Popen(
                [BANDMATE, "bci", "simulate", "--protocol", str(EXAMPLE_PROTOCOL),
                 "--participant", participant, "--name", stream, "--seed", str(number)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ))  # fmt: skip
        for participant in PARTICIPANTS:
            sessions.append(subprocess.Popen(
                [BANDMATE, "session", "run", str(EXAMPLE_PROTOCOL), "--participant", participant,
                 "--out", str(study), "--stream", f"SeedSim{participant}", "--time-scale", "0.1",
                 "--ratings", "auto", "--synth-driver", "none",
                 "--covariates", f"musical_training={3 * len(sessions)}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True,
            ))  # fmt: skip
        for session in sessions:
            _, stderr = session.communicate(timeout=300)
            assert session.returncode == 0, stderr
    finally:
        for process in [*sessions, *simulators]:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in simulators:
            output, errors = process.communicate(timeout=30)
            assert "happy: asymmetry +0.40" in output and "sad: asymmetry -0.40" in output, output
            assert errors == "", errors  # it let go of the session before its stream went
    return study


def events_of(study: Path, participant: str) -> pd.DataFrame:
    eeg = study / "bids" / f"sub-{participant}" / "ses-01" / "eeg"
    return pd.read_csv(eeg / f"sub-{participant}_ses-01_task-bcmi_events.tsv", sep="\t")


def test_the_shipped_seed_study_runs_time_scaled_and_keeps_its_first_event(
    seed_study: Path,
) -> None:
    protocol = load_protocol(EXAMPLE_PROTOCOL)
    for participant in PARTICIPANTS:
        events = events_of(seed_study, participant)
        starts = events[events.trial_type == "block_start"]
        assert len(starts) == 10
        # The eyes-open baseline's start, stamped as the recording began, is the first event.
        first = events[events.trial_type != "cue"].iloc[0]
        assert (first.trial_type, first.block) == ("block_start", "eyes_open")
        planned = [0.1 * protocol.block(name).duration_s for name in starts.block]
        assert list(starts.duration) == pytest.approx(planned, abs=0.01)
        assert len(events[events.trial_type == "rating"]) == 4
    assert_valid_bids(seed_study / "bids")


def test_session_analyze_reports_the_planted_effect_of_the_seed_study(
    seed_study: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [BANDMATE, "session", "analyze", str(seed_study / "bids"), "--report",
         str(tmp_path / "report.html"), "--bin-s", "2", "--simulations", "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("2 participants, ")
    bins = pd.read_csv(tmp_path / "tables" / "faa_bins.csv")
    blocks = bins.groupby("participant").block.unique()
    assert all(sorted(b) == ["happy_1", "happy_2", "sad_1", "sad_2"] for b in blocks)
    effects = pd.read_csv(tmp_path / "tables" / "fixed_effects.csv").set_index("term")
    emotion = effects.loc["happy - sad"]
    assert emotion.estimate > 0 and emotion.p < 0.05, emotion
    page = (tmp_path / "report.html").read_text()
    assert "Signal quality" in page and "Left out the covariates musical_training" in page
