"""`bench quality --plot`: one figure per held-out piece, to look at before believing a number:
the live part, the model's accompaniment and the real one, each as a log-frequency
spectrogram beside its chromagram, on shared scales."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.spectral_metrics import chroma

PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def mel_panel(axis: Any, audio: np.ndarray, rate: int, top: float | None) -> float:
    """A mel spectrogram (dB, 160 bands to 8 kHz) on `axis`, 80 dB below `top` (the loudest
    panel so far, so stacked panels share a colour scale); returns the new top."""
    import librosa

    mel = librosa.feature.melspectrogram(y=np.asarray(audio, np.float32), sr=rate, n_fft=4096,
                                         hop_length=512, n_mels=160, fmax=8000)  # fmt: skip
    db = 10 * np.log10(mel + 1e-10)
    top = float(db.max()) if top is None else max(top, float(db.max()))
    axis.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                extent=(0, len(audio) / rate, 0, 160))  # fmt: skip
    axis.set_ylabel("mel band")
    return top


def plot_piece(piece: Any, output: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rate = piece.sample_rate
    rows = {"live part": piece.live, "model": output, "real accompaniment": piece.accompaniment}
    figure, axes = plt.subplots(3, 2, figsize=(13, 7.5), sharex=True,
                                gridspec_kw={"width_ratios": [3, 2]})  # fmt: skip
    top = None
    for (left, right), (name, audio) in zip(axes, rows.items(), strict=True):
        seconds = len(audio) / rate
        top = mel_panel(left, audio, rate, top)
        left.set_title(f"{name}: mel spectrogram (to 8 kHz)", fontsize=9, loc="left")
        right.imshow(chroma(audio, rate).T, origin="lower", aspect="auto", cmap="Greys",
                     vmin=0, vmax=1, extent=(0, seconds, -0.5, 11.5))  # fmt: skip
        right.set_yticks(range(12), PITCH_NAMES, fontsize=7)
        right.set_title(f"{name}: chroma", fontsize=9, loc="left")
    axes[-1][0].set_xlabel("seconds")
    axes[-1][1].set_xlabel("seconds")
    figure.suptitle(f"{piece.piece_id} ({piece.source})")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
