"""Steering: the attributes, the vectors, and alpha through the generator, ONNX and a session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.backends import create_backend
from engine.checkpoint import load_engine_checkpoint
from engine.errors import EngineError
from engine.filemode import accompany
from engine.session import STEER_SLEW_PER_HOP, Session
from models.attributes import ATTRIBUTES, frame_attributes
from models.checkpoint import load_generator
from models.generator import GENERATOR_PRESETS, Generator
from models.spectral import SpectralCodec, SpectralConfig

SPECTRAL = SpectralConfig()
RATE = SPECTRAL.sample_rate


def attributes_of(audio: np.ndarray) -> np.ndarray:
    bands = SpectralCodec(SPECTRAL).analyse(audio[None].astype(np.float32))[0]
    return frame_attributes(bands, SPECTRAL)[20:].mean(0)  # past the first window


def tone(midi: float, seconds: float = 2.0, amplitude: float = 0.1) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return amplitude * np.sin(2 * np.pi * 440 * 2 ** ((midi - 69) / 12) * t)


def test_attributes_read_pitch_height_loudness_and_note_rate() -> None:
    low, high = attributes_of(tone(48)), attributes_of(tone(72))
    register, brightness, loudness, density = (
        ATTRIBUTES.index(a) for a in ("register", "brightness", "loudness", "density")
    )
    assert abs(low[register] - 48) < 1 and abs(high[register] - 72) < 1
    assert high[brightness] > 3 * low[brightness]
    louder = attributes_of(tone(60, amplitude=0.2))
    assert louder[loudness] - attributes_of(tone(60))[loudness] == pytest.approx(6.02, abs=0.2)
    # Notes starting eight times a second against one held note.
    gate = (np.arange(2 * RATE) % (RATE // 8) < RATE // 16).astype(np.float64)
    assert attributes_of(tone(60) * gate)[density] > 5 * attributes_of(tone(60))[density]


def steered_generator() -> Generator:
    torch.manual_seed(0)
    generator = Generator(GENERATOR_PRESETS["tiny"]).eval()
    c = generator.config
    generator.install_steering({a: torch.randn(c.n_layers, c.d_model) for a in ATTRIBUTES})
    return generator


def test_streaming_with_alpha_per_frame_equals_the_parallel_pass() -> None:
    """KV entries keep the alpha they were written with: a stream whose alpha changes every
    frame computes what the parallel pass computes with the same alphas per frame."""
    generator = steered_generator()
    c, length = generator.config, 3 * GENERATOR_PRESETS["tiny"].window
    live, noise = torch.randn(2, length, c.latent_dim), torch.randn(2, length, c.noise_dim)
    steer = torch.randn(2, length, len(ATTRIBUTES)) * (torch.rand(2, length, 1) > 0.5)
    with torch.no_grad():
        offline = generator(live, noise, steer).latents
        state, outs = generator.init_state(2), []
        for t in range(length):
            state, out = generator.step(state, live[:, t], noise[:, t], steer[:, t])
            outs.append(out)
        unsteered = generator(live, noise).latents
    assert torch.allclose(torch.stack(outs, 1), offline, atol=1e-4)
    assert (offline - unsteered).abs().max() > 1e-2  # and steering did something


def test_gram_schmidt_removes_the_first_direction_from_the_second() -> None:
    generator = steered_generator()
    both = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    first = generator.steering[0]
    second_part = generator.steering_delta(both)[0] - first
    assert (second_part * first).sum(-1).abs().max() < 1e-4 * first.norm() ** 2
    generator.orthogonal_steering = False
    naive = generator.steering_delta(both)[0]
    assert torch.allclose(naive, first + generator.steering[1], atol=1e-5)


def test_orthogonalisation_turns_smoothly_as_an_alpha_leaves_zero() -> None:
    """A steady second attribute must not jump when the first starts to glide from 0."""
    generator = steered_generator()
    still = generator.steering_delta(torch.tensor([[0.0, 1.0, 0.0, 0.0]]))
    nudged = generator.steering_delta(torch.tensor([[1e-3, 1.0, 0.0, 0.0]]))
    assert (nudged - still).norm() < 1e-2 * still.norm()


def test_session_glides_to_its_targets_and_names_bad_attributes(
    steerable_checkpoint: Path,
) -> None:
    session = Session(create_backend(load_engine_checkpoint(steerable_checkpoint), "onnx"))
    session.steer({"brightness": 1.0, "loudness": -0.25})
    alphas = np.array([session.next_steer() for _ in range(12)])
    assert np.abs(np.diff(alphas, axis=0, prepend=0)).max() <= STEER_SLEW_PER_HOP + 1e-6
    assert alphas[-1][ATTRIBUTES.index("brightness")] == pytest.approx(1.0)
    assert alphas[-1][ATTRIBUTES.index("loudness")] == pytest.approx(-0.25)
    with pytest.raises(EngineError, match="cannot steer 'tempo'"):
        session.steer({"tempo": 1.0})
    with pytest.raises(EngineError, match="finite"):
        session.steer({"density": float("nan")})


def test_unsteerable_checkpoint_says_how_to_build_vectors(onnx_backend: object) -> None:
    session = Session(onnx_backend)  # type: ignore[arg-type]
    with pytest.raises(EngineError, match="steer build"):
        session.steer({"brightness": 1.0})


def test_steering_changes_the_accompaniment_deterministically(
    steerable_checkpoint: Path, live_recording: np.ndarray
) -> None:
    backend = create_backend(load_engine_checkpoint(steerable_checkpoint), "onnx")
    audio = live_recording[: 3 * RATE]
    plain = accompany(audio, RATE, backend, seed=3).accompaniment
    bright = accompany(audio, RATE, backend, seed=3, steer={"brightness": 2.0}).accompaniment
    again = accompany(audio, RATE, backend, seed=3, steer={"brightness": 2.0}).accompaniment
    assert np.array_equal(bright, again)
    assert np.abs(bright - plain).max() > 1e-4
    zero = accompany(audio, RATE, backend, seed=3, steer={"brightness": 0.0}).accompaniment
    assert np.array_equal(zero, plain)


def test_built_vectors_are_named_layer_limited_and_exported(steerable_checkpoint: Path) -> None:
    config = json.loads((steerable_checkpoint / "config.json").read_text())
    assert config["steering"]["attributes"] == list(ATTRIBUTES)
    assert "steer" in config["onnx"]["generator"]["inputs"]
    generator = load_generator(steerable_checkpoint)
    layers = config["steering"]["layers"]
    for k in range(len(ATTRIBUTES)):
        for layer in range(generator.config.n_layers):
            norm = float(generator.steering[k, layer].norm())
            assert (norm > 0) == (layer in layers)
    # Export checks ONNX against torch with alphas on two attributes at once.
    assert config["onnx"]["parity"]["generator"] < 1e-4


@pytest.mark.slow
def test_accompany_cli_steers_and_rejects_a_malformed_steer(
    steerable_checkpoint: Path, live_recording: np.ndarray, tmp_path: Path
) -> None:
    import soundfile as sf

    sf.write(tmp_path / "in.wav", live_recording[: 2 * RATE], RATE)
    cli = [sys.executable, "-m", "server.cli", "accompany", str(tmp_path / "in.wav"),
           "--checkpoint", str(steerable_checkpoint)]  # fmt: skip
    ok = subprocess.run(
        [*cli, "-o", str(tmp_path / "out.wav"), "--steer", "register=-1"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [*cli, "-o", str(tmp_path / "bad.wav"), "--steer", "register"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "ATTRIBUTE=ALPHA" in bad.stderr


@pytest.mark.slow
def test_steering_bench_reports_every_attribute_pair_and_bar(
    steerable_checkpoint: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from benchmarks.steering_bench import DUAL_PAIRS, SteeringBenchConfig, run_steering_benchmark
    from tests.helpers import tiny_build_config

    data = tmp_path / "heldout"
    config = SteeringBenchConfig(data=data, checkpoint=steerable_checkpoint, limit=2,
                                 seconds=6.0, harmony=False, progress=False,
                                 held_out_recipe=tiny_build_config(data))  # fmt: skip
    report = run_steering_benchmark(config)
    assert list(report["monotone"]) == list(ATTRIBUTES)
    for row in report["monotone"].values():
        assert 0.0 <= row["in_direction"] <= 1.0 and row["mean_shift"]["0.0"] == 0.0
    assert list(report["dual"]) == [f"{a}+{b}" for a, b in DUAL_PAIRS]
    assert len(report["targets"]) == 2 * len(ATTRIBUTES) + len(DUAL_PAIRS)
    unsteerable = SteeringBenchConfig(data=data, checkpoint=tiny_checkpoint, limit=2,
                                      seconds=6.0, harmony=False, progress=False)  # fmt: skip
    with pytest.raises(EngineError, match="steer build"):
        run_steering_benchmark(unsteerable)


def test_steer_build_refuses_a_missing_layer_before_reading_data(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "steer", "build", "--checkpoint",
         str(tiny_checkpoint), "--data", str(tmp_path / "no-build"), "--layers", "9",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0
    assert "layers must be within 0..1" in done.stderr  # not the missing data build
    assert not (tmp_path / "out").exists()
