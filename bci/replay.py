"""Recorded EEG played back over LSL with its original timing.

`read_recording` turns a file into a `Recording`: microvolts [channels, samples], labels, the
sample rate and, where the file has them (XDF), the samples' own timestamps. Formats: EDF/BDF
(pyedflib), XDF (pyxdf) and `.npz` with `data` [samples, channels] in microvolts, `labels` and
`rate` (our interchange format). FIF and BrainVision need mne, which this project does not
carry; they, and every other problem a user can fix, raise a one-line `BciError`.

Timing model. Each sample has an offset in seconds from the first one: `k / rate` for sample k,
or, for XDF, the file's timestamp minus its first (so gaps in the recording stay gaps). The
`Replayer` stamps a sample `origin + offset / speed` on `pylsl.local_clock()` and pushes it no
earlier than that time, so stamps are never in the future and a receiver sees the recording's
timing as if the headset were live. `speed` fast-forwards (or slows) the wall clock only: the
nominal rate stays the file's, so spectra keep their frequencies. With `loop`, pass p of the
recording is shifted by p times its span (last offset + one period), so the sample grid runs on
across the seam without a gap or an overlap.
"""

from __future__ import annotations

import logging
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pylsl

from bci.errors import BciError

EDF_SUFFIXES = (".edf", ".bdf")
XDF_SUFFIXES = (".xdf", ".xdfz")
NPZ_SUFFIXES = (".npz",)
MNE_SUFFIXES = (".fif", ".vhdr", ".vmrk", ".eeg")  # FIF and BrainVision
# Microvolts per unit, keyed by the unit lower-cased with the micro sign spelled "u".
MICROVOLTS_PER = {
    "nv": 1e-3,
    "uv": 1.0,
    "microvolt": 1.0,
    "microvolts": 1.0,
    "mv": 1e3,
    "millivolt": 1e3,
    "millivolts": 1e3,
    "v": 1e6,
    "volt": 1e6,
    "volts": 1e6,
}


@dataclass(frozen=True)
class Recording:
    data: np.ndarray  # [channels, samples] float64 microvolts
    labels: tuple[str, ...]
    rate: float  # nominal samples per second
    timestamps: np.ndarray | None = None  # [samples] seconds from the first sample, or None

    @property
    def samples(self) -> int:
        return int(self.data.shape[1])

    @property
    def offsets(self) -> np.ndarray:
        """Seconds from the first sample to each sample: the file's stamps, or the grid."""
        if self.timestamps is not None:
            return self.timestamps
        return np.arange(self.samples) / self.rate

    @property
    def span_s(self) -> float:
        """Length of one pass: the last offset plus one sample period."""
        return float(self.offsets[-1]) + 1.0 / self.rate


def _suffix(path: Path) -> str:
    return ".fif" if path.name.lower().endswith(".fif.gz") else path.suffix.lower()


def read_recording(path: Path, stream_name: str | None = None) -> Recording:
    """The EEG in `path` (EDF, BDF, XDF, npz); `stream_name` picks an XDF stream by name
    instead of the first of type EEG. Raises a one-line BciError for anything unusable."""
    suffix = _suffix(path)
    if suffix in MNE_SUFFIXES:
        raise BciError(f"{path}: FIF/BrainVision need mne: convert to EDF, e.g. with mne's export")
    readers = {
        **dict.fromkeys(EDF_SUFFIXES, _read_edf),
        **dict.fromkeys(NPZ_SUFFIXES, _read_npz),
    }
    if suffix not in readers and suffix not in XDF_SUFFIXES:
        known = ", ".join(EDF_SUFFIXES + XDF_SUFFIXES + NPZ_SUFFIXES)
        raise BciError(
            f"{path}: unknown EEG file type {suffix or '(none)'!r}; replay reads {known}"
        )
    if not path.is_file():
        raise BciError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise BciError(f"{path}: the file is empty")
    if suffix in XDF_SUFFIXES:
        return _checked(path, _read_xdf(path, stream_name))
    return _checked(path, readers[suffix](path))


