"""`bandmate bci replay`: recorded EEG read from EDF, XDF and npz, played over real LSL outlets
and received by inlets in this process.

The replays that go over LSL all run at once, in one module fixture (the real 16 s spkit
recording sets its length), and each test checks one of them. Streams are named uniquely."""

from __future__ import annotations

import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyedflib
import pylsl
import pytest

from bci.analysis.replay import Recording, Replayer, read_recording
from bci.errors import BciError
from bci.live.lsl_input import channel_labels
from tests.helpers import BANDMATE, SPKIT_RATE, spkit_eeg

MUSE_LABELS = ["TP9", "AF7", "AF8", "TP10"]
STAMP_TOLERANCE_S = 1e-6


def unique_name() -> str:
    return f"test-replay-{uuid.uuid4().hex[:10]}"


def write_edf(
    path: Path, signals: list[np.ndarray], rates: list[float], labels: list[str], unit: str = "uV"
) -> None:
    limit = float(np.ceil(max(1.0, *(np.abs(signal).max() for signal in signals))))  # fits 8 chars
    headers = [
        pyedflib.highlevel.make_signal_header(
            label, dimension=unit, sample_frequency=rate, physical_min=-limit, physical_max=limit
        )
        for label, rate in zip(labels, rates, strict=True)
    ]
    pyedflib.highlevel.write_edf(str(path), signals, headers)


def spkit_npz(path: Path) -> Path:
    """spkit's real recording (tests.helpers.spkit_eeg) in our npz interchange format."""
    data, labels = spkit_eeg()
    np.savez(path, data=data, labels=np.asarray(labels), rate=SPKIT_RATE)
    return path


def write_xdf(
    path: Path, streams: list[tuple[str, str, list[str], float, np.ndarray, np.ndarray]]
) -> Path:
    """A minimal XDF 1.0 file: (name, type, labels, rate, stamps [n], float32 data [n, ch]) per
    stream, one Samples chunk each, every stamp written out."""

    def chunk(tag: int, content: bytes) -> bytes:
        return b"\x04" + struct.pack("<IH", len(content) + 2, tag) + content

    out = b"XDF:" + chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')
    for stream_id, (name, kind, labels, rate, stamps, data) in enumerate(streams, start=1):
        channels = "".join(
            f"<channel><label>{label}</label><unit>microvolts</unit></channel>" for label in labels
        )
        header = (
            f'<?xml version="1.0"?><info><name>{name}</name><type>{kind}</type>'
            f"<channel_count>{len(labels)}</channel_count><nominal_srate>{rate}</nominal_srate>"
            f"<channel_format>float32</channel_format><desc><channels>{channels}</channels></desc>"
            "</info>"
        )
        out += chunk(2, struct.pack("<I", stream_id) + header.encode())
        samples = b"".join(
            b"\x08" + struct.pack("<d", stamp) + row.astype("<f4").tobytes()
            for stamp, row in zip(stamps, data, strict=True)
        )
        out += chunk(3, struct.pack("<IBI", stream_id, 4, len(stamps)) + samples)
    path.write_bytes(out)
    return path


XDF_RATE, XDF_GAP_AT, XDF_GAP_S = 256.0, 256, 0.5


def gapped_xdf(path: Path) -> Path:
    """An accelerometer stream, then 2 s of EEG at 256 Hz stamped from 1000.0 s with a 0.5 s
    gap after the first second."""
    n = 512
    stamps = 1000.0 + np.arange(n) / XDF_RATE + np.where(np.arange(n) >= XDF_GAP_AT, XDF_GAP_S, 0)
    eeg = np.random.default_rng(1).normal(0.0, 15.0, (n, 4)).astype(np.float32)
    accelerometer = np.zeros((10, 3), dtype=np.float32)
    return write_xdf(
        path,
        [
            ("Accel", "ACC", ["X", "Y", "Z"], 52.0, 1000.0 + np.arange(10) / 52.0, accelerometer),
            ("MuseEEG", "EEG", MUSE_LABELS, XDF_RATE, stamps, eeg),
        ],
    )


