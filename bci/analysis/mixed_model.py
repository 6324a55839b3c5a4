"""Statistics for a self-induced emotion study: does instructed emotion move FAA?

The design follows the seed study ("A minimalist BCMI...", 22 participants): each participant
does blocks of self-induced happy and sad emotion, FAA is averaged in time bins within each
block, and after each block the participant rates valence and arousal (SAM, 1-9).

Tidy input, one row per (participant, block, time_bin):

    participant  str    the grouping factor of the random effects
    block        str    unique within a participant (not across participants)
    target_emotion      "happy" or "sad", constant within a block
    time_bin     int    0-based bin within the block
    time         float  minutes from the block's start to the bin's centre
    faa          float  the bin's mean FAA (ln P_right - ln P_left); NaN rows are dropped
                        (as are rows with a missing time or covariate)
    covariates   float  one value per participant (e.g. musical_training, acting)
    sam_valence, sam_arousal   the block's ratings, repeated on every row of the block

The model (`fit_lme`) is a linear mixed model, fitted by REML with statsmodels:

    faa ~ C(target_emotion, Treatment("sad")) * time_centred + covariates
          + (1 [+ time_centred] | participant)

`time_centred` is `time` minus its mean over all rows. Centring makes the emotion coefficient
the happy - sad difference at the middle of a block (its average over the block when the
effect does not drift) instead of at the block's first instant, where self-induction has not
started; with a balanced design it is also uncorrelated with the time terms. A random slope
for time is kept only when its fit converges without warnings and its covariance matrix is
not singular; otherwise the random-intercept model is reported, and the result says why.

Known limit: blocks are the unit the emotion is assigned to, and bins within a block are not
independent of each other beyond the participant intercept (slow drifts, block-level mood).
The model has no block-level variance component, so real data with block-to-block variance
will give p-values that are too small; `simulate_study` plants no such variance.

Variance (Nakagawa & Schielzeth 2013; Johnson 2014 for random slopes): sigma2_f = var(X beta)
over the rows, sigma2_u = mean over rows of z' Sigma z (just the intercept variance without
a slope), sigma2_e = the residual variance. R2m = sigma2_f / total, R2c = (sigma2_f +
sigma2_u) / total. sigma2_f is split among terms by covariance shares: term k, whose
contribution to the prediction is c_k = X_k beta_k, gets cov(c_k, X beta). The shares add up
to sigma2_f exactly; a term uncorrelated with the others gets var(c_k); correlated terms split
their shared variance (and a share can be negative when contributions cancel). The emotion
term bundles every column with target_emotion in it (the main effect and its interaction
with time): that is "the manipulation" whose share the seed study put at 0.40 %.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMResults

from bci.errors import BciError

EMOTIONS = ("happy", "sad")
REQUIRED_COLUMNS = ("participant", "block", "target_emotion", "time_bin", "time", "faa")
DEFAULT_COVARIATES = ("musical_training", "acting")
EMOTION_COLUMN = 'C(target_emotion, Treatment("sad"))[T.happy]'
EMOTION_TERM = "happy - sad"
READABLE_TERMS = {
    "Intercept": "intercept",
    EMOTION_COLUMN: EMOTION_TERM,
    "time_centred": "time (per minute)",
    f"{EMOTION_COLUMN}:time_centred": "(happy - sad) x time",
}
# Eigenvalues of the random-effect covariance below this fraction of the residual variance
# count as zero: the optimiser has put the fit on the boundary (a singular fit).
SINGULAR_FRACTION = 1e-4
# statsmodels' default chain (bfgs, then lbfgs and cg from where bfgs stopped) can stall next
# to an optimum it cannot reach (seen with 8 participants and two participant-level
# covariates); the derivative-free optimisers, started afresh, reach it. Each is tried only if
# the ones before did not converge, so a clean fit costs one attempt.
OPTIMIZERS: tuple[list[str] | None, ...] = (None, ["powell"], ["nm"])
OPTIMIZER_MAX_ITERATIONS = 2000
# Warnings about the libraries' own future APIs say nothing about this fit.
HARMLESS_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def simulate_study(
    participants: int = 8,
    blocks_per_emotion: int = 2,
    bins_per_block: int = 6,
    effect: float = 0.3,
    participant_sd: float = 0.5,
    residual_sd: float = 1.0,
    covariate_effects: Mapping[str, float] | None = None,
    seed: int = 0,
    bin_minutes: float = 0.5,
) -> pd.DataFrame:
    """A study in the tidy format with known truth, deterministic per seed.

    FAA = participant intercept ~ N(0, participant_sd^2) + sum of covariate effects
    + effect / 2 in happy blocks (- effect / 2 in sad ones, so happy - sad = `effect`)
    + residual ~ N(0, residual_sd^2), independent across bins. The effect is constant over a
    block (no time trend, no interaction). Covariates are drawn per participant:
    musical_training in whole years, uniform 0-15; acting 1 with probability 0.3, else 0.
    `covariate_effects` gives FAA per unit of each (default 0). Blocks alternate emotions,
    starting with happy for odd-numbered participants and sad for even ones
    (counterbalanced). SAM valence is drawn around 6.5 after happy blocks and 3.5 after sad
    ones (SD 1, rounded, clipped to 1-9), so the manipulation check passes; arousal is
    around 5 (SD 1.5) whatever the emotion. Bins are `bin_minutes` long and `time` is each
    bin's centre.
    """
    effects = dict.fromkeys(DEFAULT_COVARIATES, 0.0) | dict(covariate_effects or {})
    unknown = set(effects) - set(DEFAULT_COVARIATES)
    if unknown:
        raise ValueError(f"simulate_study draws only {DEFAULT_COVARIATES}, not {unknown}")
    rng = np.random.default_rng(seed)
    time_bins = np.arange(bins_per_block)
    frames = []
    for index in range(participants):
        covariates = {
            "musical_training": float(rng.integers(0, 16)),
            "acting": float(rng.random() < 0.3),
        }
        intercept = rng.normal(0.0, participant_sd)
        intercept += sum(effects[name] * value for name, value in covariates.items())
        first, second = EMOTIONS if index % 2 == 0 else EMOTIONS[::-1]
        for block in range(2 * blocks_per_emotion):
            emotion = first if block % 2 == 0 else second
            sign = 1.0 if emotion == "happy" else -1.0
            valence_mean = 6.5 if emotion == "happy" else 3.5
            faa = intercept + sign * effect / 2 + rng.normal(0.0, residual_sd, bins_per_block)
            frames.append(pd.DataFrame({
                "participant": f"p{index + 1:02d}",
                "block": f"b{block + 1}",
                "target_emotion": emotion,
                "time_bin": time_bins,
                "time": (time_bins + 0.5) * bin_minutes,
                "faa": faa,
                **covariates,
                "sam_valence": float(np.clip(np.round(rng.normal(valence_mean, 1.0)), 1, 9)),
                "sam_arousal": float(np.clip(np.round(rng.normal(5.0, 1.5)), 1, 9)),
            }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class LmeResult:
    """One fitted model, as plain tables and numbers (no statsmodels objects)."""

    formula: str
    covariates: tuple[str, ...]
    # term, model_term (statsmodels' column name), estimate, se, ci_low, ci_high, p
    fixed_effects: pd.DataFrame
    converged: bool
    random_slope: bool
    slope_rejected_because: str  # empty when the slope was kept
    fit_warnings: tuple[str, ...]  # what statsmodels warned about the reported fit
    singular: bool  # the reported fit has a (near) zero random-effect variance
    participant_variance: float  # random-intercept variance
    slope_variance: float | None  # random-slope variance ((FAA / minute)^2), if kept
    random_covariance: np.ndarray  # [intercept (, slope)] covariance across participants
    random_variance: float  # sigma2_u, averaged over rows (equal to the above without slope)
    residual_variance: float
    fixed_variance: float  # sigma2_f = var(X beta)
    r2_marginal: float
    r2_conditional: float
    variance_partition: pd.DataFrame  # component, kind, variance, share (shares sum to 1)
    participant_effects: pd.DataFrame  # participant, intercept [, slope]: BLUP deviations
    n_participants: int
    n_observations: int
    time_centre: float  # minutes subtracted from `time` to get time_centred
    alpha: float  # the CIs are (1 - alpha)

    @property
    def emotion_effect(self) -> pd.Series:
        """The happy - sad row of the fixed-effects table."""
        return self.fixed_effects.set_index("term").loc[EMOTION_TERM]

    @property
    def manipulation_share(self) -> float:
        """The fraction of total FAA variance explained by the emotion terms."""
        return self._share("target_emotion")

    @property
    def participant_share(self) -> float:
        return self._share("participant")

    @property
    def icc(self) -> float:
        """sigma2_u / (sigma2_u + sigma2_e): the participant share with fixed effects removed."""
        return self.random_variance / (self.random_variance + self.residual_variance)

    def _share(self, component: str) -> float:
        return float(self.variance_partition.set_index("component").loc[component, "share"])


def prepare(data: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    """The rows the model can use, checked, with `time_centred` added."""
    missing = [c for c in (*REQUIRED_COLUMNS, *covariates) if c not in data.columns]
    if missing:
        raise BciError(f"the analysis data lacks the columns {', '.join(missing)}")
    bad_names = [c for c in covariates if not c.isidentifier()]
    if bad_names:
        raise BciError(f"covariate names must be identifiers: {', '.join(bad_names)}")
    frame = data.dropna(subset=["faa", "time", *covariates]).copy()
    emotions = set(frame["target_emotion"])
    if not emotions <= set(EMOTIONS) or len(emotions) < 2:
        raise BciError(f"target_emotion must hold both of {EMOTIONS}, found {sorted(emotions)}")
    constant = [c for c in covariates if frame[c].nunique() < 2]
    if constant:
        raise BciError(f"covariates equal for every participant, leave them out: {constant}")
    frame["participant"] = frame["participant"].astype(str)
    frame["time_centred"] = frame["time"] - frame["time"].mean()
    return frame


def model_formula(covariates: Sequence[str], with_time: bool = True) -> str:
    emotion = 'C(target_emotion, Treatment("sad"))'
    terms = f"{emotion} * time_centred" if with_time else emotion
    return f"faa ~ {terms}" + "".join(f" + {name}" for name in covariates)


def fit_lme(
    data: pd.DataFrame,
    covariates: Sequence[str] = DEFAULT_COVARIATES,
    try_random_slope: bool = True,
    alpha: float = 0.05,
    with_time: bool = True,
) -> LmeResult:
    """Fit the model (module docstring); a random slope for time only if it fits cleanly.
    Without time, the model is FAA ~ emotion + covariates (bci/analysis/study_analysis.py says
    when)."""
    frame = prepare(data, covariates)
    formula = model_formula(covariates, with_time)
    rejected = ""
    if try_random_slope and with_time:
        fit, problems = _fit(formula, frame, "~time_centred")
        rejected = _slope_problem(fit, problems)
        if fit is not None and not rejected:
            return _summarise(fit, frame, formula, covariates, "", (), alpha)
    fit, problems = _fit(formula, frame, None)
    if fit is None:
        raise BciError(f"the mixed model could not be fitted: {'; '.join(problems)}")
    return _summarise(fit, frame, formula, covariates, rejected, tuple(problems), alpha)


def _fit(
    formula: str, frame: pd.DataFrame, re_formula: str | None
) -> tuple[MixedLMResults | None, list[str]]:
    """The first REML fit that converges (else the first that did not raise) and its
    warnings; None and the error if every optimiser raised."""
    model = smf.mixedlm(formula, frame, groups=frame["participant"], re_formula=re_formula)
    attempts = []
    for methods in OPTIMIZERS:
        fit, problems = _fit_with(model, methods)
        if fit is not None and fit.converged:
            return fit, problems
        attempts.append((fit, problems))
    return next((a for a in attempts if a[0] is not None), attempts[0])


def _fit_with(model: MixedLM, methods: list[str] | None) -> tuple[MixedLMResults | None, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = model.fit(reml=True, method=methods, maxiter=OPTIMIZER_MAX_ITERATIONS)
        except (np.linalg.LinAlgError, ValueError) as error:
            return None, [str(error)]
    problems = [str(w.message) for w in caught if not issubclass(w.category, HARMLESS_WARNINGS)]
    return fit, list(dict.fromkeys(problems))


def _slope_problem(fit: MixedLMResults | None, problems: list[str]) -> str:
    """Why the random-slope fit cannot be kept; empty if it can."""
    if problems or fit is None:
        return "; ".join(problems)
    if not fit.converged:
        return "did not converge"
    return "singular random-effect covariance" if _is_singular(fit) else ""


def _is_singular(fit: MixedLMResults) -> bool:
    eigenvalues = np.linalg.eigvalsh(np.asarray(fit.cov_re, dtype=float))
    return bool(eigenvalues.min() <= SINGULAR_FRACTION * fit.scale)


def _summarise(
    fit: MixedLMResults,
    frame: pd.DataFrame,
    formula: str,
    covariates: Sequence[str],
    rejected: str,
    fit_warnings: tuple[str, ...],
    alpha: float,
) -> LmeResult:
    random_slope = fit.model.k_re > 1
    names = list(fit.model.exog_names)
    beta = np.asarray(fit.fe_params, dtype=float)
    ci = np.asarray(fit.conf_int(alpha), dtype=float)[: len(names)]
    fixed = pd.DataFrame({
        "term": [READABLE_TERMS.get(n, n) for n in names],
        "model_term": names,
        "estimate": beta,
        "se": np.asarray(fit.bse_fe, dtype=float),
        "ci_low": ci[:, 0],
        "ci_high": ci[:, 1],
        "p": np.asarray(fit.pvalues, dtype=float)[: len(names)],
    })  # fmt: skip
    exog = np.asarray(fit.model.exog, dtype=float)
    exog_re = np.asarray(fit.model.exog_re, dtype=float)
    cov_re = np.asarray(fit.cov_re, dtype=float)
    residual = float(fit.scale)
    # Johnson (2014): the random-effect variance at each row is z' Sigma z; average over rows.
    random = float(np.mean(np.einsum("ij,jk,ik->i", exog_re, cov_re, exog_re)))
    prediction = exog @ beta
    fixed_variance = float(np.var(prediction, ddof=1))
    total = fixed_variance + random + residual
    partition = _variance_partition(names, exog, beta, covariates, random, residual)
    effects = _participant_effects(fit, sorted(frame["participant"].unique()))
    return LmeResult(
        formula=formula,
        covariates=tuple(covariates),
        fixed_effects=fixed,
        converged=bool(fit.converged),
        random_slope=random_slope,
        slope_rejected_because=rejected,
        fit_warnings=fit_warnings,
        singular=_is_singular(fit),
        participant_variance=float(cov_re[0, 0]),
        slope_variance=float(cov_re[1, 1]) if random_slope else None,
        random_covariance=cov_re,
        random_variance=random,
        residual_variance=residual,
        fixed_variance=fixed_variance,
        r2_marginal=fixed_variance / total,
        r2_conditional=(fixed_variance + random) / total,
        variance_partition=partition,
        participant_effects=effects,
        n_participants=len(effects),
        n_observations=len(frame),
        time_centre=float(frame["time"].mean()),
        alpha=alpha,
    )


def _participant_effects(fit: MixedLMResults, participants: list[str]) -> pd.DataFrame:
    """The BLUPs: each participant's deviation from the fixed intercept (and slope)."""
    columns = ["intercept", "slope"][: fit.model.k_re]
    try:
        blups = fit.random_effects
        values = np.array([np.asarray(blups[p], dtype=float) for p in participants])
    except (ValueError, np.linalg.LinAlgError):
        # statsmodels refuses to invert a zero random-effect variance; the BLUPs are then
        # shrunk all the way to zero, which is what a zero variance means.
        values = np.zeros((len(participants), len(columns)))
    return pd.DataFrame({"participant": participants} | dict(zip(columns, values.T, strict=True)))


def _variance_partition(
    names: list[str],
    exog: np.ndarray,
    beta: np.ndarray,
    covariates: Sequence[str],
    random: float,
    residual: float,
) -> pd.DataFrame:
    """Each fixed term's covariance share of var(X beta), then sigma2_u and sigma2_e."""
    prediction = exog @ beta
    rows = []
    for component in ("target_emotion", "time", *covariates):
        columns = [i for i, name in enumerate(names) if _term_of(name) == component]
        if not columns:  # a term the model left out
            continue
        contribution = exog[:, columns] @ beta[columns]
        rows.append((component, "fixed", float(np.cov(contribution, prediction)[0, 1])))
    rows += [("participant", "random", random), ("residual", "residual", residual)]
    partition = pd.DataFrame(rows, columns=["component", "kind", "variance"])
    partition["share"] = partition["variance"] / partition["variance"].sum()
    return partition


def _term_of(column: str) -> str:
    """The model term a design column belongs to ("Intercept" is constant: no variance)."""
    if "target_emotion" in column:
        return "target_emotion"
    return "time" if column == "time_centred" else column
