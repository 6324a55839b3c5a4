"""The BCMI loop: LSL EEG -> windows -> quality gate -> FAA -> valence -> music over MIDI.

One clock. Everything runs on LSL's clock (`pylsl.local_clock`): a window's time is the
(time-corrected, dejittered) LSL stamp of its last sample, and the MIDI scheduler runs on
local_clock too, so "window -> MIDI out" latency is one subtraction in the log.

Windows are cut on the sample clock: one every `hop_s` worth of samples received, whenever
the poll happens to run. So the same EEG gives the same windows, features and valences.

Phases. The first `baseline_s` seconds calibrate the participant's FAA mean and SD (clean
windows only); music starts when the baseline ends. A gated window does not move the
valence: it holds, then decays toward neutral (bci/live/faa.py). When the stream is lost the
same happens (the music goes on, drifting to the neutral mode), and EegInput reconnects by
itself when the stream returns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pylsl

from bci.errors import BciError
from bci.live.faa import FaaConfig, ValenceTracker, WindowFeatures, window_features
from bci.live.harmony import HarmonyConfig
from bci.live.lsl_input import EegInput, StreamQuery
from bci.live.mapping import MappingConfig, MusicParams, ParameterMapper
from bci.live.signal_quality import ChannelCheck, GateConfig, GateFlags, check_channels, combine
from bci.montage import MUSE, Montage

log = logging.getLogger("bandmate.bci")


@dataclass(frozen=True)
class BciRunConfig:
    query: StreamQuery = field(default_factory=StreamQuery)
    montage: Montage = MUSE
    faa: FaaConfig = field(default_factory=FaaConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    baseline_s: float = 10.0
    duration_s: float = 0.0  # 0: until stopped
    seed: int = 0
    harmony: HarmonyConfig = field(default_factory=HarmonyConfig)  # rules, or the chord model
    poll_s: float = 0.001  # a window's wait for the poll adds to its latency (bench bci)

    def as_dict(self) -> dict[str, Any]:
        """Every parameter, for the log's first line."""

        def plain(value: Any) -> Any:
            if hasattr(value, "__dataclass_fields__"):
                return {k: plain(getattr(value, k)) for k in value.__dataclass_fields__}
            if isinstance(value, Path):
                return str(value)
            return list(value) if isinstance(value, tuple) else value

        return plain(self)


@dataclass(frozen=True)
class WindowResult:
    lsl_time: float  # LSL stamp of the window's last sample
    phase: str  # "baseline" or "feedback"
    flags: GateFlags
    features: WindowFeatures | None  # None when a channel is flat or holds a NaN or Inf
    valence: float
    arousal: float | None
    params: MusicParams | None  # None during the baseline
    channels: tuple[ChannelCheck, ...]  # left, right, each judged alone (the live status)

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": "window",
            "lsl_time": self.lsl_time,
            "phase": self.phase,
            **(self.features.as_dict() if self.features else {}),
            "gate": self.flags.as_dict(),
            "valence": self.valence,
            "arousal": self.arousal,
            "params": self.params.as_dict() if self.params else None,
        }


class WindowProcessor:
    """Window in, valence and musical parameters out: the pure part of the loop."""

    def __init__(self, config: BciRunConfig):
        self.config = config
        self.tracker = ValenceTracker(config.faa)
        self.mapper = ParameterMapper(config.mapping)
        self.baseline_until: float | None = None  # LSL time the baseline ends
        self.params: MusicParams | None = None

    @property
    def in_baseline(self) -> bool:
        return self.tracker.baseline is None

    def process(
        self, stamps: np.ndarray, left: np.ndarray, right: np.ndarray, dropped_fraction: float
    ) -> WindowResult:
        rate = self.config.montage.sample_rate
        now = float(stamps[-1])
        if self.baseline_until is None:
            self.baseline_until = float(stamps[0]) + self.config.baseline_s
        channels = check_channels(np.stack([left, right]), rate, dropped_fraction, self.config.gate)
        flags = combine(channels)
        band = self.tracker.baseline.alpha_band if self.tracker.baseline else None
        unusable = flags.flatline or flags.non_finite  # no log of zero power, no NaN features
        features = None if unusable else window_features(left, right, rate, self.config.faa, band)
        clean = features if not flags.gated else None
        if self.in_baseline:
            if clean is not None:
                self.tracker.add_baseline(clean)
            if now >= self.baseline_until:
                self._finish_baseline(now)
            return WindowResult(now, "baseline", flags, features, 0.0, None, None, channels)
        valence = self.tracker.update(clean, now)
        self.params = self.mapper.map(valence, self.tracker.arousal)
        return WindowResult(
            now, "feedback", flags, features, valence, self.tracker.arousal, self.params, channels
        )

    def _finish_baseline(self, now: float) -> None:
        try:
            baseline = self.tracker.finish_baseline()
        except ValueError as exc:  # too few clean windows: extend rather than guess
            self.baseline_until = now + self.config.faa.hop_s
            log.warning("baseline extended: %s", exc)
            return
        log.info("baseline done: %s", baseline)
        self.params = self.mapper.map(0.0, None)


