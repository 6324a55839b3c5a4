"""The codec's fixed signal processing, in numpy: causal analysis into log-frequency bands, and
synthesis from log-magnitude frames with real-time phase reconstruction and overlap-add.

Why fixed. Waveform codecs (RAVE, DAC, Vocos) learn pitch over 10^5-10^6 GPU steps. A log
spectrum carries it from the first step, so the latent is the analysis itself: the log energy
in semitone bands (MIDI `lowest_midi`..`highest_midi`) plus a few bands above, of one causal
Hann window of `n_fft` samples ending at the end of each hop. Only the decoder learns: from
latents to log-magnitude STFT frames (models/codec.py). Pitch, harmony and onsets survive by
construction, and a transposition is a roll of the semitone bands.

Why numpy. The STFT and its inverse do not export to ONNX with torch's exporter (no rfft), and
a DFT written as a matrix product would cost the whole latency budget. numpy's FFT of 2048
samples takes microseconds. The engine runs these functions between the ONNX graphs and keeps
their state in the session's model state (batch first), so snapshot, batching and reset work
as for the graphs. Training uses the same functions, so there is one analysis, not two.

Synthesis frames. The decoder gives one log-magnitude frame per hop, the one whose window
ends with the hop (as the analysis window does); the `frames_per_hop - 1` synthesis frames
before it crossfade, in magnitude, from the previous hop's frame to it. A decoder that
predicted every synthesis frame itself learned a level pattern repeating every hop (a
sawtooth of about 0.3 nats: the earlier frames of a hop hedge on whether a note had begun
yet): an amplitude modulation at the hop rate (46.9 Hz), heard as roughness, whose
sidebands, 16 dB below a steady tone, read as extra tones a semitone away (`bench codec`'s
chord probes: 60 % counted right then, 100 % now).

Synthesis. Phase comes from phase-gradient heap integration (RTPGHI, Průša & Holighaus 2017)
in a vectorised form without the heap: the phase's time derivative (each bin's instantaneous
frequency) follows from the log-magnitude's slope across frequency, and its frequency
derivative from the log-magnitude's change over time, as they do exactly for a Gaussian window
(Hann is close). Each spectral peak continues its phase from the previous frame by the
instantaneous frequency; the bins around it take the peak's phase plus the frequency
derivative integrated outward (a cumulative sum). The heap's order of integration is thus
approximated by "from the nearest peak". No lookahead: the time derivative is a backward
difference. A frame is final once every window overlapping it has been added, so the codec's
algorithmic latency is `n_fft - stft_hop` samples (37.3 ms at the defaults).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The Gaussian that best fits a Hann window of length N has time-frequency ratio
# lambda = 0.25645 N^2 (samples^2), as used by ltfat's PGHI for Hann.
HANN_LAMBDA = 0.25645
MAX_PEAK_RADIUS = 3  # bins: a semitone at 1.2 kHz; wider would lock noise into tones
State = list[np.ndarray]


@dataclass(frozen=True)
class SpectralConfig:
    sample_rate: int = 48_000
    hop: int = 1024  # samples per latent frame
    n_fft: int = 2048  # analysis and synthesis window
    stft_hop: int = 256  # synthesis frames every this many samples: hop / stft_hop per latent
    lowest_midi: int = 24  # semitone bands, one per MIDI note, C1 ...
    highest_midi: int = 119  # ... to B8
    high_bands: int = 8  # log-spaced bands from above the highest note to Nyquist
    floor: float = 1e-3  # magnitude floor of the log (about -114 dB below a full-scale sine)
    peak_tolerance_db: float = 60.0  # synthesis locks phases only to peaks within this of the max

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def frames_per_hop(self) -> int:
        return self.hop // self.stft_hop

    @property
    def bands(self) -> int:
        return self.highest_midi - self.lowest_midi + 1 + self.high_bands

    @property
    def latency(self) -> int:
        """Samples from an input sample to the same sample out of analysis + synthesis."""
        return self.n_fft - self.stft_hop

    def __post_init__(self) -> None:
        assert self.hop % self.stft_hop == 0 and self.n_fft >= self.hop
        assert self.n_fft % self.stft_hop == 0


def midi_hz(midi: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, np.float64) - 69.0) / 12.0)


def band_centres(config: SpectralConfig) -> np.ndarray:
    """Centre frequency of every band, Hz: the semitones, then the high bands."""
    notes = midi_hz(np.arange(config.lowest_midi, config.highest_midi + 1))
    top = midi_hz(config.highest_midi + 1)
    high = np.geomspace(top, config.sample_rate / 2, config.high_bands + 1)[:-1]
    return np.concatenate([notes, high])


def band_filterbank(config: SpectralConfig) -> np.ndarray:
    """[bands, bins] triangular weights on power, each row summing to 1.

    A band spans its neighbours' centres, but never less than one FFT bin either side: below
    about 400 Hz a semitone is narrower than a bin of a 2048-point FFT, and a triangle between
    bins would see nothing. Such bands interpolate the nearest bins."""
    centres = band_centres(config)
    edges = np.concatenate([[centres[0] / 2 ** (1 / 12)], centres, [config.sample_rate / 2]])
    bin_hz = config.sample_rate / config.n_fft
    freqs = np.arange(config.bins) * bin_hz
    weights = np.zeros((len(centres), config.bins))
    for b, centre in enumerate(centres):
        below = max(centre - edges[b], bin_hz)
        above = max(edges[b + 2] - centre, bin_hz)
        rising = 1 - (centre - freqs) / below
        falling = 1 - (freqs - centre) / above
        weights[b] = np.clip(np.where(freqs <= centre, rising, falling), 0, None)
    weights /= weights.sum(1, keepdims=True)
    return weights.astype(np.float32)


def band_to_bin(config: SpectralConfig) -> np.ndarray:
    """[bins, bands] linear interpolation, in log frequency, between the two bands whose
    centres bracket each bin (the outermost band beyond the ends). Rows sum to 1."""
    log_centres = np.log(band_centres(config))
    freqs = np.maximum(np.arange(config.bins) * config.sample_rate / config.n_fft, 1.0)
    position = np.interp(np.log(freqs), log_centres, np.arange(len(log_centres)))
    lower = np.floor(position).astype(int)
    upper = np.minimum(lower + 1, len(log_centres) - 1)
    weights = np.zeros((config.bins, len(log_centres)))
    rows = np.arange(config.bins)
    np.add.at(weights, (rows, lower), 1 - (position - lower))
    np.add.at(weights, (rows, upper), position - lower)
    return weights.astype(np.float32)


def hann(n: int) -> np.ndarray:
    """The periodic Hann window (sums to a constant at hops of n/4, n/8, ...)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def synthesis_window(config: SpectralConfig) -> np.ndarray:
    """The dual of the analysis window for overlap-add at `stft_hop`: w / sum_j w(n - j H)^2,
    so analysis followed by synthesis is the identity."""
    window = hann(config.n_fft).astype(np.float64)
    power = (window**2).reshape(-1, config.stft_hop).sum(0)  # the same for every offset
    return (window / np.tile(power, config.n_fft // config.stft_hop)).astype(np.float32)


class SpectralCodec:
    """Constants computed once per configuration; every method is pure given its state."""

    def __init__(self, config: SpectralConfig):
        self.config = c = config
        self.window = hann(c.n_fft)
        self.filterbank_t = np.ascontiguousarray(band_filterbank(c).T)  # [bins, bands]
        self.dual = synthesis_window(c)
        self.bin_index = np.arange(c.bins)
        self.bin_omega = (2 * np.pi * self.bin_index / c.n_fft).astype(np.float32)
        self.slope_to_omega = np.float32(1.0 / (HANN_LAMBDA * c.n_fft))  # (N / lambda)
        self.change_to_dphase = np.float32(HANN_LAMBDA * c.n_fft / c.stft_hop)  # lambda / (N H)
        self.centre_sign = ((-1.0) ** self.bin_index).astype(np.float32)
        self.log_floor = np.float32(np.log(c.floor))
        self.log_ceiling = np.float32(np.log(10 * c.n_fft / 4))  # a full-scale sine: n_fft / 4
        self.tolerance = np.float32(c.peak_tolerance_db / 20 * np.log(10))
        # A peak must be the largest bin within a semitone of itself (at most MAX_PEAK_RADIUS
        # bins): the decoder cannot place partials finer than its semitone bands, and a bump
        # on the flank of a partial would otherwise become a tone of its own.
        # The frames between two hops' decoded frames: a crossfade of magnitudes, not of
        # log-magnitudes (between two different notes the log-domain mean is far below both,
        # a dip at every change of note). Log weights of the old and the new frame.
        with np.errstate(divide="ignore"):
            weights = np.arange(1, c.frames_per_hop + 1) / c.frames_per_hop
            self.crossfade = np.log(np.stack([1 - weights, weights], 1)).astype(np.float32)
        semitone_bins = self.bin_index * (2 ** (1 / 12) - 1)
        self.peak_radius = np.clip(np.round(semitone_bins), 1, MAX_PEAK_RADIUS).astype(int)

    # -- analysis ----------------------------------------------------------------------------
    def initial_analysis_state(self, batch: int) -> State:
        return [np.zeros((batch, self.config.n_fft - self.config.hop), np.float32)]

    def log_bands(self, frames: np.ndarray) -> np.ndarray:
        """Windowed frames [..., n_fft] -> log band energies [..., bands] (natural log)."""
        power = np.abs(np.fft.rfft(frames * self.window, axis=-1)) ** 2
        return np.log(power.astype(np.float32) @ self.filterbank_t + self.config.floor**2)

    def analysis_step(self, state: State, audio: np.ndarray) -> tuple[np.ndarray, State]:
        """audio [B, hop] -> log bands [B, bands] of the window ending with this hop."""
        frame = np.concatenate([state[0], audio.astype(np.float32)], axis=1)
        return self.log_bands(frame), [frame[:, self.config.hop :]]

    def analyse(self, audio: np.ndarray) -> np.ndarray:
        """Offline: audio [B, T] -> [B, T // hop, bands], equal to stepping from zero state."""
        c = self.config
        frames = self._causal_frames(audio, c.hop)
        return self.log_bands(frames)

    def _causal_frames(self, audio: np.ndarray, step: int) -> np.ndarray:
        """Windows of n_fft samples ending at (i + 1) * step, zeros before the start."""
        c = self.config
        count = audio.shape[-1] // step
        padded = np.concatenate(
            [np.zeros((*audio.shape[:-1], c.n_fft - step), np.float32), audio.astype(np.float32)],
            axis=-1,
        )
        index = np.arange(c.n_fft)[None] + step * np.arange(count)[:, None]
        return padded[..., index]  # [..., count, n_fft]

    def log_magnitude(self, audio: np.ndarray) -> np.ndarray:
        """Audio [B, T] -> the STFT log-magnitudes the decoder learns to produce:
        [B, T // stft_hop, bins], frame s ending at sample (s + 1) * stft_hop."""
        spectrum = np.fft.rfft(self._causal_frames(audio, self.config.stft_hop) * self.window)
        return np.log(np.abs(spectrum).astype(np.float32) + self.config.floor)

    # -- synthesis ---------------------------------------------------------------------------
    def initial_synthesis_state(self, batch: int) -> State:
        c = self.config
        return [
            np.full((batch, c.bins), self.log_floor, np.float32),  # previous log-magnitude
            np.zeros((batch, c.bins), np.float32),  # previous phase (frame-centred)
            np.zeros((batch, c.n_fft - c.stft_hop), np.float32),  # overlap-add tail
        ]

    def _omega(self, log_mag: np.ndarray) -> np.ndarray:
        """Instantaneous frequency per bin (rad/sample) from the slope across frequency."""
        slope = np.empty_like(log_mag)
        slope[:, 1:-1] = 0.5 * (log_mag[:, 2:] - log_mag[:, :-2])
        slope[:, 0] = log_mag[:, 1] - log_mag[:, 0]
        slope[:, -1] = log_mag[:, -1] - log_mag[:, -2]
        return self.bin_omega + self.slope_to_omega * slope

    def _nearest_peak(self, log_mag: np.ndarray) -> np.ndarray:
        """For every bin, the index of the nearest spectral peak within the tolerance [B, K]."""
        k, big = self.bin_index, self.config.bins * 4
        low = np.full((len(log_mag), MAX_PEAK_RADIUS), -np.inf, np.float32)
        padded = np.concatenate([low, log_mag, low], axis=1)
        peak = np.ones(log_mag.shape, bool)
        for shift in range(1, MAX_PEAK_RADIUS + 1):
            left = padded[:, MAX_PEAK_RADIUS - shift : MAX_PEAK_RADIUS - shift + len(k)]
            right = padded[:, MAX_PEAK_RADIUS + shift : MAX_PEAK_RADIUS + shift + len(k)]
            beaten = (log_mag < left) | (log_mag <= right)
            peak &= ~(beaten & (self.peak_radius >= shift))
        peak[:, [0, -1]] = False
        peak &= log_mag > log_mag.max(1, keepdims=True) - self.tolerance
        peak[np.arange(len(log_mag)), log_mag.argmax(1)] = True  # at least one, even if flat
        left = np.maximum.accumulate(np.where(peak, k, -big), axis=1)
        right = np.minimum.accumulate(np.where(peak, k, big)[:, ::-1], axis=1)[:, ::-1]
        return np.where(k - left <= right - k, left, right)

    def synthesis_step(self, state: State, log_mag: np.ndarray) -> tuple[np.ndarray, State]:
        """log_mag [B, bins], the frame ending with this hop -> audio [B, hop], `latency`
        samples late. The frames before it in the hop are interpolated from the last one."""
        c = self.config
        previous, phase, tail = state
        rows = np.arange(log_mag.shape[0])[:, None]
        out = np.empty((log_mag.shape[0], c.hop), np.float32)
        tail = tail.copy()
        # A wild decoder output (NaN, or loud enough to overflow) must not poison the phase
        # state for good: clamp to the floor and to 20 dB above a full-scale sine.
        target = np.nan_to_num(log_mag.astype(np.float32), nan=float(self.log_floor))
        target = np.clip(target, self.log_floor, self.log_ceiling)
        start = previous
        omega_prev = self._omega(previous)
        for f, (log_old, log_new) in enumerate(self.crossfade):
            current = np.logaddexp(start + log_old, target + log_new)
            omega = self._omega(current)
            # Time direction: every bin advances by its mean instantaneous frequency; only the
            # peaks' values are used. Frequency direction: integrate outward from the peak.
            advanced = phase + (0.5 * c.stft_hop) * (omega_prev + omega)
            dphase = -self.change_to_dphase * (current - previous)
            across = np.zeros_like(current)
            np.cumsum(0.5 * (dphase[:, 1:] + dphase[:, :-1]), axis=1, out=across[:, 1:])
            peak = self._nearest_peak(current)
            phase = np.mod(advanced[rows, peak] + across - across[rows, peak], 2 * np.pi)
            magnitude = np.exp(current) * self.centre_sign
            spectrum = np.empty(current.shape, np.complex64)
            spectrum.real, spectrum.imag = magnitude * np.cos(phase), magnitude * np.sin(phase)
            frame = np.fft.irfft(spectrum, n=c.n_fft, axis=1).astype(np.float32) * self.dual
            frame[:, : c.n_fft - c.stft_hop] += tail
            out[:, f * c.stft_hop : (f + 1) * c.stft_hop] = frame[:, : c.stft_hop]
            tail = frame[:, c.stft_hop :]
            previous, omega_prev = current, omega
        return out, [previous, phase.astype(np.float32), tail]

    def synthesise(self, log_mag: np.ndarray) -> np.ndarray:
        """Offline: one frame per hop [B, hops, bins] -> [B, hops * hop], by stepping from
        the initial state."""
        state = self.initial_synthesis_state(log_mag.shape[0])
        hops = []
        for frame in range(log_mag.shape[1]):
            audio, state = self.synthesis_step(state, log_mag[:, frame])
            hops.append(audio)
        return np.concatenate(hops, axis=1) if hops else np.zeros((log_mag.shape[0], 0))

    def hop_frames(self, log_mag: np.ndarray) -> np.ndarray:
        """STFT frames [..., T // stft_hop, bins] -> the frames ending with each hop
        [..., T // hop, bins]: what the decoder learns to produce."""
        per = self.config.frames_per_hop
        return log_mag[..., per - 1 :: per, :]
