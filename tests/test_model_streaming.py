"""Streaming equals offline, and nothing reads the future: codec and generator."""

from __future__ import annotations

import pytest
import torch

from models.codec import CODEC_PRESETS, Codec
from models.generator import GENERATOR_PRESETS, Generator, GeneratorConfig

torch.manual_seed(0)


@pytest.fixture(scope="module")
def codec() -> Codec:
    torch.manual_seed(1)
    return Codec(CODEC_PRESETS["default"]).eval()


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(2)
    model = Generator(GeneratorConfig(window=24, anticipation=1)).eval()
    with torch.no_grad():  # non-trivial statistics, so normalisation is exercised too
        model.latent_mean.copy_(torch.randn(model.config.latent_dim))
        model.latent_std.copy_(torch.rand(model.config.latent_dim) * 1.5 + 0.5)
    return model


def music_like(samples: int) -> torch.Tensor:
    t = torch.arange(samples) / 48_000
    tone = sum(torch.sin(2 * torch.pi * f * t) / k for k, f in enumerate((220.0, 330.0, 440.0), 1))
    return (0.2 * tone + 0.01 * torch.randn(samples))[None].repeat(2, 1)


def test_codec_streaming_encode_equals_offline(codec: Codec) -> None:
    hop, frames = codec.config.hop, 24
    audio = music_like(hop * frames)
    with torch.no_grad():
        offline = codec.encode(audio)
        state = codec.encoder.init_state(2)
        steps = []
        for t in range(frames):
            latent, state = codec.encode_step(audio[:, t * hop : (t + 1) * hop], state)
            steps.append(latent)
    assert (torch.stack(steps, -1) - offline).abs().max() <= 1e-4


def test_codec_streaming_decode_equals_offline(codec: Codec) -> None:
    latents = torch.randn(2, codec.config.latent_dim, 24)
    with torch.no_grad():
        offline = codec.decode(latents)
        state = codec.decoder.init_state(2)
        steps = []
        for t in range(latents.shape[-1]):
            audio, state = codec.decode_step(latents[:, :, t], state)
            steps.append(audio)
    assert (torch.cat(steps, -1) - offline).abs().max() <= 1e-4


def test_codec_latent_is_unchanged_when_later_audio_changes(codec: Codec) -> None:
    hop = codec.config.hop
    audio = music_like(hop * 16)
    changed = audio.clone()
    changed[:, hop * 9 + 1 :] += torch.randn_like(changed[:, hop * 9 + 1 :])
    with torch.no_grad():
        before, after = codec.encode(audio), codec.encode(changed)
        # Frame t covers samples up to the end of hop t: frames 0..8 end before the change.
        assert torch.equal(before[..., :9], after[..., :9])
        assert not torch.equal(before[..., 9], after[..., 9])
        decoded, decoded_changed = codec.decode(before), codec.decode(after)
    assert torch.equal(decoded[:, : 9 * hop], decoded_changed[:, : 9 * hop])


def test_generator_streaming_equals_parallel_across_rolling_windows(generator: Generator) -> None:
    c = generator.config
    length = 3 * c.window  # the window rolls over twice
    mix, noise = torch.randn(2, length, c.latent_dim), torch.randn(2, length, c.noise_dim)
    with torch.no_grad():
        parallel = generator(mix, noise)
        state = generator.init_state(2)
        outs = []
        for t in range(length):
            state, out = generator.step(state, mix[:, t], noise[:, t])
            outs.append(out)
    streamed = torch.stack(outs, 1)
    assert (streamed - parallel).abs().max() <= 1e-4
    assert (streamed[:, c.window :] - parallel[:, c.window :]).abs().max() <= 1e-4


@pytest.mark.parametrize("anticipation", [0, 1, 3])
def test_outputs_up_to_t_plus_a_are_bit_identical_when_later_mix_changes(anticipation: int) -> None:
    torch.manual_seed(3)
    generator = Generator(GeneratorConfig(window=16, anticipation=anticipation)).eval()
    c = generator.config
    length, changed_after = 48, 20  # T = 20
    mix, noise = torch.randn(1, length, c.latent_dim), torch.randn(1, length, c.noise_dim)
    perturbed = mix.clone()
    perturbed[:, changed_after + 1 :] += torch.randn_like(perturbed[:, changed_after + 1 :])
    with torch.no_grad():
        before, after = generator(mix, noise), generator(perturbed, noise)
    # Output index t is accompaniment frame t + a; frames <= T + a come from indices <= T.
    assert torch.equal(before[:, : changed_after + 1], after[:, : changed_after + 1])
    assert not torch.equal(before[:, changed_after + 1], after[:, changed_after + 1])


def test_streaming_outputs_are_bit_identical_before_a_change_too(generator: Generator) -> None:
    c = generator.config
    mix, noise = torch.randn(1, 40, c.latent_dim), torch.randn(1, 40, c.noise_dim)
    perturbed = mix.clone()
    perturbed[:, 30:] = 0.0
    runs = []
    with torch.no_grad():
        for m in (mix, perturbed):
            state, outs = generator.init_state(1), []
            for t in range(40):
                state, out = generator.step(state, m[:, t], noise[:, t])
                outs.append(out)
            runs.append(torch.stack(outs, 1))
    assert torch.equal(runs[0][:, :30], runs[1][:, :30])


def test_presets_build() -> None:
    for preset in GENERATOR_PRESETS.values():
        Generator(preset)
    for codec_preset in CODEC_PRESETS.values():
        assert codec_preset.hop == 1024 and codec_preset.hop / codec_preset.sample_rate <= 0.05
