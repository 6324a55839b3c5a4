"""The signal-quality gate: decide whether one EEG window is fit to drive the music.

FAA is a small difference between two large, noisy numbers, so one artefact can swing the
valence further than any real change of mood. Rather than repair artefacts, the gate rejects
the window and the valence tracker holds its value (`bci.live.faa.ValenceTracker.update(None)`).
Each check targets one way prefrontal dry-electrode EEG goes wrong:

- flatline: an electrode off the skin (or a saturated amplifier) reads almost constant.
- peak_to_peak: movement, cable tugs and electrode pops are far larger than EEG (~10-50 uV).
- blink: the eyes are a dipole right under AF7/AF8; a blink is a 100+ uV bump of a few
  hundred ms, so its power sits below 4 Hz. A ratio, not an amplitude, because it must catch
  blinks whose size varies with the headset's fit.
- emg: frowning or jaw clenching adds broadband muscle noise above 20 Hz, which leaks into
  the beta band (arousal) and, through spectral leakage, into alpha.
- drops: a window with many lost samples (Bluetooth drops) was stitched together and its
  spectrum is not trustworthy.
- non_finite: a NaN or Inf sample (a sender's glitch) would make every feature NaN; such a
  window is gated without the other checks, and the stream goes on.

Every channel in the window is checked and any one of them gates the window, so pass only
the channels the features use if the others (e.g. Muse's TP9/TP10) must not veto it.
The spectra are the same Welch estimate the features use (`bci.live.faa.welch_psd`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from bci.live.faa import integrate_band, welch_psd

MIN_WINDOW_S = 0.5
# Spectral ratios use 1 s Welch segments (1 Hz bins): fine enough to separate the blink band
# from alpha, and several overlapping segments per 2 s window smooth the estimate.
GATE_SEGMENT_S = 1.0
# Upper band edges are kept this far below Nyquist, where anti-aliasing filters roll off.
NYQUIST_MARGIN_HZ = 1.0


@dataclass(frozen=True)
class GateConfig:
    flatline_uv: float = 0.5  # peak-to-peak below this on any channel: flat (electrode off)
    max_peak_to_peak_uv: float = 150.0
    blink_band: tuple[float, float] = (0.5, 4.0)
    blink_ratio: float = 0.6  # power in blink_band / power in total_band above this: blink
    # The upper edge is clipped to Nyquist - 1 Hz when the rate is low.
    emg_band: tuple[float, float] = (20.0, 45.0)
    emg_ratio: float = 0.35
    total_band: tuple[float, float] = (0.5, 45.0)
    max_drop_rate: float = 0.1  # fraction of samples lost in this window

    def __post_init__(self) -> None:
        for name in ("blink_band", "emg_band", "total_band"):
            low, high = getattr(self, name)
            if not 0.0 <= low < high:
                raise ValueError(f"{name} must be (low, high) with 0 <= low < high")
        if not 0.0 <= self.flatline_uv < self.max_peak_to_peak_uv:
            raise ValueError("need 0 <= flatline_uv < max_peak_to_peak_uv")


@dataclass(frozen=True)
class GateFlags:
    flatline: bool
    peak_to_peak: bool
    blink: bool
    emg: bool
    drops: bool
    non_finite: bool

    @property
    def gated(self) -> bool:
        checks = (self.flatline, self.peak_to_peak, self.blink, self.emg, self.drops)
        return any(checks) or self.non_finite

    def as_dict(self) -> dict[str, bool]:
        return {**asdict(self), "gated": self.gated}


CHECKS = tuple(GateFlags.__dataclass_fields__)


def _below_nyquist(band: tuple[float, float], rate: float, name: str) -> tuple[float, float]:
    high = min(band[1], rate / 2.0 - NYQUIST_MARGIN_HZ)
    if high <= band[0]:
        raise ValueError(f"rate {rate:g} Hz is too low for {name} {band}")
    return band[0], high


def _band_ratio(
    freqs: np.ndarray, psd: np.ndarray, band: tuple[float, float], total: np.ndarray
) -> np.ndarray:
    power = integrate_band(freqs, psd, band)
    # A flat channel has zero total power; it is flagged as flat, not as blink or EMG.
    return np.divide(power, total, out=np.zeros_like(power), where=total > 0.0)


@dataclass(frozen=True)
class ChannelCheck:
    """One channel of a window judged on its own: what the experimenter's status shows."""

    flags: GateFlags
    peak_to_peak_uv: float  # nan when the channel holds a NaN or Inf

    @property
    def failed(self) -> tuple[str, ...]:
        """The names of the checks this channel failed, e.g. ("blink",)."""
        return tuple(name for name, raised in asdict(self.flags).items() if raised)


def check_channels(
    window: np.ndarray, rate: float, dropped_fraction: float, config: GateConfig
) -> tuple[ChannelCheck, ...]:
    """Each channel's flags, [channels, samples] in microvolts. `dropped_fraction` is the
    fraction of this window's samples the transport lost (the caller counts them): a
    transport loss hits every channel alike."""
    if window.ndim != 2:
        raise ValueError(f"window must be [channels, samples], got shape {window.shape}")
    if window.shape[1] < MIN_WINDOW_S * rate:
        raise ValueError(
            f"window of {window.shape[1]} samples is shorter than {MIN_WINDOW_S} s at {rate:g} Hz"
        )
    if not 0.0 <= dropped_fraction <= 1.0:
        raise ValueError(f"dropped_fraction must be in [0, 1], got {dropped_fraction}")
    drops = dropped_fraction > config.max_drop_rate
    finite = np.all(np.isfinite(window), axis=1)  # [channels]
    # A channel with a NaN or Inf has no spectrum and no amplitude: nothing else to judge.
    clean = np.where(finite[:, None], window, 0.0)
    peak_to_peak = np.ptp(clean, axis=1)  # [channels]
    freqs, psd = welch_psd(clean, rate, GATE_SEGMENT_S)  # [channels, F]
    total = integrate_band(freqs, psd, _below_nyquist(config.total_band, rate, "total_band"))
    blink = _band_ratio(freqs, psd, _below_nyquist(config.blink_band, rate, "blink_band"), total)
    emg = _band_ratio(freqs, psd, _below_nyquist(config.emg_band, rate, "emg_band"), total)
    return tuple(
        ChannelCheck(
            GateFlags(
                flatline=bool(ok and peak_to_peak[c] < config.flatline_uv),
                peak_to_peak=bool(ok and peak_to_peak[c] > config.max_peak_to_peak_uv),
                blink=bool(ok and blink[c] > config.blink_ratio),
                emg=bool(ok and emg[c] > config.emg_ratio),
                drops=drops,
                non_finite=not ok,
            ),
            float(peak_to_peak[c]) if ok else float("nan"),
        )
        for c, ok in enumerate(finite)
    )


def combine(checks: tuple[ChannelCheck, ...]) -> GateFlags:
    """The window's flags: any channel's. A window with a NaN or Inf anywhere is flagged for
    that alone (and drops), as its features cannot be computed whatever the other channels
    show."""
    if any(check.flags.non_finite for check in checks):
        return GateFlags(False, False, False, False, checks[0].flags.drops, non_finite=True)
    raised = {name: any(getattr(check.flags, name) for check in checks) for name in CHECKS}
    return GateFlags(**raised)


def check_window(
    window: np.ndarray, rate: float, dropped_fraction: float, config: GateConfig
) -> GateFlags:
    """Flags for one window, [channels, samples] in microvolts: any channel's (`combine`)."""
    return combine(check_channels(window, rate, dropped_fraction, config))
