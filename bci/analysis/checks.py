"""Checks that say how far a null result can be trusted: did the manipulation work, and could
the design have seen an effect?

A study that finds no FAA effect of instructed emotion (as the seed study did) means little
unless participants did feel the emotions and the design was sensitive enough to detect a
plausible effect. So:

- `check_manipulation` compares each participant's SAM valence after happy blocks with that
  after sad blocks (mean over blocks of each emotion, then a paired t-test across
  participants, with Cohen's d_z = mean difference / SD of the differences). Participants,
  not blocks, are the unit, because ratings of one person's blocks are not independent.
- `sensitivity_analysis` finds the smallest happy - sad FAA difference the design detects with
  the given power. The analytic answer is (z_{1-alpha/2} + z_power) * SE, where SE is the
  fitted SE of the emotion term: statsmodels' test is a Wald z-test whose SE depends on the
  design and the variance components but not on the true effect. The simulation checks it
  without that shortcut's assumption that SE is known: it re-draws FAA on the same rows (same
  participants, emotions, times, covariates) from the fitted variance components, refits with
  the same random-effect structure, and keeps each fit's estimate and SE. One fit per
  simulation serves every effect size: adding effect * happy to FAA adds a column of X to y,
  which leaves the REML variance estimates (they see only residuals after X), hence the SE,
  unchanged and shifts the estimate by exactly the effect. So power(effect) = the fraction of
  simulations with |estimate + effect| / SE > z_{1-alpha/2}, and the minimal effect is
  searched on a fine grid at no extra cost. Other fixed effects are left out of the simulated
  FAA for the same reason. Each fit takes ~10 ms, so the default 200 simulations
  cost ~2 s and give the power at 0.8 a Monte Carlo SE of 0.03.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.regression.mixed_linear_model import MixedLM

from bci.analysis.mixed_model import EMOTION_COLUMN, LmeResult, prepare
from bci.errors import BciError

# The power curve in the report, at these multiples of the analytic minimal effect.
REPORTED_MULTIPLES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
# The minimal effect is searched on this many points from 0 to this multiple of the analytic
# one: a resolution of 1 % of it, far finer than the Monte Carlo error.
SEARCH_MULTIPLE = 4.0
SEARCH_POINTS = 401


@dataclass(frozen=True)
class ManipulationCheck:
    """SAM valence after happy vs after sad blocks, per participant."""

    n_participants: int
    mean_happy: float
    mean_sad: float
    mean_difference: float  # happy - sad, SAM points
    ci_low: float
    ci_high: float
    t: float
    df: int
    p: float
    cohens_dz: float
    passed: bool  # happy rated more pleasant than sad, p < alpha


def check_manipulation(data: pd.DataFrame, alpha: float = 0.05) -> ManipulationCheck:
    """Paired t-test of per-participant mean SAM valence, happy vs sad blocks."""
    missing = {"participant", "block", "target_emotion", "sam_valence"} - set(data.columns)
    if missing:
        raise BciError(f"the manipulation check needs the columns {', '.join(sorted(missing))}")
    blocks = data.groupby(["participant", "block"], as_index=False).first()
    means = blocks.pivot_table(
        index="participant", columns="target_emotion", values="sam_valence", aggfunc="mean"
    ).dropna()
    if len(means) < 2 or not {"happy", "sad"} <= set(means.columns):
        raise BciError("the manipulation check needs 2+ participants rated in both emotions")
    happy = means["happy"].to_numpy(float)
    sad = means["sad"].to_numpy(float)
    differences = happy - sad
    test = stats.ttest_rel(happy, sad)
    df = len(differences) - 1
    mean = float(differences.mean())
    sd = float(differences.std(ddof=1))
    margin = float(stats.t.ppf(1 - alpha / 2, df)) * sd / math.sqrt(len(differences))
    dz = mean / sd if sd > 0 else math.copysign(math.inf, mean) if mean else 0.0
    p = float(test.pvalue) if sd > 0 else (0.0 if mean else 1.0)
    return ManipulationCheck(
        n_participants=len(differences),
        mean_happy=float(happy.mean()),
        mean_sad=float(sad.mean()),
        mean_difference=mean,
        ci_low=mean - margin,
        ci_high=mean + margin,
        t=float(test.statistic),
        df=df,
        p=p,
        cohens_dz=dz,
        passed=mean > 0 and p < alpha,
    )


@dataclass(frozen=True)
class Sensitivity:
    """The smallest happy - sad FAA difference detected with `power` at `alpha`."""

    method: str  # "simulation" or "analytic"
    power: float
    alpha: float
    minimal_effect: float  # FAA units (inf, and the share nan, if no effect reached the power)
    minimal_effect_sd: float  # in SDs of FAA around the fixed effects, sqrt(s2_u + s2_e)
    minimal_variance_share: float  # that effect's share of total variance (seed study: 0.4 %)
    analytic_effect: float  # (z_{1-alpha/2} + z_power) * SE
    # A power curve: effect sizes (FAA units) and the fraction of simulated fits with
    # p < alpha at each; both empty for "analytic".
    effects: tuple[float, ...]
    powers: tuple[float, ...]
    n_simulations: int


def sensitivity_analysis(
    result: LmeResult,
    data: pd.DataFrame,
    power: float = 0.8,
    alpha: float = 0.05,
    n_simulations: int = 200,
    seed: int = 0,
) -> Sensitivity:
    """The minimal detectable effect (module docstring); n_simulations=0 gives the analytic
    answer alone, which costs nothing."""
    critical = float(stats.norm.ppf(1 - alpha / 2))
    analytic = (critical + float(stats.norm.ppf(power))) * float(result.emotion_effect["se"])
    effects: tuple[float, ...] = ()
    powers: tuple[float, ...] = ()
    minimal = analytic
    if n_simulations > 0:
        estimates, standard_errors = _null_estimates(result, data, n_simulations, seed)

        def power_at(effect: float) -> float:
            # nan (a failed fit) compares False: counted as a miss, as in a real study.
            return float(np.mean(np.abs(estimates + effect) / standard_errors > critical))

        effects = tuple(analytic * multiple for multiple in REPORTED_MULTIPLES)
        powers = tuple(power_at(effect) for effect in effects)
        search = np.linspace(0.0, SEARCH_MULTIPLE * analytic, SEARCH_POINTS)
        reached = [float(effect) for effect in search if power_at(effect) >= power]
        minimal = reached[0] if reached else math.inf
    frame = prepare(data, result.covariates)
    happy_fraction = float((frame["target_emotion"] == "happy").mean())
    unexplained = result.random_variance + result.residual_variance
    manipulation_variance = minimal**2 * happy_fraction * (1 - happy_fraction)
    return Sensitivity(
        method="simulation" if n_simulations > 0 else "analytic",
        power=power,
        alpha=alpha,
        minimal_effect=minimal,
        minimal_effect_sd=minimal / math.sqrt(unexplained),
        minimal_variance_share=manipulation_variance / (manipulation_variance + unexplained),
        analytic_effect=analytic,
        effects=effects,
        powers=powers,
        n_simulations=n_simulations,
    )


def _null_estimates(
    result: LmeResult, data: pd.DataFrame, n_simulations: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Emotion estimates and SEs of refits to FAA simulated with no effect."""
    frame = prepare(data, result.covariates)
    re_formula = "~time_centred" if result.random_slope else None
    # The formula is parsed once; each simulated fit reuses its design matrices.
    template = smf.mixedlm(
        result.formula, frame, groups=frame["participant"], re_formula=re_formula
    )
    exog = np.asarray(template.exog, dtype=float)
    exog_re = np.asarray(template.exog_re, dtype=float)
    groups = np.asarray(template.groups)
    column = list(template.exog_names).index(EMOTION_COLUMN)
    _, group_index = np.unique(groups, return_inverse=True)
    cov_re = result.random_covariance
    rng = np.random.default_rng(seed)
    estimates = np.full(n_simulations, np.nan)
    standard_errors = np.full(n_simulations, np.nan)
    for index in range(n_simulations):
        coefficients = rng.multivariate_normal(np.zeros(len(cov_re)), cov_re, group_index.max() + 1)
        faa = np.einsum("ij,ij->i", exog_re, coefficients[group_index])
        faa += rng.normal(0.0, math.sqrt(result.residual_variance), len(faa))
        with warnings.catch_warnings():
            # Boundary fits are part of what the real analysis would meet; keep them.
            warnings.simplefilter("ignore")
            try:
                fit = MixedLM(faa, exog, groups, exog_re=exog_re).fit(reml=True)
            except (np.linalg.LinAlgError, ValueError):
                continue  # stays nan: a miss
        estimates[index] = float(fit.fe_params[column])
        standard_errors[index] = float(fit.bse_fe[column])
    return estimates, standard_errors
