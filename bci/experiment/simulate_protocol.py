"""The simulated headset following a protocol: `bci simulate --protocol FILE`.

A simulated study run through `session run` shows an effect end to end only if the EEG
changes with the blocks. The simulator cannot know when a block starts from the protocol
alone (the session starts when it starts, and the SAM ratings are self-paced), so it follows
the session itself: it reads the `BandmateMarkers` stream that `session run` sends, and at
each `block_start` plants that block's asymmetry (`Simulator.plant`) at the marker's LSL
time; at each `block_end` it returns to the participant's resting asymmetry.

The asymmetry of a block comes from the protocol: an emotion block targeting "happy" gets
`intercept + effect / 2`, one targeting "sad" `intercept - effect / 2`, every other block
(baselines, rest, other emotions) `intercept`. `effect` is in the simulator's asymmetry units
(bci/live/simulate.py: FAA of the alpha alone is twice it; the 1/f background dilutes it).

It follows one session after another: at a session's last marker (`session_end` or
`session_stopped`) it lets go of that session's stream before the stream goes, so that liblsl
does not log a broken transmission, and looks for the next one (by source id
`bandmate-markers-<label>` for one participant, else any), so a single simulator can serve a
whole simulated study.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass

import pylsl

from bci.experiment.experiment_protocol import Protocol
from bci.live.simulate import Simulator

MARKERS_NAME = "BandmateMarkers"  # the outlet bci/experiment/session_runner.py sends its markers on
RESOLVE_S = 0.5  # one look for a session's markers; looks repeat until stopped


@dataclass(frozen=True)
class PlantedEffect:
    effect: float = 0.8  # happy - sad, simulator asymmetry units
    intercept: float = 0.0  # the participant's resting asymmetry

    def of_blocks(self, protocol: Protocol) -> dict[str, float]:
        """The asymmetry each block of the pool gets (module docstring)."""
        signs = {"happy": 1.0, "sad": -1.0}
        return {
            block.name: self.intercept
            + signs.get(block.target_emotion or "", 0.0) * self.effect / 2
            for block in protocol.blocks
        }


class ProtocolFollower:
    """Plants each block's asymmetry in `simulator` as a session runs it; `say` reports each
    block (the CLI prints it), `stop` ends it."""

    def __init__(
        self,
        simulator: Simulator,
        protocol: Protocol,
        planted: PlantedEffect,
        participant_label: str | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        self.simulator, self.planted, self.say = simulator, planted, say
        self.asymmetry = planted.of_blocks(protocol)
        self._query = (
            ("source_id", f"bandmate-markers-{participant_label}")
            if participant_label
            else ("name", MARKERS_NAME)
        )
        self._finished: set[str] = set()  # the uids of markers streams whose session ended
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="protocol-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            found = pylsl.resolve_byprop(*self._query, timeout=RESOLVE_S)
            running = [info for info in found if info.uid() not in self._finished]
            if running:
                self._follow(pylsl.StreamInlet(running[0], recover=False), running[0].uid())

    def _follow(self, inlet: pylsl.StreamInlet, uid: str) -> None:
        """Until the session ends (its last marker, or its stream goes away) or stop."""
        try:
            inlet.open_stream(timeout=5)
            while not self._stopping.is_set():
                sample, stamp = inlet.pull_sample(timeout=0.1)
                if sample is None:
                    continue
                marker = json.loads(sample[0])
                if marker.get("kind") in ("session_end", "session_stopped"):
                    self._finished.add(uid)
                    return
                self._on_marker(marker, stamp + inlet.time_correction())
        except RuntimeError:  # pylsl's LostError (the session ended) or TimeoutError
            return
        finally:
            inlet.close_stream()

    def _on_marker(self, marker: dict[str, object], lsl_time: float) -> None:
        kind, block = marker.get("kind"), str(marker.get("block"))
        if kind == "block_start":
            if block not in self.asymmetry:
                self.say(f"block {block!r} is not in the protocol: asymmetry left as it is")
                return
            self.simulator.plant(lsl_time, self.asymmetry[block])
            self.say(f"{block}: asymmetry {self.asymmetry[block]:+.2f}")
        elif kind in ("block_end", "pause"):
            self.simulator.plant(lsl_time, self.planted.intercept)
