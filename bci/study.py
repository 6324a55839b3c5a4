"""A study on disk (BIDS, as bci/bids_export.py writes it) as the tidy table the analysis reads.

Markers (what a session writes, and `simulate_study_bids` too):
- `block_start`, with columns `block`, `block_kind`, `target_emotion`, `music`, and the block's
  duration as the event's duration;
- `rating`, with columns `block`, `valence`, `arousal` (SAM, 1-9).

FAA per emotion block and time bin: the bin's 2 s windows (hop 0.25 s, as live) go through
the same quality gate as the live loop; the bin's FAA is the mean over its clean windows
(bins with none are left out). Covariates come from participants.tsv.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bci.errors import BciError
from bci.faa import FaaConfig, window_features
from bci.montage import MUSE, Montage
from bci.quality import GateConfig, check_window

PARTICIPANT_COLUMNS = {"participant_id", "age", "sex", "hand", "weight", "height"}


@dataclass(frozen=True)
class StudyConfig:
    task: str = "bcmi"
    montage: Montage = MUSE
    bin_s: float = 10.0
    faa: FaaConfig = field(default_factory=FaaConfig)
    gate: GateConfig = field(default_factory=GateConfig)


def block_faa_bins(
    left: np.ndarray, right: np.ndarray, rate: float, config: StudyConfig
) -> list[float]:
    """Mean FAA of each `bin_s` bin of one block (NaN where every window was gated)."""
    size, hop = round(config.faa.window_s * rate), max(1, round(config.faa.hop_s * rate))
    per_bin = max(1, round(config.bin_s * rate))
    bins: list[list[float]] = [[] for _ in range(max(1, len(left) // per_bin))]
    for end in range(size, len(left) + 1, hop):
        index = min((end - 1) // per_bin, len(bins) - 1)
        window = np.stack([left[end - size : end], right[end - size : end]])
        if check_window(window, rate, 0.0, config.gate).gated:
            continue
        bins[index].append(window_features(window[0], window[1], rate, config.faa).faa)
    return [float(np.mean(b)) if b else float("nan") for b in bins]


def load_study(bids_root: Path, config: StudyConfig | None = None) -> Any:
    """Every participant's emotion blocks as rows (participant, block, target_emotion,
    time_bin, time, faa, sam_valence, sam_arousal, covariates...): a pandas DataFrame."""
    import mne_bids
    import pandas as pd

    config = config or StudyConfig()
    if not (bids_root / "participants.tsv").is_file():
        raise BciError(f"{bids_root}: not a BIDS study (no participants.tsv)")
    participants = pd.read_csv(bids_root / "participants.tsv", sep="\t")
    covariates = [c for c in participants.columns if c not in PARTICIPANT_COLUMNS]
    rows: list[dict[str, Any]] = []
    for subject in mne_bids.get_entity_vals(bids_root, "subject"):
        path = mne_bids.BIDSPath(subject=subject, task=config.task, datatype="eeg", root=bids_root)
        raw = mne_bids.read_raw_bids(path, verbose="error")
        rate = float(raw.info["sfreq"])
        rows_of = config.montage.rows_in(f"sub-{subject}", list(raw.ch_names), rate)
        data = raw.get_data(picks=rows_of) * 1e6  # volts -> microvolts
        left, right = data[0], data[1]
        if config.montage.reference:
            reference = data[2:].mean(axis=0)
            left, right = left - reference, right - reference
        events = pd.read_csv(path.copy().update(suffix="events", extension=".tsv").fpath, sep="\t")
        values = participants.loc[participants.participant_id == f"sub-{subject}", covariates]
        covariate_values = values.iloc[0].to_dict() if len(values) else {}
        ratings = events[events.trial_type == "rating"].set_index("block")
        blocks = events[(events.trial_type == "block_start") & (events.block_kind == "emotion")]
        for _, block in blocks.iterrows():
            start = round(float(block.onset) * rate)
            stop = start + round(float(block.duration) * rate)
            faa = block_faa_bins(left[start:stop], right[start:stop], rate, config)
            rating = ratings.loc[block.block] if block.block in ratings.index else None
            for time_bin, value in enumerate(faa):
                if np.isnan(value):
                    continue
                rows.append({
                    "participant": f"sub-{subject}", "block": block.block,
                    "target_emotion": block.target_emotion, "time_bin": time_bin,
                    "time": time_bin * config.bin_s / 60.0, "faa": value,
                    "sam_valence": None if rating is None else float(rating.valence),
                    "sam_arousal": None if rating is None else float(rating.arousal),
                    **covariate_values,
                })  # fmt: skip
    if not rows:
        raise BciError(f"{bids_root}: no emotion blocks with clean EEG found (task {config.task})")
    return pd.DataFrame(rows)
