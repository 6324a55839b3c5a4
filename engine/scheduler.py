"""Batched stepping: all sessions with a complete hop are stepped together as one batch.

Each round takes one hop from every session that has one, concatenates their states along
the batch axis, runs the backend once, and splits the results back. A session's rows are
its own in every graph (convolutions and attention never mix the batch), so its output is
what it would be alone, up to float rounding (onnxruntime may order a GEMM's sums differently
at another batch size). Sessions join and leave between rounds without touching the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from engine.backends import Backend
from engine.backends.base import ModelState
from engine.errors import EngineError
from engine.session import Session


class BatchScheduler:
    def __init__(
        self,
        backend: Backend,
        max_batch: int = 64,
        observer: Callable[[float, int], None] | None = None,
    ):
        self.backend = backend
        self.max_batch = max_batch
        self.observer = observer  # called with (seconds, batch size) after every round
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()  # guards the session table, never held while stepping
        self.rounds = 0
        self.last_round_seconds = 0.0

    def add(self, key: str, session: Session) -> None:
        if session.backend is not self.backend:
            raise EngineError("a session must use the scheduler's backend to be batched")
        with self._lock:
            if key in self._sessions:
                raise EngineError(f"session {key!r} already exists")
            self._sessions[key] = session

    def remove(self, key: str) -> Session | None:
        with self._lock:
            return self._sessions.pop(key, None)

    def sessions(self) -> dict[str, Session]:
        with self._lock:
            return dict(self._sessions)

    def step(self) -> int:
        """Step every pending hop of every session, in rounds; returns the hops stepped."""
        stepped = 0
        while True:
            ready = [s for s in self.sessions().values() if s.pending_hops()][: self.max_batch]
            if not ready:
                return stepped
            self._round(ready)
            stepped += len(ready)

    def _round(self, ready: list[Session]) -> None:
        hops = np.stack([s.take_hop() for s in ready])
        noise = np.stack([s.next_noise() for s in ready])
        steer = np.stack([s.next_steer() for s in ready])
        started = time.perf_counter()
        state, out = self.backend.step(
            ModelState.concat([s.state for s in ready]), hops, noise, steer
        )
        elapsed = time.perf_counter() - started
        for session, own_state, own_out in zip(ready, state.split(), out, strict=True):
            session.accept(own_state, own_out, elapsed)
        self.rounds += 1
        self.last_round_seconds = elapsed
        if self.observer is not None:
            self.observer(elapsed, len(ready))
