"""What the generator learns from: supervised terms, the Eisbach weight, and the data tricks
(transposition, mismatched pairs) that make the discriminator judge adherence.

Supervised terms give gradient from the first step, where the adversarial game alone starts
from a discriminator at chance. They compare the generated accompaniment at t + a with the
real one, per frame:
- pitch: cross-entropy between the real energy distribution over the semitone bands and the
  predicted one. A distribution keeps several pitch classes apart where L1 on latents learns
  their average (a probe measured: L1 outputs had the same chroma for any input);
- chroma: 1 - the Pearson correlation of the two folded into 12 pitch classes (from C2 up),
  per frame: the benchmark's per-frame chroma measure, as a loss. The pitch term alone is
  ruled by the loudest bands, the bass, where a 2048-sample window smears semitones
  together, and a spectrum's chroma is flat enough (harmonics, smearing) that cross-entropy
  on it barely moves; a correlation sees the shape whatever the flatness;
- level: L1 on the log total energy of the semitone bands;
- high bands: L1 on their standardised latents (cymbals, noise, brightness);
- onsets: L1 on the spectral flux (mean rise of log band energy from the previous frame),
  so attacks land on the frame they belong to rather than being smeared.
Frames where the real accompaniment is silent carry no pitch term.

The Eisbach log-barrier (seed paper): per sequence, with p = softmax over frames of the
output's energy and B = H(p) / log T, the weight w = 1 / (1 - log(1 - B)), detached, scales
the supervised loss as (1 - lambda) + lambda * w. Flat sequences (high B) weigh less. It is
never applied to the adversarial terms.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from models.generator import Generator, GeneratorOutput

SOUNDING_NEPERS = 4.6  # a frame sounds when its level is 20 dB (power) above the floor's
CHROMA_LOWEST_BAND = 24  # C2 (65 Hz) and up: below, a 2048-point FFT cannot tell semitones


def flux(log_energy: Tensor) -> Tensor:
    """[B, L, D] -> [B, L - 1]: mean positive change of log band energy per frame."""
    return torch.relu(log_energy[:, 1:] - log_energy[:, :-1]).mean(-1)


def supervised_losses(
    generator: Generator, output: GeneratorOutput, real: Tensor
) -> dict[str, Tensor]:
    """Per sequence [B]: pitch, level, high and onset terms between generated and real
    accompaniment latents [B, L, D] (aligned: output frame t against real frame t)."""
    c = generator.config
    p = c.pitch_bands
    real_energy = generator.log_energy(real)
    real_level = torch.logsumexp(real_energy[..., :p], -1)  # [B, L]
    floor_level = c.log_floor + math.log(p)
    sounding = (real_level > floor_level + SOUNDING_NEPERS).float()
    target = torch.softmax(real_energy[..., :p], -1)
    cross_entropy = -(target * torch.log_softmax(output.pitch_logits, -1)).sum(-1)
    frames = sounding.sum(1).clamp_min(1.0)
    generated_energy = generator.log_energy(output.latents)
    lowest = CHROMA_LOWEST_BAND
    real_chroma = fold_chroma(real_energy[..., lowest:p])
    predicted_chroma = fold_chroma(torch.log_softmax(output.pitch_logits, -1)[..., lowest:p])
    chroma_loss = 1 - pearson(predicted_chroma, real_chroma)
    return {
        "pitch": (cross_entropy * sounding).sum(1) / frames,
        "chroma": (chroma_loss * sounding).sum(1) / frames,
        "level": (output.level - real_level).abs().mean(1),
        "high": (output.latents[..., p:] - real[..., p:]).abs().mean((1, 2)),
        "onset": (flux(generated_energy) - flux(real_energy)).abs().mean(1),
    }


def fold_chroma(log_energy: Tensor) -> Tensor:
    """[..., 12k] log energies of semitone bands starting on a C -> [..., 12] distribution."""
    energy = torch.exp(log_energy - log_energy.amax(-1, keepdim=True))
    folded = energy.reshape(*energy.shape[:-1], -1, 12).sum(-2)
    return folded / folded.sum(-1, keepdim=True)


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Correlation over the last axis."""
    a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-8)


def eisbach_weight(level: Tensor) -> Tensor:
    """[B, L] log energy per frame -> [B] weights in (0, 1], detached."""
    with torch.no_grad():
        p = torch.softmax(level.float(), dim=1)
        entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(1) / math.log(level.shape[1])
        barrier = entropy.clamp(0.0, 1.0 - 1e-6)
        return 1.0 / (1.0 - torch.log1p(-barrier))


def weighted_supervised(terms: dict[str, Tensor], level: Tensor, eisbach_lambda: float) -> Tensor:
    """The supervised loss, averaged over the batch, with the Eisbach weight mixed in."""
    per_sequence = sum(terms.values(), torch.zeros_like(level[:, 0]))
    if eisbach_lambda > 0:
        weight = (1 - eisbach_lambda) + eisbach_lambda * eisbach_weight(level)
        per_sequence = per_sequence * weight
    return per_sequence.mean()


def transpose(generator: Generator, latents: Tensor, semitones: Tensor) -> Tensor:
    """Roll each sequence's semitone bands by its own shift [B] (in log energy, refilled at
    the floor); the high bands stay. latents [B, L, D] standardised."""
    c = generator.config
    energy = generator.log_energy(latents)
    pitch = energy[..., : c.pitch_bands]
    shifted = torch.full_like(pitch, c.log_floor)
    for i, k in enumerate(semitones.tolist()):
        if k > 0:
            shifted[i, :, k:] = pitch[i, :, :-k]
        elif k < 0:
            shifted[i, :, :k] = pitch[i, :, -k:]
        else:
            shifted[i] = pitch[i]
    mean, std = generator.band_mean[: c.pitch_bands], generator.band_std[: c.pitch_bands]
    return torch.cat([(shifted - mean) / std, latents[..., c.pitch_bands :]], dim=-1)


def mismatched_live(generator: Generator, live: Tensor, rng: torch.Generator) -> Tensor:
    """Live parts that do not belong with the accompaniments beside them, for the
    discriminator's negatives: another sequence's (a third of the batch), the same one
    shifted by 8-40 frames (a third), or transposed by 1-6 semitones (a third)."""
    batch = live.shape[0]
    out = live.roll(1, dims=0).clone()
    for i in range(batch):
        kind = i % 3
        if kind == 1:
            shift = int(torch.randint(8, 41, (1,), generator=rng))
            out[i] = live[i].roll(shift, dims=0)
        elif kind == 2:
            k = int(torch.randint(1, 7, (1,), generator=rng)) * (1 if i % 2 else -1)
            out[i : i + 1] = transpose(generator, live[i : i + 1], torch.tensor([k]))
    return out
