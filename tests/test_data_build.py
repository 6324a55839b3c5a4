"""The multi-track data builder: determinism, splits, sums, roles, resume and error paths."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.data.build import BuildConfig, DiskFullError, _outcomes, build_dataset, piece_dir, plan
from models.data.manifest import Manifest, load_notes, load_roles, load_stems, read_audio
from models.data.soundfonts import locate_soundfont
from tests.helpers import BANDMATE, tiny_build_config, tmpfs

SR = 48_000


def test_rendering_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    first = build_dataset(tiny_build_config(tmp_path / "a", limit=3), progress=False)
    second = build_dataset(tiny_build_config(tmp_path / "b", limit=3), progress=False)
    assert first.model_dump() == second.model_dump()
    for example in first.examples:
        for stem in example.stems:
            a = read_audio(tmp_path / "a", stem.file)
            b = read_audio(tmp_path / "b", stem.file)
            assert np.array_equal(a, b), stem.file


def test_another_seed_draws_other_augmentations(tmp_path: Path) -> None:
    base = build_dataset(tiny_build_config(tmp_path / "a", limit=3), progress=False)
    other = build_dataset(tiny_build_config(tmp_path / "b", limit=3, seed=7), progress=False)
    choices = lambda m: [(e.transpose, e.bpm, [s.program for s in e.stems]) for e in m.examples]  # noqa: E731
    assert choices(base) != choices(other)


def test_splits_are_disjoint_by_piece_and_stable_under_limit(tmp_path: Path) -> None:
    full = plan(BuildConfig(out=tmp_path))
    ids = [pid for pid, _ in full]
    assert len(ids) == len(set(ids)), "a piece is planned twice"
    by_split: dict[str, set[str]] = {}
    for pid, split in full:
        by_split.setdefault(split, set()).add(pid)
    assert set(by_split) == {"train", "valid", "test"}
    assert not (by_split["train"] & by_split["valid"] or by_split["train"] & by_split["test"])
    assert not by_split["valid"] & by_split["test"]
    # Roughly 80/10/10 overall.
    fractions = {k: len(v) / len(ids) for k, v in by_split.items()}
    assert fractions["train"] == pytest.approx(0.8, abs=0.02)
    # --limit takes a prefix of the same plan, so a piece keeps its split in every build.
    assert dict(plan(BuildConfig(out=tmp_path, limit=20))) == dict(full)


def test_a_small_build_covers_every_split_and_source(tiny_data: tuple[Path, Manifest]) -> None:
    _, manifest = tiny_data
    assert {e.split for e in manifest.examples} == {"train", "valid", "test"}
    assert {e.source for e in manifest.examples} == {"bach", "palestrina", "band"}
    assert len({e.piece_id for e in manifest.examples}) == len(manifest.examples)


def test_stems_sum_to_the_mix(tiny_data: tuple[Path, Manifest]) -> None:
    root, manifest = tiny_data
    for example in manifest.examples:
        stems = load_stems(root, example)
        mix = read_audio(root, example.mix_file)
        assert all(len(s) == len(mix) == example.num_samples for s in stems.values())
        # 24-bit FLAC quantises each file by 2**-24; a handful of stems stays far below 1e-5.
        np.testing.assert_allclose(sum(stems.values()), mix, atol=1e-5)
        assert np.abs(mix).max() > 0.5, "normalisation should bring the mix near full scale"


def estimated_pitch(audio: np.ndarray, start_s: float, end_s: float, candidates: range) -> int:
    """The MIDI pitch whose first five harmonics hold the most log-energy over a note's
    middle half: a harmonic-sum pitch estimate, robust to instruments with a weak fundamental."""
    a, b = int(SR * (start_s + (end_s - start_s) / 4)), int(SR * (end_s - (end_s - start_s) / 4))
    n_fft = 1 << 16
    magnitude = np.abs(np.fft.rfft(audio[a:b] * np.hanning(b - a), n=n_fft))

    def salience(pitch: int) -> float:
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        bins = [round(f0 * h * n_fft / SR) for h in range(1, 6)]
        return float(sum(np.log(magnitude[k - 2 : k + 3].max() + 1e-9) for k in bins))

    return max(candidates, key=salience)


def test_roles_in_the_manifest_match_the_audio(tiny_data: tuple[Path, Manifest]) -> None:
    root, manifest = tiny_data
    for example in manifest.examples:
        notes = load_notes(root, example)
        live, accompaniment = load_roles(root, example)
        stems = load_stems(root, example)
        # The live part is exactly one stem, and the accompaniment is every other stem.
        assert [s.role for s in example.stems].count("live") == 1
        np.testing.assert_allclose(live + accompaniment, sum(stems.values()), atol=1e-6)
        # The live stem plays the live voice's notes: its pitch classes follow them.
        long_notes = [n for n in notes[example.live.name] if n[2] - n[1] >= 0.2]
        pitches = [int(n[0]) for n in long_notes]
        candidates = range(min(pitches) - 12, max(pitches) + 13)
        hits = [estimated_pitch(live, n[1], n[2], candidates) == n[0] for n in long_notes]
        assert hits and np.mean(hits) >= 0.9, (example.piece_id, np.mean(hits))
        # The live voice is the top voice for scores and the melody for the band.
        pitched = {s.name: notes[s.name] for s in example.stems if s.voice_role != "drums"}
        mean_pitch = {k: np.mean([n[0] for n in v]) for k, v in pitched.items() if v}
        assert max(mean_pitch, key=mean_pitch.__getitem__) == example.live.name
        # Before the live voice's first note, the live stem is silent.
        first_onset = min(n[1] for n in notes[example.live.name])
        if first_onset > 0.2:
            assert np.abs(live[: int(SR * first_onset) - 64]).max() < 1e-4


def test_rerun_resumes_and_skips_finished_pieces(tmp_path: Path) -> None:
    config = tiny_build_config(tmp_path, limit=2)
    first = build_dataset(config, progress=False)
    meta = piece_dir(tmp_path, first.examples[0].piece_id) / "meta.json"
    stamp = meta.stat().st_mtime_ns
    stale = tmp_path / "pieces" / ".partial-bach__crashed"
    stale.mkdir()  # what a crash mid-piece leaves behind
    second = build_dataset(replace(config, limit=3), progress=False)
    assert meta.stat().st_mtime_ns == stamp, "a finished piece was rendered again"
    assert [e.piece_id for e in second.examples[:2]] == [e.piece_id for e in first.examples]
    assert len(second.examples) == 3
    assert not stale.exists()


def test_an_unparsable_score_is_skipped_with_a_reason(tmp_path: Path) -> None:
    config = tiny_build_config(tmp_path, limit=1)
    soundfonts = {"timgm6mb": locate_soundfont("timgm6mb")}
    candidates = [("bach/no-such-chorale", "train"), ("band/rock-000", "train")]
    (tmp_path / "pieces").mkdir()
    outcomes = list(_outcomes(candidates, 1, config, soundfonts))  # type: ignore[arg-type]
    assert outcomes[0][0] == "bach/no-such-chorale"
    assert (
        isinstance(outcomes[0][1], str)
        and "cannot parse score bach/no-such-chorale" in outcomes[0][1]
    )
    assert outcomes[1][0] == "band/rock-000" and not isinstance(outcomes[1][1], str)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BANDMATE, *args], capture_output=True, text=True, timeout=120)


def test_a_missing_soundfont_gives_one_clear_line(tmp_path: Path) -> None:
    result = run_cli("data", "build", "--out", str(tmp_path), "--limit", "1",
                     "--soundfonts", "/nonexistent/Missing.sf2")  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: SoundFont '/nonexistent/Missing.sf2' not found")
    assert not (tmp_path / "manifest.json").exists()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1.5 MB filesystem (tmpfs), to fill up for real."""
    with tmpfs(tmp_path / "disk", "1536k") as mount_point:
        yield mount_point