@dataclass
class Received:
    recording: Recording
    replayer: Replayer
    info: pylsl.StreamInfo
    stamps: np.ndarray  # [n] local_clock with the clock correction (proc_clocksync)
    samples: np.ndarray  # [n, channels], through the clock-synced inlet
    ages: np.ndarray  # per chunk: local_clock at receipt minus the chunk's last stamp
    sent_stamps: np.ndarray  # [n] the outlet's own stamps, through an inlet with no processing


def open_inlet(name: str, flags: int) -> pylsl.StreamInlet:
    found = pylsl.resolve_byprop("name", name, timeout=5.0)
    assert found, f"stream {name} not found"
    inlet = pylsl.StreamInlet(found[0], processing_flags=flags)
    inlet.open_stream(timeout=2.0)
    if flags & pylsl.proc_clocksync:
        # proc_clocksync holds samples back until it has an offset (~0.6 s to measure).
        inlet.time_correction(timeout=2.0)
    inlet.flush()
    return inlet


def receive_all(plays: dict[str, tuple[Recording, int, dict[str, Any]]]) -> dict[str, Received]:
    """Replays all at once (recording, samples to receive, Replayer options); the inlets
    connect before playback starts.

    Each stream has two inlets. The clock-synced one is what the BCI input uses; in one process
    its correction is near zero but is re-measured every few seconds, and each new measurement
    shifts the stamps by up to ~20 us. So the exact grid is checked on an unprocessed inlet."""
    replayers = {
        key: Replayer(recording, name=unique_name(), **options)
        for key, (recording, _, options) in plays.items()
    }
    for replayer in replayers.values():
        replayer.open()
    with ThreadPoolExecutor(len(replayers)) as pool:  # the clock offsets are measured at once
        opening = {
            key: pool.submit(open_inlet, r.name, pylsl.proc_clocksync)
            for key, r in replayers.items()
        }
        raw = {key: open_inlet(r.name, pylsl.proc_none) for key, r in replayers.items()}
        synced = {key: future.result() for key, future in opening.items()}
    lists: list[dict[str, list[Any]]] = [{key: [] for key in plays} for _ in range(4)]
    stamps, sent_stamps, samples, ages = lists
    for replayer in replayers.values():
        replayer.start()
    longest = max(recording.span_s * 2.5 for recording, _, _ in plays.values())
    deadline = pylsl.local_clock() + longest + 5.0
    try:
        while pylsl.local_clock() < deadline:
            waiting = [
                key
                for key, (_, count, _) in plays.items()
                if min(len(stamps[key]), len(sent_stamps[key])) < count
            ]
            if not waiting:
                break
            for key in waiting:
                chunk, chunk_stamps = synced[key].pull_chunk(timeout=0.0)
                if chunk_stamps:
                    ages[key].append(pylsl.local_clock() - chunk_stamps[-1])
                    stamps[key] += chunk_stamps
                    samples[key] += chunk
                sent_stamps[key] += raw[key].pull_chunk(timeout=0.0)[1]
            time.sleep(0.01)
    finally:
        for replayer in replayers.values():
            replayer.stop()
    return {
        key: Received(
            recording,
            replayers[key],
            synced[key].info(timeout=2.0),
            np.asarray(stamps[key][:count]),
            np.asarray(samples[key][:count], dtype=np.float32),
            np.asarray(ages[key]),
            np.asarray(sent_stamps[key][:count]),
        )
        for key, (recording, count, _) in plays.items()
    }


@pytest.fixture(scope="module")
def received(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Received]]:
    folder = tmp_path_factory.mktemp("replay")
    noise = np.random.default_rng(0).normal(0.0, 20.0, (4, 1024))  # 4 s, microvolts
    write_edf(folder / "muse.edf", list(noise), [256.0] * 4, MUSE_LABELS)
    edf = read_recording(folder / "muse.edf")
    spkit = read_recording(spkit_npz(folder / "spkit.npz"))
    xdf = read_recording(gapped_xdf(folder / "gapped.xdf"))
    short = Recording(np.arange(2 * 64, dtype=np.float64).reshape(2, 64), ("AF7", "AF8"), 256.0)
    yield receive_all(
        {
            "edf": (edf, edf.samples, {}),
            "spkit": (spkit, spkit.samples, {}),
            "xdf": (xdf, xdf.samples, {}),
            "loop": (short, 2 * short.samples + 40, {"loop": True}),
            "fast": (edf, edf.samples, {"speed": 4.0}),
        }
    )


