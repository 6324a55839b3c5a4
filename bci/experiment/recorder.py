"""Crash-safe raw recording of a session: EEG and markers, appended as they come.

An experimenter expects a session to survive the software: if the process is killed (even
`kill -9`), what is in the session folder must be readable and miss at most the last second.

Layout of a session folder (all append-only, little-endian, one clock: `pylsl.local_clock`):

- `eeg.json`: written once, atomically, before anything else: labels, rate, units, dtypes and
  the channel count. Its presence is what marks the folder as holding a session.
- `eeg_timestamps.f64`: one float64 LSL stamp per sample.
- `eeg_samples.f32`: one record of `channels` float32 per sample (sample-major), so a record
  is a fixed size and the n-th record of both files is the n-th sample.
- `markers.jsonl`: typed events `{"kind", "lsl_time", ...fields}`, one JSON object per line.
- `closed.json`: written by `close()` with the counts, so a reader can tell a clean end from a
  cut one.

Why two EEG files rather than one record of stamp + samples: float64 stamps cannot share an
array with float32 samples without a packed struct, and two plain arrays can be read by
`np.fromfile` (or any language) without knowing our struct. A crash can leave the files
different lengths (one written, the other not yet); the reader keeps the shorter, which is
always a prefix of what was written to both, and drops a torn last record.

The BCMI loop's log (windows, input events, MIDI) is not ours: the session runner gives the
loop its own JSON-lines log, `bcmi_loop.jsonl` in the same folder, the format `bci run --log`
writes and `bench bci` reads. Each line reaches the OS as it is written, and a failed write
stops that log, not the music. (Earlier versions also created a `loop.jsonl` here that
nothing wrote to; overwriting a session removes it.)

Writing and flushing. Callers (the EEG thread, the runner) only serialise their
data and append bytes to an in-memory list under a lock: nothing on their path touches the
disk. A flusher thread hands the pending bytes to the OS every `flush_interval_s` (0.5 s by
default, leaving margin under the 1 s promise) with plain unbuffered `os.write`s of whole
records. Two different guarantees follow:

- kill -9, a crash, an exception: once `write()` has returned, the bytes live in the kernel's
  page cache and reach the disk whether or not the process survives. So a killed process
  loses only what was still pending, under `flush_interval_s`.
- power loss or a kernel panic: the page cache is lost too; only `os.fsync` protects against
  that. fsync can take tens of milliseconds on a busy disk, but it runs on the flusher thread
  only, so it is on by default (`sync_to_disk`); turn it off on media where it is very slow.

If the flusher fails (disk full), the error is kept and raised by the next call on the
recorder, and `failed` is set so a runner can stop at once: it never fails silently.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from bci.errors import BciError, write_failure

FORMAT_NAME = "bandmate-session-recording"
FORMAT_VERSION = 1
HEADER_FILE = "eeg.json"
TIMESTAMPS_FILE = "eeg_timestamps.f64"
SAMPLES_FILE = "eeg_samples.f32"
MARKERS_FILE = "markers.jsonl"
CLOSED_FILE = "closed.json"
SESSION_FILES = (HEADER_FILE, TIMESTAMPS_FILE, SAMPLES_FILE, MARKERS_FILE, CLOSED_FILE)
LEGACY_FILES = ("loop.jsonl",)  # always empty: removed with the session files they came with
TIMESTAMP_DTYPE = np.dtype("<f8")
SAMPLE_DTYPE = np.dtype("<f4")


def _json_default(value: object) -> object:
    """numpy scalars and arrays become plain JSON numbers and lists."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _json_line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), default=_json_default) + "\n").encode()


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write to a temporary file, fsync, rename: readers see the whole file or none of it."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w") as file:
        json.dump(data, file, indent=2)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)


