"""Note transcription with Basic Pitch's bundled ONNX model, through onnxruntime directly.

Basic Pitch (Bittner et al. 2022, Spotify, Apache-2.0) ships `nmp.onnx` inside its wheel. Its
own Python modules import tensorflow-era code paths (and on Python 3.11 its metadata pulls
tensorflow), so the wheel is installed with `--no-deps` and only the ONNX file is used here;
the framing below is our own, written after the package's `inference.py`.

The model takes windows of 43 844 samples at 22 050 Hz and returns, per window, 172 frames
(hop 256 samples, 86.13 frames/s) of note, onset and contour posteriors. Neighbouring windows
overlap and the first and last 15 frames of each are dropped, since they see the window edge.
Basic Pitch's own hop (36 164 samples) is not a whole number of frames, so its stitched
output drifts by about 0.7 frame per window; here the hop is 142 frames exactly (36 352
samples), so output frame i is audio time i * 256 / 22 050 s everywhere.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import EngineError

SAMPLE_RATE = 22_050
FRAME_HOP = 256
FRAME_RATE = SAMPLE_RATE / FRAME_HOP  # 86.13 frames/s
WINDOW_SAMPLES = 2 * SAMPLE_RATE - FRAME_HOP  # 43 844: the model's fixed input length
WINDOW_FRAMES = 172
EDGE_FRAMES = 15  # dropped at both ends of each window
KEPT_FRAMES = WINDOW_FRAMES - 2 * EDGE_FRAMES  # 142
LOWEST_MIDI = 21  # bin 0 is A0; 88 bins, one per piano key
N_PITCHES = 88
# Basic Pitch's default frame threshold: a note posterior at or above it counts as sounding.
NOTE_THRESHOLD = 0.3
# Output names inside nmp.onnx (the TensorFlow export's), as basic_pitch/inference.py maps them.
NOTE_OUTPUT, ONSET_OUTPUT = "StatefulPartitionedCall:1", "StatefulPartitionedCall:2"
BATCH_WINDOWS = 8


@dataclass(frozen=True)
class Transcription:
    """Posteriors in [0, 1] per frame and piano key: frame i is time i / FRAME_RATE."""

    notes: np.ndarray  # [frames, 88]
    onsets: np.ndarray  # [frames, 88]

    @property
    def frame_rate(self) -> float:
        return FRAME_RATE

    def pitch_class_activity(self, threshold: float = NOTE_THRESHOLD) -> np.ndarray:
        """[frames, 12] (C = 0): the summed posteriors of the sounding keys of each pitch class."""
        sounding = np.where(self.notes >= threshold, self.notes, 0.0)
        classes = (LOWEST_MIDI + np.arange(N_PITCHES)) % 12
        activity = np.zeros((len(sounding), 12), np.float32)
        for pitch_class in range(12):
            activity[:, pitch_class] = sounding[:, classes == pitch_class].sum(axis=1)
        return activity

    def sounding_midi_pitches(self, threshold: float = NOTE_THRESHOLD) -> set[int]:
        keys = np.flatnonzero((self.notes >= threshold).any(axis=0))
        return {int(k) + LOWEST_MIDI for k in keys}


def basic_pitch_model_path() -> Path:
    """nmp.onnx inside the installed basic-pitch wheel, found without importing the package."""
    spec = importlib.util.find_spec("basic_pitch")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            "basic-pitch is not installed: pip install --no-deps basic-pitch==0.4.0 "
            "(it ships the nmp.onnx transcription model)"
        )
    path = Path(spec.submodule_search_locations[0]) / "saved_models" / "icassp_2022" / "nmp.onnx"
    if not path.is_file():
        raise EngineError(f"basic-pitch is installed but {path} is missing")
    return path


@cache
def _session(threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(
        str(basic_pitch_model_path()), options, providers=["CPUExecutionProvider"]
    )


def to_analysis_rate(audio: np.ndarray, rate: int) -> np.ndarray:
    """Mono float32 at 22 050 Hz, the rate Basic Pitch and the librosa features use."""
    import soxr

    audio = np.asarray(audio, np.float32).reshape(-1)
    if rate == SAMPLE_RATE:
        return audio
    return np.asarray(soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ"), np.float32)


def transcribe(audio: np.ndarray, threads: int = 1) -> Transcription:
    """Audio at 22 050 Hz (see `to_analysis_rate`) -> note and onset posteriors."""
    audio = np.asarray(audio, np.float32).reshape(-1)
    n_frames = int(len(audio) // FRAME_HOP)
    if n_frames == 0:
        empty = np.zeros((0, N_PITCHES), np.float32)
        return Transcription(empty, empty)
    hop = KEPT_FRAMES * FRAME_HOP
    # Leading zeros put the first kept frame of the first window at time 0.
    padded = np.concatenate([np.zeros(EDGE_FRAMES * FRAME_HOP, np.float32), audio])
    starts = range(0, len(audio), hop)
    windows = np.zeros((len(starts), WINDOW_SAMPLES, 1), np.float32)
    for i, start in enumerate(starts):
        chunk = padded[start : start + WINDOW_SAMPLES]
        windows[i, : len(chunk), 0] = chunk
    session = _session(threads)
    input_name = session.get_inputs()[0].name
    notes, onsets = [], []
    for first in range(0, len(windows), BATCH_WINDOWS):
        note, onset = session.run(
            [NOTE_OUTPUT, ONSET_OUTPUT], {input_name: windows[first : first + BATCH_WINDOWS]}
        )
        notes.append(note[:, EDGE_FRAMES:-EDGE_FRAMES].reshape(-1, N_PITCHES))
        onsets.append(onset[:, EDGE_FRAMES:-EDGE_FRAMES].reshape(-1, N_PITCHES))
    return Transcription(
        np.concatenate(notes)[:n_frames].astype(np.float32),
        np.concatenate(onsets)[:n_frames].astype(np.float32),
    )
