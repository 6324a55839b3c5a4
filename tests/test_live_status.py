"""`bci run` and `session run` show what is happening on a live status line: the block and
its time left, the calibration countdown, then the valence, each channel's quality, the gated
share and the dropped samples. Run on a pseudo-terminal, where the line is redrawn in place."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bci.live.simulate import Event, Schedule, Simulator, SimulatorConfig
from tests.bci_probe import run_on_a_terminal, status_lines
from tests.helpers import BANDMATE

# Slow, so not in `make test-quick`: every test here runs `bci run` or `session run` on a pseudo-
# terminal in real time.
pytestmark = pytest.mark.slow

PROTOCOL = """\
name: two short blocks
version: 1
baseline_block: eyes_closed
blocks:
  - {name: eyes_closed, kind: baseline_eyes_closed, instruction: Close your eyes., duration_s: 5}
  - {name: happy, kind: emotion, target_emotion: happy, instruction: Recall joy., duration_s: 6}
sequence: [eyes_closed, happy]
"""


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    """EEG with a blink every 5 s on the frontal channels: about half the windows hold one."""
    name = f"sim-{uuid.uuid4().hex[:8]}"
    schedule = Schedule(events=tuple(Event(at, "blink", 0.3) for at in range(2, 120, 5)))
    simulator = Simulator(SimulatorConfig(name=name, source_id=name), schedule)
    simulator.start()
    yield simulator
    simulator.stop()


def test_bci_run_shows_the_calibration_countdown_then_valence_channels_gating_and_drops(
    simulator: Simulator,
) -> None:
    code, out, err = run_on_a_terminal(
        [BANDMATE, "bci", "run", "--stream", simulator.config.name, "--baseline", "4",
         "--duration", "8", "--no-synth", "--no-outlets"],
        timeout_s=90,
    )  # fmt: skip
    assert code == 0, err
    lines = status_lines(out)
    calibrating = [line for line in lines if line.startswith("calibrating ")]
    playing = [line for line in lines if line.startswith("valence ")]
    assert calibrating and playing, lines
    assert [int(line.split()[1]) for line in calibrating][-1] <= 1  # counted down
    assert lines.index(calibrating[-1]) < lines.index(playing[0])
    channels = [line.split(" | ")[1] for line in lines]
    assert any(c.startswith("AF7 ok ") and ", AF8 ok " in c for c in channels), channels
    blinking = [c.split(", ") for c in channels if "blink" in c]
    assert any("blink" in left and "blink" in right for left, right in blinking), channels
    assert playing[-1].endswith("| 0 dropped")
    gated = int(playing[-1].split("| gated ")[1].split(" %")[0])
    assert 20 <= gated <= 80  # the blinks' windows were held back


def test_session_run_shows_the_block_and_its_time_left(
    simulator: Simulator, tmp_path: Path
) -> None:
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    code, out, err = run_on_a_terminal(
        [BANDMATE, "session", "run", str(protocol), "--participant", "P01", "--out",
         str(tmp_path / "study"), "--stream", simulator.config.name, "--ratings", "auto",
         "--synth-driver", "none"],
        timeout_s=120,
    )  # fmt: skip
    assert code == 0, err
    lines = status_lines(out)
    baseline = [line for line in lines if line.startswith("[1/2] eyes_closed: ")]
    emotion = [line for line in lines if line.startswith("[2/2] happy: ")]
    assert baseline and emotion, lines
    assert "| calibrating " in baseline[-1]
    assert "| valence " in emotion[-1]
    left = [int(line.split()[2]) for line in emotion]  # "[2/2] happy: 5 s left | ..."
    assert left[0] >= 5 and left[-1] <= 1 and left == sorted(left, reverse=True)
