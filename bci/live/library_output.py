"""What C libraries print, kept off the terminal.

FluidSynth, libjack, ALSA and RtMidi report on file descriptors 1 and 2 themselves, line
after line (`JackShmReadWritePtr...`, `ALSA lib seq_hw.c...`, `fluidsynth: error: ...`), and
a failure then also ends in our own one-line error, which their lines bury. Python's
`sys.stderr` cannot catch them: it is a wrapper above the same descriptor. So the descriptors
themselves point at a temporary file while such a call runs; what was written there is
handed back, for the error line to quote the one line that says why, and Python's streams
are flushed on both sides so nothing of ours is caught.

Every thread's output goes to the file while the block runs, so keep the blocks to the
library calls (opening a driver or a port): milliseconds to a second.
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass


@dataclass
class LibraryOutput:
    text: str = ""  # what the libraries wrote, once the block has ended

    def last_line(self, prefix: str) -> str | None:
        """The last line that starts with `prefix`, without it."""
        found = [line for line in self.text.splitlines() if line.startswith(prefix)]
        return found[-1][len(prefix) :].strip() if found else None


@contextmanager
def library_output_caught() -> Iterator[LibraryOutput]:
    caught = LibraryOutput()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield caught
        finally:
            _flush_c_streams()  # C's stdout is buffered when it is not a terminal
            for fd, original in zip((1, 2), saved, strict=True):
                os.dup2(original, fd)
                os.close(original)
            sink.seek(0)
            caught.text = sink.read().decode(errors="replace")


def _flush_c_streams() -> None:
    with suppress(OSError, AttributeError):  # no C library to reach (not on Linux or macOS)
        ctypes.CDLL(None).fflush(None)
