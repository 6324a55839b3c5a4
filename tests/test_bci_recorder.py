"""The session recorder (crash-safe raw files) and the BIDS export of what it recorded.

The kill -9 test runs the recorder in a child process fed by a real LSL outlet (the
simulator, in this process, goes on like a headset would) and kills it without warning. The
BIDS tests read the dataset back with mne_bids.read_raw_bids: with no `bids-validator`
installed, that round trip is the acceptance check for the export."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
import pytest

from bci.errors import BciError
from bci.experiment.bids_export import build_manifest, export_bids, read_back
from bci.experiment.recorder import (
    MARKERS_FILE,
    SAMPLES_FILE,
    RecordedSession,
    SessionRecorder,
    read_session,
)
from bci.live.simulate import Schedule, Simulator, SimulatorConfig, synthesize

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["TP9", "AF7", "AF8", "TP10"]
RATE = 256.0


def chunks_of_eeg(total: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Irregular chunks (as LSL delivers them) of float32-exact microvolts and LSL stamps."""
    rng = np.random.default_rng(seed)
    samples = rng.normal(0.0, 20.0, (len(LABELS), total)).astype(np.float32)
    stamps = 1000.0 + np.arange(total) / RATE
    edges = np.unique(np.r_[0, np.sort(rng.integers(1, total, 12)), total])
    return [(stamps[a:b], samples[:, a:b]) for a, b in pairwise(edges)]


def record(folder: Path, total: int = 1000) -> list[tuple[np.ndarray, np.ndarray]]:
    chunks = chunks_of_eeg(total)
    with SessionRecorder(folder, LABELS, RATE) as recorder:
        for stamps, samples in chunks:
            recorder.write_eeg(stamps, samples)
    return chunks


def test_read_session_returns_exactly_what_was_written(tmp_path: Path) -> None:
    chunks = chunks_of_eeg(1500)
    markers: list[dict[str, Any]] = [
        {"kind": "block_start", "lsl_time": 1000.5, "block": 1, "condition": "happy"},
        {"kind": "rating", "lsl_time": 1003.25, "valence": 0.75, "scale": [1, 9]},
    ]
    with SessionRecorder(tmp_path / "s", LABELS, RATE) as recorder:
        for stamps, samples in chunks:
            recorder.write_eeg(stamps, samples)
        for marker in markers:
            fields = {k: v for k, v in marker.items() if k not in ("kind", "lsl_time")}
            recorder.marker(str(marker["kind"]), float(marker["lsl_time"]), **fields)

    session = read_session(tmp_path / "s")
    np.testing.assert_array_equal(session.timestamps, np.concatenate([c[0] for c in chunks]))
    np.testing.assert_array_equal(session.samples, np.concatenate([c[1] for c in chunks], axis=1))
    assert session.labels == tuple(LABELS) and session.rate == RATE
    assert session.units == "microvolts"
    assert session.markers == markers
    assert session.complete and session.repairs == ()


def test_a_torn_last_sample_record_is_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    chunks = record(tmp_path / "s", total=100)
    path = tmp_path / "s" / SAMPLES_FILE
    os.truncate(path, path.stat().st_size - 5)  # 11 of the last record's 16 bytes remain

    session = read_session(tmp_path / "s")
    all_samples = np.concatenate([c[1] for c in chunks], axis=1)
    assert session.samples.shape == (4, 99)
    np.testing.assert_array_equal(session.samples, all_samples[:, :99])
    np.testing.assert_array_equal(session.timestamps, np.concatenate([c[0] for c in chunks])[:99])
    assert any("torn" in repair for repair in session.repairs)


def test_a_torn_last_marker_line_is_dropped(tmp_path: Path) -> None:
    with SessionRecorder(tmp_path / "s", LABELS, RATE) as recorder:
        recorder.marker("block_start", 1.0, block=1)
    with (tmp_path / "s" / MARKERS_FILE).open("ab") as file:
        file.write(b'{"kind":"rating","lsl_t')

    assert read_session(tmp_path / "s").markers == [
        {"kind": "block_start", "lsl_time": 1.0, "block": 1}
    ]


