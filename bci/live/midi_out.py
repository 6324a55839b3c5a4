"""MIDI output: a precise-time scheduler for composed notes, a virtual port, and the glue.

Timing. `MidiScheduler` keeps one heap of timed messages, ordered by (due time, kind, arrival).
Its thread sleeps on a condition variable (so schedule() and stop() wake it) until
`lookahead_s` before the next message, wakes, re-reads the clock, sleeps again until ~1 ms
before, then spins on the clock for the rest. Why: OS sleeps end 0.1-1 ms late (more on a
loaded machine), spinning brings the error well under 1 ms, and spinning only the last
millisecond keeps the CPU cost small. The early wake-up re-reads the injected clock close to
the deadline, so a clock that does not run at the rate of the OS timer (an audio or LSL clock)
still costs no accuracy. The spin holds the GIL on purpose: yielding it could hand it to a
busy thread for a whole switch interval (5 ms).

At equal times note-offs leave before note-ons (why: a repeated pitch's new note must not be
cut by the previous note's off). The scheduler counts sounding notes, so stop() can release
exactly those, then sends all-notes-off on every channel it used, for a synth that missed one.

MIDI clock (optional): 0xFA at start(), 0xF8 24 times per beat from the first scheduled bar
on, at each bar's tempo (a tempo map built from schedule() calls), and 0xFC at stop(). Ticks
are computed from the tempo map when due, never queued ahead, so a tempo change is exact.

`MusicPlayer` asks a params provider once per bar, composes the bar and schedules it
`schedule_ahead_s` before it starts: a change of valence is heard from the next bar on.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import rtmidi

from bci.live.composer import Composer, NoteEvent
from bci.live.library_output import library_output_caught
from bci.live.mapping import MusicParams

log = logging.getLogger(__name__)

NOTE_OFF, NOTE_ON, CONTROL_CHANGE = 0x80, 0x90, 0xB0
ALL_NOTES_OFF = 123  # a controller number
TIMING_CLOCK, START, STOP = 0xF8, 0xFA, 0xFC
CLOCKS_PER_BEAT = 24
SPIN_S = 0.001  # the last stretch before a message is spun, not slept
# Order among messages due at the same time: offs, then realtime (clock), then ons.
ORDER_NOTE_OFF, ORDER_REALTIME, ORDER_NOTE_ON = 0, 1, 2

RTMIDI_APIS: dict[str, int] = {
    "jack": rtmidi.API_UNIX_JACK,
    "alsa": rtmidi.API_LINUX_ALSA,
    "coremidi": rtmidi.API_MACOSX_CORE,
    "auto": rtmidi.API_UNSPECIFIED,
}


class MidiOutError(Exception):
    """The MIDI output could not be opened or used; the message is one line for the user."""


class MidiSink(Protocol):
    def send(self, message: list[int]) -> None: ...

    def close(self) -> None: ...


class RtMidiSink:
    """A virtual MIDI output port (JACK on Linux by default; 'alsa', 'coremidi' or 'auto')."""

    def __init__(self, port_name: str, api: str = "jack") -> None:
        if api not in RTMIDI_APIS:
            raise MidiOutError(f"unknown MIDI API {api!r}; choose one of {sorted(RTMIDI_APIS)}")
        rtmidi_api = RTMIDI_APIS[api]
        # Why check: python-rtmidi silently falls back to another API when asked for one it
        # was built without, and the port would appear somewhere the user is not looking.
        if rtmidi_api != rtmidi.API_UNSPECIFIED and rtmidi_api not in rtmidi.get_compiled_api():
            raise MidiOutError(f"python-rtmidi on this machine has no {api} support")
        try:
            with library_output_caught():  # libjack's and ALSA's complaints: ours is one line
                self.midi_out = rtmidi.MidiOut(rtmidi_api, name=port_name)
                self.midi_out.open_virtual_port(port_name)
        except rtmidi.RtMidiError as error:
            fix = "; start jackd first" if api == "jack" else ""
            raise MidiOutError(
                f"cannot open MIDI output {port_name!r} ({api}): {error}{fix}"
            ) from error
        self.port_name = port_name
        self.closed = False

    def send(self, message: list[int]) -> None:
        self.midi_out.send_message(message)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.midi_out.close_port()
            self.midi_out.delete()


@dataclass(frozen=True)
class SentMessage:
    due: float  # when it was meant to leave (clock seconds)
    sent: float  # when it actually left
    message: tuple[int, ...]


@dataclass(frozen=True)
class TempoSegment:
    """From `start_time` (the time of `first_beat`) on, beats last 60 / tempo_bpm seconds."""

    start_time: float
    first_beat: float
    tempo_bpm: float

    def time_of(self, beat: float) -> float:
        return self.start_time + (beat - self.first_beat) * 60.0 / self.tempo_bpm


class MidiScheduler:
    """Plays NoteEvents at precise times. A thread wakes `lookahead_s` early (sleep), then spins the
    last ~1 ms (why: sleep granularity is ~0.1-1 ms, spinning brings jitter well under 1 ms).

    The caller owns the sink (and closes it). on_sent is called for every message sent, from the
    scheduler thread, except for the messages stop() sends, which come from stop()'s caller.
    """

    def __init__(
        self,
        sink: MidiSink,
        clock: Callable[[], float] = time.perf_counter,
        lookahead_s: float = 0.05,
        midi_clock: bool = False,
        on_sent: Callable[[SentMessage], None] | None = None,
    ) -> None:
        if lookahead_s < SPIN_S:
            raise ValueError(f"lookahead_s must be at least {SPIN_S} s, got {lookahead_s}")
        self.sink = sink
        self.clock = clock
        self.lookahead_s = lookahead_s
        self.midi_clock = midi_clock
        self.on_sent = on_sent
        self.wakeup = threading.Condition()
        self.queue: list[tuple[float, int, int, tuple[int, ...]]] = []  # (due, order, arrival, msg)
        self.arrivals = 0
        self.tempo_map: list[TempoSegment] = []  # sorted by first_beat
        self.next_tick = 0  # index of the next MIDI clock tick, in 1/24 beats
        self.sounding: Counter[tuple[int, int]] = Counter()  # (channel, pitch) -> note-ons
        self.channels_used: set[int] = set()
        self.thread: threading.Thread | None = None
        self.running = False
        self.failure: BaseException | None = None  # what ended the thread, if not stop()

    def start(self) -> None:
        """Start the thread (a no-op when running); with midi_clock, send 0xFA first."""
        with self.wakeup:
            if self.running:
                return
            self.running = True
            if self.midi_clock:
                self.push(self.clock(), ORDER_REALTIME, (START,))
        self.thread = threading.Thread(target=self.run, name="bci-midi-scheduler", daemon=True)
        self.thread.start()

    def schedule(
        self, events: list[NoteEvent], bar_start_time: float, tempo_bpm: float, first_beat: float
    ) -> None:
        """Queue a note-on at each onset and a note-off at onset + duration, where an onset's time
        is bar_start_time + (event.beat - first_beat) * 60 / tempo_bpm."""
        if not tempo_bpm > 0:
            raise ValueError(f"tempo_bpm must be positive, got {tempo_bpm}")
        segment = TempoSegment(bar_start_time, first_beat, tempo_bpm)
        with self.wakeup:
            for event in events:
                onset = segment.time_of(event.beat)
                release = segment.time_of(event.beat + event.duration)
                on = (NOTE_ON | event.channel, event.pitch, event.velocity)
                self.push(onset, ORDER_NOTE_ON, on)
                self.push(release, ORDER_NOTE_OFF, (NOTE_OFF | event.channel, event.pitch, 0))
            if self.midi_clock:
                self.add_tempo_segment(segment)
            self.wakeup.notify()

    def pending(self) -> int:
        """Messages queued and not yet sent (MIDI clock ticks are not queued, so not counted)."""
        with self.wakeup:
            return len(self.queue)

    def stop(self) -> None:
        """Stop the thread, drop what is queued, release every sounding note, send all-notes-off
        on each channel used, and with midi_clock send 0xFC. A no-op when not running."""
        with self.wakeup:
            if not self.running:
                return
            self.running = False
            self.queue.clear()
            self.tempo_map.clear()  # why: a restart must not catch up on ticks of the old map
            self.wakeup.notify()
        if self.thread is not None:
            self.thread.join()
        releases: list[tuple[int, ...]] = [
            (NOTE_OFF | ch, pitch, 0) for (ch, pitch), n in self.sounding.items() if n > 0
        ]
        releases += [(CONTROL_CHANGE | ch, ALL_NOTES_OFF, 0) for ch in sorted(self.channels_used)]
        if self.midi_clock:
            releases.append((STOP,))
        for message in releases:
            try:
                now = self.clock()
                self.send(now, message)
            except Exception as error:  # why: stop() is cleanup and must reach the end
                log.warning("could not send %s while stopping: %s", message, error)
        self.sounding.clear()

    # The scheduler thread and its helpers; the helpers run with self.wakeup held.

    def push(self, due: float, order: int, message: tuple[int, ...]) -> None:
        heapq.heappush(self.queue, (due, order, self.arrivals, message))
        self.arrivals += 1

    def add_tempo_segment(self, segment: TempoSegment) -> None:
        if not self.tempo_map:
            self.next_tick = math.ceil(segment.first_beat * CLOCKS_PER_BEAT)
        beats = [s.first_beat for s in self.tempo_map]
        index = bisect.bisect_left(beats, segment.first_beat)
        # A bar scheduled again replaces its segment rather than adding a second one.
        if index < len(beats) and beats[index] == segment.first_beat:
            self.tempo_map[index] = segment
        else:
            self.tempo_map.insert(index, segment)

    def next_tick_due(self) -> float | None:
        if not self.tempo_map:
            return None
        beat = self.next_tick / CLOCKS_PER_BEAT
        # Segments wholly before the next tick are done with.
        while len(self.tempo_map) > 1 and self.tempo_map[1].first_beat <= beat:
            self.tempo_map.pop(0)
        return self.tempo_map[0].time_of(beat)

    def next_due(self) -> float | None:
        tick_due = self.next_tick_due()
        dues = [] if tick_due is None else [tick_due]
        if self.queue:
            dues.append(self.queue[0][0])
        return min(dues) if dues else None

    def take_due(self, now: float) -> list[tuple[float, tuple[int, ...]]]:
        """Everything due by `now`, in sending order (ticks merged with the queue)."""
        taken: list[tuple[float, int, tuple[int, ...]]] = []
        while self.queue and self.queue[0][0] <= now:
            due, order, _, message = heapq.heappop(self.queue)
            taken.append((due, order, message))
        while (tick_due := self.next_tick_due()) is not None and tick_due <= now:
            taken.append((tick_due, ORDER_REALTIME, (TIMING_CLOCK,)))
            self.next_tick += 1
        taken.sort(key=lambda item: (item[0], item[1]))  # stable: arrival order kept at ties
        return [(due, message) for due, _, message in taken]

    def run(self) -> None:
        try:
            while True:
                with self.wakeup:
                    if not self.running:
                        return
                    due = self.next_due()
                    if due is None:
                        self.wakeup.wait()
                        continue
                    remaining = due - self.clock()
                    if remaining > SPIN_S:
                        # Far off: wake lookahead_s early and look again; close: sleep to ~1 ms.
                        early = self.lookahead_s if remaining > self.lookahead_s else SPIN_S
                        self.wakeup.wait(remaining - early)
                        continue
                while self.clock() < due:
                    pass  # spin (see the module docstring)
                with self.wakeup:
                    batch = self.take_due(self.clock()) if self.running else []
                for message_due, message in batch:
                    self.send(message_due, message)
        except Exception as error:
            self.failure = error
            log.exception("the MIDI scheduler stopped")

    def send(self, due: float, message: tuple[int, ...]) -> None:
        sent = self.clock()
        self.sink.send(list(message))
        status = message[0] & 0xF0
        if status == NOTE_ON and message[2] > 0:
            self.sounding[(message[0] & 0x0F, message[1])] += 1
            self.channels_used.add(message[0] & 0x0F)
        elif status in (NOTE_OFF, NOTE_ON):
            key = (message[0] & 0x0F, message[1])
            self.sounding[key] = max(0, self.sounding[key] - 1)
        if self.on_sent is not None:
            self.on_sent(SentMessage(due, sent, message))


class MusicPlayer:
    """Glue: every bar, asks a params provider for the current MusicParams, composes the bar and
    schedules it ahead of time, so changes take effect at the next bar boundary.

    start() also starts the scheduler if it is not running, and stop() stops it (which
    releases the sounding notes); the caller still owns and closes the sink.
    """

    def __init__(
        self,
        composer: Composer,
        scheduler: MidiScheduler,
        params: Callable[[], MusicParams],
        clock: Callable[[], float] = time.perf_counter,
        schedule_ahead_s: float = 0.2,
    ) -> None:
        self.composer = composer
        self.scheduler = scheduler
        self.params = params
        self.clock = clock
        self.schedule_ahead_s = schedule_ahead_s
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.next_bar_start = 0.0
        self.composed_bars = 0
        self.last_params: MusicParams | None = None
        self.failure: BaseException | None = None  # what ended the thread, if not stop()

    @property
    def bars(self) -> int:
        """Bars composed and scheduled so far."""
        return self.composed_bars

    @property
    def current(self) -> MusicParams | None:
        """The params of the last composed bar."""
        return self.last_params

    def start(self) -> None:
        if self.thread is not None:
            return
        self.scheduler.start()
        # Bar 0 starts one schedule_ahead_s from now, so it is composed as early as every bar.
        self.next_bar_start = self.clock() + self.schedule_ahead_s
        self.thread = threading.Thread(target=self.run, name="bci-music-player", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
        self.scheduler.stop()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                wait_s = self.next_bar_start - self.schedule_ahead_s - self.clock()
                if wait_s > 0:
                    self.stopping.wait(wait_s)
                else:
                    self.compose_next_bar()
        except Exception as error:
            self.failure = error
            log.exception("the music player stopped")

    def compose_next_bar(self) -> None:
        now = self.clock()
        if self.next_bar_start < now:
            # Late (a slow provider, a stalled machine): start the bar a little later rather
            # than send its first notes in a burst.
            log.warning("bar %d was %.3f s late; shifting it", self.bars, now - self.next_bar_start)
            self.next_bar_start = now + self.schedule_ahead_s / 2
        params = self.params()
        bar = self.composed_bars
        beats_per_bar = self.composer.beats_per_bar
        events = self.composer.compose_bar(bar, params)
        self.scheduler.schedule(events, self.next_bar_start, params.tempo_bpm, bar * beats_per_bar)
        # The same arithmetic as TempoSegment.time_of, so the next bar starts exactly where
        # this bar's last notes end.
        self.next_bar_start += beats_per_bar * 60.0 / params.tempo_bpm
        self.last_params = params
        self.composed_bars += 1
