"""`bandmate bench codec` and `bandmate codec`: the probes' counters, the metrics' baselines,
and one short end-to-end run on the tiny checkpoint."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks import codec_signals, spectral_metrics
from benchmarks.codec_bench import CodecBenchConfig, WaveformCodec, run_codec_benchmark
from engine.codec_roundtrip import roundtrip
from models.data.manifest import Manifest, load_roles
from tests.helpers import BANDMATE, tiny_build_config


@pytest.fixture(scope="module")
def probes() -> list[codec_signals.Probe]:
    return codec_signals.make_probes(seed=1, chords_per_size=2, trains=1, chirps=1)


def test_the_probe_counters_are_right_on_the_original_signals(
    probes: list[codec_signals.Probe],
) -> None:
    """The counters themselves must not be what fails: on the probes as played they count
    every chord's tones, find every onset within a hop and follow the chirp."""
    scores = codec_signals.score_probes(probes, [p.audio for p in probes], 1024 / 48_000)
    assert scores["chords_counted_correctly"] == 1.0
    assert scores["onsets_within_one_hop"] == 1.0
    assert scores["chirp_error_median_cents"] < 10


def test_the_probe_counters_see_what_is_lost(probes: list[codec_signals.Probe]) -> None:
    """Silence keeps nothing; an output one hop late misses the onsets."""
    silent = codec_signals.score_probes(probes, [0 * p.audio for p in probes], 1024 / 48_000)
    assert silent["chords_counted_correctly"] < 0.5 and silent["onsets_within_one_hop"] == 0
    late = [np.concatenate([np.zeros(2048, np.float32), p.audio]) for p in probes]
    assert codec_signals.score_probes(probes, late, 1024 / 48_000)["onsets_within_one_hop"] < 0.5


def test_chroma_correlation_and_harmonic_fit_tell_the_truth_from_an_echo(
    tiny_data: tuple[Path, Manifest],
) -> None:
    root, manifest = tiny_data
    first, second = (load_roles(root, e) for e in manifest.examples[:2])
    live, accompaniment = (x[: 8 * 48_000] for x in first)
    truth = spectral_metrics.frame_chroma_correlation(accompaniment, accompaniment, 48_000)
    echo = spectral_metrics.frame_chroma_correlation(live, accompaniment, 48_000)
    assert truth > 0.99 and echo < truth - 0.3
    fit = spectral_metrics.harmonic_fit(accompaniment, live, second[0][: 8 * 48_000], 48_000)
    assert fit > 0.05


def test_the_previous_codec_round_trips_through_its_own_graphs() -> None:
    audio = 0.1 * np.sin(2 * np.pi * 220 * np.arange(48_000) / 48_000).astype(np.float32)
    out = roundtrip(WaveformCodec(CodecBenchConfig().previous), audio, 48_000)  # type: ignore[arg-type]
    assert out.shape == audio.shape and np.isfinite(out).all() and np.abs(out).max() > 1e-3


@pytest.mark.slow
def test_bench_codec_scores_every_system_on_held_out_pieces(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    data = tmp_path / "heldout"
    report = run_codec_benchmark(
        CodecBenchConfig(
            checkpoint=tiny_checkpoint,
            data=data,
            limit=2,
            seconds=4.0,
            probes=False,
            plot=tmp_path / "codec.png",
            progress=False,
            held_out_recipe=tiny_build_config(data),
        )
    )
    json.dumps(report, allow_nan=False)
    assert set(report["systems"]) == {"codec", "time-averaged latent", "previous codec",
                                      "true magnitudes"}  # fmt: skip
    assert report["crops"] == 4 and report["codec_latency_ms"] == pytest.approx(37.33, abs=0.01)
    assert set(report["targets"]) == {"chroma_correlation", "harmonic_fit_fraction",
                                      "time_averaged_log_mel_ratio"}  # fmt: skip
    assert (tmp_path / "codec.png").stat().st_size > 10_000


def test_bandmate_codec_round_trips_a_file_aligned_with_it(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """44.1 kHz in, 44.1 kHz out, the same length, the codec's latency compensated: a tone
    that starts at 0.5 s starts there in the output too."""
    rate = 44_100
    t = np.arange(2 * rate) / rate
    audio = np.where(t >= 0.5, 0.2 * np.sin(2 * np.pi * 330 * t), 0).astype(np.float32)
    source, out = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(source, audio, rate)
    command = [BANDMATE, "codec", str(source), "-o", str(out), "--checkpoint", str(tiny_checkpoint)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result, result_rate = sf.read(out, dtype="float32")
    assert result_rate == rate and len(result) == len(audio)
    energy = np.convolve(result**2, np.ones(441) / 441, "same")
    onset = np.flatnonzero(energy > 0.1 * energy.max())[0] / rate
    assert abs(onset - 0.5) < 0.03


def test_bandmate_codec_names_a_missing_file_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run([BANDMATE, "codec", str(tmp_path / "nope.wav"), "-o",
                           str(tmp_path / "x.wav")], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: cannot read audio file")