class JsonlLog:
    """One JSON object per line, flushed per line so a crash loses at most the line being
    written. A write the disk refuses (full) stops the log, not the music: the error is kept
    in `failure` for whoever runs the loop to report."""

    def __init__(self, path: Path | None):
        self.path = path
        self._file: IO[str] | None = None
        self.failure: OSError | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._file = path.open("a", buffering=1)
            except OSError as exc:
                raise BciError(f"cannot write the log {path}: {exc.strerror}") from None
        self._lock = threading.Lock()  # the MIDI thread logs too

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(line + "\n")
            except OSError as error:
                self.failure, file, self._file = error, self._file, None
                with contextlib.suppress(OSError):  # its buffer cannot reach the disk either
                    file.close()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError as error:
                    self.failure = error


@dataclass
class RunSummary:
    windows: int = 0
    gated: int = 0
    non_finite: int = 0  # windows gated for a NaN or Inf sample
    midi_messages: int = 0
    reconnects: int = 0
    dropped: int = 0
    jumps: int = 0  # steps of the sender's clock taken out of the stamps
    last: WindowResult | None = None


class BciLoop:
    """Polls the EEG input, processes every window as its last sample arrives, and keeps the
    current MusicParams for the music player. `on_window` sees every result."""

    def __init__(
        self,
        config: BciRunConfig,
        log_file: JsonlLog,
        on_window: Callable[[WindowResult], None] | None = None,
    ):
        self.config, self.log = config, log_file
        self.processor = WindowProcessor(config)
        self.on_window = on_window
        self.summary = RunSummary()
        self.stopping = threading.Event()
        self.eeg = EegInput(config.query, config.montage, events=self._input_event)

    def _input_event(self, kind: str, fields: dict[str, object]) -> None:
        self.log.write({"type": "input", "event": kind, "lsl_clock": pylsl.local_clock(), **fields})

    def run(self) -> RunSummary:
        """Until stop(), or duration_s of EEG time after the first window."""
        faa, rate = self.config.faa, self.config.montage.sample_rate
        hop = max(1, round(faa.hop_s * rate))
        size = round(faa.window_s * rate)
        next_end = size  # windows end at received-sample counts size, size + hop, ...
        started: float | None = None
        try:
            while not self.stopping.is_set():
                self.eeg.poll()
                received = self.eeg.stats.received
                while received >= next_end:
                    window = self.eeg.window_at(next_end, faa.window_s)
                    next_end += hop
                    if window is None:
                        continue
                    stamps, left, right = window
                    dropped = self.eeg.dropped_fraction_at(next_end - hop, faa.window_s)
                    result = self.processor.process(stamps, left, right, dropped)
                    self._record(result)
                    started = result.lsl_time if started is None else started
                if not self.eeg.connected and not self.processor.in_baseline:
                    # No windows while the stream is away: keep the music decaying to neutral.
                    now = pylsl.local_clock()
                    valence = self.processor.tracker.update(None, now)
                    self.processor.params = self.processor.mapper.map(valence, None)
                duration = self.config.duration_s
                if duration and started is not None and pylsl.local_clock() - started >= duration:
                    break
                self.stopping.wait(self.config.poll_s)
        finally:
            stats = self.eeg.stats
            self.summary.reconnects, self.summary.dropped = stats.reconnects, stats.dropped
            self.summary.jumps = stats.jumps
            self.eeg.close()
        return self.summary

    def _record(self, result: WindowResult) -> None:
        self.summary.windows += 1
        self.summary.gated += result.flags.gated
        self.summary.non_finite += result.flags.non_finite
        self.summary.last = result
        # When this window's valence and parameters were ready, on the same clock as its
        # samples' stamps: `bandmate bench bci` reads the processing latency from it.
        self.log.write({**result.as_dict(), "processed_at": pylsl.local_clock()})
        if self.on_window is not None:
            self.on_window(result)

    def stop(self) -> None:
        self.stopping.set()
