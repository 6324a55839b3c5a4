"""`bandmate bench quality`: its metrics, its Basic Pitch transcription, the no-context
ablation, and one short end-to-end run on a tiny held-out build and the tiny checkpoint."""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks.pitch_transcription import FRAME_RATE, SAMPLE_RATE, to_analysis_rate, transcribe
from benchmarks.quality import QualityBenchConfig, markdown_table, run_quality_benchmark
from benchmarks.quality_metrics import (
    SignalAnalysis,
    analyse,
    beat_f_measure,
    frechet_distance,
    pair_metrics,
    pitch_class_agreement,
    window_embeddings,
)
from benchmarks.quality_systems import SYSTEMS, WithoutPastContext
from engine.backends import create_backend
from engine.checkpoint import load_engine_checkpoint
from models.data.manifest import Manifest, load_manifest, load_roles, read_audio
from tests.helpers import BANDMATE, tiny_build_config

METRICS = (
    "beat_f_measure",
    "pitch_class_agreement",
    "key_consistency",
    "onset_correlation",
    "dynamics_correlation",
)


def sine(frequency: float, seconds: float, start: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return np.where(t >= start, 0.3 * np.sin(2 * np.pi * frequency * t), 0).astype(np.float32)


@pytest.fixture(scope="module")
def live_analysis(tiny_data: tuple[Path, Manifest]) -> SignalAnalysis:
    """A real rendered live part (a held-out chorale's soprano, 11 s), analysed once."""
    root, manifest = tiny_data
    example = manifest.split("test")[0]
    return analyse(to_analysis_rate(read_audio(root, example.live.file), example.sample_rate))


@pytest.fixture(scope="module")
def silence_analysis(live_analysis: SignalAnalysis) -> SignalAnalysis:
    return analyse(np.zeros(round(live_analysis.duration_s * SAMPLE_RATE), np.float32))


@pytest.mark.parametrize(("frequency", "midi"), [(440.0, 69), (261.63, 60)])
def test_basic_pitch_transcribes_a_sine_as_its_note(frequency: float, midi: int) -> None:
    transcription = transcribe(sine(frequency, 2.0))
    assert transcription.sounding_midi_pitches() == {midi}
    assert int(transcription.pitch_class_activity().sum(0).argmax()) == midi % 12


def test_transcription_frames_line_up_with_audio_time_across_windows() -> None:
    """A note entering at 4.5 s lies in the third model window: stitching must not drift."""
    transcription = transcribe(sine(440.0, 6.0, start=4.5))
    first = np.flatnonzero(transcription.notes.max(1) >= 0.3)[0] / FRAME_RATE
    assert abs(first - 4.5) < 0.05
    assert len(transcription.notes) == int(6.0 * SAMPLE_RATE) // 256


def test_live_part_against_itself_scores_perfectly(live_analysis: SignalAnalysis) -> None:
    scores = pair_metrics(live_analysis, live_analysis)
    assert scores["beat_f_measure"] == 1.0
    assert scores["pitch_class_agreement"] > 0.99
    assert scores["key_consistency"] == 1.0
    assert scores["onset_correlation"] > 0.99
    assert scores["dynamics_correlation"] > 0.99


def test_silent_output_scores_zero_and_a_silent_reference_is_undefined(
    live_analysis: SignalAnalysis, silence_analysis: SignalAnalysis
) -> None:
    assert pair_metrics(live_analysis, silence_analysis) == dict.fromkeys(METRICS, 0.0)
    assert math.isnan(beat_f_measure(np.array([]), live_analysis.beats))
    assert math.isnan(
        pitch_class_agreement(silence_analysis.pitch_classes, live_analysis.pitch_classes)
    )


def test_frechet_distance_matches_the_gaussian_formula() -> None:
    """Unit-variance Gaussians whose means differ by 2 in each of 4 dimensions: 4 * 2^2 = 16."""
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((20_000, 4))
    assert frechet_distance(reference, reference) < 1e-6
    assert frechet_distance(rng.standard_normal((20_000, 4)) + 2.0, reference) == pytest.approx(
        16.0, rel=0.05
    )


def test_frechet_distance_of_real_audio_is_zero_to_itself_and_large_to_noise(
    live_analysis: SignalAnalysis,
) -> None:
    real = window_embeddings(live_analysis)
    noise = window_embeddings(
        analyse(np.random.default_rng(0).standard_normal(len(real) * SAMPLE_RATE) * 0.1)
    )
    assert frechet_distance(real, real) < 1e-6
    assert frechet_distance(noise, real) > 10.0


def test_model_without_past_context_ignores_the_generators_history(
    live_recording: np.ndarray,
) -> None:
    """After many hops of music the shipped model's next output depends on that history; the
    ablated one gives the same output as from an empty generator window."""
    onnx_backend = create_backend(load_engine_checkpoint(None), "onnx")
    hop, noise_dim = onnx_backend.info.hop, onnx_backend.info.noise_dim
    rng = np.random.default_rng(0)
    state = onnx_backend.initial_state(1)
    for k in range(40):
        noise = rng.standard_normal((1, noise_dim)).astype(np.float32)
        state, _ = onnx_backend.step(state, live_recording[None, k * hop : (k + 1) * hop], noise)
    fresh = replace(state, generator=onnx_backend.initial_state(1).generator)  # only it differs
    audio = live_recording[None, 40 * hop : 41 * hop]
    noise = rng.standard_normal((1, noise_dim)).astype(np.float32)
    full_history, full_fresh = (onnx_backend.step(s, audio, noise)[1] for s in (state, fresh))
    ablated = WithoutPastContext(onnx_backend)
    cut_history, cut_fresh = (ablated.step(s, audio, noise)[1] for s in (state, fresh))
    assert np.abs(full_history - full_fresh).max() > 1e-3
    np.testing.assert_array_equal(cut_history, cut_fresh)
    np.testing.assert_array_equal(cut_fresh, full_fresh)


@pytest.mark.slow
def test_quality_bench_renders_held_out_pieces_and_ranks_the_baselines(
    tiny_data: tuple[Path, Manifest], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """An empty data folder gets test-split pieces only (the same audio as a normal build's);
    then every system is scored and the JSON holds no NaN."""
    data = tmp_path / "heldout"
    config = QualityBenchConfig(
        data=data,
        checkpoint=tiny_checkpoint,
        limit=2,
        seconds=8.0,
        progress=False,
        held_out_recipe=tiny_build_config(data),
    )
    report = run_quality_benchmark(config)
    manifest = load_manifest(data)
    assert [e.split for e in manifest.examples] == ["test", "test"]
    tiny_root, tiny_manifest = tiny_data
    shared = tiny_manifest.split("test")[0]
    ours = next(e for e in manifest.examples if e.piece_id == shared.piece_id)
    np.testing.assert_array_equal(load_roles(data, ours)[0], load_roles(tiny_root, shared)[0])

    json.dumps(report, allow_nan=False)
    systems = report["systems"]
    assert tuple(systems) == SYSTEMS
    assert len(report["pieces"]) == 2 and report["seconds_per_piece"] == [8.0, 8.0]
    truth, silence = systems["ground truth"]["mean"], systems["silence"]["mean"]
    assert truth["frechet_distance"] == 0.0 < systems["model"]["mean"]["frechet_distance"]
    assert silence["frechet_distance"] > 0.0  # (the 3-step tiny model may be further still)
    assert all(silence[m] == 0.0 for m in METRICS)
    assert truth["beat_f_measure"] > 0.5 and truth["pitch_class_agreement"] > 0.1
    for system in SYSTEMS:
        assert set(systems[system]["per_piece"]) == {p["piece_id"] for p in report["pieces"]}
    assert markdown_table(report).count("\n") == 2 + len(SYSTEMS)
    echo = systems["echo"]["mean"]
    assert truth["chroma_vs_truth"] > 0.99 > echo["chroma_vs_truth"]
    assert set(report["targets"]) >= {"pitch_class_gap_closed", "beats_echo_on_chroma_vs_truth"}


def test_bench_quality_rejects_a_bad_limit_in_one_line() -> None:
    result = subprocess.run(
        [BANDMATE, "bench", "quality", "--limit", "0"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --limit must be at least 1, not 0"


def test_bench_quality_checks_the_checkpoint_before_rendering_anything(tmp_path: Path) -> None:
    """Without --data it renders the held-out pieces into ./data/heldout (here: tmp_path);
    a checkpoint that does not exist must stop it before that."""
    missing = tmp_path / "nonexistent"
    result = subprocess.run(
        [BANDMATE, "bench", "quality", "--checkpoint", str(missing)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0], lines
    assert list(tmp_path.iterdir()) == [], "it wrote before it checked the checkpoint"
