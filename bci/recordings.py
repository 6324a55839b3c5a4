"""Recorded EEG from a file: microvolts [channels, samples], labels, rate, and timestamps.

`read_recording` reads EDF/BDF (pyedflib), XDF (pyxdf), FIF and BrainVision (mne, EEG
channels only) and `.npz` with `data` [samples, channels] in microvolts, `labels` and `rate`
(our interchange format). Every problem a user can fix is a one-line `BciError`.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bci.errors import BciError

EDF_SUFFIXES = (".edf", ".bdf")
XDF_SUFFIXES = (".xdf", ".xdfz")
NPZ_SUFFIXES = (".npz",)
MNE_SUFFIXES = (".fif", ".vhdr")  # FIF (also .fif.gz) and BrainVision, read with mne
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
    """The EEG in `path` (EDF, BDF, XDF, FIF, BrainVision, npz); `stream_name` picks an XDF
    stream by name instead of the first of type EEG. One-line BciError for anything unusable."""
    suffix = _suffix(path)
    if suffix in (".vmrk", ".eeg"):
        raise BciError(f"{path}: open BrainVision recordings by their header, the .vhdr file")
    readers = {
        **dict.fromkeys(EDF_SUFFIXES, _read_edf),
        **dict.fromkeys(NPZ_SUFFIXES, _read_npz),
        **dict.fromkeys(MNE_SUFFIXES, _read_mne),
    }
    if suffix not in readers and suffix not in XDF_SUFFIXES:
        known = ", ".join(EDF_SUFFIXES + XDF_SUFFIXES + MNE_SUFFIXES + NPZ_SUFFIXES)
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


def _read_mne(path: Path) -> Recording:
    """FIF or BrainVision through mne, keeping the EEG channels (mne stores volts)."""
    import mne

    read = mne.io.read_raw_fif if _suffix(path) == ".fif" else mne.io.read_raw_brainvision
    try:
        raw = read(path, preload=True, verbose="error")
    except Exception as error:  # mne fails on a corrupt file in many ways (even AttributeError)
        raise BciError(f"{path}: not a readable recording ({_reason(error, path)})") from None
    picks = mne.pick_types(raw.info, eeg=True)
    if len(picks) == 0:
        raise BciError(f"{path}: no EEG channels (it has {', '.join(raw.ch_names)})")
    data = raw.get_data(picks=picks) * 1e6
    labels = tuple(raw.ch_names[i] for i in picks)
    return Recording(data.astype(np.float64), labels, float(raw.info["sfreq"]))
