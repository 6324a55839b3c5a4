"""`bandmate session analyze` on pilots too small for the full model: the descriptive part is
always written, and the report says why the model was left out or made smaller; library
warnings go into the report, never to the terminal; and no plot's labels overlap."""

from __future__ import annotations

import subprocess
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from bci.analysis.figures import (
    faa_by_participant_figure,
    faa_over_time_figure,
    participant_intercepts_figure,
    sam_check_figure,
)
from bci.analysis.mixed_model import simulate_study
from bci.analysis.study import Study
from bci.analysis.study_analysis import analyse_study
from bci.analysis.study_simulation import SimulatedStudy, simulate_study_bids
from tests.helpers import BANDMATE


def analyze(root: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BANDMATE, "session", "analyze", str(root), "--report", str(out / "report.html"),
         "--simulations", "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def one_participant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("one") / "bids"
    simulate_study_bids(root, SimulatedStudy(participants=1, effect=0.4, block_s=12.0))
    return root


def two_participants(tmp_path_factory: pytest.TempPathFactory, seed: int) -> Path:
    root = tmp_path_factory.mktemp("two") / "bids"
    simulate_study_bids(root, SimulatedStudy(participants=2, effect=0.4, block_s=20.0, seed=seed))
    return root


@pytest.fixture(scope="module")
def two_with_two_covariates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both covariates (musical_training, acting) differ between the two participants."""
    return two_participants(tmp_path_factory, seed=0)


def test_one_participant_gets_the_descriptive_report_and_why_no_model_was_fitted(
    one_participant: Path, tmp_path: Path
) -> None:
    done = analyze(one_participant, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "descriptive report only" in done.stdout
    page = (tmp_path / "report.html").read_text()
    assert "FAA over time, per block and participant" in page and "Signal quality" in page
    assert "needs 2 or more participants, and this study has 1" in page
    assert "Not run: the manipulation check needs 2+ participants" in page
    quality = pd.read_csv(tmp_path / "tables" / "signal_quality.csv")
    assert list(quality.channel) == ["AF7", "AF8"]
    assert (quality.windows > 0).all() and (quality.dropped_samples == 0).all()
    bins = pd.read_csv(tmp_path / "tables" / "faa_bins.csv")
    assert sorted(set(bins.block)) == ["happy_1", "happy_2", "sad_1", "sad_2"]
    assert not (tmp_path / "tables" / "fixed_effects.csv").exists()


@pytest.mark.slow
def test_two_participants_with_two_covariates_get_a_model_without_them_that_says_so(
    two_with_two_covariates: Path, tmp_path: Path
) -> None:
    done = analyze(two_with_two_covariates, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "a smaller model" in done.stdout
    page = (tmp_path / "report.html").read_text()
    assert "Left out the covariates musical_training, acting: 2 participant-level" in page
    effects = pd.read_csv(tmp_path / "tables" / "fixed_effects.csv")
    assert "happy - sad" in set(effects.term)
    assert not {"musical_training", "acting"} & set(effects.term)


@pytest.mark.slow
def test_analyze_prints_no_library_warning_and_lists_them_in_the_report(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """Seed 4's two participants rate almost alike: scipy warns of precision loss in the
    manipulation check's t-test."""
    done = analyze(two_participants(tmp_path_factory, seed=4), tmp_path)
    assert done.returncode == 0
    assert done.stderr == ""
    assert len(done.stdout.splitlines()) == 1
    page = (tmp_path / "report.html").read_text()
    assert "What the libraries warned" in page and "Precision loss" in page


@pytest.mark.slow
def test_statsmodels_warnings_about_the_fit_are_in_the_report_not_on_the_terminal(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """Seed 2's two participants have nearly the same intercept: a boundary fit."""
    done = analyze(two_participants(tmp_path_factory, seed=2), tmp_path)
    assert done.returncode == 0
    assert done.stderr == ""
    page = (tmp_path / "report.html").read_text()
    assert "statsmodels warned about this fit: Random effects covariance is singular" in page


def drawn_texts(figure: Figure) -> list[Text]:
    """The texts the renderer actually draws (ticks outside the view limits exist but are
    not drawn), in drawing order."""
    renderer = FigureCanvasAgg(figure).get_renderer()
    drawn: list[Text] = []
    draw_text = renderer.draw_text

    def recording(*args: Any, mtext: Text | None = None, **kwargs: Any) -> None:
        if mtext is not None and mtext not in drawn:
            drawn.append(mtext)
        draw_text(*args, mtext=mtext, **kwargs)

    renderer.draw_text = recording
    figure.draw(renderer)
    return drawn


def overlapping(figure: Figure) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose boxes overlap."""
    renderer = FigureCanvasAgg(figure).get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in drawn_texts(figure)]
    return [(a, b) for (a, box_a), (b, box_b) in combinations(boxes, 2) if box_a.overlaps(box_b)]


@pytest.mark.parametrize(
    ("participants", "participant_sd"),
    [(1, 0.5), (2, 0.5), (22, 0.5), (3, 0.0)],
    ids=["one", "two", "twenty-two", "equal intercepts"],  # the last fits intercepts of ~1e-16
)
def test_no_report_plot_has_overlapping_labels(participants: int, participant_sd: float) -> None:
    data = simulate_study(participants, participant_sd=participant_sd, seed=1)
    data = data.assign(session="")
    data["participant"] = [f"sub-P{p[1:]}" for p in data.participant]
    analysis = analyse_study(
        Study(data, pd.DataFrame(), ("musical_training", "acting")), simulations=0
    )
    figures = [faa_by_participant_figure(data), faa_over_time_figure(data)]
    if analysis.model is not None:
        figures.append(participant_intercepts_figure(analysis.model))
    if analysis.manipulation is not None:
        figures.append(sam_check_figure(data))
    for figure in figures:
        assert overlapping(figure) == [], figure.axes[0].get_title()
