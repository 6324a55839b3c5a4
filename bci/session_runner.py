"""`bandmate session run`: one participant through a protocol, recorded without loss.

What runs, all on LSL's clock:
- the EEG stream, every channel, from its own inlet into the crash-safe `SessionRecorder`
  (bci/recorder.py: on disk within 0.5 s, so a kill -9 loses at most that);
- typed markers at every block boundary and rating, both into the recording and out on an
  LSL outlet ("BandmateMarkers", JSON strings) for any other recorder;
- the BCMI loop (bci/session_run.py), started when the protocol's baseline block starts and
  calibrated on exactly that block; its log goes into the session folder;
- per block, the music condition: "feedback" (the EEG drives it), "sham" (a seeded random
  walk drives it, so it sounds alike but ignores the EEG) or "silent" (note-ons dropped).
At the end the session is exported as BIDS (bci/bids_export.py) next to the raw folder.

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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pylsl

from bci.bids_export import build_manifest, export_bids
from bci.errors import BciError
from bci.loop import BciRunConfig
from bci.lsl_input import StreamQuery, channel_labels, resolve_stream
from bci.mapping import MusicParams, ParameterMapper
from bci.midi_out import MidiSink
from bci.montage import MUSE, Montage
from bci.protocol import (
    PlannedBlock,
    Protocol,
    load_protocol,
    participant_index,
    participant_label,
    plan_session,
)
from bci.recorder import SessionRecorder, read_session
from bci.session_run import BciOutputs, BciSession, ServerControl

TASK = "bcmi"  # the BIDS task label of every session (what `session analyze` reads)
LOOP_LOG = "bcmi_loop.jsonl"  # the BCMI loop's JSON-lines log, in the session folder
WAKE_S = 0.1  # how soon a block notices that the recording failed or the loop died


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


@dataclass(frozen=True)
class RunnerConfig:
    protocol: Path
    participant: str
    out: Path
    covariates: dict[str, float] = field(default_factory=dict)
    query: StreamQuery = field(default_factory=StreamQuery)
    montage: Montage = MUSE
    midi_port: str | None = None
    synth_driver: str | None = None
    ratings: str = "prompt"  # "prompt" asks on the terminal; "auto" records 5s (tests, demos)
    overwrite: bool = False
    seed: int = 0
    server_osc: str | None = None  # "HOST:PORT" of `bandmate serve --osc-port`: its page
    # shows the instructions, and the valence drives its accompaniment


def parse_covariates(text: str | None) -> dict[str, float]:
    """'musical_training=5,acting=0' -> {'musical_training': 5.0, 'acting': 0.0}."""
    covariates: dict[str, float] = {}
    for item in filter(None, (text or "").split(",")):
        name, _, value = item.partition("=")
        try:
            covariates[name.strip()] = float(value)
        except ValueError:
            raise BciError(f"covariate {item!r}: expected NAME=NUMBER") from None
        if not name.strip().isidentifier():
            raise BciError(f"covariate {item!r}: the name must be a word like musical_training")
    return covariates


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


class EegRecording:
    """Every channel of the stream, from a dedicated inlet, into the recorder."""

    def __init__(self, info: pylsl.StreamInfo, folder: Path, overwrite: bool):
        flags = pylsl.proc_clocksync | pylsl.proc_monotonize
        self.inlet = pylsl.StreamInlet(info, max_buflen=30, processing_flags=flags)
        full = self.inlet.info(timeout=2.0)
        self.inlet.time_correction(timeout=2.0)
        self.recorder = SessionRecorder(
            folder, channel_labels(full), full.nominal_srate(), overwrite=overwrite
        )
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="eeg-recording", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            samples, stamps = self.inlet.pull_chunk(timeout=0.05)
            if stamps:
                try:
                    self.recorder.write_eeg(np.asarray(stamps), np.asarray(samples, np.float32).T)
                except BciError:  # the disk failed: the runner stops and names it
                    return

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.inlet.close_stream()
        self.recorder.close()


class SessionRunner:
    def __init__(
        self,
        config: RunnerConfig,
        show: Callable[[str], None] = print,
        ask: Callable[[str], str] = input,
    ):
        self.config, self.show, self.ask = config, show, ask
        self.protocol: Protocol = load_protocol(config.protocol)
        self.plan: list[PlannedBlock] = plan_session(
            self.protocol, participant_index(config.participant)
        )
        self.label = participant_label(config.participant)  # "sub-07" and "07" are one person
        self.folder = config.out / "raw" / f"sub-{self.label}"
        info = resolve_stream(config.query)
        self.eeg = EegRecording(info, self.folder, config.overwrite)
        outlet_info = pylsl.StreamInfo(
            "BandmateMarkers",
            "Markers",
            1,
            pylsl.IRREGULAR_RATE,
            "string",
            f"bandmate-markers-{self.label}",
        )
        self.markers = pylsl.StreamOutlet(outlet_info)
        if config.overwrite:  # the loop's log is opened for appending
            (self.folder / LOOP_LOG).unlink(missing_ok=True)
        self.bcmi: BciSession | None = None
        self.bcmi_thread: threading.Thread | None = None
        self.bcmi_failure: Exception | None = None
        self.bcmi_died = threading.Event()
        self.gate: MusicGate | None = None
        self.current: PlannedBlock | None = None
        self.server = ServerControl(config.server_osc) if config.server_osc else None

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

    def _block(self, planned: PlannedBlock) -> None:
        block = planned.block
        if block.name == self.protocol.baseline_block and self.bcmi is None:
            self._start_bcmi(block.duration_s)
        if self.gate is not None and self.bcmi is not None:
            self.gate.condition = block.music
            sham = ShamParams(self.config.seed + planned.index, self.bcmi.loop.processor.mapper)
            self.bcmi.params_override = sham if block.music == "sham" else None
        self.show(
            f"[{planned.index + 1}/{len(self.plan)}] {block.name}: {block.instruction} "
            f"({block.duration_s:g} s)"
        )
        if self.server is not None:
            self.server.instruction(block.instruction)
        fields = {
            "block": block.name,
            "block_kind": block.kind,
            "music": block.music,
            "target_emotion": block.target_emotion,
            "repetition": planned.repetition,
        }
        self.marker("block_start", duration_s=block.duration_s, **fields)
        self._wait(block.duration_s)
        self.marker("block_end", **fields)
        if block.ratings:
            valence, arousal = self._rate("valence"), self._rate("arousal")
            self.marker(
                "rating",
                block=block.name,
                valence=valence,
                arousal=arousal,
                source=self.config.ratings,
            )

    def _wait(self, seconds: float) -> None:
        """The block's time, cut short by a failed recording (a full disk: the next marker
        raises the recorder's error, and the session stops keeping what reached the disk) or
        by the BCMI loop dying (_LoopDied)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.eeg.recorder.failed.wait(min(left, WAKE_S)):
                return
            if self.bcmi_died.is_set():
                raise _LoopDied

    def _rate(self, dimension: str) -> int:
        if self.config.ratings == "auto":
            return 5
        while True:
            answer = self.ask(f"SAM {dimension} (1-9): ").strip()
            if answer.isdigit() and 1 <= int(answer) <= 9:
                return int(answer)
            self.show("please type a whole number from 1 to 9")

    def _start_bcmi(self, baseline_s: float) -> None:
        config = BciRunConfig(
            query=self.config.query,
            montage=self.config.montage,
            baseline_s=baseline_s,
            seed=self.config.seed,
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
            None,
            TASK,
            self.config.covariates,
            manifest,
            [p for p in extra if p.is_file()],
            overwrite=self.config.overwrite,
        )
