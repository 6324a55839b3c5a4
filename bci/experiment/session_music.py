"""What the music does in a block of `session run`: the protocol's music condition.

"feedback": the EEG drives it; "sham": a seeded random walk drives it, so it sounds alike but
ignores the EEG; "silent": note-ons are dropped. A paused session is silent too.
"""

from __future__ import annotations

import numpy as np

from bci.live.mapping import MusicParams, ParameterMapper
from bci.live.midi_out import MidiSink


class MusicGate:
    """A MIDI sink that passes everything in "feedback" and "sham" blocks and drops note-ons
    in "silent" ones (note-offs always pass, so nothing hangs)."""

    def __init__(self, sink: MidiSink):
        self.sink, self.condition = sink, "silent"

    def send(self, message: list[int]) -> None:
        if self.condition == "silent" and message[0] & 0xF0 == 0x90 and message[2] > 0:
            return
        self.sink.send(message)

    def close(self) -> None:
        self.sink.close()


class ShamParams:
    """A seeded random walk of valence, mapped like the real one: music that moves like
    feedback but does not depend on this participant's EEG."""

    def __init__(self, seed: int, mapper: ParameterMapper):
        self.rng, self.mapper, self.valence = np.random.default_rng(seed), mapper, 0.0

    def __call__(self) -> MusicParams:
        self.valence = float(np.clip(0.9 * self.valence + self.rng.normal(0, 0.35), -1, 1))
        return self.mapper.map(self.valence)
