"""Synthetic probe signals for the codec benchmark: what must survive a round trip, counted.

In the spirit of SpectCount (spectrotemporal counting with synthetic signals): each probe has
a known answer, and the round trip either keeps it or not.
- chords of 1-4 sine tones (MIDI 52-88, at least 4 semitones apart: closer tones, below
  about 50 Hz apart, fall inside one main lobe of the codec's 2048-sample window and cannot
  be told apart by it); the spectral peaks within 20 dB of the strongest are counted;
- onset trains: 8 plucked tones at random gaps of 200-500 ms; librosa's onset detector must
  find each within one hop (21.3 ms) of where it was played;
- chirps: a 3 s log sweep, 110 Hz to 3.52 kHz; the dominant frequency of each frame is
  compared with the sweep's, in cents.
Every probe is also scored on the original signal, so a counter's own errors are visible
beside the codec's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.pitch_transcription import to_analysis_rate

RATE = 48_000
PARTIALS = 1  # sines: every peak is a tone
CHORD_SECONDS, CHORD_SIZES = 1.5, (1, 2, 3, 4)
ONSETS_PER_TRAIN = 8
CHIRP_SECONDS, CHIRP_LOW_HZ, CHIRP_HIGH_HZ = 3.0, 110.0, 3520.0
LEAD_SECONDS = 0.3  # silence before each probe, so its start is inside the signal


@dataclass(frozen=True)
class Probe:
    kind: str  # "chord", "onsets" or "chirp"
    audio: np.ndarray  # at RATE
    answer: tuple[float, ...]  # MIDI pitches, onset times (s) or (start s, end s)


def harmonic_tone(midi: float, seconds: float, decay_s: float | None = None) -> np.ndarray:
    """A tone of PARTIALS partials (amplitudes 1 / k^2) with a 10 ms attack, 50 ms release."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    tone = sum(
        np.sin(2 * np.pi * k * f0 * t) / k**2 for k in range(1, PARTIALS + 1) if k * f0 < 20e3
    )
    envelope = np.minimum(1.0, t / 0.01) * np.minimum(1.0, (seconds - t) / 0.05)
    if decay_s is not None:
        envelope *= np.exp(-t / decay_s)
    return (tone * envelope).astype(np.float32)


def make_probes(seed: int = 0, chords_per_size: int = 10, trains: int = 4,
                chirps: int = 2) -> list[Probe]:  # fmt: skip
    rng = np.random.default_rng(seed)
    lead = np.zeros(int(LEAD_SECONDS * RATE), np.float32)
    probes = []
    for size in CHORD_SIZES:
        for _ in range(chords_per_size):
            pitches = sorted(int(p) for p in rng.choice(np.arange(52, 89), size, replace=False))
            while size > 1 and min(np.diff(pitches)) < 4:
                pitches = sorted(int(p) for p in rng.choice(np.arange(52, 89), size, replace=False))
            chord = sum(harmonic_tone(p, CHORD_SECONDS) for p in pitches) * (0.3 / size)
            probes.append(Probe("chord", np.concatenate([lead, chord, lead]), tuple(pitches)))
    for _ in range(trains):
        gaps = rng.uniform(0.2, 0.5, ONSETS_PER_TRAIN)
        times = LEAD_SECONDS + np.concatenate([[0.0], np.cumsum(gaps[:-1])])
        audio = np.zeros(int((times[-1] + 0.8) * RATE), np.float32)
        for time in times:
            note = 0.3 * harmonic_tone(float(rng.integers(55, 80)), 0.4, decay_s=0.08)
            start = int(time * RATE)
            audio[start : start + len(note)] += note
        probes.append(Probe("onsets", audio, tuple(float(t) for t in times)))
    for _ in range(chirps):
        t = np.arange(int(CHIRP_SECONDS * RATE)) / RATE
        ratio = CHIRP_HIGH_HZ / CHIRP_LOW_HZ
        phase = 2 * np.pi * CHIRP_LOW_HZ * CHIRP_SECONDS / np.log(ratio)
        sweep = 0.3 * np.sin(phase * (ratio ** (t / CHIRP_SECONDS) - 1)).astype(np.float32)
        end = LEAD_SECONDS + CHIRP_SECONDS
        probes.append(Probe("chirp", np.concatenate([lead, sweep, lead]), (LEAD_SECONDS, end)))
    return probes


