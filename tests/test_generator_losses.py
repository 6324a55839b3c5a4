"""The generator's training signal: its supervised terms, the Eisbach weight, transposition and
the discriminator's mismatched pairs."""

from __future__ import annotations

import math

import pytest
import torch

from models.generator import Generator, GeneratorConfig, GeneratorOutput
from models.train.generator_losses import (
    eisbach_weight,
    mismatched_live,
    supervised_losses,
    transpose,
    weighted_supervised,
)


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(0)
    model = Generator(GeneratorConfig(d_model=32, n_layers=1, n_heads=2, window=8, noise_dim=8))
    with torch.no_grad():
        model.band_mean.fill_(-8.0)
        model.band_std.fill_(2.0)
    return model.eval()


def chord_latents(generator: Generator, pitches: list[int], frames: int = 6) -> torch.Tensor:
    """Latents of a frame sequence where only `pitches` (band indices) sound."""
    c = generator.config
    energy = torch.full((1, frames, c.latent_dim), c.log_floor)
    energy[..., pitches] = -2.0
    return (energy - generator.band_mean) / generator.band_std


def output_for(generator: Generator, latents: torch.Tensor) -> GeneratorOutput:
    """The output parts that would produce exactly `latents` (a perfect prediction)."""
    p = generator.config.pitch_bands
    energy = generator.log_energy(latents)
    return GeneratorOutput(latents, energy[..., :p], torch.logsumexp(energy[..., :p], -1))


def test_the_output_latents_are_the_pitch_distribution_at_the_predicted_level(
    generator: Generator,
) -> None:
    live = torch.randn(2, 5, generator.config.latent_dim)
    out = generator(live, torch.randn(2, 5, generator.config.noise_dim))
    p = generator.config.pitch_bands
    energy = generator.log_energy(out.latents)[..., :p]
    expected = (torch.log_softmax(out.pitch_logits, -1) + out.level[..., None]).clamp_min(
        generator.config.log_floor
    )
    assert torch.allclose(energy, expected, atol=1e-4)


@pytest.mark.parametrize("term", ["pitch", "chroma"])
def test_the_harmony_terms_prefer_the_right_chord_to_a_transposed_one(
    generator: Generator, term: str
) -> None:
    real = chord_latents(generator, [24, 28, 31])  # C E G
    right = supervised_losses(generator, output_for(generator, real), real)[term]
    shifted = chord_latents(generator, [25, 29, 32])  # a semitone up
    wrong = supervised_losses(generator, output_for(generator, shifted), real)[term]
    assert float(right) < float(wrong)


def test_silent_frames_carry_no_pitch_term(generator: Generator) -> None:
    silence = chord_latents(generator, [])
    anything = chord_latents(generator, [40, 50])
    assert (
        float(supervised_losses(generator, output_for(generator, anything), silence)["pitch"]) == 0
    )


def test_the_eisbach_weight_damps_flat_sequences_and_keeps_contrasting_ones() -> None:
    flat = torch.zeros(1, 64)
    contrasting = torch.full((1, 64), -20.0)
    contrasting[0, 10] = 0.0
    w_flat, w_contrast = eisbach_weight(flat), eisbach_weight(contrasting)
    assert float(w_flat) < 0.1 and float(w_contrast) > 0.9
    terms = {"pitch": torch.ones(2)}
    levels = torch.cat([flat, contrasting])
    assert math.isclose(float(weighted_supervised(terms, levels, 0.0)), 1.0)
    assert float(weighted_supervised(terms, levels, 0.5)) < 1.0


def test_transposition_rolls_the_semitone_bands_and_leaves_the_high_ones(
    generator: Generator,
) -> None:
    latents = chord_latents(generator, [24, 28, 100])  # band 100 is a high band
    up = transpose(generator, latents, torch.tensor([3]))
    energy = generator.log_energy(up)[0, 0]
    sounding = set(torch.nonzero(energy > -5).flatten().tolist())
    assert sounding == {27, 31, 100}
    back = transpose(generator, up, torch.tensor([-3]))
    assert torch.allclose(back, latents, atol=1e-5)


def test_mismatched_live_parts_differ_from_their_own(generator: Generator) -> None:
    live = torch.randn(6, 48, generator.config.latent_dim)
    wrong = mismatched_live(generator, live, torch.Generator().manual_seed(0))
    for i in range(6):
        assert not torch.allclose(wrong[i], live[i])