def test_a_full_disk_stops_the_build_cleanly(tiny_disk: Path) -> None:
    config = tiny_build_config(tiny_disk, limit=4, min_free_bytes=0)
    with pytest.raises(DiskFullError, match="disk full under"):
        build_dataset(config, progress=False)
    pieces = list((tiny_disk / "pieces").iterdir())
    assert not [p for p in pieces if p.name.startswith(".partial")], "half-written piece left"
    assert all((p / "meta.json").is_file() for p in pieces), "a piece folder without meta.json"
    assert not (tiny_disk / "manifest.json").exists()


def test_the_full_disk_error_is_one_line_from_the_cli(tiny_disk: Path) -> None:
    result = run_cli("data", "build", "--out", str(tiny_disk), "--limit", "2",
                     "--soundfonts", "timgm6mb")  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: disk full under")


def test_every_band_style_makes_a_four_voice_piece_with_a_pulse() -> None:
    from models.data.band import STYLES, make_band_piece

    for style in STYLES:
        piece = make_band_piece(f"band/{style}-000")
        assert [v.role for v in piece.voices] == ["melody", "harmony", "bass", "drums"]
        kicks = Counter(n.pitch for n in piece.voice("drums").notes)
        assert kicks[36] >= 8, style  # a kick drum on the beat through the piece
        assert make_band_piece(f"band/{style}-000") == piece  # the id alone decides the notes