def count_tones(audio: np.ndarray) -> set[int]:
    """The MIDI pitches of the spectral peaks within 20 dB of the strongest, through the
    middle half of a chord probe (magnitudes of 16384-point FFTs, averaged)."""
    n_fft = 16_384
    first = int((LEAD_SECONDS + 0.25 * CHORD_SECONDS) * RATE)
    last = int((LEAD_SECONDS + 0.75 * CHORD_SECONDS) * RATE)
    window = np.hanning(n_fft)
    frames = [audio[i : i + n_fft] * window for i in range(first, last - n_fft + 1, n_fft // 4)]
    spectrum = np.abs(np.fft.rfft(np.stack(frames), axis=1)).mean(0)
    hz = np.fft.rfftfreq(n_fft, 1 / RATE)
    inner = spectrum[1:-1]
    peak = (inner > spectrum[:-2]) & (inner >= spectrum[2:]) & (inner > 0.1 * spectrum.max())
    found = hz[1:-1][peak & (hz[1:-1] > 60) & (hz[1:-1] < 5000)]
    return {round(69 + 12 * float(np.log2(f / 440))) for f in found}


def onset_errors(audio: np.ndarray, played: tuple[float, ...]) -> np.ndarray:
    """Seconds from each played onset to the nearest detected one (inf when none)."""
    import librosa

    y = to_analysis_rate(audio, RATE)
    found = librosa.onset.onset_detect(y=y, sr=22_050, hop_length=128, units="time")
    if not len(found):
        return np.full(len(played), np.inf)
    return np.array([np.min(np.abs(found - t)) for t in played])


def chirp_cents(audio: np.ndarray, span: tuple[float, ...]) -> np.ndarray:
    """Per frame inside the sweep: |dominant frequency - the sweep's| in cents."""
    n_fft, hop = 8192, 1024
    start, end = span
    errors = []
    window = np.hanning(n_fft)
    for centre in np.arange(start + 0.1, end - 0.1, hop / RATE):
        i = int(centre * RATE) - n_fft // 2
        if i < 0 or i + n_fft > len(audio):
            continue
        spectrum = np.abs(np.fft.rfft(audio[i : i + n_fft] * window))
        k = int(np.argmax(spectrum[1:-1])) + 1
        a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
        peak_hz = (k + 0.5 * (a - c) / (a - 2 * b + c + 1e-12)) * RATE / n_fft
        truth = CHIRP_LOW_HZ * (CHIRP_HIGH_HZ / CHIRP_LOW_HZ) ** ((centre - start) / CHIRP_SECONDS)
        errors.append(abs(1200 * np.log2(max(peak_hz, 1.0) / truth)))
    return np.array(errors)


def score_probes(probes: list[Probe], outputs: list[np.ndarray], hop_s: float) -> dict[str, float]:
    """How much of every probe's answer an output keeps."""
    counted, exact, onsets_in, onset_ms, cents = [], [], [], [], []
    for probe, out in zip(probes, outputs, strict=True):
        if probe.kind == "chord":
            heard = count_tones(out)
            counted.append(len(heard) == len(probe.answer))
            exact.append(heard == set(int(p) for p in probe.answer))
        elif probe.kind == "onsets":
            errors = onset_errors(out, probe.answer)
            onsets_in += list(errors <= hop_s)
            onset_ms += list(1e3 * errors[np.isfinite(errors)])
        else:
            cents += list(chirp_cents(out, probe.answer))
    return {
        "chords_counted_correctly": float(np.mean(counted)),
        "chords_exact_pitches": float(np.mean(exact)),
        "onsets_within_one_hop": float(np.mean(onsets_in)),
        "onset_error_median_ms": float(np.median(onset_ms)) if onset_ms else float("nan"),
        "chirp_error_median_cents": float(np.median(cents)) if cents else float("nan"),
    }
