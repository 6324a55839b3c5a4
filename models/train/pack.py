"""A features pack: the generator's training data as latents, not audio, small enough to travel
to a GPU machine that has no audio stack (`bandmate data pack`, `scripts/train-gpu.sh`).

Latents are standardised (models/codec.py), so they are stored as uint8 over [-6, 6] (steps
of 0.047 standard deviations, below what the generator's losses resolve) and compressed.
Examples are taken in the build's order, whole, until the file would pass `max_bytes`. The
pack names the codec encoder and the data build it came from, so a trainer can refuse a pack
that does not match its codec.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.train.latents import LatentSet

RANGE = 6.0  # latents are clipped to [-RANGE, RANGE] before quantising


@dataclass(frozen=True)
class PackInfo:
    codec_fingerprint: str
    data_fingerprint: str
    sample_rate: int
    examples: int
    bytes: int


def quantise(latents: np.ndarray) -> np.ndarray:
    scaled = (np.clip(latents.astype(np.float32), -RANGE, RANGE) + RANGE) * (255 / (2 * RANGE))
    return np.round(scaled).astype(np.uint8)


def dequantise(codes: np.ndarray) -> np.ndarray:
    return (codes.astype(np.float32) * (2 * RANGE / 255) - RANGE).astype(np.float16)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def write_pack(latents: LatentSet, out: Path, codec_fingerprint: str, data_fingerprint: str,
               sample_rate: int, max_bytes: int) -> PackInfo:  # fmt: skip
    """Every validation example, then training examples until the pack is full."""
    meta = {
        "codec_fingerprint": np.array(codec_fingerprint),
        "data_fingerprint": np.array(data_fingerprint),
        "sample_rate": np.array(sample_rate),
    }
    order = latents.indices("valid") + latents.indices("train")
    arrays: dict[str, np.ndarray] = {}
    kept: list[int] = []
    size = len(_npz_bytes(meta))
    for i in order:
        entry = {f"live_{len(kept)}": quantise(latents.live[i]),
                 f"acc_{len(kept)}": quantise(latents.accompaniment[i])}  # fmt: skip
        cost = len(_npz_bytes(entry))
        if size + cost > max_bytes:
            break
        arrays |= entry
        kept.append(i)
        size += cost
    arrays |= meta
    arrays["splits"] = np.array([latents.splits[i] for i in kept])
    arrays["piece_ids"] = np.array([latents.piece_ids[i] for i in kept])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(_npz_bytes(arrays))
    tmp.replace(out)
    return PackInfo(codec_fingerprint, data_fingerprint, sample_rate, len(kept),
                    out.stat().st_size)  # fmt: skip


def read_pack(path: Path) -> tuple[LatentSet, PackInfo]:
    try:
        with np.load(path) as data:
            n = len(data["splits"])
            latents = LatentSet(
                [dequantise(data[f"live_{i}"]) for i in range(n)],
                [dequantise(data[f"acc_{i}"]) for i in range(n)],
                [str(s) for s in data["splits"]],
                [str(s) for s in data["piece_ids"]],
            )
            info = PackInfo(str(data["codec_fingerprint"]), str(data["data_fingerprint"]),
                            int(data["sample_rate"]), n, path.stat().st_size)  # fmt: skip
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        from models.train.common import TrainingError

        raise TrainingError(f"{path}: not a features pack ({exc})") from None
    return latents, info
