"""EEG input from Lab Streaming Layer: resolve a stream, keep the montage's channels in a ring.

Modelled on mne-lsl's `StreamLSL`: a preallocated ring (`EegRing`) and a small surface, so
consumers never see LSL chunking. No acquisition thread: the BCI loop calls `poll()`, which
drains the inlet without blocking. Only the search for a lost stream runs in the background.

Timestamps: one clock, `pylsl.local_clock()`, with the sender's time correction applied
(`proc_clocksync | proc_monotonize`). Not `proc_dejitter`: it regresses stamps on the *count* of
samples received, so a 0.5 s dropout smears into stamps drifting apart for many seconds
(measured, pylsl 1.18) and gaps cannot be counted. `NominalGrid` counts gaps on the corrected
stamps and dejitters by smoothing only the nominal grid's offset, so stamps keep their gaps.

Loss: with `recover=False` liblsl raises `LostError` as soon as an outlet vanishes; a stalled
one just sends nothing. After either, or `loss_timeout_s` without a sample, the input is lost
and a background search looks for a *new* outlet instance (another uid) with the same source_id
(or the original query if it had none); a stalled outlet that resumes is taken back. Samples
missed meanwhile are a timestamp gap, counted as dropped. Resolution polls a fresh
`ContinuousResolver` against our own deadline: with liblsl 1.18, a one-shot resolve that found
nothing right after one that found a stream took 5.5 s, not its 0.5 s timeout.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pylsl
from pylsl.util import LostError

from bci.errors import BciError
from bci.montage import Montage

log = logging.getLogger("bandmate.bci")

PROCESSING_FLAGS = pylsl.proc_clocksync | pylsl.proc_monotonize
GAP_PERIODS = 1.5  # a stamp interval above this many sample periods means samples are missing
OPEN_TIMEOUT_S = 2.0

EventSink = Callable[[str, dict[str, object]], None]
OpenedInlet = tuple[pylsl.StreamInlet, pylsl.StreamInfo]
Search = tuple[threading.Event, "queue.SimpleQueue[OpenedInlet]"]  # stop flag, found inlet


@dataclass(frozen=True)
class StreamQuery:
    name: str | None = None
    type: str | None = "EEG"
    source_id: str | None = None
    timeout_s: float = 5.0

    def predicate(self) -> str:
        """The XPath predicate liblsl matches stream descriptions against."""
        fields = (("name", self.name), ("type", self.type), ("source_id", self.source_id))
        if any("'" in (value or "") for _, value in fields):  # XPath 1.0 cannot escape it
            raise BciError(f"cannot search LSL for a quote character: {self.describe()}")
        terms = [f"{key}='{value}'" for key, value in fields if value]
        return " and ".join(terms) or "starts-with(name,'')"  # the latter matches any stream

    def describe(self) -> str:
        pairs = (("name", self.name), ("source_id", self.source_id))
        named = " and ".join(f"{key} '{value}'" for key, value in pairs if value)
        if named and self.type:
            return f"{named} (type {self.type})"
        return named or (f"type {self.type}" if self.type else "any name")


def _find_streams(
    predicate: str, timeout_s: float, exclude_uids: frozenset[str], stop: threading.Event
) -> list[pylsl.StreamInfo]:
    resolver = pylsl.ContinuousResolver(pred=predicate)
    deadline = pylsl.local_clock() + timeout_s
    while True:
        found = [info for info in resolver.results() if info.uid() not in exclude_uids]
        if found or pylsl.local_clock() >= deadline or stop.is_set():
            return found
        time.sleep(0.005)


def resolve_stream(query: StreamQuery) -> pylsl.StreamInfo:
    """The first stream matching `query`; BciError if none answers within its timeout.
    The result is LSL's short description: it has no `desc()` (channel labels) until an inlet
    fetches the full one."""
    found = _find_streams(query.predicate(), query.timeout_s, frozenset(), threading.Event())
    if not found:
        raise BciError(f"no LSL stream with {query.describe()} found in {query.timeout_s:g} s")
    if len(found) > 1:
        others = ", ".join(f"{info.name()} ({info.hostname()})" for info in found[1:])
        log.warning("several LSL streams match; using %s, ignoring %s", found[0].name(), others)
    return found[0]


def channel_labels(info: pylsl.StreamInfo) -> list[str]:
    """Labels from desc/channels/channel/label; "0".."n-1" when they are missing or incomplete."""
    labels = []
    channel = info.desc().child("channels").child("channel")
    while not channel.empty():
        labels.append(channel.child_value("label"))
        channel = channel.next_sibling("channel")
    if len(labels) != info.channel_count() or not all(labels):
        return [str(index) for index in range(info.channel_count())]
    return labels


class EegRing:
    """Preallocated ring of (timestamps, samples [channels]); the newest N read as arrays."""

    def __init__(self, channels: int, capacity: int) -> None:
        self.capacity = capacity
        self._timestamps = np.zeros(capacity)
        self._samples = np.zeros((channels, capacity))
        self._total = 0  # samples ever written; the next one goes to slot total % capacity

    @property
    def total(self) -> int:
        return self._total

    def write(self, timestamps: np.ndarray, samples: np.ndarray) -> None:
        """Append `timestamps` [n] and `samples` [channels, n]."""
        n = len(timestamps)
        if samples.shape != (len(self._samples), n):
            raise ValueError(f"samples {samples.shape} do not match {n} stamps")
        kept = np.arange(max(0, n - self.capacity), n)  # older ones would be overwritten anyway
        self._timestamps[(self._total + kept) % self.capacity] = timestamps[kept]
        self._samples[:, (self._total + kept) % self.capacity] = samples[:, kept]
        self._total += n

    def latest(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the newest n (fewer if not filled): (timestamps [n], samples [channels, n])."""
        return self.ending_at(self._total, n)

    def ending_at(self, end: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Like `latest`, for the n samples before sample number `end` (counting every sample
        ever written from 0); only those still held."""
        end = min(end, self._total)
        slots = np.arange(max(end - n, self._total - self.capacity, 0), end) % self.capacity
        return self._timestamps[slots], self._samples[:, slots]


class NominalGrid:
    """Places clock-corrected stamps on the nominal grid. An interval of more than 1.5 periods
    between consecutive stamps means `round(interval * rate) - 1` missing samples; each sample
    gets its grid index (gaps counted) and the stamp `offset + index / rate`, the offset
    smoothing the residuals (time constant `smoothing_s`). Steps follow stamp intervals, not the
    grid, so a device a little off its nominal rate shows no false gaps."""

    RESYNC_S = 0.1  # residuals this large mean a new timeline (e.g. another sender): restart

    def __init__(self, rate: float, smoothing_s: float = 1.0) -> None:
        self.rate = rate
        self.smoothing_s = smoothing_s
        self._index = 0  # grid index of the newest sample
        self._last_stamp: float | None = None
        self._offset: float | None = None

    def place(self, stamps: np.ndarray) -> tuple[np.ndarray, int]:
        """(dejittered stamps, samples missing before and between these) for stamps [n > 0]."""
        period = 1.0 / self.rate
        previous = stamps[0] - period if self._last_stamp is None else self._last_stamp
        intervals = np.diff(stamps, prepend=previous)
        steps = np.where(intervals > GAP_PERIODS * period, np.rint(intervals * self.rate), 1)
        indices = self._index + np.cumsum(steps.astype(np.int64))
        missing = int(indices[-1] - self._index) - len(stamps)
        residual = float(np.mean(stamps - indices * period))
        if self._offset is None or abs(residual - self._offset) > self.RESYNC_S:
            self._offset = residual
        else:
            gain = -math.expm1(-len(stamps) / (self.smoothing_s * self.rate))
            self._offset += gain * (residual - self._offset)
        self._index, self._last_stamp = int(indices[-1]), float(stamps[-1])
        return self._offset + indices * period, missing


@dataclass
class InputStats:
    received: int = 0
    dropped: int = 0  # samples missing, from timestamp gaps > 1.5 sample periods
    reconnects: int = 0  # new outlet instances connected to after a loss
    stream_lost_at: float | None = None  # local_clock of the most recent loss


def _open_inlet(info: pylsl.StreamInfo, max_buflen_s: int, flush: bool) -> OpenedInlet:
    """An open inlet and the stream's full description (with labels). `flush` drops what came
    while opening: right for a fresh start, not when catching up after a loss."""
    inlet = pylsl.StreamInlet(
        info, max_buflen=max_buflen_s, recover=False, processing_flags=PROCESSING_FLAGS
    )
    full_info = inlet.info(timeout=OPEN_TIMEOUT_S)
    inlet.open_stream(timeout=OPEN_TIMEOUT_S)
    # proc_clocksync holds samples back until the first clock offset is measured (~0.5 s).
    inlet.time_correction(timeout=OPEN_TIMEOUT_S)
    if flush:
        inlet.flush()
    return inlet, full_info


def _montage_rows(inlet: pylsl.StreamInlet, info: pylsl.StreamInfo, montage: Montage) -> list[int]:
    """Row of each montage channel in the stream; on a mismatch, closes the inlet and raises."""
    try:
        if info.channel_format() == pylsl.cf_string:
            raise BciError(f"stream '{info.name()}' carries strings, not EEG samples")
        return montage.rows_in(info.name(), channel_labels(info), info.nominal_srate())
    except BciError:
        inlet.close_stream()
        raise


class EegInput:
    """Pulls chunks from an LSL inlet into an EegRing, keeping the montage's channels (left,
    right, references; re-referenced on the way out). Use from one thread, calling `poll()`
    often: loss is detected there. Events, also logged: connected, dropped, lost, resumed,
    reconnected."""

    def __init__(
        self,
        query: StreamQuery,
        montage: Montage,
        buffer_s: float = 30.0,
        loss_timeout_s: float = 1.0,
        events: EventSink | None = None,
    ) -> None:
        self.montage = montage
        self.loss_timeout_s = loss_timeout_s
        self._events = events
        self._max_buflen_s = max(1, math.ceil(buffer_s))
        info = resolve_stream(query)
        source_id = info.source_id()  # when lost, look for the stream by it if it has one
        self._search_predicate = (
            StreamQuery(type=None, source_id=source_id) if source_id else query
        ).predicate()
        try:
            inlet, self._info = _open_inlet(info, self._max_buflen_s, flush=True)
        except (TimeoutError, RuntimeError) as error:  # LostError is a RuntimeError
            raise BciError(f"stream '{info.name()}' went away while connecting ({error})") from None
        self._inlet: pylsl.StreamInlet | None = inlet
        self._rows = _montage_rows(inlet, self._info, montage)
        self._ring = EegRing(len(self._rows), max(1, round(buffer_s * montage.sample_rate)))
        self._grid = NominalGrid(montage.sample_rate)
        self._stats = InputStats()
        self._lost = False
        self._search: Search | None = None  # only while lost
        self._last_sample_at = pylsl.local_clock()
        self._emit("connected", stream=info.name(), source_id=info.source_id())

    def _emit(self, kind: str, **fields: object) -> None:
        level = logging.WARNING if kind in ("lost", "dropped") else logging.INFO
        log.log(level, "EEG input %s: %s", kind, fields)
        if self._events is not None:
            self._events(kind, fields)

    def poll(self) -> int:
        """Pull whatever has arrived, without blocking; the number of samples added. Raises
        BciError if a montage channel carries NaN or Inf."""
        self._adopt_found_stream()
        added = self._drain(self._inlet) if self._inlet is not None else 0
        now = pylsl.local_clock()
        silent = self._inlet is None or now - self._last_sample_at > self.loss_timeout_s
        if added:
            self._last_sample_at = now
            if self._lost:
                self._lost = False
                self._stop_search()
                self._emit("resumed", stream=self._info.name())
        elif silent and not self._lost:
            self._declare_lost(now)
        return added

    def _drain(self, inlet: pylsl.StreamInlet) -> int:
        added = 0
        while True:
            try:
                chunk, stamps = inlet.pull_chunk(0.0, 1024, as_numpy=True)
            except LostError:  # the outlet is gone (liblsl drops what the inlet still held)
                inlet.close_stream()
                self._inlet = None
                return added
            if len(stamps) == 0:
                return added
            samples = np.asarray(chunk[:, self._rows], dtype=np.float64).T  # [channels, n]
            if not np.isfinite(samples).all():
                self._reject_non_finite(samples, stamps)
            dejittered, missing = self._grid.place(stamps)
            self._ring.write(dejittered, samples)
            self._stats.received += len(stamps)
            added += len(stamps)
            if missing:
                self._stats.dropped += missing
                self._emit("dropped", samples=missing, before=float(dejittered[0]))

    def _reject_non_finite(self, samples: np.ndarray, stamps: np.ndarray) -> None:
        row, column = np.argwhere(~np.isfinite(samples))[0]
        raise BciError(
            f"stream '{self._info.name()}' sent {samples[row, column]} (NaN/Inf) on channel "
            f"{self.montage.channels[row]} at t={stamps[column]:.3f}; check that channel's sender"
        )

    def _declare_lost(self, now: float) -> None:
        self._lost = True
        self._stats.stream_lost_at = now
        self._emit("lost", stream=self._info.name(), silent_s=round(now - self._last_sample_at, 3))
        search: Search = (threading.Event(), queue.SimpleQueue())
        self._search = search
        args = (self._info.uid(), search)
        threading.Thread(target=self._find_again, args=args, daemon=True).start()

    def _find_again(self, lost_uid: str, search: Search) -> None:
        """Background: find a new instance of the stream and open it, so poll() never blocks."""
        stop, found = search
        while not stop.is_set():
            streams = _find_streams(self._search_predicate, 1.0, frozenset({lost_uid}), stop)
            if not streams or stop.is_set():
                continue
            try:
                found.put(_open_inlet(streams[0], self._max_buflen_s, flush=False))
                return
            except (TimeoutError, RuntimeError) as error:  # it vanished again: keep looking
                log.debug("could not open %s: %s", streams[0].name(), error)

    def _adopt_found_stream(self) -> None:
        if self._search is None or self._search[1].empty():
            return
        inlet, info = self._search[1].get()
        self._stop_search()
        rows = _montage_rows(inlet, info, self.montage)  # it may return with other channels
        if self._inlet is not None:
            self._inlet.close_stream()
        self._inlet, self._info, self._rows = inlet, info, rows
        self._lost = False
        self._last_sample_at = pylsl.local_clock()
        self._stats.reconnects += 1
        self._emit("reconnected", stream=info.name(), source_id=info.source_id())

    def _stop_search(self) -> None:
        if self._search is not None:  # an inlet it still opens is dropped with its queue
            self._search[0].set()  # the thread ends within one resolver poll or inlet open
            self._search = None

    @property
    def connected(self) -> bool:
        return self._inlet is not None and not self._lost

    @property
    def stats(self) -> InputStats:
        """A snapshot."""
        return replace(self._stats)

    @property
    def info(self) -> pylsl.StreamInfo:
        """The full description (labels included) of the stream now or last connected."""
        return self._info

    def window(self, seconds: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """`window_at` the newest sample."""
        return self.window_at(self._ring.total, seconds)

    def window_at(
        self, end: int, seconds: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(timestamps [n], left [n], right [n]), re-referenced, of the n = round(seconds * rate)
        samples received before received sample number `end` (as counted by `stats.received`);
        None unless all n have arrived and are still held. Across a gap they span more than
        `seconds`: check `dropped_fraction_at`."""
        n = round(seconds * self.montage.sample_rate)
        stamps, samples = self._ring.ending_at(end, n)
        if n < 1 or len(stamps) < n or end > self._ring.total:
            return None
        left, right = samples[0], samples[1]
        if self.montage.reference:
            reference = samples[2:].mean(axis=0)
            left, right = left - reference, right - reference
        return stamps, left, right

    def dropped_fraction(self, seconds: float) -> float:
        """`dropped_fraction_at` the newest sample: an ongoing loss counts once it is over."""
        return self.dropped_fraction_at(self._ring.total, seconds)

    def dropped_fraction_at(self, end: int, seconds: float) -> float:
        """Missing / expected samples in the `seconds` of stream time ending at received sample
        number `end` (the grid slots of that time, or since the first sample if fewer)."""
        rate = self.montage.sample_rate
        slots = min(round(seconds * rate), self._ring.capacity)
        stamps, _ = self._ring.ending_at(end, slots)
        if len(stamps) == 0:
            return 0.0
        slots = min(slots, round((stamps[-1] - stamps[0]) * rate) + 1)
        inside = np.count_nonzero(stamps > stamps[-1] - (slots - 0.5) / rate)
        return (slots - int(inside)) / slots

    def close(self) -> None:
        self._stop_search()
        if self._inlet is not None:
            self._inlet.close_stream()
            self._inlet = None
