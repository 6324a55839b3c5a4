"""A recorded session (bci/experiment/recorder.py) as a BIDS EEG dataset, written once the session
is over.

The recorder's folder is the crash-safe truth; BIDS is how it is shared and analysed. The
export, through mne-bids, writes:

- the EEG as BrainVision (float32 in microvolts, via pybv), with channels.tsv and eeg.json;
- events.tsv from the markers: trial_type is the marker's kind, duration its `duration_s`
  field (else 0), any other fields become extra columns, described in events.json. Onsets
  are placed on the *sample* axis, by interpolating the marker's LSL time between the
  stamps of the samples around it: BrainVision stores samples back to back at the nominal
  rate, so after a dropout (missing samples) a clock-time onset would drift off its samples.
  A marker up to `EDGE_TOLERANCE_S` before the first sample or after the last (a session's
  first block can start a moment before the first sample arrives, and its end a moment after
  the last) is placed on that sample and flagged: its `outside_eeg_s` column says how far
  outside it was (negative: before), and a duration starting before the EEG is shortened by as
  much, so the event still ends where it did. Markers further out cannot be placed and are
  left out of events.tsv (they are counted in the manifest, and kept in the copied marker log);
- participants.tsv with one column per covariate (mne-bids writes the file; we add the
  columns and describe them in participants.json). participants.tsv holds one row per
  participant, so with a session label the covariates also go to `sub-X_sessions.tsv`,
  which keeps every session's values;
- under `sourcedata/sub-X[/ses-Y]/eeg/` (the validator ignores sourcedata; BIDS reserves it
  for the data before conversion): the markers as JSON lines, every LSL stamp as .npy (the
  BrainVision file has only the nominal grid), the session manifest and any extra files
  (protocol, config, the BCMI loop's log `bcmi_loop.jsonl` from `session run`). Nothing the
  recorder held is dropped by the export.

Acceptance: `bids-validator` is not part of this project's environment, so the tests take
`read_back` (mne_bids.read_raw_bids) matching the recording as the check that the dataset is
valid BIDS as far as mne-bids can tell.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import shutil
import subprocess
import warnings
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bci.errors import BciError
from bci.experiment.recorder import RecordedSession
from bci.recordings import MICROVOLTS_PER

if TYPE_CHECKING:
    import mne

BIDS_LABEL = re.compile(r"[A-Za-z0-9]+")  # BIDS entity labels: alphanumeric only
MARKER_CORE_FIELDS = ("kind", "lsl_time", "duration_s")
EDGE_TOLERANCE_S = 1.0  # markers this close outside the EEG are clamped onto it (see above)
OUTSIDE_COLUMN = "outside_eeg_s"
OUTSIDE_DESCRIPTION = (
    "seconds the marker lay outside the EEG recording (negative: before the first sample, "
    "positive: after the last); its onset was clamped onto that sample, and a duration that "
    "started before the EEG was shortened by as much. n/a: inside the recording"
)
MISSING = "n/a"  # BIDS's spelling of a missing value in .tsv files


def build_manifest(config: Mapping[str, Any], protocol_file: Path | None = None) -> dict[str, Any]:
    """What produced a session: Bandmate's version, the git commit of the code (None outside a
    checkout), a SHA-256 of the config (canonical JSON), and the protocol file's name and hash.
    Build it when the session starts and log it, so it describes the code that recorded."""
    try:
        version: str | None = metadata.version("bandmate")
    except metadata.PackageNotFoundError:
        version = None
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    manifest: dict[str, Any] = {
        "software": "bandmate",
        "version": version,
        "git_commit": _git_commit(Path(__file__).resolve().parent),
        "config_sha256": hashlib.sha256(canonical.encode()).hexdigest(),
        "config": json.loads(canonical),
    }
    if protocol_file is not None:
        manifest["protocol_file"] = protocol_file.name
        manifest["protocol_sha256"] = hashlib.sha256(protocol_file.read_bytes()).hexdigest()
    return manifest


def _git_commit(folder: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _check_label(what: str, label: str) -> None:
    if not BIDS_LABEL.fullmatch(label):
        raise BciError(f"the {what} label must be letters and digits only (BIDS), got {label!r}")


def _bids_path(root: Path, participant: str, session: str | None, task: str) -> Any:
    from mne_bids import BIDSPath

    _check_label("participant", participant)
    _check_label("task", task)
    if session is not None:
        _check_label("session", session)
    return BIDSPath(
        subject=participant, session=session, task=task, datatype="eeg", suffix="eeg", root=root
    )


def _volts_per_unit(units: str) -> float:
    key = units.strip().replace("\u00b5", "u").replace("\u03bc", "u").lower()
    if key not in MICROVOLTS_PER:
        raise BciError(f"the recording's unit {units!r} is not a voltage (uV, mV or V)")
    return MICROVOLTS_PER[key] * 1e-6


def _marker_onsets(recorded: RecordedSession) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The markers that can be placed on the EEG and their onsets in seconds on the sample
    axis; those just outside it are clamped onto its edge and carry `outside_eeg_s`."""
    stamps = recorded.timestamps
    first, last = float(stamps[0]), float(stamps[-1])
    placed: list[dict[str, Any]] = []
    for marker in recorded.markers:
        time = float(marker["lsl_time"])
        outside = min(time - first, 0.0) + max(time - last, 0.0)
        if abs(outside) > EDGE_TOLERANCE_S:
            continue
        if outside:
            marker = {**marker, OUTSIDE_COLUMN: round(outside, 6)}
            if outside < 0 and "duration_s" in marker:
                marker["duration_s"] = max(float(marker["duration_s"]) + outside, 0.0)
        placed.append(marker)
    times = np.clip([float(m["lsl_time"]) for m in placed], first, last)
    onsets = np.interp(times, stamps, np.arange(len(stamps))) / recorded.rate
    return placed, onsets


