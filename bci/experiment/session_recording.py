"""Where a participant's sessions are recorded, and the EEG recording of one.

A study folder holds `raw/sub-<label>/ses-<NN>/` (the crash-safe recording,
bci/experiment/recorder.py) and `bids/sub-<label>/ses-<NN>/` (its export). A participant's second
visit is a new session, `ses-02`, not a refusal: every session carries the BIDS session entity from
the first one, so a study never mixes sessions with and without it. A session named on purpose
(`--session 01`) that already exists is refused, in a line that names `--overwrite`.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pylsl

from bci.errors import BciError
from bci.experiment.recorder import SessionRecorder
from bci.live.lsl_input import channel_labels

SESSION_FOLDER = re.compile(r"ses-([A-Za-z0-9]+)")
FIRST_SAMPLE_TIMEOUT_S = 10.0


def recorded_sessions(out: Path, label: str) -> list[str]:
    """The session labels participant `label` has in the study folder `out`, raw or exported,
    sorted (numbers by value)."""
    found: set[str] = set()
    for folder in (out / "raw" / f"sub-{label}", out / "bids" / f"sub-{label}"):
        for path in folder.glob("ses-*"):
            match = SESSION_FOLDER.fullmatch(path.name)
            if match and path.is_dir() and any(path.iterdir()):
                found.add(match.group(1))
    return sorted(found, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))


def choose_session(out: Path, label: str, requested: str | None, overwrite: bool) -> str:
    """The session label to record: `requested`, or the next number after the participant's
    sessions (01 for a first visit), or with `overwrite` and none requested, the latest."""
    existing = recorded_sessions(out, label)
    numbers = [int(s) for s in existing if s.isdigit()]
    following = f"{max(numbers, default=0) + 1:02d}"
    if requested is None:
        return existing[-1] if overwrite and existing else following
    if not re.fullmatch(r"[A-Za-z0-9]+", requested):
        raise BciError(f"--session {requested!r}: a session label is letters and digits (01)")
    if requested in existing and not overwrite:
        raise BciError(
            f"sub-{label} already has session {requested} in {out}; leave out --session to "
            f"record the next one (ses-{following}), or give --overwrite to replace it"
        )
    return requested


class EegRecording:
    """Every channel of the stream, from a dedicated inlet, into the recorder."""

    def __init__(self, info: pylsl.StreamInfo, folder: Path, overwrite: bool):
        flags = pylsl.proc_clocksync | pylsl.proc_monotonize
        self.inlet = pylsl.StreamInlet(info, max_buflen=30, processing_flags=flags)
        full = self.inlet.info(timeout=2.0)
        self.name = full.name()
        self.inlet.time_correction(timeout=2.0)
        self.recorder = SessionRecorder(
            folder, channel_labels(full), full.nominal_srate(), overwrite=overwrite
        )
        self.first_sample = threading.Event()
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
                self.first_sample.set()

    def wait_for_first_sample(self) -> None:
        """Return once EEG is being recorded, so that no marker comes before it; BciError if
        the stream sends nothing."""
        if not self.first_sample.wait(FIRST_SAMPLE_TIMEOUT_S):
            raise BciError(
                f"LSL stream {self.name!r} sent no samples in {FIRST_SAMPLE_TIMEOUT_S:g} s: "
                "is the headset streaming?"
            )

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.inlet.close_stream()
        self.recorder.close()
