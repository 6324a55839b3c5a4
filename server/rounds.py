"""Aligned rounds: the server's stepper batches the sessions whose blocks are due together.

Each client's block arrives at its own time, so stepping on every arrival gives a round per
session per hop, each paying the backend's fixed cost (about 3 ms on 2 CPU cores, against
1.5 ms per session). With a batch window of w ms (`ServerConfig.batch_window_ms`), the
oldest waiting block opens a round and the stepper holds it open up to w ms, until every
streaming session whose next block is due by then (by the pace of its last one) has it in;
then it steps them all as one batch. A session whose block is over a hop overdue has
stopped or stalled, and is not waited for; when no other session is due, the round goes at
once. The window is part of what a session waits, so it is counted in the latency the
session reports (`HostedSession.telemetry`) and in its deadline: one hop plus the window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol


class Waiting(Protocol):
    """What the window reads of a hosted session (server.host.HostedSession)."""

    @property
    def streaming(self) -> bool: ...

    @property
    def hop_s(self) -> float: ...

    next_due: float | None  # when its next block should arrive

    def waiting_since(self) -> float | None: ...  # its oldest waiting block's arrival


class RoundWindow:
    def __init__(self, window_ms: float):
        self.seconds = window_ms / 1e3

    def deadline(self, hop_s: float) -> float:
        """Seconds from a block's arrival to its answer before it counts as a miss."""
        return hop_s + self.seconds

    def gather(
        self,
        sessions: Callable[[], Sequence[Waiting]],
        wake: threading.Event,
        stop: threading.Event,
    ) -> None:
        """Return when the round should be stepped: at once without a window or without
        waiting blocks, else when every session due by the window's close has a block in,
        or at the close. `wake` is set by each arrival."""
        if self.seconds <= 0:
            return
        while not stop.is_set():
            listed = sessions()
            arrivals = [t for t in (s.waiting_since() for s in listed) if t is not None]
            if not arrivals:
                return
            now, closes = time.perf_counter(), min(arrivals) + self.seconds
            if now >= closes or not any(self._due(s, now, closes) for s in listed):
                return
            wake.wait(timeout=closes - now)
            wake.clear()

    @staticmethod
    def _due(session: Waiting, now: float, closes: float) -> bool:
        """Streaming, nothing in yet, and its next block due by the close (not long overdue)."""
        due = session.next_due
        return (
            session.streaming
            and session.waiting_since() is None
            and due is not None
            and now - session.hop_s < due <= closes
        )