def test_data_reaches_the_disk_within_a_second_while_recording(tmp_path: Path) -> None:
    (stamps, samples), *_ = chunks_of_eeg(300)
    with SessionRecorder(tmp_path / "s", LABELS, RATE) as recorder:
        recorder.write_eeg(stamps, samples)
        recorder.marker("block_start", 2.0)
        time.sleep(1.0)
        session = read_session(tmp_path / "s")  # still open: a reader sees what a crash leaves
    assert not session.complete
    np.testing.assert_array_equal(session.samples, samples)
    assert session.markers == [{"kind": "block_start", "lsl_time": 2.0}]


def test_concurrent_writers_lose_and_interleave_nothing(tmp_path: Path) -> None:
    with SessionRecorder(tmp_path / "s", LABELS, RATE) as recorder:

        def write(thread: int) -> None:
            for i in range(400):
                recorder.marker("note", float(i), thread=thread, i=i, text="x" * (i % 50))

        writers = [threading.Thread(target=write, args=(t,)) for t in range(4)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
    markers = read_session(tmp_path / "s").markers
    assert len(markers) == 1600
    for thread in range(4):
        assert [m["i"] for m in markers if m["thread"] == thread] == list(range(400))


def test_refuses_a_folder_that_holds_a_session(tmp_path: Path) -> None:
    record(tmp_path / "s", total=10)
    with pytest.raises(BciError, match="already holds a recorded session") as error:
        SessionRecorder(tmp_path / "s", LABELS, RATE)
    assert "\n" not in str(error.value)
    assert read_session(tmp_path / "s").samples.shape == (4, 10)  # untouched


def test_overwrite_replaces_the_session_and_keeps_other_files(tmp_path: Path) -> None:
    record(tmp_path / "s", total=10)
    (tmp_path / "s" / "notes.txt").write_text("participant was tired")
    with SessionRecorder(tmp_path / "s", ["Fz"], RATE, overwrite=True) as recorder:
        recorder.write_eeg(np.array([5.0]), np.array([[1.5]]))
    session = read_session(tmp_path / "s")
    assert session.labels == ("Fz",) and session.samples.tolist() == [[1.5]]
    assert (tmp_path / "s" / "notes.txt").read_text() == "participant was tired"


# The recorder in a child process: pulls a real LSL outlet, and reports on stdout (after each
# call returned) what it has handed to the recorder and when, on LSL's clock.
RECORDING_CHILD = """
import sys, time
from pathlib import Path
# first: bci sets liblsl's config before pylsl loads
from bci.experiment.recorder import SessionRecorder
import pylsl

source_id, folder, labels = sys.argv[1], Path(sys.argv[2]), sys.argv[3].split(",")
(info,) = pylsl.resolve_byprop("source_id", source_id, timeout=10)
inlet = pylsl.StreamInlet(info, processing_flags=pylsl.proc_clocksync | pylsl.proc_monotonize)
recorder = SessionRecorder(folder, labels, info.nominal_srate())
total, ticks, next_tick = 0, 0, pylsl.local_clock()
while True:
    chunk, stamps = inlet.pull_chunk(0.0, 1024, as_numpy=True)
    if len(stamps):
        recorder.write_eeg(stamps, chunk.T)
        total += len(stamps)
        print("eeg", total, pylsl.local_clock(), flush=True)
    if pylsl.local_clock() >= next_tick:
        recorder.marker("tick", pylsl.local_clock(), seq=ticks)
        print("marker", ticks, pylsl.local_clock(), flush=True)
        ticks, next_tick = ticks + 1, next_tick + 0.2
    time.sleep(0.01)
"""


@pytest.mark.slow
def test_kill_9_loses_at_most_the_last_second(tmp_path: Path) -> None:
    name = f"test-{uuid.uuid4().hex[:10]}"
    config = SimulatorConfig(name=name, source_id=name)
    simulator = Simulator(config, Schedule())
    simulator.start()
    folder = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-c", RECORDING_CHILD, name, str(folder), ",".join(config.channels)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    reports: list[tuple[str, int, float]] = []
    first_report = threading.Event()

    def read_reports() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            kind, number, at = line.split()
            reports.append((kind, int(number), float(at)))
            if kind == "eeg":
                first_report.set()

    reader = threading.Thread(target=read_reports, daemon=True)
    reader.start()
    try:
        assert first_report.wait(30), "the recording child never wrote EEG"
        time.sleep(3.0)
        killed_at = pylsl.local_clock()
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
        simulator.stop()
    reader.join(10)

    session = read_session(folder)
    assert not session.complete
    recorded = session.samples.shape[1]
    promised = max(n for kind, n, at in reports if kind == "eeg" and at <= killed_at - 1.0)
    assert recorded >= promised, f"{recorded} samples on disk, {promised} handed over 1 s earlier"
    start = session.timestamps[0]
    assert recorded >= (killed_at - start - 1.0) * RATE
    # The samples are the simulator's, in order: sample k is stamped origin + k / rate.
    first_index = round((start - simulator.origin) * RATE)
    expected = synthesize(config, Schedule(), first_index, recorded).astype(np.float32)
    np.testing.assert_allclose(session.samples, expected, rtol=0, atol=1e-4)
    written_ticks = [n for kind, n, at in reports if kind == "marker" and at <= killed_at - 1.0]
    on_disk = [marker["seq"] for marker in session.markers]
    assert on_disk == list(range(len(on_disk))) and set(written_ticks) <= set(on_disk)


@pytest.fixture
def recorded_session(tmp_path: Path) -> RecordedSession:
    """Three seconds of simulated Muse EEG with a 0.25 s dropout and three markers."""
    config = SimulatorConfig()
    samples = synthesize(config, Schedule(), 0, 768).astype(np.float32)
    stamps = 500.0 + np.arange(768) / RATE
    kept = np.r_[0:300, 364:768]  # samples 300..363 never arrived
    with SessionRecorder(tmp_path / "session", list(config.channels), RATE) as recorder:
        recorder.write_eeg(stamps[kept], samples[:, kept])
        recorder.marker("block_start", 500.5, block=1, duration_s=1.5)
        recorder.marker("rating", stamps[400], valence=7.0)
        recorder.marker("session_end", 600.0)  # after the EEG: cannot be placed in events.tsv
    return read_session(tmp_path / "session")


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file, delimiter="\t"))


