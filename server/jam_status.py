"""What `jam`'s status line says while it plays, e.g.

    input -18.2 dBFS [##############------] | 0 misses | 2 xruns | 1:05

The meter is the peak of the channel being accompanied, held and then falling 20 dB a
second, as a peak meter's does: a status printed every 5 s into a log still shows the last
notes, and a terminal's (redrawn five times a second) moves with the playing. "silent" means
nothing came in at all: the wrong --input-device or --input-channel, or a muted input.
Misses are blocks the worker had not finished in time (the accompaniment faded out there);
xruns are periods the device itself lost. bci/console.py draws the line.
"""

from __future__ import annotations

import math

from engine.live_engine import LiveEngine

FLOOR_DB = -60.0  # the meter's left end; quieter reads as silent
FALL_DB_PER_S = 20.0
WIDTH = 20  # characters of the meter's bar


class JamStatus:
    def __init__(self, engine: LiveEngine):
        self.engine = engine
        self.level_db = -math.inf
        self._at: float | None = None  # when level_db was last updated (time.monotonic)

    def line(self, now: float) -> str:
        engine = self.engine
        self._meter(engine.take_input_peak(), now)
        if self.level_db < FLOOR_DB:
            meter = f"input silent [{'-' * WIDTH}]"
        else:
            filled = round(WIDTH * (min(self.level_db, 0.0) - FLOOR_DB) / -FLOOR_DB)
            clip = " CLIP" if self.level_db >= 0.0 else ""
            meter = f"input {self.level_db:.1f} dBFS [{'#' * filled}{'-' * (WIDTH - filled)}]{clip}"
        misses = engine.session.telemetry.misses
        seconds = int(engine.played / engine.config.samplerate)
        return (
            f"{meter} | {misses} miss{'es' * (misses != 1)} | {engine.xruns} xrun"
            f"{'s' * (engine.xruns != 1)} | {seconds // 60}:{seconds % 60:02d}"
        )

    def _meter(self, peak: float, now: float) -> None:
        db = 20 * math.log10(peak) if peak > 0 else -math.inf
        if self._at is not None:
            db = max(db, self.level_db - FALL_DB_PER_S * (now - self._at))
        self.level_db, self._at = db, now
