"""A study's analysis as far as its data allow, every step that could not be taken said in words.

A pilot is small: one participant, or two with two covariates. The descriptive part (FAA over
time per block and participant, signal quality) needs no model, so it is always reported.
The model is then fitted as fully as the data allow, and the report says what was left out:

- no model with fewer than 2 participants (a random intercept per participant needs two), or
  without both happy and sad blocks;
- covariates equal for every participant are left out, and so are all covariates when there
  are fewer than k + 2 participants for k of them: with k covariates and an intercept, k + 1
  participant means would be fitted exactly, leaving nothing to estimate the participants'
  own variance from (two participants and two covariates gave statsmodels' "Singular matrix");
- time is left out when every block has a single bin (blocks no longer than `--bin-s`);
- a model that still cannot be fitted is tried once more without covariates, then given up.

The manipulation check needs 2+ participants rated in both emotions; the sensitivity needs a
model. Whatever the libraries warn (statsmodels' convergence and boundary warnings, scipy's
precision loss on identical ratings) is collected here and shown in the report, never on the
terminal: the experimenter reads one line there and the details in the report.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bci.analysis.checks import (
    ManipulationCheck,
    Sensitivity,
    check_manipulation,
    sensitivity_analysis,
)
from bci.analysis.mixed_model import EMOTIONS, HARMLESS_WARNINGS, LmeResult, fit_lme
from bci.analysis.study import Study, StudyConfig, load_study
from bci.errors import BciError


@dataclass(frozen=True)
class StudyAnalysis:
    study: Study
    model: LmeResult | None
    model_notes: tuple[str, ...]  # what the model left out and why, or why there is none
    manipulation: ManipulationCheck | None
    manipulation_note: str  # why there is no manipulation check ("" when there is one)
    sensitivity: Sensitivity | None
    library_warnings: tuple[str, ...]  # what statsmodels, scipy, pandas... warned

    @property
    def n_participants(self) -> int:
        return int(self.study.bins["participant"].nunique())

    def summary(self) -> str:
        """One line for the terminal."""
        counts = f"{self.n_participants} participants, {len(self.study.bins)} bins"
        if self.model is None:
            return f"{counts}: descriptive report only ({self.model_notes[-1]})"
        emotion = self.model.emotion_effect
        smaller = " (a smaller model: see the report)" if self.model_notes else ""
        return (
            f"{counts}: happy - sad FAA {emotion.estimate:+.3f} (95 % CI "
            f"{emotion.ci_low:+.3f} to {emotion.ci_high:+.3f}, p = {emotion.p:.3g}){smaller}; "
            f"R² marginal {self.model.r2_marginal:.3f}, conditional "
            f"{self.model.r2_conditional:.3f}"
        )


@contextmanager
def collected_warnings(into: list[str]) -> Iterator[None]:
    """Warnings raised inside, appended to `into` (each message once) instead of printed; the
    libraries' notes about their own future APIs are dropped."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        message = f"{warning.category.__name__}: {warning.message}"
        if not issubclass(warning.category, HARMLESS_WARNINGS) and message not in into:
            into.append(message)


def _listed(names: list[str]) -> str:
    return ", ".join(names)


def fit_what_the_data_allow(
    study: Study, alpha: float = 0.05
) -> tuple[LmeResult | None, tuple[str, ...]]:
    """The fullest model the data allow, and what was left out of it (module docstring)."""
    bins = study.bins
    participants = int(bins["participant"].nunique())
    if participants < 2:
        return None, (
            "no model was fitted: a mixed model with a random intercept per participant needs "
            f"2 or more participants, and this study has {participants}",
        )
    emotions = sorted(set(bins["target_emotion"]))
    if not set(EMOTIONS) <= set(emotions):
        return None, (
            f"no model was fitted: it compares happy with sad blocks, and the clean blocks are "
            f"{_listed(emotions)} only",
        )
    notes: list[str] = []
    present = [c for c in study.covariates if c in bins.columns]
    constant = [c for c in present if bins[c].nunique() < 2]
    covariates = [c for c in present if c not in constant]
    if constant:
        notes.append(f"left out the covariates {_listed(constant)}: equal for every participant")
    if covariates and participants < len(covariates) + 2:
        notes.append(
            f"left out the covariates {_listed(covariates)}: {len(covariates)} participant-level "
            f"covariates need {len(covariates) + 2} or more participants to be told apart from "
            f"the participants' own intercepts, and this study has {participants}"
        )
        covariates = []
    with_time = bins["time"].nunique() > 1
    if not with_time:
        notes.append(
            "left out time: every block has a single time bin (a --bin-s as long as the "
            "blocks), so the model is FAA ~ emotion" + (" + covariates" if covariates else "")
        )
    try:
        return fit_lme(bins, covariates, alpha=alpha, with_time=with_time), tuple(notes)
    except BciError as error:
        if not covariates:
            return None, (*notes, f"no model was fitted: {error}")
        notes.append(f"left out the covariates {_listed(covariates)}: with them, {error}")
    try:
        return fit_lme(bins, [], alpha=alpha, with_time=with_time), tuple(notes)
    except BciError as error:
        return None, (*notes, f"no model was fitted: {error}")


def analyse_bids(bids_root: Path, config: StudyConfig, simulations: int = 200) -> StudyAnalysis:
    """`session analyze`: read the study (bci/analysis/study.py), then `analyse_study`; what reading
    warned (mne-bids) goes to the report with the rest."""
    library_warnings: list[str] = []
    with collected_warnings(library_warnings):
        study = load_study(bids_root, config)
    return analyse_study(study, simulations, library_warnings=library_warnings)


def analyse_study(
    study: Study,
    simulations: int = 200,
    alpha: float = 0.05,
    library_warnings: list[str] | None = None,
) -> StudyAnalysis:
    """The model as far as the data allow, the manipulation check and the sensitivity;
    `library_warnings` holds those collected before (they are reported first)."""
    library_warnings = list(library_warnings or ())
    with collected_warnings(library_warnings):
        model, notes = fit_what_the_data_allow(study, alpha)
        manipulation, manipulation_note = None, ""
        try:
            manipulation = check_manipulation(study.bins, alpha)
        except BciError as error:
            manipulation_note = str(error)
        sensitivity = None
        if model is not None:
            sensitivity = sensitivity_analysis(model, study.bins, alpha=alpha,
                                               n_simulations=simulations)  # fmt: skip
    return StudyAnalysis(study, model, notes, manipulation, manipulation_note, sensitivity,
                         tuple(library_warnings))  # fmt: skip
