"""FluidSynth rendering of voices to float audio, one stem per voice.

Each stem is rendered on its own fresh synth. Voices sharing one synth interact slightly (we
measured transients up to -40 dB near simultaneous note events), so the mix is defined as the
sum of the stems rather than a separate ensemble render. Reverb and chorus are off: they are
shared effect buses that would blur which stem a sound belongs to.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

# FluidSynth applies events at its internal 64-sample block boundaries. Snapping our events to
# the same grid and rendering whole blocks makes every render start in the same block phase.
FLUID_BLOCK = 64
DRUM_CHANNEL = 9
PERCUSSION_BANK = 128


@dataclass(frozen=True)
class Event:
    sample: int
    note_on: bool
    pitch: int
    velocity: int


@dataclass(frozen=True)
class Track:
    """One voice as the synth sees it: a channel, an instrument, a volume, and its events."""

    channel: int
    bank: int
    program: int
    volume: int  # MIDI CC7, 0..127
    events: tuple[Event, ...]


def snap(sample: float) -> int:
    return round(sample / FLUID_BLOCK) * FLUID_BLOCK


def note_events(notes: list[tuple[int, float, float, int]], sample_rate: int) -> tuple[Event, ...]:
    """(pitch, start_s, end_s, velocity) notes -> note on/off events on the block grid.

    A note at least one block long always sounds; at equal times note-offs come first, so a
    repeated pitch is released before it is struck again.
    """
    events: list[Event] = []
    for pitch, start, end, velocity in notes:
        on = snap(start * sample_rate)
        off = max(snap(end * sample_rate), on + FLUID_BLOCK)
        events += [Event(on, True, pitch, velocity), Event(off, False, pitch, 0)]
    return tuple(sorted(events, key=lambda e: (e.sample, e.note_on, e.pitch)))


class Renderer:
    """Renders tracks with FluidSynth, each call on a fresh synth.

    A synth that has played once does not render the same events identically again, even
    after a system reset (voice state survives recycling), and stems must sum exactly to the
    one-pass mix. So every render gets a new synth. One anchor synth per SoundFont stays
    alive so FluidSynth's sample cache keeps the file loaded: a fresh load then costs about
    45 ms instead of up to 2 s (the sf3 file is Vorbis-compressed).
    """

    def __init__(self, sample_rate: int, gain: float = 0.4) -> None:
        self.sample_rate = sample_rate
        self.gain = gain
        self._anchors: dict[Path, tuple[object, int]] = {}

    def _new_synth(self, soundfont: Path) -> tuple[object, int]:
        import fluidsynth

        # Settings must be in place before the synth exists: some are read only at creation.
        settings = {"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 512}
        synth = fluidsynth.Synth(gain=self.gain, samplerate=float(self.sample_rate), **settings)
        sfid = synth.sfload(str(soundfont))
        if sfid < 0:
            synth.delete()
            raise RuntimeError(f"FluidSynth could not load SoundFont {soundfont}")
        return synth, sfid

    def _anchor(self, soundfont: Path) -> tuple[object, int]:
        if soundfont not in self._anchors:
            self._anchors[soundfont] = self._new_synth(soundfont)
        return self._anchors[soundfont]

    def has_preset(self, soundfont: Path, bank: int, program: int) -> bool:
        synth, sfid = self._anchor(soundfont)
        return synth.sfpreset_name(sfid, bank, program) is not None  # type: ignore[attr-defined]

    def render(self, soundfont: Path, tracks: list[Track], n_samples: int) -> np.ndarray:
        """Mono float32 audio of all tracks played together, n_samples long (a block multiple)."""
        assert n_samples % FLUID_BLOCK == 0, "render whole FluidSynth blocks"
        self._anchor(soundfont)
        synth, sfid = self._new_synth(soundfont)
        try:
            return self._play(synth, sfid, tracks, n_samples)
        finally:
            synth.delete()  # type: ignore[attr-defined]

    def _play(self, synth: object, sfid: int, tracks: list[Track], n_samples: int) -> np.ndarray:
        for track in tracks:
            synth.program_select(track.channel, sfid, track.bank, track.program)  # type: ignore[attr-defined]
            synth.cc(track.channel, 7, track.volume)  # type: ignore[attr-defined]
        stereo = np.zeros((n_samples, 2), np.float32)
        events = sorted(
            (e.sample, e.note_on, e.pitch, e.velocity, t.channel) for t in tracks for e in t.events
        )
        position = 0
        for sample, note_on, pitch, velocity, channel in events:
            sample = min(sample, n_samples)
            _write_float(synth, stereo, position, sample)
            position = sample
            if note_on:
                synth.noteon(channel, pitch, velocity)  # type: ignore[attr-defined]
            else:
                synth.noteoff(channel, pitch)  # type: ignore[attr-defined]
        _write_float(synth, stereo, position, n_samples)
        return stereo.mean(axis=1, dtype=np.float32)


def _write_float(synth: object, out: np.ndarray, start: int, stop: int) -> None:
    """Render [start, stop) into a (n, 2) float32 buffer.

    pyfluidsynth only exposes int16 output; the float writer avoids quantising stems.
    """
    if stop > start:
        address = out[start:stop].ctypes.data
        _fluid_write_float()(synth.synth, stop - start, address, 0, 2, address, 1, 2)  # type: ignore[attr-defined]


@cache
def _fluid_write_float() -> Callable[..., int]:
    import fluidsynth

    return fluidsynth.cfunc(
        "fluid_synth_write_float", ctypes.c_int,
        ("synth", ctypes.c_void_p, 1), ("len", ctypes.c_int, 1),
        ("lout", ctypes.c_void_p, 1), ("loff", ctypes.c_int, 1), ("lincr", ctypes.c_int, 1),
        ("rout", ctypes.c_void_p, 1), ("roff", ctypes.c_int, 1), ("rincr", ctypes.c_int, 1),
    )  # fmt: skip
