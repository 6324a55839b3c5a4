"""A simulated study written as BIDS, to test and demonstrate the analysis end to end.

Each participant: a 10 s baseline, then emotion blocks (happy and sad, alternating, the
order flipped for every other participant), each rated on SAM, named as a protocol names
them (each name recurs, as in the seed study's repeated blocks). The EEG comes from the
simulator's `synthesize`, whose asymmetry per block is the participant's random intercept
plus `effect / 2` for happy or `- effect / 2` for sad, plus block-to-block noise. FAA, as
ln P(AF8) - ln P(AF7), moves with the asymmetry (by about 2x it for the alpha alone; the
1/f background dilutes that). Everything goes through the same recorder and BIDS export
as a real session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from bci.experiment.bids_export import export_bids
from bci.experiment.recorder import SessionRecorder, read_session
from bci.live.simulate import AsymmetryStep, Schedule, SimulatorConfig, synthesize

BASELINE_S = 10.0


@dataclass(frozen=True)
class SimulatedStudy:
    participants: int = 8
    effect: float = 0.4  # happy - sad, in simulator asymmetry units
    participant_sd: float = 0.3  # random intercepts, asymmetry units
    # Block-to-block noise, asymmetry units. 0 by default: the LME has no block term, so with
    # block noise its p-values come out too small (bci/analysis/mixed_model.py says so).
    block_sd: float = 0.0
    blocks_per_emotion: int = 2
    block_s: float = 20.0
    seed: int = 0
    task: str = "bcmi"
    auto_ratings: bool = False  # every SAM rating 5, as `session run --ratings auto` records


def simulate_study_bids(root: Path, study: SimulatedStudy) -> list[float]:
    """Write the study under `root`; returns the planted participant intercepts."""
    rng = np.random.default_rng(study.seed)
    intercepts = []
    with TemporaryDirectory() as work:
        for index in range(study.participants):
            intercept = float(rng.normal(0.0, study.participant_sd))
            intercepts.append(intercept)
            emotions = ["happy", "sad"] if index % 2 == 0 else ["sad", "happy"]
            order = emotions * study.blocks_per_emotion
            steps = [AsymmetryStep(0.0, float(np.clip(intercept, -1, 1)))]
            for number, emotion in enumerate(order):
                sign = 1.0 if emotion == "happy" else -1.0
                value = intercept + sign * study.effect / 2 + rng.normal(0.0, study.block_sd)
                steps.append(AsymmetryStep(BASELINE_S + number * study.block_s,
                                           float(np.clip(value, -1, 1))))  # fmt: skip
            config = SimulatorConfig(seed=study.seed * 1000 + index)
            rate = config.montage.sample_rate
            total = int((BASELINE_S + len(order) * study.block_s) * rate)
            data = synthesize(config, Schedule(tuple(steps)), 0, total)
            folder = Path(work) / f"p{index}"
            with SessionRecorder(folder, list(config.channels), rate) as recorder:
                recorder.write_eeg(np.arange(total) / rate, data.astype(np.float32))
                for number, emotion in enumerate(order):
                    onset = BASELINE_S + number * study.block_s
                    recorder.marker("block_start", onset, block=emotion, block_kind="emotion",
                                    target_emotion=emotion, music="feedback",
                                    duration_s=study.block_s)  # fmt: skip
                    valence = int(
                        np.clip(round(rng.normal(7 if emotion == "happy" else 3, 1)), 1, 9)
                    )
                    arousal = int(np.clip(round(rng.normal(5, 1.5)), 1, 9))
                    if study.auto_ratings:
                        valence = arousal = 5
                    recorder.marker("rating", onset + study.block_s - 0.5, block=emotion,
                                    valence=valence, arousal=arousal)  # fmt: skip
            covariates = {"musical_training": float(rng.integers(0, 10)),
                          "acting": float(rng.integers(0, 2))}  # fmt: skip
            manifest = {"simulated": True, "seed": study.seed}
            export_bids(read_session(folder), root, participant=f"{index + 1:02d}", session=None,
                        task=study.task, covariates=covariates, manifest=manifest,
                        extra_files=[])  # fmt: skip
    return intercepts


@dataclass(frozen=True)
class PlantedPartition:
    """The variance partition a study plants, on the FAA scale the analysis sees."""

    gain: float  # FAA per unit of simulator asymmetry (alpha diluted by the 1/f background)
    bin_variance: float  # variance of one bin's FAA at a fixed asymmetry: the residual
    emotion: float  # variance of the planted +-effect/2 over rows (balanced design)
    participant: float  # variance of the realised intercepts (all participant-level sources)

    @property
    def shares(self) -> dict[str, float]:
        total = self.emotion + self.participant + self.bin_variance
        return {
            "target_emotion": self.emotion / total,
            "participant_level": self.participant / total,
            "residual": self.bin_variance / total,
        }


def planted_partition(
    study: SimulatedStudy, intercepts: list[float], calibration_s: float = 600.0
) -> PlantedPartition:
    """What `simulate_study_bids` planted, in FAA units.

    The planted values are in simulator asymmetry units; FAA sees them through a gain and adds
    the estimation noise of each bin, both properties of the simulator and the FAA pipeline,
    not of the study. Both are measured here on separate simulated EEG (other seeds) at three
    fixed asymmetries, through the same bins the study loader computes: the gain as the slope
    of bin FAA on asymmetry, the bin variance pooled within levels. The participant part uses
    the intercepts this study actually drew, not their population SD: with 8 participants the
    drawn spread is itself a noisy sample, and the analysis can only recover what was drawn.
    """
    from bci.analysis.study import StudyConfig, block_faa_bins

    config = StudyConfig()
    levels = (-0.25, 0.0, 0.25)
    means, variances, counts = [], [], []
    for number, level in enumerate(levels):
        simulator = SimulatorConfig(seed=10_000_000 + 1000 * study.seed + number)
        rate = simulator.montage.sample_rate
        data = synthesize(simulator, Schedule((AsymmetryStep(0.0, level),)), 0,
                          int(calibration_s * rate))  # fmt: skip
        left = data[simulator.channels.index(simulator.montage.left)]
        right = data[simulator.channels.index(simulator.montage.right)]
        bins = np.array(block_faa_bins(left, right, rate, config))
        bins = bins[~np.isnan(bins)]
        means.append(float(bins.mean()))
        variances.append(float(bins.var(ddof=1)))
        counts.append(len(bins))
    gain = float(np.polyfit(levels, means, 1)[0])
    pooled = float(np.average(variances, weights=np.array(counts) - 1))
    return PlantedPartition(
        gain=gain,
        bin_variance=pooled,
        emotion=(gain * study.effect / 2) ** 2,
        participant=gain**2 * float(np.var(intercepts, ddof=1)),
    )
