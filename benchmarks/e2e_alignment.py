"""Where jam's live output sits against the engine's offline rendering of the same input.

The engine is deterministic: the same checkpoint, seed and input give the same output,
sample for sample, whatever the block size (tests/test_engine_session.py), and live equals
file mode exactly (tests/test_live.py). So a recording of jam's output can be located
against `Session` renderings made here, exactly rather than by a correlation peak:

- output side: while the probe feeds silence, jam plays the rendering of silence; where a
  recorded window of it occurs gives `offset` (session output index = recorded index + it);
- input side: the first output hop that departs from the silence rendering brackets the
  session input index at which the probe's first sample arrived to one or two hops; each
  candidate there is rendered from a snapshot, and exactly one reproduces the recording;
- per event, from there on: see `event_timings`.

All indices here are at the model rate, which `bandmate bench e2e` runs JACK at.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from benchmarks.jam_probe import find_exactly
from engine.backends import Backend
from engine.errors import EngineError
from engine.session import Session, SessionConfig

MATCH_WINDOW = 2048  # samples compared exactly: noise-driven output never repeats that long


@dataclass(frozen=True)
class ProbeSignal:
    """What the probe plays: short events in silence."""

    train: np.ndarray
    events: np.ndarray  # start indices
    event_length: int

    def as_heard(self, first: int, begin: int, end: int) -> np.ndarray:
        """Session input [begin, end) if the signal's sample 0 was session input `first`."""
        heard = np.zeros(end - begin, np.float32)
        low, high = max(begin, first), min(end, first + len(self.train))
        if low < high:
            heard[low - begin : high - begin] = self.train[low - first : high - first]
        return heard


@dataclass
class Rendering:
    output: np.ndarray  # session output, index-aligned with the input (no latency at 48 kHz)
    session: Session  # after the last hop: fork it to continue


def informative(window: np.ndarray) -> bool:
    """Varied enough that an exact match says where it is (silence would match anywhere)."""
    return len(np.unique(window)) > len(window) // 4


def fork(session: Session) -> Session:
    """An independent session that continues exactly as `session` would, sharing its model."""
    forked = Session(session.backend, session.config)
    forked.restore(session.snapshot())
    return forked


def fresh_session(backend: Backend, seed: int) -> Session:
    return Session(backend, SessionConfig(device_rate=backend.info.sample_rate, seed=seed))


def render(backend: Backend, seed: int, audio: np.ndarray) -> Rendering:
    """Step a fresh Session over `audio` hop by hop."""
    hop = backend.info.hop
    session = fresh_session(backend, seed)
    output = [session.process(audio[k : k + hop]) for k in range(0, len(audio), hop)]
    return Rendering(np.concatenate(output) if output else np.zeros(0, np.float32), session)


def output_offset(backend: Backend, seed: int, recorded: np.ndarray, started: int) -> int:
    """Session output index minus recorded index, from jam's response to silent input."""
    silence = render(backend, seed, np.zeros(started + 10 * backend.info.sample_rate)).output
    for end in range(started, MATCH_WINDOW - 1, -MATCH_WINDOW):  # latest windows first
        window = recorded[end - MATCH_WINDOW : end]
        if not informative(window):  # e.g. the zeros before jam's stream started
            continue
        if (found := find_exactly(window, silence)) is not None:
            return found - (end - MATCH_WINDOW)
    raise EngineError(
        "jam's output for silent input matches no rendering of silence: a different model or "
        "seed, or an xrun during the lead-in"
    )


