"""Frontal alpha asymmetry (FAA) to valence: band powers, features, calibration and smoothing.

Pipeline, one window at a time (the caller slides a `window_s` window by `hop_s` and gates it
with `bci.live.signal_quality.check_window` first):

    left, right  ->  Welch band powers  ->  FAA, arousal  ->  z-score against a resting
    baseline  ->  EMA  ->  tanh  ->  valence in [-1, 1]

Sign convention. Alpha power (8-13 Hz) is inversely related to cortical activity: an idling
cortex synchronises into alpha. FAA = ln P_right - ln P_left, so FAA > 0 means more alpha on
the right, hence relatively *less* right and *more left* frontal activity. Left frontal
activity goes with approach motivation and positive affect (Davidson's model), so valence
follows +FAA: a positive z-scored FAA gives a positive valence.

Arousal is ln(beta / alpha) over both hemispheres: beta rises and alpha falls as the cortex
becomes more engaged, so the ratio grows with arousal.

Why z-score against a baseline: absolute FAA differs between people and headsets by more than
it moves within a session (electrode impedance alone shifts it), so only the deviation from
this wearer's own resting FAA means anything. Why EMA then tanh: single 2 s windows are noisy,
and tanh maps an unbounded z onto [-1, 1] while staying linear near 0.

Gated windows do not move the valence (the data is an artefact, not a mood). The value holds
for `hold_s`, since a blink or a jaw clench says nothing about the mood having changed, and
then decays exponentially toward neutral, since after a long dropout the old value is stale.

The spectral primitives (`welch_psd`, `integrate_band`) are shared with
`bci.live.signal_quality`, so the gate and the features measure power the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.integrate import trapezoid
from scipy.signal import welch

# A resting baseline whose windows are all identical (a simulator, a constant test signal)
# has SD 0; flooring keeps its z-scores finite. Real FAA SDs are ~0.1-0.5, far above this.
MIN_BASELINE_SD = 1e-6
MIN_BASELINE_WINDOWS = 4
# The IAF search range and the half-width of the individual alpha band around it.
IAF_SEARCH_BAND = (7.0, 14.0)
IAF_BACKGROUND_FLANKS = ((2.0, 7.0), (14.0, 30.0))
# An alpha peak must reach this multiple of the fitted 1/f background power.
IAF_MIN_PEAK_RATIO = 2.0
IAF_HALF_WIDTH_HZ = 2.0
# tanh(x) rounds to exactly +-1 for |x| > ~19; atanh of that is infinite, so clip first.
_TANH_LIMIT = 1.0 - 1e-9


def _check_band(band: tuple[float, float], name: str) -> None:
    if not 0.0 <= band[0] < band[1]:
        raise ValueError(f"{name} must be (low, high) with 0 <= low < high, got {band}")


@dataclass(frozen=True)
class FaaConfig:
    window_s: float = 2.0
    hop_s: float = 0.25
    alpha_band: tuple[float, float] = (8.0, 13.0)
    beta_band: tuple[float, float] = (13.0, 30.0)
    welch_segment_s: float = 1.0  # Welch segment length (50 % overlap, Hann)
    # If True, alpha band = IAF-2 .. IAF+2 Hz, IAF being the baseline's alpha peak frequency.
    individual_alpha: bool = False
    ema_alpha: float = 0.3  # new = ema_alpha * x + (1 - ema_alpha) * old, once per window
    valence_gain: float = 1.0  # valence = tanh(valence_gain * z_smoothed)
    # After the last clean window, hold the valence this long ... A lone blink gates every
    # window that contains it (window_s + its own length, ~2.3 s), so hold longer than that.
    hold_s: float = 3.0
    decay_s: float = 3.0  # ... then decay it toward 0 with this time constant

    def __post_init__(self) -> None:
        _check_band(self.alpha_band, "alpha_band")
        _check_band(self.beta_band, "beta_band")
        if self.window_s <= 0 or self.hop_s <= 0 or self.welch_segment_s <= 0:
            raise ValueError("window_s, hop_s and welch_segment_s must be positive")
        if not 0.0 < self.ema_alpha <= 1.0:
            raise ValueError(f"ema_alpha must be in (0, 1], got {self.ema_alpha}")
        if self.valence_gain <= 0:
            raise ValueError(f"valence_gain must be positive, got {self.valence_gain}")
        if self.hold_s < 0 or self.decay_s <= 0:
            raise ValueError("hold_s must be >= 0 and decay_s > 0")


def welch_psd(signal: np.ndarray, rate: float, segment_s: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided PSD (units^2 / Hz) along the last axis: Hann segments of `segment_s` (capped
    at the signal's length), 50 % overlap, each segment's mean removed."""
    samples = signal.shape[-1]
    segment = max(1, min(samples, round(segment_s * rate)))
    freqs, psd = welch(signal, fs=rate, window="hann", nperseg=segment, noverlap=segment // 2)
    return freqs, psd


def _interpolate_at(freqs: np.ndarray, psd: np.ndarray, frequency: float) -> np.ndarray:
    """Linear interpolation of psd[..., :] at one frequency (freqs is uniform from 0)."""
    step = freqs[1] - freqs[0]
    index = min(int(frequency // step), len(freqs) - 2)
    fraction = (frequency - freqs[index]) / step
    return psd[..., index] * (1.0 - fraction) + psd[..., index + 1] * fraction


def integrate_band(freqs: np.ndarray, psd: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Power in `band` along the last axis: trapezoid over the bins inside the band, with the
    PSD interpolated at the exact edges, so the result moves smoothly as an edge moves (an
    IAF band's edges rarely fall on a bin)."""
    low, high = band
    _check_band(band, "band")
    if high > freqs[-1]:
        raise ValueError(f"band {band} reaches above the Nyquist frequency {freqs[-1]:g} Hz")
    inside = (freqs > low) & (freqs < high)
    grid = np.concatenate(([low], freqs[inside], [high]))
    values = np.concatenate(
        (
            _interpolate_at(freqs, psd, low)[..., None],
            psd[..., inside],
            _interpolate_at(freqs, psd, high)[..., None],
        ),
        axis=-1,
    )
    return np.asarray(trapezoid(values, grid, axis=-1))


def band_power(
    signal: np.ndarray, rate: float, band: tuple[float, float], segment_s: float
) -> float:
    """Power of a 1-D signal in `band` (units^2): Welch PSD integrated over the band."""
    if signal.ndim != 1:
        raise ValueError(f"band_power takes a 1-D signal, got shape {signal.shape}")
    freqs, psd = welch_psd(signal, rate, segment_s)
    return float(integrate_band(freqs, psd, band))


@dataclass(frozen=True)
class WindowFeatures:
    alpha_left: float
    alpha_right: float
    beta_left: float
    beta_right: float
    faa: float  # ln(alpha_right) - ln(alpha_left)
    arousal: float  # ln((beta_left + beta_right) / (alpha_left + alpha_right))

    def as_dict(self) -> dict[str, float]:
        return {
            "alpha_left": self.alpha_left,
            "alpha_right": self.alpha_right,
            "beta_left": self.beta_left,
            "beta_right": self.beta_right,
            "faa": self.faa,
            "arousal": self.arousal,
        }


def _check_pair(left: np.ndarray, right: np.ndarray) -> None:
    if left.ndim != 1 or left.shape != right.shape:
        raise ValueError(
            f"left and right must be 1-D and the same length, got {left.shape} and {right.shape}"
        )
    if not (np.all(np.isfinite(left)) and np.all(np.isfinite(right))):
        raise ValueError("left/right contain NaN or Inf: gate the window before its features")


def window_features(
    left: np.ndarray,
    right: np.ndarray,
    rate: float,
    config: FaaConfig,
    alpha_band: tuple[float, float] | None = None,
) -> WindowFeatures:
    """Features of one window. left = AF7 (or F3), right = AF8 (or F4), in microvolts.
    `alpha_band` overrides config.alpha_band (pass Baseline.alpha_band after calibration)."""
    _check_pair(left, right)
    alpha = alpha_band if alpha_band is not None else config.alpha_band
    freqs, psd = welch_psd(np.stack([left, right]), rate, config.welch_segment_s)  # [2, F]
    alpha_left, alpha_right = (float(p) for p in integrate_band(freqs, psd, alpha))
    beta_left, beta_right = (float(p) for p in integrate_band(freqs, psd, config.beta_band))
    if min(alpha_left, alpha_right, beta_left, beta_right) <= 0.0:
        # Only a flat channel gets here; the logs below would be -inf.
        raise ValueError("zero band power (flat channel?): gate the window before its features")
    return WindowFeatures(
        alpha_left=alpha_left,
        alpha_right=alpha_right,
        beta_left=beta_left,
        beta_right=beta_right,
        faa=math.log(alpha_right) - math.log(alpha_left),
        arousal=math.log((beta_left + beta_right) / (alpha_left + alpha_right)),
    )


def individual_alpha_frequency(
    left: np.ndarray, right: np.ndarray, rate: float, segment_s: float
) -> float:
    """Peak frequency (Hz) of the alpha rhythm in 7-14 Hz, from the mean of the left and right
    spectra (pass the whole clean baseline; a longer segment_s gives a finer estimate).

    The 1/f background slopes down through the band, so a modest alpha peak need not be the
    band's maximum: the peak is the bin furthest above a power law fitted to the flanks
    (2-7 and 14-30 Hz; a fit to many bins, because a line through two noisy edge bins can tilt
    enough to favour a side bump). A parabola through the peak and its neighbours refines it
    below the bin spacing. Raises ValueError if no bin stands IAF_MIN_PEAK_RATIO above the
    background: an IAF picked from noise would misplace the alpha band, and the configured
    band is the better choice then (finish_baseline(None) falls back to it)."""
    _check_pair(left, right)
    freqs, psd = welch_psd(np.stack([left, right]), rate, segment_s)
    low, high = IAF_SEARCH_BAND
    inside = np.flatnonzero((freqs > low) & (freqs < high))
    flanks = np.zeros_like(freqs, dtype=bool)
    for flank_low, flank_high in IAF_BACKGROUND_FLANKS:
        flanks |= (freqs >= flank_low) & (freqs <= flank_high)
    if len(inside) < 3 or flanks.sum() < 4 or freqs[-1] <= high:
        raise ValueError("too few spectral bins for an IAF: use a longer segment_s")
    # Guard the logs: a flat channel has zero power.
    log_psd = np.log(np.maximum(psd.mean(axis=0), np.finfo(float).tiny))
    log_freqs = np.log(np.maximum(freqs, freqs[1]))  # bin 0 (DC) is never a neighbour in use
    slope, intercept = np.polyfit(log_freqs[flanks], log_psd[flanks], 1)
    excess = log_psd - (intercept + slope * log_freqs)  # log power above the 1/f background
    peak = int(inside[np.argmax(excess[inside])])
    if excess[peak] < math.log(IAF_MIN_PEAK_RATIO):
        raise ValueError("no alpha peak in 7-14 Hz stands out of the 1/f background")
    below, centre, above = excess[peak - 1], excess[peak], excess[peak + 1]
    curvature = below - 2.0 * centre + above
    offset = 0.5 * (below - above) / curvature if curvature < 0.0 else 0.0
    step = freqs[1] - freqs[0]
    return float(np.clip(freqs[peak] + offset * step, low, high))


@dataclass(frozen=True)
class Baseline:
    faa_mean: float
    faa_sd: float
    arousal_mean: float
    arousal_sd: float
    alpha_band: tuple[float, float]  # the band to use after calibration (IAF-based or configured)
    windows: int


class _SmoothedScore:
    """z -> EMA -> tanh, with hold-then-decay while windows are gated.

    The EMA runs on z; the output is tanh(gain * z_smoothed). After a gated stretch the output
    is a function of the time since the last clean window only (not of how many gated windows
    arrived), so it does not depend on the hop or on the caller's frame rate."""

    def __init__(self, gain: float, ema_alpha: float, hold_s: float, decay_s: float) -> None:
        self._gain = gain
        self._ema_alpha = ema_alpha
        self._hold_s = hold_s
        self._decay_s = decay_s
        self._z_smoothed = 0.0  # starts neutral: the first clean window moves it a step
        self._last_clean_value = 0.0
        self._last_clean_s: float | None = None
        self.value = 0.0

    def _held_value(self, now_s: float) -> float:
        if self._last_clean_s is None:
            return 0.0
        past_hold_s = now_s - self._last_clean_s - self._hold_s
        if past_hold_s <= 0.0:
            return self._last_clean_value
        return self._last_clean_value * math.exp(-past_hold_s / self._decay_s)

    def update(self, z: float | None, now_s: float) -> float:
        current = self._held_value(now_s)
        if z is None:
            self.value = current
            return current
        if current != self._last_clean_value:
            # The output decayed during a gap: resume the EMA from where the output now is.
            clipped = max(-_TANH_LIMIT, min(_TANH_LIMIT, current))
            self._z_smoothed = math.atanh(clipped) / self._gain
        self._z_smoothed = self._ema_alpha * z + (1.0 - self._ema_alpha) * self._z_smoothed
        self.value = math.tanh(self._gain * self._z_smoothed)
        self._last_clean_value = self.value
        self._last_clean_s = now_s
        return self.value


class ValenceTracker:
    """Baseline calibration, then z-scored FAA -> EMA -> tanh -> valence in [-1, 1].

    Feed `add_baseline` the clean windows of a resting baseline (eyes open, ~1 min), call
    `finish_baseline`, then `update` once per window with its features, or None if the gate
    rejected it. Arousal goes through the same z -> EMA -> tanh (gain 1) and the same
    hold-then-decay, so both read 0 at the wearer's resting state.

    With config.individual_alpha, the baseline statistics come from the features the caller
    added, i.e. from whatever alpha band those were computed with, while later windows use
    Baseline.alpha_band. To z-score both with the same band: keep the raw baseline, compute
    its IAF first, add features computed with alpha_band=(iaf - 2, iaf + 2), then call
    finish_baseline(iaf)."""

    def __init__(self, config: FaaConfig) -> None:
        self.config = config
        self._baseline_faa: list[float] = []
        self._baseline_arousal: list[float] = []
        self._baseline: Baseline | None = None
        self._valence = _SmoothedScore(
            config.valence_gain, config.ema_alpha, config.hold_s, config.decay_s
        )
        self._arousal = _SmoothedScore(1.0, config.ema_alpha, config.hold_s, config.decay_s)

    @property
    def baseline(self) -> Baseline | None:
        return self._baseline

    def add_baseline(self, features: WindowFeatures) -> None:
        if self._baseline is not None:
            raise RuntimeError("the baseline is already finished")
        self._baseline_faa.append(features.faa)
        self._baseline_arousal.append(features.arousal)

    def finish_baseline(self, iaf: float | None = None) -> Baseline:
        """Freeze the baseline statistics. With config.individual_alpha, the alpha band becomes
        iaf +- 2 Hz; iaf None (individual_alpha_frequency found no peak) keeps the configured
        band, and Baseline.alpha_band says which band was chosen. Without it, iaf is unused."""
        count = len(self._baseline_faa)
        if count < MIN_BASELINE_WINDOWS:
            raise ValueError(
                f"fewer than {MIN_BASELINE_WINDOWS} clean baseline windows ({count}): "
                "record a longer or cleaner baseline"
            )
        alpha_band = self.config.alpha_band
        if self.config.individual_alpha and iaf is not None:
            alpha_band = (iaf - IAF_HALF_WIDTH_HZ, iaf + IAF_HALF_WIDTH_HZ)
        self._baseline = Baseline(
            faa_mean=float(np.mean(self._baseline_faa)),
            faa_sd=max(float(np.std(self._baseline_faa, ddof=1)), MIN_BASELINE_SD),
            arousal_mean=float(np.mean(self._baseline_arousal)),
            arousal_sd=max(float(np.std(self._baseline_arousal, ddof=1)), MIN_BASELINE_SD),
            alpha_band=alpha_band,
            windows=count,
        )
        return self._baseline

    def update(self, features: WindowFeatures | None, now_s: float) -> float:
        """Advance to time `now_s` (seconds, on the EEG stream's clock) with one window's
        features, or None for a gated window. Returns the valence."""
        baseline = self._baseline
        if baseline is None:
            raise RuntimeError("update called before finish_baseline")
        if features is None:
            self._arousal.update(None, now_s)
            return self._valence.update(None, now_s)
        faa_z = (features.faa - baseline.faa_mean) / baseline.faa_sd
        arousal_z = (features.arousal - baseline.arousal_mean) / baseline.arousal_sd
        self._arousal.update(arousal_z, now_s)
        return self._valence.update(faa_z, now_s)

    @property
    def valence(self) -> float:
        return self._valence.value

    @property
    def arousal(self) -> float | None:
        """tanh of the EMA-smoothed arousal z-score; None before the baseline is finished."""
        return None if self._baseline is None else self._arousal.value
