"""Study protocols: the shipped example, counterbalancing by balanced Latin square, session
plans, participant ids, and load errors that name the file, the line and the field."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

from bci.errors import BciError
from bci.experiment.experiment_protocol import (
    EXAMPLE_PROTOCOL,
    balanced_latin_square,
    load_protocol,
    participant_index,
    participant_label,
    plan_session,
)

# A small valid protocol; each error test breaks one line of it.
VALID = """\
name: test-study
version: 1
baseline_block: still
repetitions: 2
blocks:
  - name: still
    kind: baseline_eyes_closed
    instruction: Close your eyes.
    duration_s: 60
  - name: joy
    kind: emotion
    target_emotion: happy
    instruction: Think of something happy.
    duration_s: 90
  - name: gloom
    kind: emotion
    target_emotion: sad
    instruction: Think of something sad.
    duration_s: 80
  - name: pause
    kind: rest
    instruction: Relax.
    duration_s: 20
  - name: odd
    kind: emotion
    target_emotion: calm
    instruction: Think of something calm.
    duration_s: 70
sequence:
  - {block: still, once: true}
  - {counterbalance: [joy, gloom], after_each: pause}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "protocol.yaml"
    path.write_text(text)
    return path


def edited(old: str, new: str) -> str:
    assert VALID.count(old) == 1, old
    return VALID.replace(old, new)


def line_of(text: str, fragment: str) -> int:
    lines = [n for n, line in enumerate(text.splitlines(), start=1) if fragment in line]
    assert len(lines) == 1, fragment
    return lines[0]


