"""Spectral measures of one signal against another, shared by `bench codec` and `bench quality`.

Chroma is librosa's STFT chroma at 22 050 Hz (4096-point FFT, hop 2048: 93 ms frames, fine
enough in frequency for the bass), tuned to A = 440 Hz as everything here is (estimating the
tuning of every signal would add its own noise, and fails on silence). Two ways to compare harmony:
- per-frame chroma correlation: the Pearson correlation of two signals' 12-bin chroma, frame
  by frame, over frames where the reference sounds. It asks "the same pitch classes at the
  same time", so an echo of the melody does not score against a real accompaniment (about 0;
  PLATFORM.md);
- harmonic fit: the correlation of an accompaniment's time-averaged chroma with its live
  part's, minus the same with another piece's live part a tritone away. The second term
  removes what any tonal music shares with any other (a chance level), so 0 means "no better
  than an unrelated piece". Correlation, not cosine: time-averaged chroma is positive and
  flat enough that any two profiles have a cosine near 0.9.
"""

from __future__ import annotations

import numpy as np

from benchmarks.pitch_transcription import SAMPLE_RATE as ANALYSIS_RATE
from benchmarks.pitch_transcription import to_analysis_rate

CHROMA_FFT, CHROMA_HOP = 4096, 2048
SOUNDING_DB = -50.0  # frames this far below the loudest are left out of per-frame scores
MEL_FFT_SIZES = (512, 1024, 2048, 4096)


def chroma(audio: np.ndarray, rate: int) -> np.ndarray:
    """[frames, 12] STFT chroma (librosa), each frame normalised to max 1."""
    import librosa

    y = to_analysis_rate(audio, rate)
    return np.asarray(
        librosa.feature.chroma_stft(
            y=y, sr=ANALYSIS_RATE, n_fft=CHROMA_FFT, hop_length=CHROMA_HOP, tuning=0.0
        ).T,
        float,
    )


def sounding_frames(audio: np.ndarray, rate: int, frames: int) -> np.ndarray:
    """Which chroma frames of `audio` are within SOUNDING_DB of its loudest."""
    import librosa

    y = to_analysis_rate(audio, rate)
    rms = librosa.feature.rms(y=y, frame_length=CHROMA_FFT, hop_length=CHROMA_HOP)[0][:frames]
    level = 20 * np.log10(np.maximum(rms, 1e-10))
    out = np.zeros(frames, bool)
    if len(level):
        out[: len(level)] = level > level.max() + SOUNDING_DB
    return out


def frame_chroma_correlation(estimate: np.ndarray, reference: np.ndarray, rate: int) -> float:
    """Median over the reference's sounding frames of the per-frame chroma correlation.
    A frame where the estimate is flat (silent or noise) correlates 0."""
    a, b = chroma(estimate, rate), chroma(reference, rate)
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(1, keepdims=True), b[:n] - b[:n].mean(1, keepdims=True)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    correlation = np.where(norms > 1e-9, (a * b).sum(1) / np.maximum(norms, 1e-9), 0.0)
    keep = sounding_frames(reference, rate, n)
    return float(np.median(correlation[keep])) if keep.any() else float("nan")


def _profile(audio: np.ndarray, rate: int) -> np.ndarray:
    """The time-averaged chroma, centred and scaled to unit norm (dot products are then
    Pearson correlations)."""
    profile = chroma(audio, rate).mean(0)
    profile = profile - profile.mean()
    return profile / max(float(np.linalg.norm(profile)), 1e-9)


def harmonic_fit(
    accompaniment: np.ndarray, live: np.ndarray, other_live: np.ndarray, rate: int
) -> float:
    """corr(acc, live) - corr(acc, another piece's live part transposed by a tritone)."""
    acc = _profile(accompaniment, rate)
    unrelated = np.roll(_profile(other_live, rate), 6)
    return float(acc @ _profile(live, rate) - acc @ unrelated)


def log_mel_distance(estimate: np.ndarray, reference: np.ndarray, rate: int) -> float:
    """Mean L1 between log-mel spectrograms (80 bands, natural log of power + 1e-5) at four
    FFT sizes: 0 is identical."""
    import librosa

    a, b = to_analysis_rate(estimate, rate), to_analysis_rate(reference, rate)
    n = min(len(a), len(b))
    distances = []
    for n_fft in MEL_FFT_SIZES:
        mels = [
            np.log(librosa.feature.melspectrogram(y=x[:n], sr=ANALYSIS_RATE, n_fft=n_fft,
                                                  hop_length=n_fft // 4, n_mels=80) + 1e-5)
            for x in (a, b)
        ]  # fmt: skip
        distances.append(float(np.abs(mels[0] - mels[1]).mean()))
    return float(np.mean(distances))


def spectral_convergence_db(
    estimate: np.ndarray, reference: np.ndarray, n_fft: int = 1024
) -> float:
    """20 log10(|| |X| - |Y| || / || |Y| ||) over STFT magnitudes: lower is better, 0 dB is an
    error as large as the signal."""
    import librosa

    n = min(len(estimate), len(reference))

    def magnitude(x: np.ndarray) -> np.ndarray:
        return np.abs(
            librosa.stft(np.asarray(x[:n], np.float32), n_fft=n_fft, hop_length=n_fft // 4)
        )

    est, ref = magnitude(estimate), magnitude(reference)
    ratio = float(np.linalg.norm(ref - est)) / max(float(np.linalg.norm(ref)), 1e-12)
    return float(20 * np.log10(max(ratio, 1e-12)))
