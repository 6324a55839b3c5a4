"""The accompaniment quality metrics: every one compares a system's output with the live part
it accompanies (or, for the Fréchet distance, a set of outputs with the real accompaniments).

All analysis runs at 22 050 Hz on mono audio. Conventions for degenerate input, so that a
silent system scores as badly as it should and nothing divides by zero:
- a metric whose *reference* (the live part) gives nothing to compare with is NaN (and left
  out of means): no beats after the first 5 s, no sounding note, no key;
- an output that gives nothing scores 0: no beats, no notes (pitch-class agreement 0, key
  consistency 0), or an envelope that never changes (correlation 0).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from benchmarks.pitch_transcription import FRAME_RATE, SAMPLE_RATE, Transcription, transcribe

FEATURE_HOP = 512  # librosa's default hop at 22 050 Hz: 43.07 frames/s
FEATURE_RATE = SAMPLE_RATE / FEATURE_HOP
N_MFCC = 20
LOUDNESS_FLOOR_DB = -100.0
# Dynamics are the slow loudness contour, not note attacks: smooth over half a second.
DYNAMICS_SMOOTHING_S = 0.5
# Onsets of two parts played together rarely coincide to the frame: allow +-2 frames (46 ms).
ONSET_TOLERANCE_FRAMES = 2
# Harmony is compared over about two bars: within one second a melody holds a note or two
# that the chord under it often leaves out (a chorale's soprano carries the third), so even
# the real accompaniment of a held-out piece scores ~0.18 on 1 s windows, ~0.36 on 4 s.
PITCH_WINDOW_S, PITCH_HOP_S = 4.0, 2.0
EMBEDDING_WINDOW_S, EMBEDDING_HOP_S = 1.0, 0.5

# Krumhansl & Kessler's probe-tone key profiles (1982), tonic first.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
NO_KEY = "X"  # mir_eval's "uncategorised" key


@dataclass(frozen=True)
class SignalAnalysis:
    """Everything the metrics read from one signal, computed once per signal."""

    duration_s: float
    beats: np.ndarray  # seconds
    pitch_classes: np.ndarray  # [frames, 12] at FRAME_RATE (Basic Pitch)
    onset_envelope: np.ndarray  # [frames] at FEATURE_RATE
    loudness_db: np.ndarray  # [frames] at FEATURE_RATE, unsmoothed
    mfcc: np.ndarray  # [frames, N_MFCC] at FEATURE_RATE


def analyse(audio: np.ndarray, threads: int = 1) -> SignalAnalysis:
    """Audio at 22 050 Hz -> beats (librosa), transcription (Basic Pitch), envelopes, MFCC."""
    import librosa

    audio = np.asarray(audio, np.float32)
    onset_envelope = librosa.onset.onset_strength(y=audio, sr=SAMPLE_RATE, hop_length=FEATURE_HOP)
    _, beats = librosa.beat.beat_track(
        onset_envelope=onset_envelope, sr=SAMPLE_RATE, hop_length=FEATURE_HOP, units="time"
    )
    rms = librosa.feature.rms(y=audio, frame_length=2048, hop_length=FEATURE_HOP)[0]
    loudness = 20 * np.log10(np.maximum(rms, 10 ** (LOUDNESS_FLOOR_DB / 20)))
    mfcc = librosa.feature.mfcc(y=audio, sr=SAMPLE_RATE, n_mfcc=N_MFCC, hop_length=FEATURE_HOP)
    transcription: Transcription = transcribe(audio, threads)
    return SignalAnalysis(
        duration_s=len(audio) / SAMPLE_RATE,
        beats=np.asarray(beats, float),
        pitch_classes=transcription.pitch_class_activity(),
        onset_envelope=np.asarray(onset_envelope, float),
        loudness_db=np.asarray(loudness, float),
        mfcc=np.asarray(mfcc.T, float),
    )


# -- beat alignment ---------------------------------------------------------------------------
def beat_f_measure(reference: np.ndarray, estimated: np.ndarray) -> float:
    """mir_eval's beat F-measure (+-70 ms), beats before 5 s ignored as in MIREX."""
    import mir_eval

    reference = mir_eval.beat.trim_beats(np.asarray(reference, float))
    estimated = mir_eval.beat.trim_beats(np.asarray(estimated, float))
    if len(reference) == 0:
        return float("nan")
    if len(estimated) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(mir_eval.beat.f_measure(reference, estimated))


# -- harmony ----------------------------------------------------------------------------------
def pitch_class_agreement(live: np.ndarray, output: np.ndarray) -> float:
    """Mean cosine similarity of the 12-bin pitch-class profiles of live part and output, per
    4 s window (2 s hop) in which the live part sounds; a window where the output is silent
    scores 0. A crop shorter than one window is one window."""
    frames = min(len(live), len(output))
    window = min(frames, max(1, round(PITCH_WINDOW_S * FRAME_RATE)))
    hop = max(1, round(PITCH_HOP_S * FRAME_RATE))
    scores = []
    for start in range(0, max(frames - window, 0) + 1, hop):
        a, b = live[start : start + window].sum(0), output[start : start + window].sum(0)
        if a.sum() <= 0:
            continue
        norm = np.linalg.norm(a) * np.linalg.norm(b)
        scores.append(float(a @ b / norm) if norm > 0 else 0.0)
    return float(np.mean(scores)) if scores else float("nan")