def test_bids_export_reads_back_as_recorded(
    recorded_session: RecordedSession, tmp_path: Path
) -> None:
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text("blocks: 2\n")
    manifest = build_manifest({"seed": 0}, protocol)
    root = tmp_path / "bids"
    export_bids(recorded_session, root, "01", None, "bcmi", {"baseline_faa": 0.25, "mood": 6.0},
                manifest, [protocol])  # fmt: skip

    raw = read_back(root, "01", "bcmi")
    assert raw.ch_names == list(recorded_session.labels)
    assert raw.info["sfreq"] == RATE and raw.n_times == 704
    np.testing.assert_allclose(raw.get_data() * 1e6, recorded_session.samples, rtol=1e-6, atol=1e-5)
    events = read_tsv(root / "sub-01" / "eeg" / "sub-01_task-bcmi_events.tsv")
    assert [e["trial_type"] for e in events] == ["block_start", "rating"]
    # Onsets sit on the sample axis: the rating came with original sample 400, now 336.
    assert float(events[0]["onset"]) == pytest.approx(128 / RATE, abs=1e-3)
    assert float(events[0]["duration"]) == 1.5
    assert float(events[1]["onset"]) == pytest.approx(336 / RATE, abs=1e-3)
    assert list(raw.annotations.description) == ["block_start", "rating"]
    (participant,) = read_tsv(root / "participants.tsv")
    assert participant["participant_id"] == "sub-01"
    assert float(participant["baseline_faa"]) == 0.25 and float(participant["mood"]) == 6.0
    assert "mood" in json.loads((root / "participants.json").read_text())
    source = root / "sourcedata" / "sub-01" / "eeg"
    assert (source / "protocol.yaml").read_text() == "blocks: 2\n"
    copied = json.loads((source / "sub-01_task-bcmi_desc-manifest.json").read_text())
    assert copied["config_sha256"] == manifest["config_sha256"]
    assert copied["recording"]["markers_outside_eeg"] == 1
    log = (source / "sub-01_task-bcmi_desc-markers_log.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in log] == recorded_session.markers
    np.testing.assert_array_equal(
        np.load(source / "sub-01_task-bcmi_desc-lsl_timestamps.npy"), recorded_session.timestamps
    )


def test_bids_export_adds_a_second_participant_and_session_without_losing_the_first(
    recorded_session: RecordedSession, tmp_path: Path
) -> None:
    root = tmp_path / "bids"
    export_bids(recorded_session, root, "01", "1", "bcmi", {"mood": 6.0}, {}, [])
    export_bids(recorded_session, root, "02", "1", "bcmi", {"alertness": 3.0}, {}, [])
    rows = {row["participant_id"]: row for row in read_tsv(root / "participants.tsv")}
    assert rows["sub-01"]["mood"] == "6.0" and rows["sub-01"]["alertness"] == "n/a"
    assert rows["sub-02"]["alertness"] == "3.0"
    assert {"mood", "alertness"} <= set(json.loads((root / "participants.json").read_text()))
    (ses,) = read_tsv(root / "sub-01" / "sub-01_sessions.tsv")
    assert ses["session_id"] == "ses-1" and ses["mood"] == "6.0"
    assert read_back(root, "01", "bcmi", session="1").n_times == 704
    with pytest.raises(BciError, match="exists"):
        export_bids(recorded_session, root, "01", "1", "bcmi", {}, {}, [])


@pytest.mark.filterwarnings("error::RuntimeWarning")  # mne's own cut warns
def test_a_block_planned_past_the_last_sample_ends_there_in_events_tsv(tmp_path: Path) -> None:
    config = SimulatorConfig()
    samples = synthesize(config, Schedule(), 0, 512).astype(np.float32)
    stamps = 500.0 + np.arange(512) / RATE
    with SessionRecorder(tmp_path / "session", list(config.channels), RATE) as recorder:
        recorder.write_eeg(stamps, samples)
        recorder.marker("block_start", stamps[400], block=1, duration_s=10.0)
    root = tmp_path / "bids"
    export_bids(read_session(tmp_path / "session"), root, "01", None, "bcmi", {}, {}, [])
    (event,) = read_tsv(root / "sub-01" / "eeg" / "sub-01_task-bcmi_events.tsv")
    assert float(event["duration"]) == pytest.approx(111 / RATE, abs=1e-3)
    markers = read_session(tmp_path / "session").markers
    assert markers[0]["duration_s"] == 10.0, "the markers log keeps the planned duration"


def test_markers_just_outside_the_eeg_are_clamped_onto_it_and_flagged(tmp_path: Path) -> None:
    """A session's first block_start stamped 1 ms before the first EEG sample arrived, and its
    session_end 50 ms after the last: both stay in events.tsv, on the edge samples."""
    config = SimulatorConfig()
    samples = synthesize(config, Schedule(), 0, 512).astype(np.float32)
    stamps = 500.0 + np.arange(512) / RATE
    with SessionRecorder(tmp_path / "session", list(config.channels), RATE) as recorder:
        recorder.write_eeg(stamps, samples)
        recorder.marker("block_start", stamps[0] - 0.001, block="eyes_open", duration_s=1.0)
        recorder.marker("block_start", stamps[256], block="eyes_closed", duration_s=0.5)
        recorder.marker("session_end", stamps[-1] + 0.05)
        recorder.marker("late", stamps[-1] + 5.0)  # not "just after": left out
    root = tmp_path / "bids"
    export_bids(read_session(tmp_path / "session"), root, "01", None, "bcmi", {}, {}, [])
    events = read_tsv(root / "sub-01" / "eeg" / "sub-01_task-bcmi_events.tsv")
    assert [e["trial_type"] for e in events] == ["block_start", "block_start", "session_end"]
    first, inside, end = events
    assert (first["block"], float(first["onset"])) == ("eyes_open", 0.0)
    assert float(first["outside_eeg_s"]) == pytest.approx(-0.001)
    assert float(first["duration"]) == pytest.approx(0.999, abs=1e-3)  # it still ends on time
    assert inside["outside_eeg_s"] == "n/a"
    assert float(end["onset"]) == pytest.approx(511 / RATE, abs=1e-3)
    assert float(end["outside_eeg_s"]) == pytest.approx(0.05)
    described = json.loads((root / "sub-01" / "eeg" / "sub-01_task-bcmi_events.json").read_text())
    assert "before the first sample" in described["outside_eeg_s"]["Description"]