def _checked(path: Path, recording: Recording) -> Recording:
    data, timestamps = recording.data, recording.timestamps
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
        raise BciError(f"{path}: no EEG samples in the file (data shape {data.shape})")
    if len(recording.labels) != data.shape[0]:
        raise BciError(f"{path}: {len(recording.labels)} labels for {data.shape[0]} channels")
    if not (np.isfinite(recording.rate) and recording.rate > 0):
        raise BciError(f"{path}: the sample rate must be positive, got {recording.rate:g}")
    bad = ~np.isfinite(data)
    if bad.any():
        channel, sample = (int(i[0]) for i in np.nonzero(bad))
        raise BciError(
            f"{path}: {int(bad.sum())} NaN or infinite values, the first in channel "
            f"{recording.labels[channel]!r} at sample {sample}"
        )
    if timestamps is not None and (
        len(timestamps) != data.shape[1] or not np.isfinite(timestamps).all()
    ):
        raise BciError(f"{path}: timestamps do not match the samples")
    return recording


def _reason(error: Exception, path: Path) -> str:
    """The first line of a library's error, without the path it repeats."""
    lines = str(error).strip().splitlines()
    text = lines[0].removeprefix(f"{path}: ").strip() if lines else ""
    return text or type(error).__name__


def _microvolts_per(unit: str, where: str) -> float:
    key = unit.strip().replace("\u00b5", "u").replace("\u03bc", "u").lower()
    if not key:
        return 1.0  # exports often leave the unit out; microvolts is what EEG means by default
    if key not in MICROVOLTS_PER:
        raise BciError(f"{where}: unit {unit.strip()!r} is not a voltage (uV, mV or V)")
    return MICROVOLTS_PER[key]


def _read_edf(path: Path) -> Recording:
    import pyedflib

    try:
        with pyedflib.EdfReader(str(path)) as reader:
            count = reader.signals_in_file
            labels = tuple(label.strip() for label in reader.getSignalLabels())
            rates = [float(reader.getSampleFrequency(i)) for i in range(count)]
            units = [reader.getPhysicalDimension(i) for i in range(count)]
            if len(set(rates)) > 1:
                by_rate = {
                    rate: [label for label, r in zip(labels, rates, strict=True) if r == rate]
                    for rate in dict.fromkeys(rates)
                }
                described = "; ".join(f"{r:g} Hz: {', '.join(ls)}" for r, ls in by_rate.items())
                raise BciError(f"{path}: signals have different sample rates ({described})")
            signals = [reader.readSignal(i) for i in range(count)]
    except OSError as error:
        raise BciError(f"{path}: not a readable EDF/BDF file ({_reason(error, path)})") from None
    if not signals:
        raise BciError(f"{path}: no signals in the file")
    scales = [
        _microvolts_per(unit, f"{path}: channel {label!r}")
        for unit, label in zip(units, labels, strict=True)
    ]
    data = np.stack(signals).astype(np.float64) * np.asarray(scales)[:, None]
    return Recording(data, labels, rates[0])


def _read_npz(path: Path) -> Recording:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in ("data", "labels", "rate") if key not in archive]
            if missing:
                raise BciError(
                    f"{path}: the npz lacks {', '.join(missing)} (needs data, labels, rate)"
                )
            data, labels, rate = archive["data"], archive["labels"], archive["rate"]
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise BciError(f"{path}: not a readable npz file ({_reason(error, path)})") from None
    if data.ndim != 2 or labels.ndim != 1 or rate.size != 1:
        raise BciError(
            f"{path}: expected data [samples, channels], labels [channels] and one rate; got "
            f"shapes {data.shape}, {labels.shape}, {rate.shape}"
        )
    if not np.issubdtype(data.dtype, np.number):
        raise BciError(f"{path}: data must be numeric, got {data.dtype}")
    return Recording(
        data.T.astype(np.float64), tuple(str(label) for label in labels), float(rate.item())
    )