def estimate_key(profile: np.ndarray) -> str:
    """Krumhansl-Schmuckler: the major or minor key whose rotated profile correlates best
    with the pitch-class profile; 'X' when nothing sounds."""
    profile = np.asarray(profile, float)
    if profile.sum() <= 0 or np.ptp(profile) == 0:
        return NO_KEY
    best, best_r = NO_KEY, -np.inf
    for tonic in range(12):
        for mode, template in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
            r = float(np.corrcoef(profile, np.roll(template, tonic))[0, 1])
            if r > best_r:
                best, best_r = f"{PITCH_NAMES[tonic]} {mode}", r
    return best


def key_consistency(live: np.ndarray, output: np.ndarray) -> float:
    """MIREX's weighted key score (mir_eval) of the output's key against the live part's:
    1 same key, 0.5 a fifth above, 0.3 relative, 0.2 parallel, 0 otherwise."""
    import mir_eval

    reference, estimated = estimate_key(live.sum(0)), estimate_key(output.sum(0))
    if reference == NO_KEY:
        return float("nan")
    if estimated == NO_KEY:
        return 0.0
    return float(mir_eval.key.weighted_score(reference, estimated))


# -- onsets and dynamics ----------------------------------------------------------------------
def envelope_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation over the common length; 0 when either envelope never changes."""
    n = min(len(a), len(b))
    a, b = np.asarray(a[:n], float), np.asarray(b[:n], float)
    if n < 2 or a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def onset_correlation(live: SignalAnalysis, output: SignalAnalysis) -> float:
    from scipy.ndimage import maximum_filter1d

    size = 2 * ONSET_TOLERANCE_FRAMES + 1
    return envelope_correlation(
        maximum_filter1d(live.onset_envelope, size), maximum_filter1d(output.onset_envelope, size)
    )


def smoothed_loudness(analysis: SignalAnalysis) -> np.ndarray:
    from scipy.ndimage import uniform_filter1d

    size = max(1, round(DYNAMICS_SMOOTHING_S * FEATURE_RATE))
    return np.asarray(uniform_filter1d(analysis.loudness_db, size, mode="nearest"))


def dynamics_correlation(live: SignalAnalysis, output: SignalAnalysis) -> float:
    return envelope_correlation(smoothed_loudness(live), smoothed_loudness(output))


def pair_metrics(live: SignalAnalysis, output: SignalAnalysis) -> dict[str, float]:
    """Every per-piece metric of one output against its live part."""
    return {
        "beat_f_measure": beat_f_measure(live.beats, output.beats),
        "pitch_class_agreement": pitch_class_agreement(live.pitch_classes, output.pitch_classes),
        "key_consistency": key_consistency(live.pitch_classes, output.pitch_classes),
        "onset_correlation": onset_correlation(live, output),
        "dynamics_correlation": dynamics_correlation(live, output),
    }


# -- Fréchet distance -------------------------------------------------------------------------
def window_embeddings(analysis: SignalAnalysis) -> np.ndarray:
    """[windows, 36]: per 1 s window (0.5 s hop) the mean of 20 MFCCs (timbre), the normalised
    pitch-class profile from Basic Pitch (harmony; zeros when silent), and the mean and
    spread of loudness (dB) and of onset strength (dynamics and rhythmic activity)."""
    rows = []
    starts = np.arange(0.0, analysis.duration_s - EMBEDDING_WINDOW_S + 1e-9, EMBEDDING_HOP_S)
    for start in starts:
        f0, f1 = round(start * FEATURE_RATE), round((start + EMBEDDING_WINDOW_S) * FEATURE_RATE)
        p0, p1 = round(start * FRAME_RATE), round((start + EMBEDDING_WINDOW_S) * FRAME_RATE)
        pitch = analysis.pitch_classes[p0:p1].sum(0)
        pitch = pitch / pitch.sum() if pitch.sum() > 0 else np.zeros(12)
        loudness, onsets = analysis.loudness_db[f0:f1], analysis.onset_envelope[f0:f1]
        rows.append(
            np.concatenate(
                [
                    analysis.mfcc[f0:f1].mean(0),
                    pitch,
                    [loudness.mean(), loudness.std(), onsets.mean(), onsets.std()],
                ]
            )
        )
    return np.asarray(rows, float).reshape(len(rows), N_MFCC + 16)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return np.asarray((vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T)


def frechet_distance(candidate: np.ndarray, reference: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings [n, d], after
    z-scoring every dimension with the reference set's statistics, so that no feature
    dominates by its units (MFCCs in tens, pitch profiles in [0, 1]).
    Tr sqrt(S1 S2) is computed as Tr sqrt(R S2 R) with R = S1^1/2, which is symmetric, so
    rank-deficient covariances (a constant output has S = 0) need no regularisation."""
    if len(candidate) < 2 or len(reference) < 2:
        return float("nan")
    centre, scale = reference.mean(0), np.maximum(reference.std(0), 1e-3)
    a, b = (candidate - centre) / scale, (reference - centre) / scale
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = _psd_sqrt(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ cov_b @ root), 0, None)).sum()
    distance = float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b))
    return max(0.0, distance - 2 * float(cross))
