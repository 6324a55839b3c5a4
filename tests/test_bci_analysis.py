"""The study statistics: planted truths are recovered, nulls stay null, the report is written.

Every bound is stated with the chance that a correct implementation misses it for a random
seed; the seeds are fixed, so each test is deterministic.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from bci.analysis.checks import check_manipulation, sensitivity_analysis
from bci.analysis.mixed_model import DEFAULT_COVARIATES, LmeResult, fit_lme, simulate_study
from bci.analysis.study import Study
from bci.analysis.study_analysis import analyse_study
from bci.analysis.study_report import write_report

NULL_SEEDS = range(20)


@pytest.fixture(scope="module")
def null_fits() -> list[LmeResult]:
    """No planted effect: 8 participants x 4 blocks x 6 bins = 192 rows per study."""
    return [fit_lme(simulate_study(effect=0.0, seed=seed), covariates=()) for seed in NULL_SEEDS]


def test_a_planted_emotion_effect_is_found_with_its_sign_and_its_ci_covers_it() -> None:
    """8 participants x 4 blocks x 12 bins = 384 rows. Emotion varies within participants, so
    the SE of happy - sad is about sqrt(4 sigma_e^2 / N) = 0.10 and the planted 0.5 (half a
    residual SD) is ~5 SE: p < 0.05 fails for under 1 % of seeds. The 95 % CI misses the truth
    for 5 % of seeds (seed 0 is one: 0.25, CI 0.05-0.45); seed 1 is one where it does not."""
    data = simulate_study(participants=8, bins_per_block=12, effect=0.5, seed=1)
    result = fit_lme(data)
    emotion = result.emotion_effect
    assert emotion["estimate"] > 0
    assert emotion["p"] < 0.05
    assert emotion["ci_low"] <= 0.5 <= emotion["ci_high"]
    assert result.converged


def test_the_participant_share_of_variance_matches_the_planted_share() -> None:
    """Planted sigma_u = 0.5, sigma_e = 1: sigma2_u / (sigma2_u + sigma2_e) = 0.2, and with the
    planted fixed variance (0.5^2 / 4) the participant share of all variance is 0.19.
    A variance needs many groups: its estimate rests on the spread of participant means, a
    chi-square with (participants - 1 - covariates) df. With 8 participants (5 df) the 99 %
    range of the ratio is 0.00-0.48, too wide to test anything, so this uses 40: 37 df put
    the ratio in 0.09-0.31 for 99 % of seeds, so +-0.1 fails for about 2 % of seeds."""
    data = simulate_study(participants=40, effect=0.5, seed=1)
    result = fit_lme(data)
    assert result.icc == pytest.approx(0.2, abs=0.1)
    assert result.participant_share == pytest.approx(0.25 / (0.0625 + 0.25 + 1.0), abs=0.1)
    assert result.variance_partition["share"].sum() == pytest.approx(1.0)


def test_without_an_effect_at_most_4_of_20_studies_reach_p_below_005(
    null_fits: list[LmeResult],
) -> None:
    """Under the null each study has P(p < 0.05) = 0.05, so the count over 20 independent seeds
    is Binomial(20, 0.05): P(count >= 5) = 0.0026 (0.016 is P(count >= 4)). Over 1000 seeds
    this model's rate was 0.065 (the same as OLS with participant dummies on those seeds), for
    which P(count >= 5) = 0.008. An SE half the true one would give p < 0.05 in ~33 % of
    studies, and a count above 4 for ~90 % of seed sets."""
    significant = sum(fit.emotion_effect["p"] < 0.05 for fit in null_fits)
    assert significant <= 4


def test_r2_are_ordered_and_the_marginal_r2_is_small_without_effects(
    null_fits: list[LmeResult],
) -> None:
    """With no fixed effects planted, the three fitted within-participant terms (emotion, time,
    their interaction) each add about sigma_e^2 * chi2(1) / N to var(X beta), so R2m is below
    chi2(3)'s 99.9th percentile / N = 16.3 / 192 = 0.085 for 99.9 % of seeds."""
    bound = stats.chi2.ppf(0.999, 3) / 192
    for fit in null_fits:
        assert 0.0 <= fit.r2_marginal <= fit.r2_conditional <= 1.0
        assert fit.r2_marginal < bound
    planted = fit_lme(simulate_study(effect=1.0, seed=2))
    assert 0.0 <= planted.r2_marginal <= planted.r2_conditional <= 1.0


def test_the_manipulation_check_passes_on_simulated_ratings() -> None:
    """Valence is drawn around 6.5 after happy blocks and 3.5 after sad ones (SD 1): each
    participant's difference has SD ~1.05, so the mean of 8 is 3 +- 0.37 and falls outside
    3 +- 1 for under 1 % of seeds."""
    check = check_manipulation(simulate_study(seed=3))
    assert check.passed
    assert check.mean_difference == pytest.approx(3.0, abs=1.0)
    assert check.cohens_dz > 0
    assert check.n_participants == 8


def test_the_simulated_sensitivity_agrees_with_the_analytic_one() -> None:
    """20 simulated refits give the power at the analytic minimal effect as 0.8 +- 0.09 (1 SE),
    so the simulated minimal effect stays within a factor 1.5 of the analytic one unless the
    two disagree about the SE."""
    data = simulate_study(seed=4)
    result = fit_lme(data, covariates=())
    sensitivity = sensitivity_analysis(result, data, n_simulations=20)
    assert math.isfinite(sensitivity.minimal_effect)
    assert sensitivity.minimal_effect > 0
    assert sensitivity.minimal_effect_sd > 0
    ratio = sensitivity.minimal_effect / sensitivity.analytic_effect
    assert 1 / 1.5 < ratio < 1.5
    assert list(sensitivity.powers) == sorted(sensitivity.powers)


def test_the_report_embeds_plots_and_tables_and_writes_tidy_csvs(tmp_path: Path) -> None:
    data = simulate_study(seed=5).assign(session="")
    study = Study(data, pd.DataFrame({"participant": [], "channel": []}), DEFAULT_COVARIATES)
    write_report(analyse_study(study, simulations=0), tmp_path / "report.html", tmp_path / "csv")
    page = (tmp_path / "report.html").read_text()
    # FAA per participant, FAA by emotion, participant intercepts, SAM valence
    assert page.count('<img src="data:image/png;base64,') == 4
    assert "<table" in page
    assert "happy - sad" in page
    assert "Manipulation check" in page
    expected = {
        "fixed_effects": ["term", "model_term", "estimate", "se", "ci_low", "ci_high", "p"],
        "variance_partition": ["component", "kind", "variance", "share"],
        "r2": ["r2_marginal", "r2_conditional", "random_slope", "converged"],
        "faa_by_block": ["participant", "block", "target_emotion", "faa_mean", "faa_sd",
                         "n_bins", "sam_valence", "sam_arousal"],
    }  # fmt: skip
    for stem, columns in expected.items():
        table = pd.read_csv(tmp_path / "csv" / f"{stem}.csv")
        assert list(table.columns) == columns
        assert len(table) > 0
    assert len(pd.read_csv(tmp_path / "csv" / "faa_by_block.csv")) == 8 * 4