def _xdf_text(info: dict, key: str) -> str:
    """pyxdf turns each XML element into a list of its children's dicts or text."""
    values = info.get(key) or [None]
    return str(values[0] or "")


def _read_xdf(path: Path, stream_name: str | None) -> Recording:
    import pyxdf

    # Without dejittering pyxdf warns "Segments and clock-segments differ" for every stream;
    # the CLI would print that to stderr. Its errors (file corruption) still get through.
    pyxdf_log = logging.getLogger("pyxdf")
    level = pyxdf_log.level
    pyxdf_log.setLevel(max(level, logging.ERROR))
    try:
        # Raw stamps, clock offsets applied: pyxdf's dejittering regresses stamps on the sample
        # count, which smears gaps shorter than its break threshold (1 s) into the neighbours.
        streams, _ = pyxdf.load_xdf(str(path), dejitter_timestamps=False)
    except Exception as error:  # pyxdf raises bare Exception, IOError, struct errors...
        raise BciError(f"{path}: not a readable XDF file ({_reason(error, path)})") from None
    finally:
        pyxdf_log.setLevel(level)
    infos = [stream["info"] for stream in streams]
    if stream_name is None:
        chosen = [i for i, info in enumerate(infos) if _xdf_text(info, "type").upper() == "EEG"]
        wanted = "of type EEG"
    else:
        chosen = [i for i, info in enumerate(infos) if _xdf_text(info, "name") == stream_name]
        wanted = f"named {stream_name!r}"
    if not chosen:
        found = ", ".join(f"{_xdf_text(i, 'name')!r} ({_xdf_text(i, 'type')})" for i in infos)
        raise BciError(f"{path}: no stream {wanted}; the file has {found or 'no streams'}")
    stream = streams[chosen[0]]
    info = stream["info"]
    name, rate = _xdf_text(info, "name"), float(_xdf_text(info, "nominal_srate") or 0)
    if not rate > 0:
        raise BciError(f"{path}: stream {name!r} has no nominal sample rate (irregular)")
    series = stream["time_series"]
    if not isinstance(series, np.ndarray) or not np.issubdtype(series.dtype, np.number):
        raise BciError(f"{path}: stream {name!r} holds strings, not EEG samples")
    channels = _xdf_channels(info)
    count = series.shape[1] if series.ndim == 2 else 0
    if len(channels) != count:
        channels = [(str(index), "") for index in range(count)]
    scales = [_microvolts_per(unit, f"{path}: channel {label!r}") for label, unit in channels]
    stamps = np.asarray(stream["time_stamps"], dtype=np.float64)
    if len(stamps) == 0:
        raise BciError(f"{path}: stream {name!r} has no samples")
    # A sample stamped before its predecessor cannot be sent before it: hold it at the
    # predecessor's time, as liblsl's proc_monotonize would.
    offsets = np.maximum.accumulate(stamps - stamps[0])
    data = series.T.astype(np.float64) * np.asarray(scales)[:, None]
    return Recording(data, tuple(label for label, _ in channels), rate, offsets)


def _xdf_channels(info: dict) -> list[tuple[str, str]]:
    """(label, unit) from desc/channels/channel; empty when the description has none."""
    try:
        entries = info["desc"][0]["channels"][0]["channel"]
    except (KeyError, IndexError, TypeError):
        return []
    channels = [(_xdf_text(entry, "label"), _xdf_text(entry, "unit")) for entry in entries]
    return channels if all(label for label, _ in channels) else []