def _raw_array(recorded: RecordedSession, line_freq: float | None) -> mne.io.RawArray:
    import mne

    info = mne.create_info(list(recorded.labels), recorded.rate, ch_types="eeg")
    volts = recorded.samples.astype(np.float64) * _volts_per_unit(recorded.units)
    raw = mne.io.RawArray(volts, info, verbose="error")
    raw.info["line_freq"] = line_freq
    if recorded.started_unix is not None:
        raw.set_meas_date(recorded.started_unix)
    markers, onsets = _marker_onsets(recorded)
    if markers:
        extras = [
            {k: _tsv_value(v) for k, v in m.items() if k not in MARKER_CORE_FIELDS} for m in markers
        ]
        raw.set_annotations(
            mne.Annotations(
                onset=onsets,
                duration=_within_data(markers, onsets, raw.times[-1]),
                description=[str(m["kind"]) for m in markers],
                orig_time=raw.info["meas_date"],
                extras=extras if any(extras) else None,
            )
        )
    return raw


def _within_data(markers: list[dict[str, Any]], onsets: np.ndarray, end: float) -> list[float]:
    """Each marker's duration, cut at the last EEG sample (`end`, in seconds). The EEG's last
    sample can arrive a little before a block's planned end; mne would cut it too, with a
    RuntimeWarning. Its own bound is a sample later, but it compares in whole microseconds,
    so a cut exactly there can still warn. The planned duration stays in the markers log."""
    return [min(float(m.get("duration_s", 0.0)), max(end - onset, 0.0))
            for m, onset in zip(markers, onsets, strict=True)]  # fmt: skip


def _tsv_value(value: object) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    if isinstance(value, str | int | float | bool):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _merge_tsv_row(path: Path, key_column: str, key: str, values: Mapping[str, object]) -> None:
    """Set `values` in the row whose `key_column` is `key` (added if absent), adding columns
    as needed; other rows get n/a in new columns."""
    rows: list[dict[str, str]] = []
    columns = [key_column]
    if path.exists():
        with path.open(newline="") as file:
            reader = csv.DictReader(file, delimiter="\t")
            columns = list(reader.fieldnames or columns)
            rows = list(reader)
    columns += [name for name in values if name not in columns]
    row = next((r for r in rows if r.get(key_column) == key), None)
    if row is None:
        row = {key_column: key}
        rows.append(row)
    row.update({name: _tsv_value(value) for name, value in values.items()})
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, columns, delimiter="\t", restval=MISSING, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _describe_columns(path: Path, descriptions: Mapping[str, dict[str, str]]) -> None:
    """Add column descriptions to a .tsv's JSON sidecar, keeping those already there."""
    existing = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**descriptions, **existing}, indent=4) + "\n")


def _covariate_descriptions(covariates: Mapping[str, float]) -> dict[str, dict[str, str]]:
    return {
        name: {"Description": f"covariate '{name}' recorded with the Bandmate session"}
        for name in covariates
    }


def _describe_marker_fields(events_json: Path, markers: list[dict[str, Any]]) -> None:
    """Replace mne-bids' generic description of the extra events.tsv columns with ours."""
    fields = {k for m in markers for k in m if k not in MARKER_CORE_FIELDS}
    if not fields or not events_json.exists():
        return
    columns = json.loads(events_json.read_text())
    for name in fields:
        columns[name] = {"Description": f"the marker's '{name}' field, as the session logged it"}
    if OUTSIDE_COLUMN in fields:
        columns[OUTSIDE_COLUMN] = {"Description": OUTSIDE_DESCRIPTION, "Units": "s"}
    events_json.write_text(json.dumps(columns, indent=4) + "\n")


