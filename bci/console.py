"""The experimenter's terminal: printed lines, a live status line under them, and typed lines.

A long run must show what is happening (`bci run` and `session run` keep a status line: the
block and its time left, the valence, each channel's signal quality, the gated share and
drops, the calibration countdown; bci/live/live_status.py writes it; `jam` and `client stream`
keep theirs here too). On a terminal the line is
redrawn in place, at most `TTY_REFRESH_S` apart, and a printed line goes above it. Where the
output is a file or a pipe (a log, a test), redrawing would leave a trail of carriage returns,
so the status is printed as an ordinary line every `plain_every_s` instead.

Typed lines (commands such as `p` to pause, and answers to prompts) are read by a thread, so
the caller polls them without blocking: the session's clock never waits on the keyboard.
Status goes to stdout with the rest of the progress; stderr is kept for the one error line.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from typing import TextIO

TTY_REFRESH_S = 0.2
CLEAR_LINE = "\r\x1b[2K"


class Console:
    def __init__(
        self,
        out: TextIO | None = None,
        typed: TextIO | None = None,
        plain_every_s: float = 5.0,
    ) -> None:
        self.out = out if out is not None else sys.stdout
        self.tty = self.out.isatty()
        self.plain_every_s = plain_every_s
        self._status = ""
        self._drawn_at = -float("inf")
        self._lock = threading.Lock()  # printing threads (the loop's window callback, main)
        self._lines: queue.Queue[str] = queue.Queue()
        if typed is not None:
            reader = threading.Thread(target=self._read, args=(typed,), name="console-input",
                                      daemon=True)  # fmt: skip
            reader.start()

    def _read(self, typed: TextIO) -> None:
        for line in typed:  # ends at EOF (no terminal, or a closed pipe)
            self._lines.put(line.strip())

    def show(self, text: str) -> None:
        """A line of its own, above the status line."""
        with self._lock:
            if self.tty and self._status:
                self.out.write(f"{CLEAR_LINE}{text}\n{self._status}")
            else:
                self.out.write(f"{text}\n")
            self.out.flush()

    def status(self, text: str, now: float | None = None) -> None:
        """Set the status line; drawn now if it is time (module docstring)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._status = text
            due = TTY_REFRESH_S if self.tty else self.plain_every_s
            if now - self._drawn_at < due:
                return
            self._drawn_at = now
            self.out.write(f"{CLEAR_LINE}{text}" if self.tty else f"status: {text}\n")
            self.out.flush()

    def end_status(self) -> None:
        """Leave the status line as it is and go on below it."""
        with self._lock:
            if self.tty and self._status:
                self.out.write("\n")
                self.out.flush()
            self._status = ""

    def typed(self) -> str | None:
        """The next line typed, or None if there is none yet."""
        try:
            return self._lines.get_nowait()
        except queue.Empty:
            return None
