"""A simulated 8-participant study through the whole pipeline: simulated EEG -> recorder ->
BIDS -> `bandmate session analyze` -> the planted emotion effect and variance partition,
recovered."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bci.analysis.study import load_study
from bci.analysis.study_simulation import SimulatedStudy, planted_partition, simulate_study_bids
from tests.helpers import BANDMATE, assert_valid_bids


@pytest.mark.slow
def test_analyze_recovers_a_planted_effect_and_variance_partition_from_a_bids_study(
    tmp_path: Path,
) -> None:
    """The planted partition (bci.analysis.study_simulation.planted_partition) is in FAA units: the
    simulator's gain and the bins' own noise are measured on separate simulated EEG. Stated
    tolerance, per share, three sampling SDs of the estimate:
    - emotion: its variance is (beta/2)^2, so its relative SD is 2 SE/beta = 2/z with
      SE = 2 sqrt(bin variance / rows) (emotion varies within participants);
    - residual and participant level (random intercept plus the participant covariates,
      which can only explain intercepts): the residual variance has relative SD
      sqrt(2 / (rows - participants)), and what it loses the participant level gains; plus
      0.01 for the gain's calibration.
    Over seeds 0-14 every share stayed inside these bounds (largest: 0.6 of its bound)."""
    root = tmp_path / "bids"
    study = SimulatedStudy(participants=8, effect=0.1, seed=2)
    planted = planted_partition(study, simulate_study_bids(root, study))
    assert_valid_bids(root)
    data = load_study(root).bins
    assert set(data.participant) == {f"sub-{i:02d}" for i in range(1, 9)}
    assert {"musical_training", "acting", "sam_valence"} <= set(data.columns)
    report = tmp_path / "out" / "report.html"
    done = subprocess.run(
        [BANDMATE, "session", "analyze", str(root), "--report", str(report), "--simulations", "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    effects = pd.read_csv(tmp_path / "out" / "tables" / "fixed_effects.csv").set_index("term")
    emotion = effects.loc[next(t for t in effects.index if "happy" in t and ":" not in t)]
    assert emotion.estimate > 0 and emotion.p < 0.05, emotion
    shares = pd.read_csv(tmp_path / "out" / "tables" / "variance_partition.csv")
    share = shares.set_index("component")["share"]
    measured = {
        "target_emotion": share["target_emotion"],
        "participant_level": share["participant"] + share["musical_training"] + share["acting"],
        "residual": share["residual"],
    }
    rows = len(data)
    z = planted.gain * study.effect / (2 * np.sqrt(planted.bin_variance / rows))
    residual_tolerance = 3 * np.sqrt(2 / (rows - 8)) * planted.shares["residual"] + 0.01
    tolerance = {
        "target_emotion": 3 * (2 / z) * planted.shares["target_emotion"],
        "participant_level": residual_tolerance,
        "residual": residual_tolerance,
    }
    for component, expected in planted.shares.items():
        assert abs(measured[component] - expected) <= tolerance[component], (
            component, measured, planted.shares, tolerance
        )  # fmt: skip
    assert "data:image/png;base64," in report.read_text()


def test_analyze_says_what_is_wrong_with_a_folder_that_is_not_a_study(tmp_path: Path) -> None:
    done = subprocess.run([BANDMATE, "session", "analyze", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {tmp_path}: not a BIDS study (no participants.tsv)"


def test_analyze_of_a_study_folder_points_at_its_bids_dataset(tmp_path: Path) -> None:
    """`session run --out STUDY` writes raw/ and bids/; STUDY itself is no BIDS dataset."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "bids").mkdir()
    (tmp_path / "bids" / "participants.tsv").write_text("participant_id\n")
    done = subprocess.run([BANDMATE, "session", "analyze", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: {tmp_path} is the study folder: analyze its BIDS dataset, {tmp_path / 'bids'}"
    )


def test_a_block_broken_off_by_a_pause_is_left_out_and_its_rerun_is_rated(tmp_path: Path) -> None:
    """As `session run` records a pause: the happy block is broken off 3 s in, then runs
    again in full and is rated; only the rerun is analysed, with its rating."""
    from bci.experiment.bids_export import export_bids
    from bci.experiment.recorder import SessionRecorder, read_session
    from bci.live.simulate import Schedule, SimulatorConfig, synthesize

    config, rate = SimulatorConfig(), 256.0
    total = int(40 * rate)
    fields = {"block_kind": "emotion", "music": "feedback"}
    with SessionRecorder(tmp_path / "raw", list(config.channels), rate) as recorder:
        data = synthesize(config, Schedule(), 0, total).astype(np.float32)
        recorder.write_eeg(np.arange(total) / rate, data)
        recorder.marker("block_start", 1.0, block="happy", target_emotion="happy",
                        duration_s=10.0, **fields)  # fmt: skip
        recorder.marker("pause", 4.0, block="happy")
        recorder.marker("resume", 9.0, block="happy")
        recorder.marker("block_start", 10.0, block="happy", target_emotion="happy",
                        duration_s=10.0, **fields)  # fmt: skip
        recorder.marker("block_end", 20.0, block="happy")
        recorder.marker("rating", 21.0, block="happy", valence=8, arousal=4)
        recorder.marker("block_start", 25.0, block="sad", target_emotion="sad",
                        duration_s=10.0, **fields)  # fmt: skip
        recorder.marker("block_end", 35.0, block="sad")
        recorder.marker("rating", 36.0, block="sad", valence=2, arousal=6)
    export_bids(read_session(tmp_path / "raw"), tmp_path / "bids", "01", "01", "bcmi", {}, {}, [])
    bins = load_study(tmp_path / "bids").bins
    rated = bins.groupby("block").agg(valence=("sam_valence", "first"), n=("faa", "size"))
    assert rated.to_dict("index") == {
        "happy": {"valence": 8.0, "n": 1},
        "sad": {"valence": 2.0, "n": 1},
    }
