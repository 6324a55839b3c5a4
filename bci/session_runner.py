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
"""

from __future__ import annotations

import json
import threading
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
        self.bcmi: BciSession | None = None
        self.bcmi_thread: threading.Thread | None = None
        self.bcmi_error: BciError | None = None
        self.gate: MusicGate | None = None
        self.server = ServerControl(config.server_osc) if config.server_osc else None

    def marker(self, kind: str, **fields: object) -> None:
        now = pylsl.local_clock()
        self.eeg.recorder.marker(kind, now, **fields)
        self.markers.push_sample([json.dumps({"kind": kind, **fields})], now)

    def run(self) -> Path:
        try:
            for planned in self.plan:
                self._block(planned)
            self.marker("session_end")
        finally:
            if self.server is not None:
                self.server.instruction("")
            if self.bcmi is not None and self.bcmi_thread is not None:
                self.bcmi.stop()
                self.bcmi_thread.join(timeout=5)
            self.eeg.close()
        if self.bcmi_error is not None:
            raise self.bcmi_error
        return self._export()

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
        # A recording that fails (a full disk) ends the block at once: the marker below then
        # raises the recorder's error, and the session stops keeping what reached the disk.
        self.eeg.recorder.failed.wait(block.duration_s)
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
            log_path=self.folder / "bcmi_loop.jsonl",
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
        except BciError as error:  # raised by run() once the loop has stopped
            self.bcmi_error = error

    def _export(self) -> Path:
        recorded = read_session(self.folder)
        manifest = build_manifest({"runner": repr(self.config)}, self.config.protocol)
        extra = [self.config.protocol, self.folder / "bcmi_loop.jsonl"]
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