def _write_sourcedata(
    folder: Path,
    base: str,
    recorded: RecordedSession,
    manifest: dict[str, Any],
    extra_files: list[Path],
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps(r, separators=(",", ":")) + "\n" for r in recorded.markers)
    (folder / f"{base}_desc-markers_log.jsonl").write_text("".join(lines))
    np.save(folder / f"{base}_desc-lsl_timestamps.npy", recorded.timestamps)
    (folder / f"{base}_desc-manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for path in extra_files:
        shutil.copy2(path, folder / path.name)


def export_bids(
    recorded: RecordedSession,
    bids_root: Path,
    participant: str,
    session: str | None,
    task: str,
    covariates: dict[str, float],
    manifest: dict[str, Any],
    extra_files: list[Path],
    overwrite: bool = False,
    line_freq: float | None = None,
) -> Path:
    """Write `recorded` into the BIDS dataset at `bids_root` (created if new; other
    participants' data stays); returns the EEG file written (.vhdr)."""
    if recorded.samples.shape[1] == 0:
        raise BciError(f"{recorded.folder}: no EEG samples to export")
    bids_path = _bids_path(bids_root, participant, session, task)
    for name in covariates:
        if not name or name == "participant_id" or re.search(r"[\t\n\r]", name):
            raise BciError(f"covariate name {name!r} cannot be a participants.tsv column")
    missing = [str(path) for path in extra_files if not path.is_file()]
    names = [path.name for path in extra_files]
    if missing or len(set(names)) < len(names):
        raise BciError(f"extra files must exist and have distinct names: {missing or names}")
    bids_path.update(extension=".vhdr")
    if bids_path.fpath.exists() and not overwrite:
        raise BciError(f"{bids_path.fpath} exists; export with overwrite to replace it")

    from mne_bids import write_raw_bids

    raw = _raw_array(recorded, line_freq)
    with warnings.catch_warnings():
        # mne-bids warns about every conversion it makes (float64 -> float32, missing line
        # frequency, no digitisation): expected for a RawArray, noise for the experimenter.
        warnings.simplefilter("ignore", RuntimeWarning)
        written = write_raw_bids(
            raw,
            bids_path,
            format="BrainVision",
            allow_preload=True,
            overwrite=overwrite,
            verbose="error",
        )
    # mne-bids keeps columns and descriptions it did not write: ours accumulate over exports.
    _describe_columns(bids_root / "participants.json", _covariate_descriptions(covariates))
    _merge_tsv_row(
        bids_root / "participants.tsv", "participant_id", f"sub-{participant}", covariates
    )
    subject_folder = bids_root / f"sub-{participant}"
    if session is not None:
        sessions_tsv = subject_folder / f"sub-{participant}_sessions.tsv"
        _merge_tsv_row(sessions_tsv, "session_id", f"ses-{session}", covariates)
        _describe_columns(sessions_tsv.with_suffix(".json"), _covariate_descriptions(covariates))

    inside, _ = _marker_onsets(recorded)
    _describe_marker_fields(written.copy().update(suffix="events", extension=".json").fpath, inside)
    full_manifest = {
        **manifest,
        "recording": {
            "labels": list(recorded.labels),
            "rate": recorded.rate,
            "units": recorded.units,
            "samples": int(recorded.samples.shape[1]),
            "first_lsl_time": float(recorded.timestamps[0]),
            "last_lsl_time": float(recorded.timestamps[-1]),
            "closed_cleanly": recorded.complete,
            "reader_repairs": list(recorded.repairs),
            "markers": len(recorded.markers),
            "markers_clamped_onto_eeg": sum(OUTSIDE_COLUMN in m for m in inside),
            "markers_outside_eeg": len(recorded.markers) - len(inside),
        },
    }
    base = written.copy().update(suffix=None, extension=None, datatype=None).basename
    sourcedata = bids_root / "sourcedata" / written.fpath.parent.relative_to(bids_root)
    _write_sourcedata(sourcedata, base, recorded, full_manifest, extra_files)
    return Path(written.fpath)


def read_back(
    bids_root: Path, participant: str, task: str, session: str | None = None
) -> mne.io.BaseRaw:
    """The exported EEG (volts, as mne keeps it) with the events as annotations."""
    from mne_bids import read_raw_bids

    bids_path = _bids_path(bids_root, participant, session, task)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # e.g. "no electrodes.tsv"
        return read_raw_bids(bids_path, verbose="error")
