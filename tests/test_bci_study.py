"""A simulated 8-participant study through the whole pipeline: simulated EEG -> recorder ->
BIDS -> `bandmate session analyze` -> the planted emotion effect, recovered."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd

from bci.study import load_study
from bci.study_simulation import SimulatedStudy, simulate_study_bids
from tests.helpers import BANDMATE


def test_analyze_recovers_a_planted_effect_from_a_bids_study(tmp_path: Path) -> None:
    root = tmp_path / "bids"
    simulate_study_bids(root, SimulatedStudy(participants=8, effect=0.1, seed=2))
    data = load_study(root)
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
    assert "data:image/png;base64," in report.read_text()


def test_analyze_says_what_is_wrong_with_a_folder_that_is_not_a_study(tmp_path: Path) -> None:
    done = subprocess.run([BANDMATE, "session", "analyze", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {tmp_path}: not a BIDS study (no participants.tsv)"