def assert_arrives_as_recorded(got: Received) -> None:
    recording = got.recording
    assert got.info.channel_count() == len(recording.labels)
    assert got.info.nominal_srate() == recording.rate
    assert got.info.type() == "EEG"
    assert tuple(channel_labels(got.info)) == recording.labels
    assert got.info.desc().child("channels").child("channel").child_value("unit") == "microvolts"
    assert got.samples.shape == (recording.samples, len(recording.labels))
    np.testing.assert_array_equal(got.samples, recording.data.T.astype(np.float32))


def assert_on_the_grid(stamps: np.ndarray, rate: float) -> None:
    np.testing.assert_allclose(np.diff(stamps), 1.0 / rate, rtol=0, atol=STAMP_TOLERANCE_S)
    assert stamps[-1] - stamps[0] == pytest.approx((len(stamps) - 1) / rate, abs=1e-6)


def test_edf_replay_sends_the_files_labels_rate_and_samples(received: dict[str, Received]) -> None:
    assert_arrives_as_recorded(received["edf"])
    assert received["edf"].recording.labels == tuple(MUSE_LABELS)


def test_edf_replay_stamps_samples_on_the_files_grid_from_the_origin(
    received: dict[str, Received],
) -> None:
    got = received["edf"]
    assert_on_the_grid(got.sent_stamps, 256.0)
    assert got.sent_stamps[0] == pytest.approx(got.replayer.origin, abs=1e-9)


def test_clock_synced_stamps_match_the_sent_ones(received: dict[str, Received]) -> None:
    # In one process the clock correction is near zero: only its measurement noise is left.
    for key, got in received.items():
        np.testing.assert_allclose(got.stamps, got.sent_stamps, rtol=0, atol=1e-4, err_msg=key)


def test_replay_is_paced_in_real_time(received: dict[str, Received]) -> None:
    for key in ("edf", "spkit", "xdf"):
        ages = received[key].ages
        assert ages.min() > -1e-3, f"{key}: a sample arrived before its stamp"
        assert np.median(ages) < 0.1, f"{key}: samples arrived late ({np.median(ages):.3f} s)"


def test_spkit_recording_replays_with_its_labels_rate_and_samples(
    received: dict[str, Received],
) -> None:
    got = received["spkit"]
    assert_arrives_as_recorded(got)
    assert got.recording.labels[0] == "AF3" and got.recording.rate == 128.0
    assert_on_the_grid(got.sent_stamps, 128.0)
    assert got.sent_stamps[-1] - got.sent_stamps[0] == pytest.approx(2047 / 128.0, abs=1e-6)


def test_xdf_replay_picks_the_eeg_stream_and_keeps_its_gap(
    received: dict[str, Received],
) -> None:
    got = received["xdf"]
    assert_arrives_as_recorded(got)
    relative = got.sent_stamps - got.sent_stamps[0]
    assert got.recording.timestamps is not None
    np.testing.assert_allclose(relative, got.recording.timestamps, rtol=0, atol=1e-6)
    intervals = np.diff(got.sent_stamps)
    assert intervals[XDF_GAP_AT - 1] == pytest.approx(XDF_GAP_S + 1 / XDF_RATE, abs=1e-6)
    assert_on_the_grid(got.sent_stamps[:XDF_GAP_AT], XDF_RATE)
    assert_on_the_grid(got.sent_stamps[XDF_GAP_AT:], XDF_RATE)


def test_looping_replay_repeats_the_samples_on_a_seamless_grid(
    received: dict[str, Received],
) -> None:
    got = received["loop"]
    n = got.recording.samples
    np.testing.assert_array_equal(
        got.samples, got.recording.data.T[np.arange(len(got.samples)) % n].astype(np.float32)
    )
    assert_on_the_grid(got.sent_stamps, 256.0)
    assert not got.replayer.finished.is_set()


def test_faster_replay_stamps_at_the_sped_up_rate_and_keeps_the_nominal_rate(
    received: dict[str, Received],
) -> None:
    got = received["fast"]
    assert got.info.nominal_srate() == 256.0
    np.testing.assert_array_equal(got.samples, got.recording.data.T.astype(np.float32))
    assert_on_the_grid(got.sent_stamps, 4 * 256.0)


