"""Codec latents of the live part and the accompaniment of every example, encoded once.

The generator trains on latents only, so the codec runs over the data a single time. The
cache file is named by the codec weights' hash and the data build's fingerprint, so a new
codec or a new build never reads stale latents, and a resumed run never re-encodes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.codec import Codec
from models.data.manifest import Manifest, load_roles


@dataclass
class LatentSet:
    """Per example: live and accompaniment latents [F, D] (float16), and its split."""

    live: list[np.ndarray]
    accompaniment: list[np.ndarray]
    splits: list[str]
    piece_ids: list[str]

    def indices(self, split: str) -> list[int]:
        return [i for i, s in enumerate(self.splits) if s == split]


def codec_fingerprint(codec: Codec) -> str:
    """What the latents depend on: the analysis and the encoder, not the decoder (which may
    go on training while a generator trains on the latents)."""
    digest = hashlib.sha256(repr(codec.config.spectral).encode())
    for name, tensor in sorted(codec.encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def encode_examples(
    codec: Codec,
    root: Path,
    manifest: Manifest,
    cache_dir: Path,
    max_examples: int | None = None,
    progress: bool = True,
) -> LatentSet:
    examples = [e for e in manifest.examples if e.split in ("train", "valid")]
    if max_examples is not None:
        examples = examples[:max_examples]
    key = f"{codec_fingerprint(codec)}-{manifest.fingerprint()}-{len(examples)}"
    cache = cache_dir / f"latents-{key}.npz"
    if cache.is_file():
        return _read(cache)
    live, accompaniment = [], []
    device = next(codec.parameters()).device
    with torch.no_grad():
        for example in tqdm(examples, "encoding latents", disable=not progress):
            live_audio, accompaniment_audio = load_roles(root, example)
            live.append(_encode(codec, live_audio, device))
            accompaniment.append(_encode(codec, accompaniment_audio, device))
    latents = LatentSet(
        live, accompaniment, [e.split for e in examples], [e.piece_id for e in examples]
    )
    _write(cache, latents)
    return latents


def _encode(codec: Codec, audio: np.ndarray, device: torch.device) -> np.ndarray:
    latents = codec.encode(torch.from_numpy(audio).to(device)[None])  # [1, D, F]
    return latents[0].T.cpu().numpy().astype(np.float16)


def _write(path: Path, latents: LatentSet) -> None:
    arrays: dict[str, np.ndarray] = {
        "splits": np.array(latents.splits),
        "piece_ids": np.array(latents.piece_ids),
    }
    for i, (live, acc) in enumerate(zip(latents.live, latents.accompaniment, strict=True)):
        arrays[f"live_{i}"], arrays[f"acc_{i}"] = live, acc
    # One temporary file per process: under torchrun every rank encodes and writes the same
    # cache, and a shared temporary name let one rank move it away under another.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)  # atomic: a reader sees the old file or the whole new one


def _read(path: Path) -> LatentSet:
    with np.load(path) as data:
        n = len(data["splits"])
        return LatentSet(
            [data[f"live_{i}"] for i in range(n)],
            [data[f"acc_{i}"] for i in range(n)],
            [str(s) for s in data["splits"]],
            [str(s) for s in data["piece_ids"]],
        )


def sample_windows(
    latents: LatentSet, indices: list[int], batch: int, length: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned (live, accompaniment) windows of `length` frames: [B, L, D] each, float32."""
    long_enough = [i for i in indices if len(latents.live[i]) >= length]
    if not long_enough:
        raise ValueError(f"no example is {length} frames long")
    live, acc = [], []
    for _ in range(batch):
        i = long_enough[int(rng.integers(len(long_enough)))]
        start = int(rng.integers(0, len(latents.live[i]) - length + 1))
        live.append(latents.live[i][start : start + length])
        acc.append(latents.accompaniment[i][start : start + length])
    return np.stack(live).astype(np.float32), np.stack(acc).astype(np.float32)