def _sync_folder(folder: Path) -> None:
    """fsync the directory, so new file names survive a power loss as well as the data."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@dataclass
class _Pending:
    """Bytes handed over by callers, not yet given to the OS."""

    timestamps: list[bytes] = field(default_factory=list)
    samples: list[bytes] = field(default_factory=list)
    markers: list[bytes] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.timestamps or self.markers)


class SessionRecorder:
    """Appends a session's EEG and markers to `folder`; see the module docstring.
    Thread-safe. Use as a context manager, or call `close()`: the last half second of data is
    written by it."""

    def __init__(
        self,
        folder: Path,
        labels: list[str],
        rate: float,
        units: str = "microvolts",
        overwrite: bool = False,
        flush_interval_s: float = 0.5,
        sync_to_disk: bool = True,
    ) -> None:
        if not labels:
            raise ValueError("a recording needs at least one channel label")
        if not (np.isfinite(rate) and rate > 0):
            raise ValueError(f"the sample rate must be positive, got {rate}")
        if not 0 < flush_interval_s <= 1.0:
            raise ValueError(f"flush_interval_s must be within (0, 1] s, got {flush_interval_s}")
        self.folder = folder
        self.labels = list(labels)
        self.rate = float(rate)
        self.flush_interval_s = flush_interval_s
        self.sync_to_disk = sync_to_disk
        self._prepare_folder(folder, overwrite)
        _write_atomically(
            folder / HEADER_FILE,
            {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "labels": self.labels,
                "channels": len(self.labels),
                "rate": self.rate,
                "units": units,
                "timestamps": {"file": TIMESTAMPS_FILE, "dtype": TIMESTAMP_DTYPE.str},
                "samples": {"file": SAMPLES_FILE, "dtype": SAMPLE_DTYPE.str, "order": "sample"},
                "clock": "pylsl.local_clock",
                "started_unix": time.time(),  # wall time, for people; stamps are LSL's
            },
        )
        names = (TIMESTAMPS_FILE, SAMPLES_FILE, MARKERS_FILE)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self._descriptors = [os.open(folder / name, flags, 0o644) for name in names]
        _sync_folder(folder)
        self._pending = _Pending()
        self._pending_lock = threading.Lock()  # callers <-> flusher hand-over
        self._io_lock = threading.Lock()  # one flush at a time (flusher thread or close)
        self._counts = {"samples": 0, "markers": 0}
        self._failure: BaseException | None = None
        self.failed = threading.Event()  # set when the disk refused a write
        self._closed = False
        self._stop = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_periodically, name="bci-recorder-flush", daemon=True
        )
        self._flusher.start()

    @staticmethod
    def _prepare_folder(folder: Path, overwrite: bool) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BciError(f"cannot create the session folder {folder}: {error.strerror}") from None
        existing = [name for name in SESSION_FILES if (folder / name).exists()]
        if existing and not overwrite:
            raise BciError(
                f"{folder} already holds a recorded session ({', '.join(existing)}); "
                "choose another folder, or overwrite it on purpose"
            )
        for name in existing + [n for n in LEGACY_FILES if (folder / n).exists()]:
            (folder / name).unlink()  # only our own files: anything else in the folder stays

    def __enter__(self) -> SessionRecorder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._failure is not None:
            raise BciError(write_failure("recording to", self.folder, self._failure))
        if self._closed:
            raise RuntimeError("the recorder is closed")

    def write_eeg(self, timestamps: np.ndarray, samples: np.ndarray) -> None:
        """Append n samples: `timestamps` [n] on LSL's clock, `samples` [channels, n] in the
        recorder's units (stored as float32)."""
        stamps = np.asarray(timestamps, dtype=TIMESTAMP_DTYPE)
        values = np.asarray(samples)
        if stamps.ndim != 1 or values.shape != (len(self.labels), len(stamps)):
            raise ValueError(
                f"expected timestamps [n] and samples [{len(self.labels)}, n], got "
                f"{stamps.shape} and {values.shape}"
            )
        records = np.ascontiguousarray(values.T, dtype=SAMPLE_DTYPE).tobytes()  # [n, channels]
        with self._pending_lock:
            self._check_open()
            self._pending.timestamps.append(stamps.tobytes())
            self._pending.samples.append(records)
            self._counts["samples"] += len(stamps)

    def marker(self, kind: str, lsl_time: float, **fields: Any) -> None:
        """A typed event (block_start, rating, ...) at `lsl_time`; `fields` must be JSON-able.
        A `duration_s` field becomes the event's duration in a BIDS export."""
        line = _json_line({"kind": kind, "lsl_time": float(lsl_time), **fields})
        with self._pending_lock:
            self._check_open()
            self._pending.markers.append(line)
            self._counts["markers"] += 1

    def flush(self) -> None:
        """Hand everything pending to the OS now (and fsync it if `sync_to_disk`)."""
        with self._io_lock:
            with self._pending_lock:
                pending, self._pending = self._pending, _Pending()
            if pending.empty():
                return
            # Stamps before samples: a kill between the two leaves the samples file the
            # shorter one, and the reader keeps only records present in both.
            batches = (pending.timestamps, pending.samples, pending.markers)
            for descriptor, chunks in zip(self._descriptors, batches, strict=True):
                if chunks:
                    _write_all(descriptor, b"".join(chunks))
            if self.sync_to_disk:
                for descriptor, chunks in zip(self._descriptors, batches, strict=True):
                    if chunks:
                        os.fsync(descriptor)

    def _flush_periodically(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            try:
                self.flush()
            except OSError as error:  # kept for the callers: see _check_open
                self._failure = error
                self.failed.set()
                return

    def close(self) -> None:
        """Stop the flusher, write what is pending, fsync, and mark the session complete."""
        with self._pending_lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._flusher.join()
        try:
            if self._failure is None:  # after a failure, what is on the disk is what is kept
                self.flush()
                for descriptor in self._descriptors:
                    os.fsync(descriptor)
        except OSError as error:
            self._failure = error
        finally:
            for descriptor in self._descriptors:
                os.close(descriptor)
        if self._failure is not None:  # no closed.json: the session did not end cleanly
            raise BciError(write_failure("recording to", self.folder, self._failure))
        _write_atomically(self.folder / CLOSED_FILE, {"closed_unix": time.time(), **self._counts})
        _sync_folder(self.folder)


def _write_all(descriptor: int, data: bytes) -> None:
    """os.write may write less than asked (signals, nearly full disks): loop until done."""
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


@dataclass(frozen=True)
class RecordedSession:
    """A session folder as read back: everything that reached the disk, in whole records."""

    folder: Path
    timestamps: np.ndarray  # [n] float64, LSL clock
    samples: np.ndarray  # [channels, n] float32, in `units`
    labels: tuple[str, ...]
    rate: float
    units: str
    markers: list[dict[str, Any]]
    complete: bool  # closed cleanly; False after a crash or while still recording
    repairs: tuple[str, ...] = ()  # what the reader had to tolerate, in words
    started_unix: float | None = None  # wall clock when recording began, for people


def _read_header(folder: Path) -> dict[str, Any]:
    path = folder / HEADER_FILE
    try:
        header = json.loads(path.read_text())
    except FileNotFoundError:
        raise BciError(f"{folder}: not a recorded session (no {HEADER_FILE})") from None
    except (OSError, ValueError) as error:
        raise BciError(f"{path}: cannot read the session header ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise BciError(f"{path}: not a Bandmate session header")
    if header.get("version") != FORMAT_VERSION:
        raise BciError(f"{path}: format version {header.get('version')} is not supported")
    return header


def _whole_records(path: Path, record_bytes: int, repairs: list[str]) -> int:
    """How many whole records the file holds; a torn last record is noted in `repairs`."""
    size = path.stat().st_size if path.exists() else 0
    torn = size % record_bytes
    if torn:
        repairs.append(f"{path.name}: ignored {torn} bytes of a torn last record")
    return size // record_bytes


def _read_jsonl(path: Path, repairs: list[str]) -> list[dict[str, Any]]:
    """Every whole JSON object; a torn last line (no newline, or cut mid-object) is dropped,
    and a damaged line elsewhere is skipped and noted rather than losing the rest."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    if lines[-1]:
        repairs.append(f"{path.name}: ignored a torn last line ({len(lines[-1])} bytes)")
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines[:-1], start=1):
        try:
            record = json.loads(line)
        except ValueError:
            repairs.append(f"{path.name}: skipped unreadable line {number}")
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            repairs.append(f"{path.name}: skipped line {number}, not a JSON object")
    return records


def read_session(folder: Path) -> RecordedSession:
    """Read a session folder, finished or cut short by a crash (or still being written)."""
    header = _read_header(folder)
    labels = tuple(str(label) for label in header["labels"])
    channels = len(labels)
    repairs: list[str] = []
    stamp_count = _whole_records(folder / TIMESTAMPS_FILE, TIMESTAMP_DTYPE.itemsize, repairs)
    sample_count = _whole_records(folder / SAMPLES_FILE, SAMPLE_DTYPE.itemsize * channels, repairs)
    count = min(stamp_count, sample_count)
    if stamp_count != sample_count:
        repairs.append(
            f"kept {count} samples: {stamp_count} timestamps and {sample_count} sample "
            "records reached the disk"
        )
    timestamps = (
        np.fromfile(folder / TIMESTAMPS_FILE, dtype=TIMESTAMP_DTYPE, count=count)
        if count
        else np.zeros(0, dtype=TIMESTAMP_DTYPE)
    )
    samples = (
        np.fromfile(folder / SAMPLES_FILE, dtype=SAMPLE_DTYPE, count=count * channels)
        if count
        else np.zeros(0, dtype=SAMPLE_DTYPE)
    )
    return RecordedSession(
        folder=folder,
        timestamps=timestamps.astype(np.float64),
        samples=np.ascontiguousarray(samples.reshape(count, channels).T),
        labels=labels,
        rate=float(header["rate"]),
        units=str(header["units"]),
        markers=_read_jsonl(folder / MARKERS_FILE, repairs),
        complete=(folder / CLOSED_FILE).exists(),
        repairs=tuple(repairs),
        started_unix=header.get("started_unix"),
    )
