"""The musical attributes the band can be steered along, measured per latent frame.

One function, `frame_attributes`, reads them from log band energies (the codec's fixed
analysis, models/spectral.py: one semitone band per MIDI note, then a few high bands). It is
the only definition: `bandmate steer build` applies it to the real accompaniment's latents
to choose the frames whose residual streams it contrasts, and `bandmate bench steering`
applies it to the analysis of the output audio to measure what steering moved.

- brightness: spectral centroid over all bands, Hz;
- density: how often notes start, as the causal one-second mean of the positive spectral
  flux: the rise of log energy per band and frame, weighted by the band's share of the
  frame's energy, so the notes' attacks count and the flicker of quiet bands does not;
- register: pitch height, the energy-weighted mean MIDI note over the semitone bands;
- loudness: total energy, dB.
"""

from __future__ import annotations

import numpy as np

from models.spectral import SpectralConfig, band_centres

ATTRIBUTES = ("brightness", "density", "register", "loudness")
DENSITY_SECONDS = 1.0


def frame_attributes(log_energy: np.ndarray, config: SpectralConfig) -> np.ndarray:
    """Log band energies (natural log of power) [..., T, bands] -> [..., T, len(ATTRIBUTES)]."""
    log_energy = np.asarray(log_energy, np.float64)
    pitch_bands = config.highest_midi - config.lowest_midi + 1
    # Energies relative to each frame's loudest band: exp() of an absolute log energy
    # underflows for quiet frames, and the ratios below do not depend on the scale.
    peak = log_energy.max(-1, keepdims=True)
    energy = np.exp(log_energy - peak)
    total = energy.sum(-1)
    centres = band_centres(config)
    brightness = (energy * centres).sum(-1) / total
    notes = np.arange(config.lowest_midi, config.highest_midi + 1, dtype=np.float64)
    pitch = energy[..., :pitch_bands]
    register = (pitch * notes).sum(-1) / np.maximum(pitch.sum(-1), 1e-300)
    loudness = (10 / np.log(10)) * (peak[..., 0] + np.log(total))
    rise = np.zeros_like(log_energy)
    rise[..., 1:, :] = np.maximum(log_energy[..., 1:, :] - log_energy[..., :-1, :], 0.0)
    flux = (rise * energy).sum(-1) / total
    frames = max(1, round(DENSITY_SECONDS * config.sample_rate / config.hop))
    density = causal_mean(flux, frames)
    return np.stack([brightness, density, register, loudness], axis=-1).astype(np.float32)


def causal_mean(x: np.ndarray, frames: int) -> np.ndarray:
    """Mean over the last `frames` frames (fewer at the start) along the last axis."""
    cumulative = np.cumsum(x, axis=-1)
    shifted = np.zeros_like(cumulative)
    shifted[..., frames:] = cumulative[..., :-frames]
    counts = np.minimum(np.arange(1, x.shape[-1] + 1), frames)
    return (cumulative - shifted) / counts
