"""A study on disk (BIDS, as bci/experiment/bids_export.py writes it) as the tables the analysis
reads.

Markers (what a session writes, and `simulate_study_bids` too), read in onset order:
- `block_start`, with columns `block`, `block_kind`, `target_emotion`, `music`, and the block's
  duration as the event's duration;
- `pause`: the block it falls in was broken off (`session run` runs it again after `resume`),
  so that block is left out;
- `rating`, with columns `block`, `valence`, `arousal` (SAM, 1-9): it rates the latest block
  of that name before it.

A protocol may run a block more than once (the seed study runs happy and sad twice), so a
block is known by its place, not its name: the tidy `block` column is the name with its
occurrence number when the name recurs for a participant (`happy_1`, `happy_2`), across all
of that participant's sessions.

FAA per emotion block and time bin: the bin's 2 s windows (hop 0.25 s, as live) go through
the same quality gate as the live loop; the bin's FAA is the mean over its clean windows
(bins with none are left out). Covariates come from participants.tsv.

Signal quality per participant, session and channel (the montage's left and right): each
analysed window judged on that channel alone (how many were gated, and for what), NaN or Inf
samples on the channel, and the samples the stream lost (counted on the LSL stamps kept in
sourcedata, so the same for every channel of a session).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bci.errors import BciError
from bci.live.faa import FaaConfig, window_features
from bci.live.sample_grid import NominalGrid
from bci.live.signal_quality import CHECKS, GateConfig, check_channels, combine
from bci.montage import MUSE, Montage

PARTICIPANT_COLUMNS = {"participant_id", "age", "sex", "hand", "weight", "height"}


@dataclass(frozen=True)
class StudyConfig:
    task: str = "bcmi"
    montage: Montage = MUSE
    bin_s: float = 10.0
    faa: FaaConfig = field(default_factory=FaaConfig)
    gate: GateConfig = field(default_factory=GateConfig)


@dataclass(frozen=True)
class Study:
    """What the analysis reads: pandas DataFrames."""

    bins: Any  # participant, session, block, target_emotion, time_bin, time, faa, sam_*, ...
    quality: Any  # participant, session, channel, windows, gated, <check>..., samples counts
    covariates: tuple[str, ...]  # the participants.tsv columns that are covariates


@dataclass
class _BlockResult:
    bins: list[float]  # mean FAA per bin, NaN where every window was gated
    channel_gates: list[Counter[str]]  # per channel (left, right): windows, gated, per check


def _windows(left: np.ndarray, right: np.ndarray, rate: float,
             config: StudyConfig) -> Iterator[tuple[int, np.ndarray]]:  # fmt: skip
    """(index of the window's last sample + 1, [2, samples]) every hop, as the live loop cuts."""
    size, hop = round(config.faa.window_s * rate), max(1, round(config.faa.hop_s * rate))
    for end in range(size, len(left) + 1, hop):
        yield end, np.stack([left[end - size : end], right[end - size : end]])


def _analyse_block(
    left: np.ndarray, right: np.ndarray, rate: float, config: StudyConfig
) -> _BlockResult:
    per_bin = max(1, round(config.bin_s * rate))
    bins: list[list[float]] = [[] for _ in range(max(1, len(left) // per_bin))]
    gates: list[Counter[str]] = [Counter(), Counter()]
    for end, window in _windows(left, right, rate, config):
        checks = check_channels(window, rate, 0.0, config.gate)
        for counts, check in zip(gates, checks, strict=True):
            counts.update(["windows", *(["gated"] if check.flags.gated else []), *check.failed])
        if combine(checks).gated:
            continue
        bins[min((end - 1) // per_bin, len(bins) - 1)].append(
            window_features(window[0], window[1], rate, config.faa).faa
        )
    return _BlockResult([float(np.mean(b)) if b else float("nan") for b in bins], gates)


def block_faa_bins(
    left: np.ndarray, right: np.ndarray, rate: float, config: StudyConfig
) -> list[float]:
    """Mean FAA of each `bin_s` bin of one block (NaN where every window was gated)."""
    return _analyse_block(left, right, rate, config).bins


@dataclass(frozen=True)
class _EmotionBlock:
    name: str
    target_emotion: str
    onset: float
    duration: float
    valence: float | None = None
    arousal: float | None = None


def _emotion_blocks(events: Any) -> list[_EmotionBlock]:
    """The completed emotion blocks of one recording's events.tsv, each with its rating."""
    blocks: list[_EmotionBlock] = []
    current: int | None = None  # index in `blocks` of the block running now
    for _, event in events.sort_values("onset", kind="stable").iterrows():
        kind = event.trial_type
        if kind == "block_start":
            current = None
            if event.get("block_kind") == "emotion":
                blocks.append(_EmotionBlock(str(event.block), str(event.target_emotion),
                                            float(event.onset), float(event.duration)))  # fmt: skip
                current = len(blocks) - 1
        elif kind == "pause" and current is not None:
            blocks.pop(current)  # broken off: runs again after the resume
            current = None
        elif kind == "rating":
            rated = [i for i, b in enumerate(blocks) if b.name == str(event.block)]
            if rated and blocks[rated[-1]].valence is None:
                block = blocks[rated[-1]]
                blocks[rated[-1]] = _EmotionBlock(block.name, block.target_emotion, block.onset,
                                                  block.duration, float(event.valence),
                                                  float(event.arousal))  # fmt: skip
    return blocks


def _dropped_samples(bids_path: Any, bids_root: Path, rate: float) -> int | None:
    """Samples the stream lost, counted on the LSL stamps the export keeps in sourcedata (None
    when a dataset has none, e.g. one written by another tool)."""
    stamps_name = bids_path.copy().update(suffix=None, extension=None, datatype=None).basename
    folder = bids_root / "sourcedata" / bids_path.fpath.parent.relative_to(bids_root)
    path = folder / f"{stamps_name}_desc-lsl_timestamps.npy"
    if not path.is_file():
        return None
    stamps = np.load(path)
    return NominalGrid(rate).place(stamps).missing if len(stamps) else 0


def load_study(bids_root: Path, config: StudyConfig | None = None) -> Study:
    """Every participant's emotion blocks as binned FAA rows, and the signal quality behind
    them; BciError for a folder that is not a study or holds no usable emotion block."""
    import mne_bids
    import pandas as pd

    config = config or StudyConfig()
    if not (bids_root / "participants.tsv").is_file():
        exported = bids_root / "bids"  # `session run --out STUDY` exports to STUDY/bids
        if (exported / "participants.tsv").is_file():
            raise BciError(f"{bids_root} is the study folder: analyze its BIDS dataset, {exported}")
        raise BciError(f"{bids_root}: not a BIDS study (no participants.tsv)")
    participants = pd.read_csv(bids_root / "participants.tsv", sep="\t")
    covariates = [c for c in participants.columns if c not in PARTICIPANT_COLUMNS]
    rows: list[dict[str, Any]] = []
    quality: list[dict[str, Any]] = []
    occurrences: dict[str, Counter[str]] = {}
    paths = mne_bids.find_matching_paths(bids_root, tasks=config.task, datatypes="eeg",
                                         suffixes="eeg", extensions=".vhdr")  # fmt: skip
    for path in sorted(paths, key=lambda p: (p.subject, p.session or "")):
        participant = f"sub-{path.subject}"
        raw = mne_bids.read_raw_bids(path, verbose="error")
        rate = float(raw.info["sfreq"])
        rows_of = config.montage.rows_in(participant, list(raw.ch_names), rate)
        data = raw.get_data(picks=rows_of) * 1e6  # volts -> microvolts
        left, right = data[0], data[1]
        if config.montage.reference:
            reference = data[2:].mean(axis=0)
            left, right = left - reference, right - reference
        events = pd.read_csv(path.copy().update(suffix="events", extension=".tsv").fpath, sep="\t")
        values = participants.loc[participants.participant_id == participant, covariates]
        covariate_values = values.iloc[0].to_dict() if len(values) else {}
        blocks = _emotion_blocks(events)
        names = Counter(b.name for b in blocks)
        seen = occurrences.setdefault(participant, Counter())
        gates: list[Counter[str]] = [Counter(), Counter()]
        for block in blocks:
            start = round(block.onset * rate)
            stop = start + round(block.duration * rate)
            result = _analyse_block(left[start:stop], right[start:stop], rate, config)
            for total, counts in zip(gates, result.channel_gates, strict=True):
                total.update(counts)
            seen[block.name] += 1
            recurs = names[block.name] > 1 or seen[block.name] > 1
            label = f"{block.name}_{seen[block.name]}" if recurs else block.name
            for time_bin, value in enumerate(result.bins):
                if np.isnan(value):
                    continue
                rows.append({
                    "participant": participant, "session": path.session or "",
                    "block": label, "target_emotion": block.target_emotion,
                    "time_bin": time_bin, "time": time_bin * config.bin_s / 60.0, "faa": value,
                    "sam_valence": block.valence, "sam_arousal": block.arousal,
                    **covariate_values,
                })  # fmt: skip
        dropped = _dropped_samples(path, bids_root, rate)
        labels = (config.montage.left, config.montage.right)
        for channel, signal, counts in zip(labels, (left, right), gates, strict=True):
            quality.append({
                "participant": participant, "session": path.session or "", "channel": channel,
                "windows": counts["windows"], "gated": counts["gated"],
                "gated_share": counts["gated"] / counts["windows"] if counts["windows"] else None,
                **{check: counts[check] for check in CHECKS},
                "non_finite_samples": int((~np.isfinite(signal)).sum()),
                "dropped_samples": dropped,
            })  # fmt: skip
    if not rows:
        raise BciError(f"{bids_root}: no emotion blocks with clean EEG found (task {config.task})")
    return Study(pd.DataFrame(rows), pd.DataFrame(quality), tuple(covariates))