def load_error(path: Path) -> str:
    with pytest.raises(BciError) as caught:
        load_protocol(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_shipped_example_orders_the_emotion_pair_by_participant() -> None:
    protocol = load_protocol(EXAMPLE_PROTOCOL)
    emotions = {
        participant: [
            planned.block.target_emotion
            for planned in plan_session(protocol, participant)
            if planned.block.kind == "emotion"
        ]
        for participant in range(4)
    }
    assert emotions[0] == ["happy", "sad", "happy", "sad"]
    assert emotions[1] == ["sad", "happy", "sad", "happy"]
    assert emotions[2] == emotions[0]
    assert emotions[3] == emotions[1]


@pytest.mark.parametrize("participant", range(4))
def test_shipped_example_plans_pool_blocks_with_cumulative_onsets(participant: int) -> None:
    protocol = load_protocol(EXAMPLE_PROTOCOL)
    plan = plan_session(protocol, participant)
    assert [planned.index for planned in plan] == list(range(len(plan)))
    assert all(protocol.block(planned.block.name) == planned.block for planned in plan)
    assert plan[0].onset_s == 0.0
    for before, after in pairwise(plan):
        assert after.onset_s == before.onset_s + before.block.duration_s
    # Baselines once, then per repetition: emotion, rest, emotion, rest.
    assert [planned.block.kind for planned in plan] == [
        "baseline_eyes_open",
        "baseline_eyes_closed",
        *["emotion", "rest", "emotion", "rest"] * 2,
    ]
    assert [planned.repetition for planned in plan] == [0] * 6 + [1] * 4
    assert plan[-1].onset_s + plan[-1].block.duration_s == 720.0


def test_shipped_example_plays_feedback_and_rates_only_emotion_blocks() -> None:
    for block in load_protocol(EXAMPLE_PROTOCOL).blocks:
        emotion = block.kind == "emotion"
        assert block.music == ("feedback" if emotion else "silent")
        assert block.ratings == emotion


def test_emotion_blocks_default_to_feedback_and_ratings(tmp_path: Path) -> None:
    protocol = load_protocol(write(tmp_path, VALID))
    assert (protocol.block("joy").music, protocol.block("joy").ratings) == ("feedback", True)
    assert (protocol.block("pause").music, protocol.block("pause").ratings) == ("silent", False)


@pytest.mark.parametrize("conditions", [2, 3, 4, 5, 6])
def test_balanced_latin_square_puts_each_condition_equally_often_in_each_position(
    conditions: int,
) -> None:
    rows = balanced_latin_square(conditions)
    assert len(rows) == (2 * conditions if conditions % 2 else conditions)
    everyone = set(range(conditions))
    # The first k rows are a Latin square: every row and every column is a permutation.
    assert all(set(row) == everyone and len(row) == conditions for row in rows)
    assert all({row[p] for row in rows[:conditions]} == everyone for p in range(conditions))
    for position in range(conditions):
        column = Counter(row[position] for row in rows)
        assert column == dict.fromkeys(everyone, len(rows) // conditions)


@pytest.mark.parametrize("conditions", [2, 3, 4, 5, 6])
def test_balanced_latin_square_has_each_ordered_neighbour_pair_equally_often(
    conditions: int,
) -> None:
    rows = balanced_latin_square(conditions)
    neighbours = Counter(pair for row in rows for pair in pairwise(row))
    all_ordered_pairs = {(a, b) for a in range(conditions) for b in range(conditions) if a != b}
    assert set(neighbours) == all_ordered_pairs
    assert set(neighbours.values()) == {len(rows) // conditions}


def test_odd_groups_cycle_through_twice_as_many_rows(tmp_path: Path) -> None:
    text = edited("[joy, gloom], after_each: pause", "[joy, gloom, odd]")
    protocol = load_protocol(write(tmp_path, text))

    def order(participant: int) -> list[str]:
        plan = plan_session(protocol, participant)
        return [planned.block.name for planned in plan if planned.repetition == 0][1:]

    orders = [order(participant) for participant in range(6)]
    assert len({tuple(o) for o in orders}) == 6
    assert orders[3] == orders[0][::-1]  # the second half of the Williams design: reversed
    assert order(6) == orders[0]


def test_once_items_run_only_in_the_first_repetition(tmp_path: Path) -> None:
    plan = plan_session(load_protocol(write(tmp_path, VALID)), 0)
    names = [(planned.repetition, planned.block.name) for planned in plan]
    assert names == [
        (0, "still"),
        *[(0, "joy"), (0, "pause"), (0, "gloom"), (0, "pause")],
        *[(1, "joy"), (1, "pause"), (1, "gloom"), (1, "pause")],
    ]


def test_negative_duration_names_its_line_and_field(tmp_path: Path) -> None:
    text = edited("duration_s: 80", "duration_s: -5")
    path = write(tmp_path, text)
    message = load_error(path)
    line = line_of(text, "duration_s: -5")
    assert message == f"{path}:{line}: blocks.2.duration_s: Input should be greater than 0"


def test_unknown_key_names_its_line_and_field(tmp_path: Path) -> None:
    text = edited("    instruction: Relax.\n", "    instruction: Relax.\n    colour: red\n")
    path = write(tmp_path, text)
    message = load_error(path)
    line = line_of(text, "colour: red")
    assert message == f"{path}:{line}: blocks.3.colour: Extra inputs are not permitted"


def test_unknown_block_in_a_counterbalance_group_names_its_line(tmp_path: Path) -> None:
    text = edited("[joy, gloom]", "[joy, glum]")
    path = write(tmp_path, text)
    message = load_error(path)
    line = line_of(text, "glum")
    assert message.startswith(f"{path}:{line}: sequence.1.counterbalance.1: unknown block 'glum'")


def test_unknown_block_named_plainly_in_the_sequence_names_its_line(tmp_path: Path) -> None:
    text = VALID + "  - stil\n"
    path = write(tmp_path, text)
    message = load_error(path)
    line = line_of(text, "- stil")
    assert message.startswith(f"{path}:{line}: sequence.2.block: unknown block 'stil'")


def test_emotion_block_without_target_points_at_the_block(tmp_path: Path) -> None:
    text = edited("    target_emotion: sad\n", "")
    path = write(tmp_path, text)
    message = load_error(path)
    line = line_of(text, "name: gloom")
    assert message.startswith(f"{path}:{line}: blocks.2.target_emotion: an emotion block needs")


def test_duplicate_block_name_points_at_the_second_definition(tmp_path: Path) -> None:
    text = edited("name: odd", "name: joy")
    path = write(tmp_path, text)
    message = load_error(path)
    line = line_of(text, "target_emotion: calm") - 2
    assert message == f"{path}:{line}: blocks.4.name: block 'joy' is defined twice"


@pytest.mark.parametrize(
    ("baseline", "problem"),
    [("stil", "no block is named 'stil'"), ("pause", "'pause' is a rest block, not a baseline")],
)
def test_baseline_block_must_be_a_baseline_in_the_pool(
    tmp_path: Path, baseline: str, problem: str
) -> None:
    text = edited("baseline_block: still", f"baseline_block: {baseline}")
    path = write(tmp_path, text)
    message = load_error(path)
    assert message.startswith(f"{path}:3: baseline_block: {problem}")


def test_feedback_before_the_baseline_is_refused(tmp_path: Path) -> None:
    text = edited("  - {block: still, once: true}\n", "") + "  - still\n"
    path = write(tmp_path, text)
    message = load_error(path)
    line = line_of(text, "counterbalance")
    assert message.startswith(f"{path}:{line}: sequence.0: 'joy' plays feedback before")


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    text = edited("duration_s: 20", "duration_s: 20: 30")
    path = write(tmp_path, text)
    message = load_error(path)
    assert message.startswith(f"{path}:{line_of(text, '20: 30')}: not valid YAML")


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    assert load_error(path) == f"{path}: cannot read it (No such file or directory)"


@pytest.mark.parametrize(
    ("participant_id", "index"),
    [("P01", 0), ("sub-07", 6), ("12", 11), ("p003", 2), ("sub_10", 9), (" P02 ", 1)],
)
def test_participant_index_is_the_trailing_number_minus_one(
    participant_id: str, index: int
) -> None:
    assert participant_index(participant_id) == index


@pytest.mark.parametrize(
    ("participant_id", "label"),
    [("P01", "P01"), ("sub-07", "07"), ("12", "12"), ("p003", "p003"), ("sub_10", "10")],
)
def test_the_bids_label_drops_a_sub_prefix_and_stays_alphanumeric(
    participant_id: str, label: str
) -> None:
    assert participant_label(participant_id) == label


@pytest.mark.parametrize("participant_id", ["", "P", "alice", "P01a", "sub-07-run2", "P00"])
def test_participant_index_refuses_ids_without_a_number(participant_id: str) -> None:
    with pytest.raises(BciError, match="participant"):
        participant_index(participant_id)


def test_session_run_without_a_participant_says_so_and_exits_2(tmp_path: Path) -> None:
    import subprocess

    from tests.helpers import BANDMATE

    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(VALID)
    done = subprocess.run(
        [BANDMATE, "session", "run", str(protocol), "--out", str(tmp_path / "study")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Missing option '--participant'" in done.stderr
    assert not (tmp_path / "study").exists()


def test_a_time_scale_multiplies_every_duration_and_onset() -> None:
    protocol = load_protocol(EXAMPLE_PROTOCOL)
    full, scaled = plan_session(protocol, 1), plan_session(protocol, 1, time_scale=0.1)
    assert [p.block for p in scaled] == [p.block for p in full]
    assert [p.duration_s for p in scaled] == pytest.approx([0.1 * p.duration_s for p in full])
    assert [p.onset_s for p in scaled] == pytest.approx([0.1 * p.onset_s for p in full])
    assert scaled[-1].onset_s + scaled[-1].duration_s == pytest.approx(72.0)


def test_session_run_dry_run_prints_the_schedule_and_its_total_duration(tmp_path: Path) -> None:
    """No stream is needed, and nothing is written: the plan of participant 2 of the shipped
    study at a tenth of its durations, each block after a 0.3 s get-ready countdown."""
    import subprocess

    from tests.helpers import BANDMATE

    done = subprocess.run(
        [BANDMATE, "session", "run", str(EXAMPLE_PROTOCOL), "--participant", "P02",
         "--out", str(tmp_path / "study"), "--time-scale", "0.1", "--dry-run"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rows = [line.split() for line in lines[2:-1]]
    assert [row[2] for row in rows] == ["eyes_open", "eyes_closed", "sad", "rest", "happy",
                                        "rest", "sad", "rest", "happy", "rest"]  # fmt: skip
    assert [float(row[4]) for row in rows] == [6, 6, 12, 3, 12, 3, 12, 3, 12, 3]
    assert rows[1][1] == "0:06.6"  # 0.3 s, eyes_open's 6 s, 0.3 s
    assert lines[-1] == "total 1:15.0 (75 s), plus 4 self-paced SAM ratings"
    assert not (tmp_path / "study").exists()
