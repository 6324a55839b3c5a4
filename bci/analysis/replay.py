"""Recorded EEG played back over LSL with its original timing (files: bci/recordings.py).

Timing model. Each sample has an offset in seconds from the first one: `k / rate` for sample k,
or, for XDF, the file's timestamp minus its first (so gaps in the recording stay gaps). The
`Replayer` stamps a sample `origin + offset / speed` on `pylsl.local_clock()` and pushes it no
earlier than that time, so stamps are never in the future and a receiver sees the recording's
timing as if the headset were live. `speed` fast-forwards (or slows) the wall clock only: the
nominal rate stays the file's, so spectra keep their frequencies. With `loop`, pass p of the
recording is shifted by p times its span (last offset + one period), so the sample grid runs on
across the seam without a gap or an overlap.
"""

from __future__ import annotations

import threading

import numpy as np
import pylsl

from bci.errors import BciError
from bci.live.simulate import PacedOutlet, eeg_outlet
from bci.recordings import Recording, read_recording

__all__ = ["Recording", "Replayer", "read_recording"]


class Replayer(PacedOutlet):
    """An LSL EEG outlet that plays a `Recording` in real time from a thread: sample k of pass
    p is stamped `origin + (p * span + offset_k) / speed` on `pylsl.local_clock()` and pushed
    once that time has come. `open()` makes the outlet resolvable before playback starts (so a
    receiver can connect and see sample 0); `start()` opens it if needed."""

    thread_name = "bci-replay"

    def __init__(
        self,
        recording: Recording,
        name: str = "BandmateReplay",
        source_id: str = "bandmate-replay",
        loop: bool = False,
        speed: float = 1.0,
        chunk_s: float = 1 / 32,
    ) -> None:
        if not (np.isfinite(speed) and speed > 0):
            raise BciError(f"the replay speed must be positive, got {speed:g}")
        if recording.samples == 0:
            raise ValueError("the recording has no samples")
        if not chunk_s > 0:
            raise ValueError(f"chunk_s must be positive, got {chunk_s}")
        super().__init__()
        self.recording = recording
        self.name = name
        self.source_id = source_id
        self.loop = loop
        self.speed = speed
        self.chunk_s = chunk_s
        self._chunk = max(1, round(chunk_s * recording.rate))
        self._offsets = recording.offsets
        self._span = recording.span_s
        self._samples = np.ascontiguousarray(recording.data.T, dtype=np.float32)  # [n, ch]
        self._finished = threading.Event()

    @property
    def finished(self) -> threading.Event:
        """Set once a non-looping replay has pushed its last sample."""
        return self._finished

    def _new_outlet(self) -> pylsl.StreamOutlet:
        recording = self.recording
        return eeg_outlet(self.name, self.source_id, recording.labels, recording.rate,
                          self._chunk, "Bandmate replay")  # fmt: skip

    def _offset(self, index: int) -> float:
        """Recording seconds from sample 0 to sample `index`, counting earlier passes."""
        passes, within = divmod(index, self.recording.samples)
        return passes * self._span + float(self._offsets[within])

    def _due(self, now: float) -> int:
        """How many samples (over all passes) are stamped at or before `now`."""
        elapsed = (now - self._origin) * self.speed
        passes = int(elapsed // self._span)
        within = int(np.searchsorted(self._offsets, elapsed - passes * self._span, "right"))
        due = passes * self.recording.samples + within
        return due if self.loop else min(due, self.recording.samples)

    def _run(self) -> None:
        total = self.recording.samples
        next_index = 0
        while not self._stop.is_set():
            due = self._due(pylsl.local_clock())
            while next_index < due:  # catch up in chunks if we were late
                n = min(self._chunk, due - next_index)
                self._transmit(next_index, n)
                next_index += n
            if not self.loop and next_index >= total:
                self._finished.set()
                return
            # Wake when the next chunk's last sample is due, but after at most one chunk's
            # time: across a gap in the stamps, samples before it must not wait for it.
            last = next_index + self._chunk - 1
            if not self.loop:
                last = min(last, total - 1)
            until = self._origin + self._offset(last) / self.speed - pylsl.local_clock()
            self._stop.wait(min(max(0.001, until), self.chunk_s))

    def _transmit(self, start: int, n: int) -> None:
        indices = np.arange(start, start + n)
        passes, within = np.divmod(indices, self.recording.samples)
        stamps = self._origin + (passes * self._span + self._offsets[within]) / self.speed
        if self._outlet is not None:
            self._outlet.push_chunk(self._samples[within], stamps.tolist())
        self._sent += n
