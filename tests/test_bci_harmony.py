"""The composer's harmony: the rules, and the shipped chord model conditioned on genre and mode:
deterministic, inside the mode, on the tonic at each phrase start, fast, and one-line errors
from the CLI and the protocol."""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from bci.errors import BciError
from bci.experiment.experiment_protocol import load_protocol
from bci.live.composer import Composer
from bci.live.harmony import HarmonyConfig, ModelHarmony, make_harmony, scale_steps
from bci.live.loop import BciRunConfig
from bci.live.mapping import MODE_INTERVALS, MODES, MappingConfig, ParameterMapper
from bci.montage import F3F4_128
from tests.helpers import BANDMATE
from tests.test_bci_offline import midi_renderer, render, spkit_recording
from tests.test_bci_protocol import VALID, load_error, write

BACH = HarmonyConfig(kind="model", genre="bach")


def chords(harmony: ModelHarmony, mode: str, bars: int, seed: int) -> list[int]:
    return [harmony.next_chord(random.Random(f"{seed}:{bar}"), mode, bar % 4 == 0)
            for bar in range(bars)]  # fmt: skip


def test_the_same_seed_gives_the_same_chords_and_another_seed_others() -> None:
    first = chords(ModelHarmony(BACH), "aeolian", 32, seed=1)
    assert chords(ModelHarmony(BACH), "aeolian", 32, seed=1) == first
    assert chords(ModelHarmony(BACH), "aeolian", 32, seed=2) != first


@pytest.mark.parametrize("mode", MODES)
def test_model_chords_stay_in_the_mode_and_phrases_start_on_the_tonic(mode: str) -> None:
    harmony = ModelHarmony(HarmonyConfig(kind="model", genre="rock"))
    scale = set(MODE_INTERVALS[mode])
    for bar in range(40):
        steps = harmony.chord_steps(random.Random(bar), bar, mode, MODE_INTERVALS[mode])
        assert steps == sorted(steps) and len(steps) >= 3
        pitch_classes = {MODE_INTERVALS[mode][s % 7] for s in steps}
        assert pitch_classes <= scale
        if bar % 4 == 0:
            assert steps[0] % 7 == 0


def test_genres_play_different_progressions() -> None:
    played = {g: chords(ModelHarmony(HarmonyConfig("model", g)), "ionian", 24, seed=0)
              for g in ("bach", "palestrina", "funk")}  # fmt: skip
    assert len({tuple(c) for c in played.values()}) == 3


def test_a_chord_takes_well_under_a_millisecond() -> None:
    harmony, rng = ModelHarmony(BACH), random.Random(0)
    times = []
    for _ in range(300):  # more than a window's worth, so the window is full and rolling
        started = time.perf_counter()
        harmony.next_chord(rng, "dorian")
        times.append(time.perf_counter() - started)
    assert np.median(times) < 1e-3


def test_scale_steps_stack_chord_tones_upwards() -> None:
    ionian = MODE_INTERVALS["ionian"]
    assert scale_steps((7, 11, 2, 5), ionian) == [4, 6, 8, 10]  # V7
    assert scale_steps((0, 4, 7), ionian) == [0, 2, 4]
    assert scale_steps((7, 0, 2), MODE_INTERVALS["aeolian"]) == [4, 7, 8]  # a sus4 on v


def test_the_rules_stay_the_default() -> None:
    params = ParameterMapper(MappingConfig()).map(0.2)
    plain = Composer(5)
    default = [plain.compose_bar(b, params) for b in range(8)]
    ruled = Composer(5, harmony=make_harmony(HarmonyConfig()))
    assert [ruled.compose_bar(b, params) for b in range(8)] == default
    modelled = Composer(5, harmony=make_harmony(BACH))
    assert [modelled.compose_bar(b, params) for b in range(8)] != default


def test_an_unknown_genre_is_a_one_line_error() -> None:
    with pytest.raises(BciError, match=r"^unknown genre 'jazz'; known: bach, palestrina"):
        make_harmony(HarmonyConfig(kind="model", genre="jazz"))


def test_real_eeg_renders_the_same_midi_twice_with_the_model() -> None:
    data, labels, rate = spkit_recording()
    looped = np.tile(data, 3)
    config = BciRunConfig(montage=F3F4_128, baseline_s=10.0, seed=1, harmony=BACH)
    first = render(looped, labels, rate, config)
    assert first and render(looped, labels, rate, config) == first
    rules = BciRunConfig(montage=F3F4_128, baseline_s=10.0, seed=1)
    assert render(looped, labels, rate, rules) != first


def test_bci_render_with_an_unknown_genre_says_so_in_one_line(tmp_path: Path) -> None:
    command = [BANDMATE, "bci", "render", str(tmp_path / "none.npz"), "--out",
               str(tmp_path / "x.mid"), "--harmony", "model", "--genre", "jazz"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown genre 'jazz'; known: bach")


def test_a_protocol_can_ask_for_the_model_and_names_a_bad_genre(tmp_path: Path) -> None:
    chosen = VALID.replace("repetitions: 2\n", "repetitions: 2\nharmony: model\ngenre: funk\n")
    protocol = load_protocol(write(tmp_path, chosen))
    assert (protocol.harmony, protocol.genre) == ("model", "funk")
    assert load_protocol(write(tmp_path, VALID)).harmony == "rules"
    wrong = chosen.replace("genre: funk", "genre: jazz")
    message = load_error(write(tmp_path, wrong))
    assert message.endswith(":6: genre: unknown genre 'jazz' (known: bach, palestrina, "
                            "monteverdi, classical, rock, funk, bossa, waltz, shuffle, ballad, "
                            "disco, reggae)")  # fmt: skip


@pytest.mark.slow
def test_bci_render_with_the_model_writes_the_same_midi_file_for_the_same_seed(
    tmp_path: Path,
) -> None:
    render = midi_renderer(tmp_path)

    def render_file(seed: int, name: str, harmony: str = "model") -> bytes:
        return render(seed, name, "--harmony", harmony, "--genre", "bach")

    first = render_file(1, "a.mid")
    assert len(first) > 100
    assert render_file(1, "b.mid") == first
    assert render_file(2, "c.mid") != first
    assert render_file(1, "rules.mid", harmony="rules") != first
