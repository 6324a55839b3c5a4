"""`bandmate session run`: one participant through a protocol, recorded without loss.

What the participant sees and hears is the participant page (bci/experiment/participant_page.py):
each block's instruction with a get-ready countdown, the fixation cross with the block's time left,
the end-of-block tone, and the SAM scales. What the experimenter sees is the terminal
(bci/console.py): a line per block and a live status line; typing `p` and Enter pauses (the page
says so and the music stops), `r` and Enter resumes, and the interrupted block then runs again from
its start (an induction broken off is not continued; the analysis leaves the broken-off one out).
`time_scale` shortens every duration, for pilots and tests.

What runs, all on LSL's clock:
- the EEG stream, every channel, from its own inlet into the crash-safe `SessionRecorder`
  (bci/experiment/recorder.py: on disk within 0.5 s, so a kill -9 loses at most that);
- typed markers at every block boundary, cue (instruction, fixation, tone, each SAM scale),
  rating, pause and resume, both into the recording and out on an LSL outlet
  ("BandmateMarkers", JSON strings) for any other recorder; the first one only once EEG
  samples are being recorded, so that none precedes the recording;
- the BCMI loop (bci/live/bci_session.py), started when the protocol's baseline block starts
  and calibrated on exactly that block; its log goes into the session folder;
- per block, the music condition: "feedback" (the EEG drives it), "sham" (a seeded random
  walk drives it, so it sounds alike but ignores the EEG) or "silent" (note-ons dropped).
At the end the session is exported as BIDS (bci/experiment/bids_export.py) next to the raw
folder, as the participant's next session (bci/experiment/session_recording.py).

A session that ends early is exported too, as far as it went, then says why in one line
(`SessionStopped`): Ctrl-C or SIGTERM (`SessionInterrupted`), or the BCMI loop dying, which
ends the session at once rather than running the remaining blocks without music. The one
exception is a recording the disk refused (full): its error is raised at once and nothing is
exported, since nothing more can be written; the raw folder keeps what reached the disk.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pylsl

from bci.console import Console
from bci.errors import BciError
from bci.experiment.bids_export import build_manifest, export_bids
from bci.experiment.experiment_protocol import SAM_DIMENSIONS, PlannedBlock, participant_label
from bci.experiment.participant_page import ParticipantPage, Screen
from bci.experiment.recorder import read_session
from bci.experiment.session_config import RunnerConfig, planned_session
from bci.experiment.session_music import MusicGate, ShamParams
from bci.experiment.session_recording import EegRecording, choose_session
from bci.live.bci_session import BciOutputs, BciSession, ServerControl
from bci.live.harmony import HarmonyConfig
from bci.live.live_status import loop_status
from bci.live.loop import BciRunConfig
from bci.live.lsl_input import resolve_stream
from bci.live.midi_out import MidiSink

TASK = "bcmi"  # the BIDS task label of every session (what `session analyze` reads)
LOOP_LOG = "bcmi_loop.jsonl"  # the BCMI loop's JSON-lines log, in the session folder
WAKE_S = 0.1  # how soon a wait notices a failed recording, a dead loop or a typed command
COMMANDS = "type p and Enter to pause, r and Enter to resume; Ctrl-C stops and exports"


class SessionStopped(BciError):
    """The session ended before its protocol did; `exported` is what was recorded, as BIDS
    (None if the export failed too)."""

    def __init__(self, message: str, exported: Path | None):
        super().__init__(message)
        self.exported = exported


class SessionInterrupted(SessionStopped):
    """Ctrl-C or SIGTERM."""


class _LoopDied(Exception):
    """The BCMI loop's thread ended with an error: the session stops."""


class _Paused(Exception):
    """The experimenter paused: the block is broken off, to run again after the resume."""


