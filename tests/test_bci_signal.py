"""The BCI signal core: band powers, FAA sign, the quality gate, the valence tracker, IAF, and
a real 16 s recording. Synthetic EEG is pink (1/f) noise at ~10 uV plus a 10 Hz alpha sine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bci.live.faa import (
    FaaConfig,
    ValenceTracker,
    WindowFeatures,
    band_power,
    individual_alpha_frequency,
    window_features,
)
from bci.live.signal_quality import GateConfig, GateFlags, check_window
from tests.helpers import spkit_eeg

RATE = 256.0
WINDOW = int(2.0 * RATE)


def pink_noise(rng: np.random.Generator, samples: int, rms_uv: float) -> np.ndarray:
    """White noise shaped to a 1/f power spectrum, like the EEG background."""
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    freqs = np.fft.rfftfreq(samples, 1.0 / RATE)
    spectrum[0] = 0.0
    spectrum[1:] /= np.sqrt(freqs[1:])
    noise = np.fft.irfft(spectrum, samples)
    return noise * (rms_uv / noise.std())


def eeg(
    rng: np.random.Generator, alpha_uv: float, seconds: float = 2.0, alpha_hz: float = 10.0
) -> np.ndarray:
    samples = int(seconds * RATE)
    t = np.arange(samples) / RATE
    alpha = alpha_uv * np.sin(2 * np.pi * alpha_hz * t + rng.uniform(0, 2 * np.pi))
    return pink_noise(rng, samples, 10.0) + alpha


def features(rng: np.random.Generator, left_uv: float, right_uv: float) -> WindowFeatures:
    return window_features(eeg(rng, left_uv), eeg(rng, right_uv), RATE, FaaConfig())


# --- band power and FAA -------------------------------------------------------------------


@pytest.mark.parametrize("frequency", [10.0, 10.5])
def test_band_power_of_a_sine_is_half_its_squared_amplitude(frequency: float) -> None:
    amplitude = 20.0
    t = np.arange(int(4 * RATE)) / RATE
    sine = amplitude * np.sin(2 * np.pi * frequency * t + 0.3)
    expected = amplitude**2 / 2
    assert band_power(sine, RATE, (8.0, 13.0), 1.0) == pytest.approx(expected, rel=0.1)
    assert band_power(sine, RATE, (20.0, 30.0), 1.0) < 1e-3 * expected


def test_band_power_rejects_a_band_above_nyquist() -> None:
    with pytest.raises(ValueError, match="Nyquist"):
        band_power(np.ones(256), 64.0, (20.0, 45.0), 1.0)


@pytest.mark.parametrize(
    ("left_uv", "right_uv", "sign"), [(5.0, 15.0, 1), (15.0, 5.0, -1), (10.0, 10.0, 0)]
)
def test_faa_is_positive_when_right_alpha_is_stronger(
    left_uv: float, right_uv: float, sign: int
) -> None:
    faa = features(np.random.default_rng(1), left_uv, right_uv).faa
    if sign == 0:
        assert abs(faa) < 0.2
    else:
        assert sign * faa > 1.0  # ln(15^2 / 5^2) is 2.2 for the sines alone


def test_arousal_rises_with_beta() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(WINDOW) / RATE
    calm = features(rng, 10.0, 10.0)
    beta = 15.0 * np.sin(2 * np.pi * 20.0 * t)
    busy = window_features(eeg(rng, 10.0) + beta, eeg(rng, 10.0) + beta, RATE, FaaConfig())
    assert busy.arousal > calm.arousal + 1.0
    assert set(busy.as_dict()) == {
        "alpha_left", "alpha_right", "beta_left", "beta_right", "faa", "arousal"
    }  # fmt: skip


def test_window_features_refuse_a_flat_channel() -> None:
    with pytest.raises(ValueError, match="flat"):
        window_features(np.zeros(WINDOW), eeg(np.random.default_rng(3), 10.0), RATE, FaaConfig())


# --- the quality gate ---------------------------------------------------------------------


def clean_window(seed: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([eeg(rng, 10.0) for _ in range(4)])  # [channels, samples]


def raised_flags(flags: GateFlags) -> set[str]:
    return {name for name, raised in flags.as_dict().items() if raised}


@pytest.mark.parametrize("seed", range(4))
def test_clean_eeg_raises_no_flag(seed: int) -> None:
    flags = check_window(clean_window(seed), RATE, 0.0, GateConfig())
    assert raised_flags(flags) == set()
    assert not flags.gated


def test_a_flat_channel_is_flagged_flatline() -> None:
    window = clean_window()
    window[2] = 800.0  # an electrode off the skin reads the amplifier's offset
    assert raised_flags(check_window(window, RATE, 0.0, GateConfig())) == {"flatline", "gated"}


def test_a_300_uv_step_is_flagged_peak_to_peak() -> None:
    window = clean_window()
    window[1, WINDOW // 2 :] += 300.0
    assert {"peak_to_peak", "gated"} <= raised_flags(check_window(window, RATE, 0.0, GateConfig()))


def test_a_blink_is_flagged_blink() -> None:
    window = clean_window()
    length = int(0.3 * RATE)
    start = int(0.8 * RATE)
    window[1:3, start : start + length] += 100.0 * np.sin(np.pi * np.arange(length) / length)
    # The blink alone must trip the gate: the ptp check is moved out of its way.
    config = GateConfig(max_peak_to_peak_uv=400.0)
    assert raised_flags(check_window(window, RATE, 0.0, config)) == {"blink", "gated"}


def test_a_muscle_burst_is_flagged_emg() -> None:
    rng = np.random.default_rng(5)
    window = clean_window()
    spectrum = np.fft.rfft(rng.standard_normal(WINDOW))
    freqs = np.fft.rfftfreq(WINDOW, 1.0 / RATE)
    spectrum[(freqs < 25.0) | (freqs > 45.0)] = 0.0
    burst = np.fft.irfft(spectrum, WINDOW)
    window[0] += burst * (15.0 / burst.std())
    assert raised_flags(check_window(window, RATE, 0.0, GateConfig())) == {"emg", "gated"}


def test_at_64_hz_the_emg_band_is_clipped_below_nyquist_and_still_works() -> None:
    rate = 64.0
    t = np.arange(int(2 * rate)) / rate
    quiet = np.stack([10.0 * np.sin(2 * np.pi * 10.0 * t + phase) for phase in (0.0, 1.0)])
    assert not check_window(quiet, rate, 0.0, GateConfig()).gated
    muscle = quiet + 20.0 * np.sin(2 * np.pi * 27.0 * t)  # inside 20-31 Hz, the clipped band
    assert raised_flags(check_window(muscle, rate, 0.0, GateConfig())) == {"emg", "gated"}


def test_dropped_samples_are_flagged_drops() -> None:
    assert raised_flags(check_window(clean_window(), RATE, 0.3, GateConfig())) == {
        "drops",
        "gated",
    }


def test_a_window_holding_a_nan_or_inf_is_gated_non_finite() -> None:
    for value in (np.nan, np.inf):
        window = clean_window()
        window[0, 10] = value
        flags = check_window(window, RATE, 0.0, GateConfig())
        assert raised_flags(flags) == {"non_finite", "gated"}


def test_the_gate_refuses_short_windows() -> None:
    with pytest.raises(ValueError, match=r"shorter than 0\.5 s"):
        check_window(clean_window()[:, : int(0.4 * RATE)], RATE, 0.0, GateConfig())


# --- the valence tracker ------------------------------------------------------------------


def calibrated_tracker(config: FaaConfig, seed: int = 6) -> ValenceTracker:
    """A baseline of windows with the alpha balance swinging both ways around equal."""
    rng = np.random.default_rng(seed)
    tracker = ValenceTracker(config)
    for _ in range(12):
        left, right = rng.uniform(7.0, 13.0, size=2)
        tracker.add_baseline(features(rng, left, right))
    tracker.finish_baseline()
    return tracker


def test_update_before_the_baseline_raises() -> None:
    tracker = ValenceTracker(FaaConfig())
    assert tracker.arousal is None
    with pytest.raises(RuntimeError):
        tracker.update(features(np.random.default_rng(7), 10.0, 10.0), 0.0)


def test_a_baseline_needs_four_windows() -> None:
    tracker = ValenceTracker(FaaConfig())
    for _ in range(3):
        tracker.add_baseline(features(np.random.default_rng(8), 10.0, 10.0))
    with pytest.raises(ValueError, match="fewer than 4 clean baseline windows"):
        tracker.finish_baseline()


def test_a_constant_baseline_gives_a_finite_valence() -> None:
    tracker = ValenceTracker(FaaConfig())
    same = features(np.random.default_rng(9), 10.0, 10.0)
    for _ in range(5):
        tracker.add_baseline(same)
    assert tracker.finish_baseline().faa_sd > 0.0
    assert math.isfinite(tracker.update(same, 0.0))


def test_right_alpha_drives_valence_up_and_left_alpha_drives_it_down() -> None:
    tracker = calibrated_tracker(FaaConfig())
    rng = np.random.default_rng(10)
    for step in range(12):
        tracker.update(features(rng, 6.0, 14.0), step * 0.25)
    assert tracker.valence > 0.5
    for step in range(12, 36):
        tracker.update(features(rng, 14.0, 6.0), step * 0.25)
    assert tracker.valence < -0.5


def test_gated_windows_hold_the_valence_then_decay_it_toward_zero() -> None:
    config = FaaConfig(hold_s=1.0, decay_s=3.0)
    tracker = calibrated_tracker(config)
    rng = np.random.default_rng(11)
    for step in range(12):
        held = tracker.update(features(rng, 6.0, 14.0), step * 0.25)
    last_clean_s = 11 * 0.25
    assert held > 0.5
    for after_s, expected in [
        (0.25, held),
        (1.0, held),
        (1.0 + 3.0, held * math.exp(-1.0)),
        (1.0 + 6.0, held * math.exp(-2.0)),
    ]:
        valence = tracker.update(None, last_clean_s + after_s)
        assert valence == pytest.approx(expected, rel=1e-9), after_s
        assert tracker.valence == valence
    # A clean window resumes the EMA from the decayed value, not from the value before the gap.
    resume_after_s = 7.25
    decayed = held * math.exp(-(resume_after_s - config.hold_s) / config.decay_s)
    baseline = tracker.baseline
    assert baseline is not None
    window = features(rng, 6.0, 14.0)
    z = (window.faa - baseline.faa_mean) / baseline.faa_sd
    expected = math.tanh(config.ema_alpha * z + (1 - config.ema_alpha) * math.atanh(decayed))
    assert tracker.update(window, last_clean_s + resume_after_s) == pytest.approx(
        expected, rel=1e-9
    )


def test_valence_and_arousal_stay_within_minus_one_and_one() -> None:
    tracker = calibrated_tracker(FaaConfig(valence_gain=50.0, ema_alpha=1.0))
    for step in range(20):
        sign = 1.0 if step % 2 else -1.0  # swing from one extreme to the other every window
        window = WindowFeatures(
            alpha_left=1.0,
            alpha_right=math.exp(50.0 * sign),
            beta_left=1.0,
            beta_right=1.0,
            faa=50.0 * sign,
            arousal=-50.0 * sign,
        )
        valence = tracker.update(window if step % 3 else None, step * 10.0)
        arousal = tracker.arousal
        assert arousal is not None
        assert -1.0 <= valence <= 1.0
        assert -1.0 <= arousal <= 1.0


# --- individual alpha frequency -----------------------------------------------------------


def test_iaf_finds_a_9_5_hz_alpha_peak() -> None:
    rng = np.random.default_rng(12)
    left, right = (eeg(rng, 8.0, seconds=30.0, alpha_hz=9.5) for _ in range(2))
    assert individual_alpha_frequency(left, right, RATE, 2.0) == pytest.approx(9.5, abs=0.5)
    assert individual_alpha_frequency(left, right, RATE, 1.0) == pytest.approx(9.5, abs=0.5)


def test_iaf_resolves_a_peak_between_bins() -> None:
    rng = np.random.default_rng(13)
    left, right = (eeg(rng, 4.0, seconds=30.0, alpha_hz=9.3) for _ in range(2))
    # 1 s segments put bins at 9 and 10 Hz; only the interpolation gets within 0.1 Hz.
    assert individual_alpha_frequency(left, right, RATE, 1.0) == pytest.approx(9.3, abs=0.1)


def test_iaf_refuses_a_spectrum_without_an_alpha_peak() -> None:
    rng = np.random.default_rng(14)
    left, right = (pink_noise(rng, int(30 * RATE), 10.0) for _ in range(2))
    with pytest.raises(ValueError, match="no alpha peak"):
        individual_alpha_frequency(left, right, RATE, 2.0)


def test_individual_alpha_centres_the_band_on_the_iaf() -> None:
    config = FaaConfig(individual_alpha=True)
    rng = np.random.default_rng(15)
    baseline_windows = [features(rng, 10.0, 10.0) for _ in range(4)]
    chosen_bands = []
    for iaf in (9.5, None):
        tracker = ValenceTracker(config)
        for window in baseline_windows:
            tracker.add_baseline(window)
        chosen_bands.append(tracker.finish_baseline(iaf).alpha_band)
    assert chosen_bands == [(7.5, 11.5), config.alpha_band]


# --- real EEG -----------------------------------------------------------------------------


def test_real_eeg_gives_finite_features_and_a_working_gate() -> None:
    data, labels = spkit_eeg()
    rate = 128.0
    left, right = data[:, labels.index("F3")], data[:, labels.index("F4")]
    config = FaaConfig()
    window, hop = round(config.window_s * rate), round(config.hop_s * rate)
    flags_by_start_s: dict[float, GateFlags] = {}
    for start in range(0, len(left) - window + 1, hop):
        segment = slice(start, start + window)
        powers = window_features(left[segment], right[segment], rate, config)
        band_powers = [powers.alpha_left, powers.alpha_right, powers.beta_left, powers.beta_right]
        assert all(math.isfinite(p) and p > 0 for p in band_powers)
        assert math.isfinite(powers.faa) and math.isfinite(powers.arousal)
        pair = np.stack([left[segment], right[segment]])
        flags_by_start_s[start / rate] = check_window(pair, rate, 0.0, GateConfig())
    assert len(flags_by_start_s) == 57
    # 8.5-10 s holds a ~1300 uV artefact on every channel; 3.0-3.5 s is quiet EEG.
    assert all(flags_by_start_s[s].peak_to_peak for s in (8.5, 9.0, 9.5, 10.0))
    assert not any(flags_by_start_s[s].gated for s in (3.0, 3.25, 3.5))


def test_real_eeg_has_its_alpha_peak_near_10_hz() -> None:
    data, labels = spkit_eeg()
    quiet = slice(0, int(7.5 * 128))  # before the large artefact at 8-14 s
    left, right = data[quiet, labels.index("F3")], data[quiet, labels.index("F4")]
    assert individual_alpha_frequency(left, right, 128.0, 2.0) == pytest.approx(10.0, abs=1.0)
