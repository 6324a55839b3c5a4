"""Does the codec use its latents? Decode a recording from its real latents and from two
kinds of wrong latents, and compare the distances to the original.

`bandmate bench codec --json FILE` runs it on the shipped example recording. A working
autoencoder reconstructs far better from its real latents than from the time-averaged
latent (every frame the same) or from another crop's latents; when the three distances
match, the decoder ignores its input (a collapsed bottleneck) and its output is a fixed
texture whatever is played.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLE = Path(__file__).resolve().parent.parent / "models" / "examples" / "live_part.flac"


@dataclass(frozen=True)
class CodecProbeConfig:
    checkpoint: Path | None = None  # None: the shipped default
    audio: Path = EXAMPLE
    crop_seconds: float = 2.0


def spectral_convergence(estimate: Any, target: Any, n_fft: int = 1024) -> float:
    """|| |X| - |Y| || / || |Y| ||: 0 is a perfect magnitude match; ~1 is no match at all."""
    import torch

    window = torch.hann_window(n_fft)
    est, ref = (torch.stft(x, n_fft, n_fft // 4, window=window, return_complex=True).abs()
                for x in (estimate, target))  # fmt: skip
    return float(torch.linalg.norm(ref - est) / torch.linalg.norm(ref))


def run_codec_probe(config: CodecProbeConfig) -> dict[str, Any]:
    import soundfile as sf
    import torch

    from engine.checkpoint import DEFAULT_CHECKPOINT
    from models.checkpoint import load_codec
    from models.losses import MultiResolutionSTFTLoss

    directory = config.checkpoint or DEFAULT_CHECKPOINT
    codec = load_codec(directory).float().eval()
    audio, rate = sf.read(str(config.audio), dtype="float32", always_2d=True)
    if rate != codec.config.sample_rate:
        raise ValueError(
            f"{config.audio} is at {rate} Hz; the codec wants {codec.config.sample_rate}"
        )
    crop = int(config.crop_seconds * rate) // codec.config.hop * codec.config.hop
    mono = audio.mean(1)
    crops = np.stack([mono[i : i + crop] for i in range(0, len(mono) - crop + 1, crop)])
    target = torch.from_numpy(crops)
    stft = MultiResolutionSTFTLoss()
    with torch.no_grad():
        latents = codec.encode(target)
        decoded = {
            "real latents": codec.decode(latents),
            "time-averaged latent": codec.decode(latents.mean(-1, keepdim=True).expand_as(latents)),
            "another crop's latents": codec.decode(latents.roll(1, dims=0)),
        }
        rows = {
            name: {
                "mr_stft": float(stft(audio_out, target[:, : audio_out.shape[-1]])),
                "spectral_convergence": spectral_convergence(
                    audio_out, target[:, : audio_out.shape[-1]]
                ),
            }
            for name, audio_out in decoded.items()
        }
        spread = float(latents.std(-1).mean())  # how much latents move within a crop
        between = float(latents.mean(-1).std(0).mean())  # how much crops' mean latents differ
    return {
        "checkpoint": str(directory),
        "audio": str(config.audio),
        "crops": len(crops),
        "crop_seconds": crop / rate,
        "latent_std_over_time": spread,
        "latent_std_between_crops": between,
        "decoded_from": rows,
    }


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"codec probe: {report['crops']} crops of {report['crop_seconds']:.1f} s")
    for column in ("decoded from", "MR-STFT distance", "spectral convergence"):
        table.add_column(column, justify="left" if column == "decoded from" else "right")
    for name, row in report["decoded_from"].items():
        table.add_row(name, f"{row['mr_stft']:.3f}", f"{row['spectral_convergence']:.3f}")
    Console().print(table)
    print(f"latent std over time {report['latent_std_over_time']:.4f}, "
          f"between crops {report['latent_std_between_crops']:.2e}")  # fmt: skip