class Replayer:
    """An LSL EEG outlet that plays a `Recording` in real time from a thread: sample k of pass
    p is stamped `origin + (p * span + offset_k) / speed` on `pylsl.local_clock()` and pushed
    once that time has come. `open()` makes the outlet resolvable before playback starts (so a
    receiver can connect and see sample 0); `start()` opens it if needed."""

    def __init__(
        self,
        recording: Recording,
        name: str = "BandmateReplay",
        source_id: str = "bandmate-replay",
        loop: bool = False,
        speed: float = 1.0,
        chunk_s: float = 1 / 32,
    ) -> None:
        if not (np.isfinite(speed) and speed > 0):
            raise BciError(f"the replay speed must be positive, got {speed:g}")
        if recording.samples == 0:
            raise ValueError("the recording has no samples")
        if not chunk_s > 0:
            raise ValueError(f"chunk_s must be positive, got {chunk_s}")
        self.recording = recording
        self.name = name
        self.source_id = source_id
        self.loop = loop
        self.speed = speed
        self.chunk_s = chunk_s
        self._chunk = max(1, round(chunk_s * recording.rate))
        self._offsets = recording.offsets
        self._span = recording.span_s
        self._samples = np.ascontiguousarray(recording.data.T, dtype=np.float32)  # [n, ch]
        self._outlet: pylsl.StreamOutlet | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._origin = 0.0
        self._sent = 0

    @property
    def origin(self) -> float:
        """local_clock stamp of sample 0."""
        return self._origin

    @property
    def sent(self) -> int:
        """Samples pushed so far, over all passes."""
        return self._sent

    @property
    def finished(self) -> threading.Event:
        """Set once a non-looping replay has pushed its last sample."""
        return self._finished

    def open(self) -> None:
        """Create the outlet (resolvable once this returns) without sending anything yet."""
        if self._outlet is None:
            self._outlet = self._new_outlet()

    def start(self) -> None:
        """Open the outlet if needed and start sending from a thread."""
        if self._thread is not None:
            raise RuntimeError("the replayer is already started")
        self.open()
        self._origin = pylsl.local_clock()
        self._thread = threading.Thread(target=self._run, name="bci-replay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._outlet = None  # pylsl destroys the outlet with its last reference

    def _new_outlet(self) -> pylsl.StreamOutlet:
        recording = self.recording
        info = pylsl.StreamInfo(
            self.name, "EEG", len(recording.labels), recording.rate, "float32", self.source_id
        )
        info.desc().append_child_value("manufacturer", "Bandmate replay")
        channels = info.desc().append_child("channels")
        for label in recording.labels:
            channel = channels.append_child("channel")
            channel.append_child_value("label", label)
            channel.append_child_value("unit", "microvolts")
            channel.append_child_value("type", "EEG")
        return pylsl.StreamOutlet(info, chunk_size=self._chunk)

    def _offset(self, index: int) -> float:
        """Recording seconds from sample 0 to sample `index`, counting earlier passes."""
        passes, within = divmod(index, self.recording.samples)
        return passes * self._span + float(self._offsets[within])

    def _due(self, now: float) -> int:
        """How many samples (over all passes) are stamped at or before `now`."""
        elapsed = (now - self._origin) * self.speed
        passes = int(elapsed // self._span)
        within = int(np.searchsorted(self._offsets, elapsed - passes * self._span, "right"))
        due = passes * self.recording.samples + within
        return due if self.loop else min(due, self.recording.samples)

    def _run(self) -> None:
        total = self.recording.samples
        next_index = 0
        while not self._stop.is_set():
            due = self._due(pylsl.local_clock())
            while next_index < due:  # catch up in chunks if we were late
                n = min(self._chunk, due - next_index)
                self._transmit(next_index, n)
                next_index += n
            if not self.loop and next_index >= total:
                self._finished.set()
                return
            # Wake when the next chunk's last sample is due, but after at most one chunk's
            # time: across a gap in the stamps, samples before it must not wait for it.
            last = next_index + self._chunk - 1
            if not self.loop:
                last = min(last, total - 1)
            until = self._origin + self._offset(last) / self.speed - pylsl.local_clock()
            self._stop.wait(min(max(0.001, until), self.chunk_s))

    def _transmit(self, start: int, n: int) -> None:
        indices = np.arange(start, start + n)
        passes, within = np.divmod(indices, self.recording.samples)
        stamps = self._origin + (passes * self._span + self._offsets[within]) / self.speed
        if self._outlet is not None:
            self._outlet.push_chunk(self._samples[within], stamps.tolist())
        self._sent += n
