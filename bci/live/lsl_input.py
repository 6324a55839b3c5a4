"""EEG input from Lab Streaming Layer: resolve a stream, keep the montage's channels in a ring.

Modelled on mne-lsl's `StreamLSL`: a preallocated ring (`EegRing`) and a small surface, so
consumers never see LSL chunking. No acquisition thread: the BCI loop calls `poll()`, which
drains the inlet without blocking. Only the search for a lost stream runs in the background.

Timestamps: one clock, `pylsl.local_clock()`, with the sender's time correction applied
(`proc_clocksync` only). `NominalGrid` (bci/live/sample_grid.py) counts gaps on the corrected
stamps, tolerates jitter, takes out jumps of the sender's clock, and dejitters by smoothing only the
nominal grid's offset, so stamps keep their gaps.

Samples are taken as they come: a NaN or Inf on a montage channel is counted and reported
once per run of them, and the windows holding it are gated by the loop (bci/live/signal_quality.py).

Loss: with `recover=False` liblsl raises `LostError` as soon as an outlet vanishes; a stalled
one just sends nothing. After either, or `loss_timeout_s` without a sample, the input is lost
and a background search looks for a *new* outlet instance (another uid) with the same source_id
(or the original query if it had none); a stalled outlet that resumes is taken back. Samples
missed meanwhile are a timestamp gap, counted as dropped. A stream that returns with other
channels or another rate is reported once and passed over; the search goes on for the right
one. Resolution polls a fresh
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
from bci.live.eeg_ring import EegRing
from bci.live.sample_grid import NominalGrid, Placement
from bci.montage import Montage

log = logging.getLogger("bandmate.bci")

# No proc_monotonize: it would hide a step back of the sender's clock (bci/live/sample_grid.py).
PROCESSING_FLAGS = pylsl.proc_clocksync
OPEN_TIMEOUT_S = 2.0
WARNINGS = ("lost", "dropped", "jumped", "non_finite", "mismatched")  # events logged as such

EventSink = Callable[[str, dict[str, object]], None]
OpenedInlet = tuple[pylsl.StreamInlet, pylsl.StreamInfo]
OpenedStream = tuple[pylsl.StreamInlet, pylsl.StreamInfo, list[int]]  # with the montage's rows
# The stop flag, and what the search found: a stream to adopt, or why one did not fit.
Search = tuple[threading.Event, "queue.SimpleQueue[OpenedStream | str]"]


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


@dataclass
class InputStats:
    received: int = 0
    dropped: int = 0  # samples missing, from timestamp gaps (bci/live/sample_grid.py)
    reconnects: int = 0  # new outlet instances connected to after a loss
    jumps: int = 0  # steps of the sender's clock, taken out of the stamps
    non_finite: int = 0  # samples with NaN or Inf on a montage channel
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
    often: loss is detected there. Events, also logged: connected, dropped, jumped,
    non_finite, lost, resumed, mismatched, reconnected."""

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
        self._last_sample_at = pylsl.local_clock()  # for the loss timeout; reset on reconnect
        self._last_arrival = self._last_sample_at  # for the grid: when samples last came
        self._non_finite_run = False  # the newest sample had a NaN or Inf
        self._emit("connected", stream=info.name(), source_id=info.source_id())

    def _emit(self, kind: str, **fields: object) -> None:
        level = logging.WARNING if kind in WARNINGS else logging.INFO
        log.log(level, "EEG input %s: %s", kind, fields)
        if self._events is not None:
            self._events(kind, fields)

    def poll(self) -> int:
        """Pull whatever has arrived, without blocking; the number of samples added."""
        self._adopt_found_stream()
        now = pylsl.local_clock()
        inlet = self._inlet
        added = self._drain(inlet, now - self._last_arrival) if inlet is not None else 0
        silent = self._inlet is None or now - self._last_sample_at > self.loss_timeout_s
        if added:
            self._last_sample_at = self._last_arrival = now
            if self._lost:
                self._lost = False
                self._stop_search()
                self._emit("resumed", stream=self._info.name())
        elif silent and not self._lost:
            self._declare_lost(now)
        return added

    def _drain(self, inlet: pylsl.StreamInlet, waited_s: float) -> int:
        """Everything the inlet holds; all of it arrived within `waited_s` of the last poll
        that found samples, which bounds how many of them can be missing."""
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
            placed = self._grid.place(stamps, waited_s)
            self._ring.write(placed.stamps, samples, placed.indices)
            self._stats.received += len(stamps)
            added += len(stamps)
            self._note(placed, samples)

    def _note(self, placed: Placement, samples: np.ndarray) -> None:
        """Count and report what the chunk's stamps and values say about the stream."""
        if placed.missing:
            self._stats.dropped += placed.missing
            self._emit("dropped", samples=placed.missing, before=float(placed.stamps[0]))
        for jump in placed.jumps:
            self._stats.jumps += 1
            self._emit("jumped", by_s=round(jump.by_s, 6), at=jump.at, action="taken out")
        bad = ~np.isfinite(samples)  # [channels, n]
        bad_samples = bad.any(axis=0)
        if bad_samples.any():
            self._stats.non_finite += int(bad_samples.sum())
            if not self._non_finite_run:  # once per run of them, not per chunk of a NaN stream
                column = int(np.argmax(bad_samples))  # the first of them, and its channel
                row = int(np.argmax(bad[:, column]))
                self._emit("non_finite", channel=self.montage.channels[row],
                           value=str(samples[row, column]), at=float(placed.stamps[column]),
                           action="windows holding it are gated")  # fmt: skip
        self._non_finite_run = bool(bad_samples[-1])

    def _declare_lost(self, now: float) -> None:
        self._lost = True
        self._stats.stream_lost_at = now
        self._emit("lost", stream=self._info.name(), silent_s=round(now - self._last_sample_at, 3))
        search: Search = (threading.Event(), queue.SimpleQueue())
        self._search = search
        args = (self._info.uid(), search)
        threading.Thread(target=self._find_again, args=args, daemon=True).start()

    def _find_again(self, lost_uid: str, search: Search) -> None:
        """Background: find a new instance of the stream and open it, so poll() never blocks.
        One that returns with other channels or another rate is reported and passed over."""
        stop, found = search
        passed_over = {lost_uid}
        while not stop.is_set():
            streams = _find_streams(self._search_predicate, 1.0, frozenset(passed_over), stop)
            if not streams or stop.is_set():
                continue
            try:
                inlet, info = _open_inlet(streams[0], self._max_buflen_s, flush=False)
            except (TimeoutError, RuntimeError) as error:  # it vanished again: keep looking
                log.debug("could not open %s: %s", streams[0].name(), error)
                continue
            try:
                rows = _montage_rows(inlet, info, self.montage)
            except BciError as error:
                passed_over.add(info.uid())
                found.put(str(error))
                continue
            found.put((inlet, info, rows))
            return

    def _adopt_found_stream(self) -> None:
        if self._search is None or self._search[1].empty():
            return
        found = self._search[1].get()
        if isinstance(found, str):  # the search goes on
            self._emit("mismatched", problem=found, action="waiting for a stream that fits")
            return
        inlet, info, rows = found
        self._stop_search()
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
        slots = min(round(seconds * self.montage.sample_rate), self._ring.capacity)
        indices = self._ring.indices_ending_at(end, slots)
        if len(indices) == 0:
            return 0.0
        # Grid indices strictly increase, so the fraction is within [0, 1] whatever the stamps.
        slots = min(slots, int(indices[-1] - indices[0]) + 1)
        inside = np.count_nonzero(indices > indices[-1] - slots)
        return (slots - int(inside)) / slots

    def close(self) -> None:
        self._stop_search()
        if self._inlet is not None:
            self._inlet.close_stream()
            self._inlet = None