def first_departure(
    backend: Backend, seed: int, recorded: np.ndarray, started: int, offset: int
) -> int:
    """The session output index after `started` where jam left the silence rendering for
    good. A miss (inference late) fades the output for a moment and then it is the rendering
    again, while the answer to the signal departs from it for good: so the departure is the
    first difference after the last whole hop that still equals the rendering."""
    hop = backend.info.hop
    begin = started + offset  # session output indices from here on
    end = min(len(recorded), started + 2 * backend.info.sample_rate) + offset
    silence = render(backend, seed, np.zeros(end)).output
    differs = recorded[started : end - offset] != silence[begin:]
    last_equal = max(
        (h for h in range(-(-begin // hop), end // hop)
         if not differs[h * hop - begin : (h + 1) * hop - begin].any()),
        default=None,
    )  # fmt: skip
    after = 0 if last_equal is None else (last_equal + 1) * hop - begin
    departures = np.flatnonzero(differs[after:])
    if not len(departures):
        raise EngineError("jam's output never responded to the probe's signal")
    return begin + after + int(departures[0])


def locate_onset(
    backend: Backend, seed: int, signal: np.ndarray, recorded: np.ndarray, offset: int,
    departure: int,
) -> int:  # fmt: skip
    """The session input index of the signal's first sample. Output hop j is the first to
    change, so the signal began in input hop j - 1 (anticipation 1) or, if that hop's change
    happened not to show, j - 2; every start in that hop is tried from a snapshot."""
    hop = backend.info.hop
    j = departure // hop
    for first in (j - 1, j - 2):
        if first < 0:
            continue
        base = render(backend, seed, np.zeros(first * hop)).session
        span = (j + 1 - first) * hop  # through the first changed output hop
        want = recorded[first * hop - offset : first * hop - offset + span]
        matches = []
        for phase in tqdm(range(hop), desc=f"onset in hop {first}", unit="start", leave=False):
            attempt = np.zeros(span, np.float32)
            attempt[phase:] = signal[: span - phase]
            if np.array_equal(fork(base).process(attempt), want):
                matches.append(first * hop + phase)
        if len(matches) > 1:
            raise EngineError(f"the signal's start is ambiguous: {len(matches)} starts fit")
        if matches:
            return matches[0]
    raise EngineError(
        "no start of the signal reproduces jam's output: an xrun near the signal's start?"
    )


@dataclass(frozen=True)
class EventTiming:
    """One event (a chirp) of the probe's signal, all in samples."""

    # Recorded index of its accompaniment - recorded index it was fed at. "Its accompaniment"
    # is what the session plays `latency_samples` after it (the codec's delay), so the lag is
    # the whole latency jam reports: the session's, its buffer's and the device's.
    lag: int | None
    framing_wait: int | None  # session samples from its first sample to the first it changes
    slip: int = 0  # how far jam's input had moved since the event before (lost periods)


MAX_SLIP = 2048  # how far a lost JACK period or two may have moved the signal in jam's input


def event_timings(
    backend: Backend, seed: int, signal: ProbeSignal, recorded: np.ndarray, started: int,
    onset: int, max_lag: int, slip_step: int,
) -> list[EventTiming]:  # fmt: skip
    """Per event, in order: where its stretch of the offline accompaniment occurs in the
    recording, searched exactly up to `max_lag` late; and, offline, how long the model takes
    to react to it: the first output sample that changes when just this event is left out.

    The rendering follows what jam heard. An xrun can cost jam a period of input, which
    moves the rest of the signal in jam's input by whole periods; in a silent gap, as most
    of the signal is, nothing else changes. So when an event is not where the alignment so
    far puts it, moves of up to MAX_SLIP in `slip_step` steps are tried, and the one that
    is found holds for the events after it."""
    hop = backend.info.hop
    session, position = fresh_session(backend, seed), 0  # input consumed: a hop multiple
    lead = session.latency_samples  # session output index of input index i's accompaniment - i
    first = onset  # session input index of the signal's first sample, as jam heard it
    slips = [
        0,
        *(s * k for k in range(1, MAX_SLIP // slip_step + 1) for s in (-slip_step, slip_step)),
    ]
    span = lead + MATCH_WINDOW + 3 * hop  # rendered after an event: its window and reaction
    timings = []
    for event in tqdm(signal.events.tolist(), desc="locating chirps", unit="chirp", leave=False):
        # Catch up to a hop boundary before the event under any slip: silence there.
        target = max(position, (first + event - MAX_SLIP) // hop * hop)
        session.process(signal.as_heard(first, position, target))
        position = target
        fed_at = started + event
        searched = recorded[fed_at : fed_at + max_lag + MATCH_WINDOW]
        lag, output, moved = None, None, 0
        for slip in slips:
            at = first + slip + event
            attempt = fork(session).process(signal.as_heard(first + slip, position, at + span))
            window = attempt[at + lead - position : at + lead - position + MATCH_WINDOW]
            if informative(window) and (lag := find_exactly(window, searched)) is not None:
                first, output, moved = first + slip, attempt, slip
                break
        at = first + event
        heard = signal.as_heard(first, position, at + span)
        if output is None:
            output = fork(session).process(heard)
        heard[at - position : at - position + signal.event_length] = 0
        changed = np.flatnonzero(output != fork(session).process(heard))
        wait = int(position + changed[0] - at) if len(changed) else None
        timings.append(EventTiming(lag, wait, moved))
    return timings
