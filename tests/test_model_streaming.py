"""Streaming equals offline, and nothing reads the future: codec and generator."""

from __future__ import annotations

import numpy as np
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
    with torch.no_grad():  # non-trivial statistics, so the energy conversions are exercised
        model.band_mean.copy_(torch.randn(model.config.latent_dim) - 6)
        model.band_std.copy_(torch.rand(model.config.latent_dim) * 1.5 + 0.5)
    return model


def music_like(samples: int) -> torch.Tensor:
    t = torch.arange(samples) / 48_000
    tone = sum(torch.sin(2 * torch.pi * f * t) / k for k, f in enumerate((220.0, 330.0, 440.0), 1))
    return (0.2 * tone + 0.01 * torch.randn(samples))[None].repeat(2, 1)


def test_codec_streaming_analysis_equals_offline(codec: Codec) -> None:
    hop, frames = codec.config.hop, 24
    audio = music_like(hop * frames).numpy()
    spectral = codec.spectral
    offline = spectral.analyse(audio)
    state, steps = spectral.initial_analysis_state(2), []
    for t in range(frames):
        bands, state = spectral.analysis_step(state, audio[:, t * hop : (t + 1) * hop])
        steps.append(bands)
    assert np.abs(np.stack(steps, 1) - offline).max() <= 1e-4


def test_codec_streaming_decode_equals_offline(codec: Codec) -> None:
    latents = torch.randn(2, codec.config.latent_dim, 24)
    with torch.no_grad():
        offline = codec.decode_spectrum(latents)
        state, steps = codec.decoder.init_state(2), []
        for t in range(latents.shape[-1]):
            spectrum, state = codec.decode_step(latents[:, :, t], state)
            steps.append(spectrum)
    assert (torch.stack(steps, 1) - offline).abs().max() <= 1e-4


def test_codec_streaming_synthesis_equals_offline(codec: Codec) -> None:
    spectral = codec.spectral
    log_mag = spectral.hop_frames(spectral.log_magnitude(music_like(codec.config.hop * 12).numpy()))
    offline = spectral.synthesise(log_mag)
    state, steps = spectral.initial_synthesis_state(2), []
    for frame in range(log_mag.shape[1]):
        audio, state = spectral.synthesis_step(state, log_mag[:, frame])
        steps.append(audio)
    assert np.abs(np.concatenate(steps, 1) - offline).max() <= 1e-4


def test_a_steady_frame_sounds_as_a_steady_tone_without_sidebands_at_the_hop_rate(
    codec: Codec,
) -> None:
    """The same decoded frame every hop must give one unmodulated tone: the synthesis
    crossfades between hops, and a level that moved with the hop would put sidebands
    46.9 Hz either side, heard as roughness (and counted as extra tones)."""
    spectral, hop, rate = codec.spectral, codec.config.hop, 48_000
    t = np.arange(hop * 8) / rate
    tone = (0.2 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    frame = spectral.hop_frames(spectral.log_magnitude(tone[None]))[:, -1]
    out = spectral.synthesise(np.repeat(frame[:, None], 96, axis=1))[0, hop * 16 :]
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    hz = np.fft.rfftfreq(len(out), 1 / rate)
    level = 20 * np.log10(spectrum / spectrum.max() + 1e-12)
    assert abs(hz[np.argmax(spectrum)] - 1000.0) < 5.0
    for side in (1000.0 - rate / hop, 1000.0 + rate / hop):
        assert level[np.abs(hz - side) < 5.0].max() < -50.0


def test_analysis_then_synthesis_of_true_magnitudes_gives_back_the_signal_late_by_the_latency(
    codec: Codec,
) -> None:
    """Phase reconstruction from magnitudes alone: three tones that start at sample 20 000
    come back with their spectrum, starting `latency` samples late."""
    spectral, lag, onset = codec.spectral, codec.config.latency, 20_000
    t = np.arange(codec.config.hop * 48) / 48_000
    audio = 0.2 * np.sum(
        [np.sin(2 * np.pi * f * t) / k for k, f in enumerate((220, 330, 440), 1)], 0
    )
    audio[:onset] = 0
    frames = spectral.hop_frames(spectral.log_magnitude(audio[None].astype(np.float32)))
    out = spectral.synthesise(frames)[0]
    start = onset + lag
    # Phase rebuilt from magnitudes smears an onset a little ahead (pre-echo): bounded here.
    before, after = np.sum(out[onset : start - 256] ** 2), np.sum(out[start : start + 4096] ** 2)
    assert before < 0.01 * after
    assert np.mean(out[start : start + 512] ** 2) > 0.1 * np.mean(out[start + 8192 :] ** 2)
    aligned, reference = out[lag + onset + 4096 :], audio[onset + 4096 : len(out) - lag]

    def spectrum(x: np.ndarray) -> np.ndarray:
        return np.abs(np.fft.rfft(x * np.hanning(len(x))))

    distance = np.linalg.norm(spectrum(aligned) - spectrum(reference))
    assert distance / np.linalg.norm(spectrum(reference)) < 0.2


def test_codec_output_is_unchanged_when_later_audio_changes(codec: Codec) -> None:
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
    live, noise = torch.randn(2, length, c.latent_dim), torch.randn(2, length, c.noise_dim)
    with torch.no_grad():
        parallel = generator(live, noise).latents
        state = generator.init_state(2)
        outs = []
        for t in range(length):
            state, out = generator.step(state, live[:, t], noise[:, t])
            outs.append(out)
    streamed = torch.stack(outs, 1)
    assert (streamed - parallel).abs().max() <= 1e-4
    assert (streamed[:, c.window :] - parallel[:, c.window :]).abs().max() <= 1e-4


@pytest.mark.parametrize("anticipation", [0, 1, 3])
def test_outputs_up_to_t_plus_a_are_bit_identical_when_later_live_input_changes(
    anticipation: int,
) -> None:
    torch.manual_seed(3)
    generator = Generator(GeneratorConfig(window=16, anticipation=anticipation)).eval()
    c = generator.config
    length, changed_after = 48, 20  # T = 20
    live, noise = torch.randn(1, length, c.latent_dim), torch.randn(1, length, c.noise_dim)
    perturbed = live.clone()
    perturbed[:, changed_after + 1 :] += torch.randn_like(perturbed[:, changed_after + 1 :])
    with torch.no_grad():
        before, after = generator(live, noise).latents, generator(perturbed, noise).latents
    # Output index t is accompaniment frame t + a; frames <= T + a come from indices <= T.
    assert torch.equal(before[:, : changed_after + 1], after[:, : changed_after + 1])
    assert not torch.equal(before[:, changed_after + 1], after[:, changed_after + 1])


def test_streaming_outputs_are_bit_identical_before_a_change_too(generator: Generator) -> None:
    c = generator.config
    live, noise = torch.randn(1, 40, c.latent_dim), torch.randn(1, 40, c.noise_dim)
    perturbed = live.clone()
    perturbed[:, 30:] = 0.0
    runs = []
    with torch.no_grad():
        for m in (live, perturbed):
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
