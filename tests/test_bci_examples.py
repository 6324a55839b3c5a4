"""The example --schedule and --montage files the README documents load as they say."""

from __future__ import annotations

from pathlib import Path

from bci.live.simulate import AsymmetryStep, Event, load_schedule
from bci.montage import Montage, load_montage

EXAMPLES = Path(__file__).resolve().parents[1] / "bci" / "examples"


def test_the_example_schedule_steps_the_asymmetry_and_schedules_each_kind_of_event() -> None:
    schedule = load_schedule(EXAMPLES / "schedule.yaml")
    assert schedule.asymmetry == (
        AsymmetryStep(0.0, 0.0), AsymmetryStep(20.0, 0.6), AsymmetryStep(50.0, -0.6)
    )  # fmt: skip
    assert schedule.events == (
        Event(30.0, "blink", 0.3), Event(35.0, "emg", 2.0), Event(40.0, "dropout", 0.5),
        Event(60.0, "kill", 3.0),
    )  # fmt: skip


def test_the_example_montage_names_f3_f4_with_the_mastoids_as_reference() -> None:
    assert load_montage(EXAMPLES / "montage.yaml") == Montage("F3", "F4", ("TP9", "TP10"), 256.0)
