"""A simulated prefrontal EEG headset: deterministic signals, sent over LSL in real time.

`synthesize` is a pure function of (config, schedule, sample index): the same index always
gives the same microvolts, whatever the chunking, so the outlet and any offline check share
one implementation. Per channel it sums:

- background: pink (1/f power) noise. Noise is made per 512-sample segment from
  `rng(seed, stream, segment)`, shaped in the frequency domain, and overlap-added with a sine
  window at a 256-sample hop (sin^2 + cos^2 = 1 keeps the variance constant), so any sample
  depends on just two seeded segments and can be computed on its own;
- alpha: a 10 Hz sine, in phase on both sides, with amplitudes
  `alpha_uv * exp(-asymmetry / 2)` (left) and `alpha_uv * exp(+asymmetry / 2)` (right).
  For the alpha component, FAA = ln(P_right / P_left) = 2 ln(a_right / a_left) = 2 * asymmetry;
  the background adds the same power to both sides, so a measured band-power FAA is smaller.
  Scheduled changes ramp over 0.25 s rather than clicking;
- blinks: a raised-cosine bump of 150 uV over the event's duration on the frontal channels
  (a tenth of it on the references);
- EMG: 20-45 Hz band-limited noise, 30 uV rms on every channel, for the event's duration.

The simulated head carries the montage's left and right channels plus reference channels (the
montage's, or the mastoids TP9/TP10), in the Muse's order: TP9, AF7, AF8, TP10.

`Simulator` stamps sample k at `origin + k / rate` on `pylsl.local_clock()`. Dropout samples
are not pushed at all (their stamps are skipped); a kill destroys the outlet and later creates
a new one with the same source_id, as a headset that reconnects would.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pylsl
from pydantic import ConfigDict

from bci.errors import load_yaml_config
from bci.montage import MUSE, Montage

EVENT_KINDS = ("blink", "emg", "dropout", "kill")
MASTOIDS = ("TP9", "TP10")
HOP = 256  # samples between noise segments
SEGMENT = 2 * HOP
SINE_WINDOW = np.sin(np.pi * (np.arange(SEGMENT) + 0.5) / SEGMENT)
ASYMMETRY_RAMP_S = 0.25
BLINK_UV = 150.0
BLINK_REFERENCE_SHARE = 0.1  # blinks are ocular: the mastoids see little of them
EMG_UV = 30.0
EMG_BAND_HZ = (20.0, 45.0)
EDGE_RAMP_S = 0.02  # EMG bursts fade in and out over this, so they don't step
BACKGROUND_STREAM, EMG_STREAM = 0, 1  # separate random streams per component


@dataclass(frozen=True)
class AsymmetryStep:
    __pydantic_config__ = ConfigDict(extra="forbid")

    at_s: float
    asymmetry: float  # -1..1: +1 = right alpha much stronger than left (positive FAA)

    def __post_init__(self) -> None:
        if not -1.0 <= self.asymmetry <= 1.0:
            raise ValueError(f"asymmetry must be within -1..1, got {self.asymmetry}")
        if self.at_s < 0:
            raise ValueError(f"at_s must not be negative, got {self.at_s}")


@dataclass(frozen=True)
class Event:
    __pydantic_config__ = ConfigDict(extra="forbid")

    at_s: float
    kind: str  # one of EVENT_KINDS
    duration_s: float

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(EVENT_KINDS)}, got {self.kind!r}")
        if self.at_s < 0 or not self.duration_s > 0:
            raise ValueError("at_s must be >= 0 and duration_s > 0")


@dataclass(frozen=True)
class Schedule:
    __pydantic_config__ = ConfigDict(extra="forbid")

    asymmetry: tuple[AsymmetryStep, ...] = (AsymmetryStep(0.0, 0.0),)
    events: tuple[Event, ...] = ()

    def __post_init__(self) -> None:
        if not self.asymmetry:
            raise ValueError("asymmetry needs at least one step")
        times = [step.at_s for step in self.asymmetry]
        if any(later <= earlier for earlier, later in pairwise(times)):
            raise ValueError(f"asymmetry steps must be in increasing at_s order, got {times}")

    @staticmethod
    def flipping(every_s: float, total_s: float, start: float = 1.0) -> Schedule:
        """+start, -start, +start, ... switching every `every_s` seconds up to `total_s`."""
        count = max(1, math.ceil(total_s / every_s))
        return Schedule(tuple(AsymmetryStep(i * every_s, start * (-1) ** i) for i in range(count)))

    def asymmetry_at(self, times: np.ndarray) -> np.ndarray:
        """The scheduled asymmetry at `times` (seconds from the start), with ramped changes."""
        value = np.full(len(times), float(self.asymmetry[0].asymmetry))
        for before, step in pairwise(self.asymmetry):
            progress = np.clip((times - step.at_s) / ASYMMETRY_RAMP_S, 0.0, 1.0)
            value += (step.asymmetry - before.asymmetry) * progress
        return value

    def sample_ranges(self, kinds: tuple[str, ...], rate: float) -> list[tuple[int, int]]:
        """[start, end) sample indices of the events of these kinds."""
        return [
            (round(e.at_s * rate), round((e.at_s + e.duration_s) * rate))
            for e in self.events
            if e.kind in kinds
        ]


def load_schedule(path: Path) -> Schedule:
    """YAML: `{asymmetry: [{at_s: 0, asymmetry: 1}], events: [{at_s: 5, kind: blink,
    duration_s: 0.3}]}`. Raises BciError naming the file and the bad field."""
    return load_yaml_config(path, Schedule)


@dataclass(frozen=True)
class SimulatorConfig:
    name: str = "BandmateSim"
    source_id: str = "bandmate-sim"
    montage: Montage = MUSE
    chunk_s: float = 1 / 32  # 8 samples per push at 256 Hz
    seed: int = 0
    background_uv: float = 10.0  # rms of the 1/f background
    alpha_uv: float = 8.0  # alpha amplitude at zero asymmetry
    alpha_hz: float = 10.0

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must not be negative, got {self.seed}")

    @property
    def channels(self) -> tuple[str, ...]:
        return simulated_channels(self.montage)


def simulated_channels(montage: Montage) -> tuple[str, ...]:
    """Muse order: first reference, left, right, other references (mastoids by default)."""
    reference = montage.reference or MASTOIDS
    return (reference[0], montage.left, montage.right, *reference[1:])


def _spectral_gains(rate: float, band_hz: tuple[float, float] | None) -> np.ndarray:
    """rfft gains for a segment: 1/sqrt(f) (pink) or flat within `band_hz`, scaled so that
    unit white noise comes out with unit variance."""
    frequencies = np.fft.rfftfreq(SEGMENT, 1.0 / rate)
    if band_hz is None:
        gains = 1.0 / np.sqrt(np.maximum(frequencies, 1.0))
        gains[0] = 0.0
    else:
        gains = ((frequencies >= band_hz[0]) & (frequencies <= band_hz[1])).astype(np.float64)
    power = gains[0] ** 2 + gains[-1] ** 2 + 2 * np.sum(gains[1:-1] ** 2)
    return gains / np.sqrt(power / SEGMENT)


def _segment_noise(
    seed: int, stream: int, channels: int, start: int, n: int, gains: np.ndarray
) -> np.ndarray:
    """Unit-variance shaped noise [channels, n] for samples start..start+n, from the two
    overlapping segments behind each sample, always summed in the same order."""
    out = np.zeros((channels, n))
    for segment in range(start // HOP - 1, (start + n - 1) // HOP + 1):
        rng = np.random.default_rng([seed, stream, segment + 1])  # segment >= -1
        white = rng.standard_normal((channels, SEGMENT))
        shaped = np.fft.irfft(np.fft.rfft(white, axis=1) * gains, n=SEGMENT, axis=1)
        first = segment * HOP
        lo, hi = max(first, start), min(first + SEGMENT, start + n)
        if lo < hi:
            out[:, lo - start : hi - start] += (shaped * SINE_WINDOW)[:, lo - first : hi - first]
    return out


def _envelope(times: np.ndarray, event: Event, shape: str) -> np.ndarray:
    inside = (times >= event.at_s) & (times < event.at_s + event.duration_s)
    since = times - event.at_s
    if shape == "bump":
        curve = 0.5 * (1.0 - np.cos(2.0 * np.pi * since / event.duration_s))
    else:
        curve = np.clip(np.minimum(since, event.duration_s - since) / EDGE_RAMP_S, 0.0, 1.0)
    return np.where(inside, curve, 0.0)


def synthesize(
    config: SimulatorConfig, schedule: Schedule, start_sample: int, n: int
) -> np.ndarray:
    """Microvolts [channels, n] for sample indices start_sample..start_sample+n, channels in
    `config.channels` order; deterministic and independent of how a range is split."""
    rate = config.montage.sample_rate
    channels = config.channels
    left, right = channels.index(config.montage.left), channels.index(config.montage.right)
    blink_weights = np.full((len(channels), 1), BLINK_REFERENCE_SHARE)
    blink_weights[[left, right]] = 1.0
    times = np.arange(start_sample, start_sample + n) / rate
    gains = _spectral_gains(rate, None)
    out = config.background_uv * _segment_noise(
        config.seed, BACKGROUND_STREAM, len(channels), start_sample, n, gains
    )

    asymmetry = schedule.asymmetry_at(times)
    alpha = np.sin(2.0 * np.pi * config.alpha_hz * times)
    out[left] += config.alpha_uv * np.exp(-0.5 * asymmetry) * alpha
    out[right] += config.alpha_uv * np.exp(0.5 * asymmetry) * alpha

    for event in schedule.events:
        if event.kind == "blink":
            out += BLINK_UV * blink_weights * _envelope(times, event, "bump")
        elif event.kind == "emg":
            gate = _envelope(times, event, "burst")
            if gate.any():
                emg_gains = _spectral_gains(rate, EMG_BAND_HZ)
                burst = _segment_noise(
                    config.seed, EMG_STREAM, len(channels), start_sample, n, emg_gains
                )
                out += EMG_UV * gate * burst
    return out


def _in_ranges(indices: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros(len(indices), dtype=bool)
    for start, end in ranges:
        mask |= (indices >= start) & (indices < end)
    return mask


def eeg_outlet(name: str, source_id: str, labels: tuple[str, ...], rate: float, chunk: int,
               manufacturer: str) -> pylsl.StreamOutlet:  # fmt: skip
    """An LSL EEG outlet described as receivers expect: float32 microvolts, channel labels."""
    info = pylsl.StreamInfo(name, "EEG", len(labels), rate, "float32", source_id)
    info.desc().append_child_value("manufacturer", manufacturer)
    channels = info.desc().append_child("channels")
    for label in labels:
        channel = channels.append_child("channel")
        channel.append_child_value("label", label)
        channel.append_child_value("unit", "microvolts")
        channel.append_child_value("type", "EEG")
    return pylsl.StreamOutlet(info, chunk_size=chunk)


class PacedOutlet:
    """What the simulator and the replayer share: an LSL outlet fed from a thread, sample 0
    stamped at `origin` on `pylsl.local_clock()`. Subclasses make the outlet and pace the
    pushes (`_new_outlet`, `_run`)."""

    thread_name = "bci-outlet"

    def __init__(self) -> None:
        self._outlet: pylsl.StreamOutlet | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._origin = 0.0
        self._sent = 0

    @property
    def origin(self) -> float:
        """local_clock stamp of sample 0."""
        return self._origin

    @property
    def sent(self) -> int:
        """Samples pushed so far."""
        return self._sent

    def open(self) -> None:
        """Create the outlet (resolvable once this returns) without sending anything yet."""
        if self._outlet is None:
            self._outlet = self._new_outlet()

    def start(self) -> None:
        """Open the outlet if needed and start sending from a thread."""
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        self.open()
        self._origin = pylsl.local_clock()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._outlet = None  # pylsl destroys the outlet with its last reference

    def _new_outlet(self) -> pylsl.StreamOutlet:
        raise NotImplementedError

    def _run(self) -> None:
        raise NotImplementedError


class Simulator(PacedOutlet):
    """An LSL EEG outlet fed in real time from `synthesize`, on the wall clock
    (`pylsl.local_clock`): sample k is stamped origin + k / rate. Dropouts: the samples are not
    pushed at all (their stamps are skipped). A kill event destroys the outlet for duration_s
    and creates a new one with the same source_id. `plant` adds an asymmetry step while it
    runs (bci/experiment/simulate_protocol.py follows a session's blocks with it)."""

    thread_name = "bci-simulator"

    def __init__(self, config: SimulatorConfig, schedule: Schedule) -> None:
        super().__init__()
        self.config = config
        self.schedule = schedule
        self._rate = config.montage.sample_rate
        self._chunk = max(1, round(config.chunk_s * self._rate))
        self._killed = schedule.sample_ranges(("kill",), self._rate)
        self._silent = schedule.sample_ranges(("kill", "dropout"), self._rate)
        self._dropped = 0
        self._cache_start, self._cache = 0, np.zeros((len(config.channels), 0))
        self._schedule_lock = threading.Lock()  # plant (another thread) <-> synthesis

    @property
    def dropped(self) -> int:
        """Samples skipped by dropouts and kills."""
        return self._dropped

    def _new_outlet(self) -> pylsl.StreamOutlet:
        config = self.config
        return eeg_outlet(config.name, config.source_id, config.channels, self._rate,
                          self._chunk, "Bandmate simulator")  # fmt: skip

    def _run(self) -> None:
        next_index = 0
        while not self._stop.is_set():
            # Sample k exists from its stamp origin + k / rate on, as on a device that sends
            # each chunk the moment its last sample is taken.
            due = int((pylsl.local_clock() - self._origin) * self._rate) + 1
            while next_index + self._chunk <= due:  # catch up whole chunks if we were late
                self._transmit(next_index, self._chunk)
                next_index += self._chunk
            next_push = self._origin + (next_index + self._chunk - 1) / self._rate
            self._stop.wait(max(0.001, next_push - pylsl.local_clock()))

    def plant(self, lsl_time: float, asymmetry: float) -> None:
        """Step the asymmetry to `asymmetry` at `lsl_time`, or at the first sample not sent yet
        if that is later (a step cannot change what was sent)."""
        with self._schedule_lock:
            steps = self.schedule.asymmetry
            sent_s = (self._sent + self._dropped) / self._rate
            at_s = max(lsl_time - self.origin, sent_s, steps[-1].at_s + 1e-3)
            step = AsymmetryStep(at_s, float(np.clip(asymmetry, -1.0, 1.0)))
            self.schedule = replace(self.schedule, asymmetry=(*steps, step))
            self._cache = self._cache[:, :0]  # synthesized ahead with the old schedule

    def _samples(self, start: int, n: int) -> np.ndarray:
        # Synthesize a second at a time: pushes are small, and synthesis doesn't care where
        # a range starts.
        with self._schedule_lock:
            offset = start - self._cache_start
            if offset < 0 or offset + n > self._cache.shape[1]:
                self._cache_start = start
                size = max(n, round(self._rate))
                self._cache = synthesize(self.config, self.schedule, start, size)
                offset = 0
            return self._cache[:, offset : offset + n]

    def _transmit(self, start: int, n: int) -> None:
        indices = np.arange(start, start + n)
        samples = self._samples(start, n).astype(np.float32)
        stamps = self._origin + indices / self._rate
        killed = _in_ranges(indices, self._killed)
        silent = _in_ranges(indices, self._silent)
        # Split at kill boundaries so the outlet dies and returns at the right sample.
        boundaries = [0, *(np.flatnonzero(np.diff(killed)) + 1).tolist(), n]
        for lo, hi in pairwise(boundaries):
            if killed[lo]:
                self._outlet = None
            elif self._outlet is None:
                self._outlet = self._new_outlet()
            keep = lo + np.flatnonzero(~silent[lo:hi])
            if len(keep) and self._outlet is not None:
                self._outlet.push_chunk(
                    np.ascontiguousarray(samples[:, keep].T), stamps[keep].tolist()
                )
            self._sent += len(keep)
            self._dropped += (hi - lo) - len(keep)
