"""FIF and BrainVision recordings (read through mne) come out as the microvolts written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bci.errors import BciError
from bci.recordings import read_recording

LABELS = ("TP9", "AF7", "AF8", "TP10")


def signals(rate: float = 256.0, seconds: float = 2.0) -> np.ndarray:
    """[channels, samples] in microvolts."""
    return np.random.default_rng(3).normal(0.0, 20.0, (len(LABELS), int(rate * seconds)))


def test_a_fif_file_reads_back_in_microvolts(tmp_path: Path) -> None:
    import mne

    data = signals()
    info = mne.create_info(list(LABELS), 256.0, ch_types="eeg")
    raw = mne.io.RawArray(data * 1e-6, info, verbose="error")  # mne stores volts
    stim_info = mne.create_info(["STI"], 256.0, ch_types="stim")
    stim = mne.io.RawArray(np.zeros((1, data.shape[1])), stim_info, verbose="error")
    raw.add_channels([stim])
    path = tmp_path / "sub-01_raw.fif"
    raw.save(path, verbose="error")
    recording = read_recording(path)
    assert recording.labels == LABELS  # the stim channel is not EEG
    assert recording.rate == 256.0
    np.testing.assert_allclose(recording.data, data, atol=1e-3)


def test_a_brainvision_recording_reads_back_in_microvolts(tmp_path: Path) -> None:
    data = signals(rate=500.0)
    header = tmp_path / "sub-01.vhdr"
    (tmp_path / "sub-01.eeg").write_bytes(data.T.astype("<f4").tobytes())  # multiplexed
    (tmp_path / "sub-01.vmrk").write_text(
        "Brain Vision Data Exchange Marker File, Version 1.0\n[Common Infos]\n"
        "Codepage=UTF-8\nDataFile=sub-01.eeg\n[Marker Infos]\n"
    )
    channels = "\n".join(f"Ch{i + 1}={label},,1,µV" for i, label in enumerate(LABELS))
    header.write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\nCodepage=UTF-8\n"
        "DataFile=sub-01.eeg\nMarkerFile=sub-01.vmrk\nDataFormat=BINARY\n"
        f"DataOrientation=MULTIPLEXED\nNumberOfChannels={len(LABELS)}\n"
        "SamplingInterval=2000\n[Binary Infos]\nBinaryFormat=IEEE_FLOAT_32\n"
        f"[Channel Infos]\n{channels}\n"
    )
    recording = read_recording(header)
    assert recording.labels == LABELS and recording.rate == 500.0
    np.testing.assert_allclose(recording.data, data, atol=1e-3)


@pytest.mark.parametrize("name", ["sub-01_raw.fif", "sub-01.vhdr", "sub-01.vmrk"])
def test_unreadable_fif_and_brainvision_are_one_line(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"not a recording")
    expected = "by their header" if name.endswith(".vmrk") else "not a readable recording"
    with pytest.raises(BciError, match=expected) as error:
        read_recording(tmp_path / name)
    assert "\n" not in str(error.value)