def test_non_looping_replay_finishes_after_the_last_sample(
    received: dict[str, Received],
) -> None:
    got = received["edf"]
    assert got.replayer.finished.is_set()
    assert got.replayer.sent == got.recording.samples


@pytest.mark.parametrize(("unit", "scale"), [("uV", 1.0), ("mV", 1e3), ("V", 1e6)])
def test_edf_values_are_converted_to_microvolts(tmp_path: Path, unit: str, scale: float) -> None:
    values = np.linspace(-0.5, 0.5, 256)
    write_edf(tmp_path / "unit.edf", [values], [256.0], ["AF7"], unit=unit)
    recording = read_recording(tmp_path / "unit.edf")
    np.testing.assert_allclose(recording.data[0], values * scale, atol=scale * 1e-4)


def test_xdf_stream_can_be_chosen_by_name(tmp_path: Path) -> None:
    recording = read_recording(gapped_xdf(tmp_path / "two.xdf"), stream_name="Accel")
    assert recording.labels == ("X", "Y", "Z") and recording.rate == 52.0


def one_line_error(path: Path, match: str, **options: str) -> None:
    with pytest.raises(BciError, match=match) as error:
        read_recording(path, **options)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["recording.pkl", "recording", "recording.csv"])
def test_unknown_file_types_are_a_one_line_error(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"data")
    one_line_error(tmp_path / name, "unknown EEG file type")


def test_nan_in_the_data_is_a_one_line_error(tmp_path: Path) -> None:
    data = np.zeros((100, 2))
    data[40, 1] = np.nan
    np.savez(tmp_path / "nan.npz", data=data, labels=np.array(["AF7", "AF8"]), rate=256.0)
    one_line_error(tmp_path / "nan.npz", "NaN or infinite values, the first in channel 'AF8'")


def test_npz_without_a_rate_is_a_one_line_error(tmp_path: Path) -> None:
    np.savez(tmp_path / "norate.npz", data=np.zeros((10, 1)), labels=np.array(["AF7"]))
    one_line_error(tmp_path / "norate.npz", "lacks rate")


def test_edf_with_mixed_rates_names_the_rates(tmp_path: Path) -> None:
    write_edf(
        tmp_path / "mixed.edf", [np.zeros(1024), np.zeros(208)], [256.0, 52.0], ["AF7", "ACC"]
    )
    one_line_error(tmp_path / "mixed.edf", r"different sample rates \(256 Hz: AF7; 52 Hz: ACC\)")


@pytest.mark.parametrize("suffix", [".edf", ".xdf", ".npz"])
def test_empty_and_garbage_files_are_one_line_errors(tmp_path: Path, suffix: str) -> None:
    (tmp_path / f"empty{suffix}").write_bytes(b"")
    one_line_error(tmp_path / f"empty{suffix}", "the file is empty")
    (tmp_path / f"garbage{suffix}").write_bytes(b"not a recording at all" * 20)
    one_line_error(tmp_path / f"garbage{suffix}", "not a readable")


def test_xdf_without_an_eeg_stream_lists_its_streams(tmp_path: Path) -> None:
    path = write_xdf(
        tmp_path / "acc.xdf",
        [("Accel", "ACC", ["X"], 52.0, np.arange(4) / 52.0, np.zeros((4, 1), np.float32))],
    )
    one_line_error(path, r"no stream of type EEG; the file has 'Accel' \(ACC\)")


def test_cli_missing_file_is_a_single_error_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [BANDMATE, "bci", "replay", str(tmp_path / "missing.edf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "no such file" in result.stderr and "Traceback" not in result.stderr


def test_cli_replays_a_file_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "short.npz"
    np.savez(path, data=np.zeros((64, 2)), labels=np.array(["AF7", "AF8"]), rate=256.0)
    result = subprocess.run(
        [BANDMATE, "bci", "replay", str(path), "--name", unique_name()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("replaying short.npz (0.2 s, 2 channels AF7, AF8, 256 Hz)")
    assert lines[-1] == "sent 64 samples (1.00 passes of the recording)"