class SessionRunner:
    def __init__(self, config: RunnerConfig, console: Console | None = None):
        self.config, self.console = config, console or Console()
        self.protocol, self.plan = planned_session(config)
        self.label = participant_label(config.participant)  # "sub-07" and "07" are one person
        self.session = choose_session(config.out, self.label, config.session, config.overwrite)
        self.folder = config.out / "raw" / f"sub-{self.label}" / f"ses-{self.session}"
        info = resolve_stream(config.query)
        self.page = ParticipantPage(config.page_port) if config.page_port is not None else None
        self.eeg = EegRecording(info, self.folder, config.overwrite)
        outlet_info = pylsl.StreamInfo("BandmateMarkers", "Markers", 1, pylsl.IRREGULAR_RATE,
                                       "string", f"bandmate-markers-{self.label}")  # fmt: skip
        self.markers = pylsl.StreamOutlet(outlet_info)
        if config.overwrite:  # the loop's log is opened for appending
            (self.folder / LOOP_LOG).unlink(missing_ok=True)
        self.bcmi: BciSession | None = None
        self.bcmi_thread: threading.Thread | None = None
        self.bcmi_failure: Exception | None = None
        self.bcmi_died = threading.Event()
        self.gate: MusicGate | None = None
        self.current: PlannedBlock | None = None
        self.doing = ""  # what the status line says the session is doing
        self.pause_requested = False
        self.server = ServerControl(config.server_osc) if config.server_osc else None
        self.console.show(f"sub-{self.label}, session {self.session}: recording into {self.folder}")
        if self.page is not None:
            self.console.show(f"participant page: {self.page.url} (open it on their screen)")

    def marker(self, kind: str, **fields: object) -> None:
        now = pylsl.local_clock()
        self.eeg.recorder.marker(kind, now, **fields)
        self.markers.push_sample([json.dumps({"kind": kind, **fields})], now)

    def run(self) -> Path:
        """Every block, then the BIDS export: the EEG file written. Raises SessionStopped
        after exporting a session that ended early (module docstring)."""
        stopped: str | None = None
        try:
            try:
                self.eeg.wait_for_first_sample()
                self._wait_for_start()
                self.console.show(COMMANDS)
                for planned in self.plan:
                    self.current = planned
                    self._block(planned)
            except KeyboardInterrupt:
                stopped = "interrupted"
            except _LoopDied:
                stopped = "bcmi_loop_stopped"
            if stopped is None:
                self.marker("session_end")
            else:
                self.marker("session_stopped", reason=stopped)
        finally:
            self._close()
        if stopped is None and self.bcmi_failure is not None:  # it died as the session ended
            stopped = "bcmi_loop_stopped"
        if stopped is None:
            return self._export()
        raise self._stopped(stopped)

    def _close(self) -> None:
        self.console.end_status()
        if self.page is not None:
            self.page.show(Screen("done"))
            self.page.close()
        if self.server is not None:
            self.server.instruction("")
        if self.bcmi is not None and self.bcmi_thread is not None:
            self.bcmi.stop()
            self.bcmi_thread.join(timeout=5)
        self.eeg.close()

    def _stopped(self, reason: str) -> SessionStopped:
        """Export what was recorded; the error that says why the session stopped, and where."""
        planned, where = self.current, ""
        if planned is not None:
            where = f" in block {planned.index + 1}/{len(self.plan)} ({planned.block.name})"
        kind: type[SessionStopped]
        if reason == "interrupted":
            why, kind = "interrupted", SessionInterrupted
        else:
            why, kind = f"the BCMI loop stopped ({self._describe_failure()})", SessionStopped
        try:
            written = self._export()
        except BciError as error:
            kept = f"the recording is kept in {self.folder} but was not exported: {error}"
            return kind(f"{why}{where}; {kept}", None)
        kept = f"what was recorded is kept in {self.folder} and exported to {written}"
        return kind(f"{why}{where}; {kept}", written)

    def _describe_failure(self) -> str:
        error = self.bcmi_failure
        if isinstance(error, BciError):
            return str(error)
        return f"{type(error).__name__}: {error}; its traceback is in {LOOP_LOG}"

    def _wait_for_start(self) -> None:
        """With ratings on the page, the session begins when the participant presses Start
        (which also lets the page play sound)."""
        if self.page is None or self.config.ratings != "page":
            return
        self.console.show(f"waiting for the participant to press Start on {self.page.url}")
        self.doing = "waiting for Start on the participant page"
        self._until(self.page.started.is_set)
        self.page.show(Screen("waiting"))

    def _block(self, planned: PlannedBlock) -> None:
        while True:
            try:
                return self._run_block(planned)
            except _Paused:
                self._pause(planned)

    def _run_block(self, planned: PlannedBlock) -> None:
        block, position = planned.block, f"[{planned.index + 1}/{len(self.plan)}]"
        fields = {
            "block": block.name,
            "block_kind": block.kind,
            "music": block.music,
            "target_emotion": block.target_emotion,
            "repetition": planned.repetition,
        }
        self.console.show(f"{position} {block.name}: {block.instruction} "
                          f"({planned.duration_s:g} s)")  # fmt: skip
        if self.server is not None:
            self.server.instruction(block.instruction)
        ready = self.config.ready_s * self.config.time_scale
        self._present(Screen("ready", block.instruction, ready), "instruction", block.name)
        self._wait(ready, f"{position} {block.name} starts in {{left}} s")
        if block.name == self.protocol.baseline_block and self.bcmi is None:
            self._start_bcmi(planned.duration_s)
        if self.gate is not None and self.bcmi is not None:
            self.gate.condition = block.music
            sham = ShamParams(self.config.seed + planned.index, self.bcmi.loop.processor.mapper)
            self.bcmi.params_override = sham if block.music == "sham" else None
        self.marker("block_start", duration_s=planned.duration_s, **fields)
        screen = Screen("block", block.instruction, planned.duration_s)
        self._present(screen, "fixation", block.name)
        self._wait(planned.duration_s, f"{position} {block.name}: {{left}} s left")
        self.marker("block_end", **fields)
        if self.page is not None:
            self.page.tone()
        self.marker("cue", cue="tone", block=block.name)
        if block.ratings:
            valence, arousal = (self._rate(d, block.name) for d in SAM_DIMENSIONS)
            self.marker("rating", block=block.name, valence=valence, arousal=arousal,
                        source=self.config.ratings)  # fmt: skip

    def _present(self, screen: Screen, cue: str, block: str) -> None:
        if self.page is not None:
            self.page.show(screen)
        self.marker("cue", cue=cue, block=block)

    def _pause(self, planned: PlannedBlock) -> None:
        self.marker("pause", block=planned.block.name, repetition=planned.repetition)
        if self.page is not None:
            self.page.show(Screen("paused"))
        if self.gate is not None:
            self.gate.condition = "silent"
        self.console.show(f"paused in block {planned.index + 1}/{len(self.plan)} "
                          f"({planned.block.name}): type r and Enter to resume; the block "
                          "then starts again")  # fmt: skip
        self.doing = "paused"
        self._until(lambda: not self.pause_requested)
        self.marker("resume", block=planned.block.name, repetition=planned.repetition)

    def _wait(self, seconds: float, doing: str) -> None:
        """The block's time, cut short by a failed recording (a full disk: the next marker
        raises the recorder's error, and the session stops keeping what reached the disk), by
        the BCMI loop dying (_LoopDied) or by a pause (_Paused)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.doing = doing.format(left=f"{left:.0f}")  # for the status line
            if self._poll(min(left, WAKE_S)):
                return
            if self.pause_requested:
                raise _Paused

    def _until(self, done: Callable[[], bool]) -> None:
        """Wait for `done`, watching the recording, the loop and typed commands."""
        while not done():
            if self._poll(WAKE_S):
                return

    def _poll(self, seconds: float, commands: bool = True) -> bool:
        """Wait up to `seconds`; True if the recording failed. Reads typed commands (unless a
        prompt is reading the typed lines), draws the status line, raises _LoopDied."""
        if self.eeg.recorder.failed.wait(seconds):
            return True
        if self.bcmi_died.is_set():
            raise _LoopDied
        self._status()
        command = self.console.typed() if commands else None
        if command in ("p", "pause"):
            self.pause_requested = True
        elif command in ("r", "resume"):
            self.pause_requested = False
        elif command is not None:
            self.console.show(COMMANDS)
        return False

    def _status(self) -> None:
        if self.bcmi is None:
            loop = f"the BCMI loop starts with {self.protocol.baseline_block}"
        else:
            loop = loop_status(self.bcmi.loop, pylsl.local_clock())
        self.console.status(f"{self.doing} | {loop}")

    def _rate(self, dimension: str, block: str) -> int:
        if self.config.ratings == "auto":
            return 5
        self.doing = f"waiting for the SAM {dimension} rating"
        if self.page is not None:
            self.page.show(Screen("rating", dimension=dimension))
        self.marker("cue", cue=f"sam_{dimension}", block=block)
        if self.config.ratings == "prompt":
            self.console.show(f"SAM {dimension} (1-9): type it and Enter")
        return self._answer(dimension)

    def _answer(self, dimension: str) -> int:
        """The participant's rating: clicked or keyed on the page, or typed at the terminal.
        A pause typed meanwhile is held until the next block (the rating is not timed)."""
        on_page = self.page is not None and self.config.ratings == "page"
        while True:
            if self._poll(WAKE_S, commands=on_page):
                return 0  # the recording failed: the next marker raises its error
            if on_page:
                assert self.page is not None
                while not self.page.ratings.empty():
                    asked, value = self.page.ratings.get()
                    if asked == dimension:
                        return value
                continue
            answer = self.console.typed()
            if answer is not None and answer.isdigit() and 1 <= int(answer) <= 9:
                return int(answer)
            if answer is not None:
                self.console.show("please type a whole number from 1 to 9")

    def _start_bcmi(self, baseline_s: float) -> None:
        config = BciRunConfig(
            query=self.config.query,
            montage=self.config.montage,
            baseline_s=baseline_s,
            seed=self.config.seed,
            harmony=HarmonyConfig(kind=self.protocol.harmony, genre=self.protocol.genre),
        )
        outputs = BciOutputs(
            server_osc=self.config.server_osc,
            midi_port=self.config.midi_port,
            outlets=True,
            log_path=self.folder / LOOP_LOG,
            synth_driver=self.config.synth_driver,
        )

        def wrap(sink: MidiSink) -> MidiSink:
            self.gate = MusicGate(sink)
            return self.gate

        self.bcmi = BciSession(config, outputs, wrap_sink=wrap)
        self.bcmi_thread = threading.Thread(target=self._run_bcmi, name="bcmi-loop", daemon=True)
        self.bcmi_thread.start()

    def _run_bcmi(self) -> None:
        assert self.bcmi is not None
        try:
            self.bcmi.run()
        except Exception as error:  # the session stops on it, in one line (run())
            self.bcmi_failure = error
            self.bcmi_died.set()

    def _export(self) -> Path:
        recorded = read_session(self.folder)
        manifest = build_manifest({"runner": repr(self.config)}, self.config.protocol)
        extra = [self.config.protocol, self.folder / LOOP_LOG]
        return export_bids(
            recorded,
            self.config.out / "bids",
            self.label,
            self.session,
            TASK,
            self.config.covariates,
            manifest,
            [p for p in extra if p.is_file()],
            overwrite=self.config.overwrite,
        )
