"""Per-frame compute of the streaming step (encode + generate + decode) for every backend
that runs here, over minutes of audio, against the hop as the deadline.

`bandmate bench latency --json FILE` runs it. Each backend steps one session hop by hop
through real audio (the shipped example, looped) in the same process, so their numbers
compare directly; the first backend is the baseline for the ratios.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.backends import Backend, create_backend
from engine.checkpoint import EngineCheckpoint, load_engine_checkpoint


@dataclass(frozen=True)
class LatencyBenchConfig:
    checkpoint: Path | None = None  # None: the shipped default
    audio_seconds: float = 600.0  # per backend: 10 minutes, the target's span
    threads: int = 1
    backends: tuple[str, ...] = field(default_factory=tuple)  # empty: every one available
    warmup_hops: int = 50
    seed: int = 0


def available_backends(checkpoint: EngineCheckpoint, threads: int) -> list[Backend]:
    """onnxruntime always; torch when it is installed; the CUDA variants when there is a GPU."""
    found: list[Backend] = [create_backend(checkpoint, "onnx", threads, "cpu")]
    try:
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            found.append(create_backend(checkpoint, "onnx", threads, "cuda"))
    except ImportError:  # pragma: no cover - onnxruntime is a runtime dependency
        pass
    try:
        import torch
    except ImportError:
        return found
    found.append(create_backend(checkpoint, "torch", threads, "cpu"))
    if torch.cuda.is_available():
        found.append(create_backend(checkpoint, "torch", threads, "cuda"))
    return found


def example_audio(seconds: float, rate: int, seed: int) -> np.ndarray:
    """The shipped example recording looped to length; seeded noise if it is missing."""
    from engine.demo import EXAMPLE_RECORDING

    if EXAMPLE_RECORDING.is_file():
        import soundfile as sf
        import soxr

        audio, file_rate = sf.read(str(EXAMPLE_RECORDING), dtype="float32", always_2d=True)
        mono = soxr.resample(audio.mean(axis=1), file_rate, rate).astype(np.float32)
    else:
        mono = 0.1 * np.random.default_rng(seed).standard_normal(rate).astype(np.float32)
    repeats = int(np.ceil(seconds * rate / len(mono)))
    return np.tile(mono, repeats)[: int(seconds * rate)]


def time_backend(backend: Backend, audio: np.ndarray, warmup: int, seed: int) -> np.ndarray:
    """Seconds per step for every hop of `audio` (after `warmup` untimed hops)."""
    from tqdm import tqdm

    hop, noise_dim = backend.info.hop, backend.info.noise_dim
    rng = np.random.default_rng(seed)
    state = backend.initial_state(1)
    frames = audio[: len(audio) // hop * hop].reshape(-1, 1, hop)
    times = np.empty(len(frames))
    for i in tqdm(range(warmup + len(frames)), desc=backend.name, unit="hop", leave=False):
        frame = frames[i % len(frames)]
        noise = rng.standard_normal((1, noise_dim)).astype(np.float32)
        started = time.perf_counter()
        state, _ = backend.step(state, frame, noise)
        if i >= warmup:
            times[i - warmup] = time.perf_counter() - started
    return times


def run_latency_benchmark(config: LatencyBenchConfig) -> dict[str, Any]:
    checkpoint = load_engine_checkpoint(config.checkpoint)
    info = checkpoint.info
    hop_ms = 1e3 * info.hop / info.sample_rate
    backends = available_backends(checkpoint, config.threads)
    if config.backends:
        backends = [b for b in backends if b.name in config.backends]
    audio = example_audio(config.audio_seconds, info.sample_rate, config.seed)
    report: dict[str, Any] = {
        "hop_ms": hop_ms,
        "audio_seconds_per_backend": config.audio_seconds,
        "threads": config.threads,
        "checkpoint": str(checkpoint.directory),
        "machine": {"platform": platform.platform(), "processor": platform.machine()},
        "config": {k: str(v) for k, v in asdict(config).items()},
    }
    baseline_p50: float | None = None
    for backend in backends:
        ms = 1e3 * time_backend(backend, audio, config.warmup_hops, config.seed)
        p50 = float(np.percentile(ms, 50))
        baseline_p50 = baseline_p50 or p50
        report[backend.name] = {
            "hops": len(ms),
            "p50_ms": p50,
            "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max()),
            "p99_over_hop": float(np.percentile(ms, 99)) / hop_ms,
            "misses": int((ms > hop_ms).sum()),
            "real_time_factor": float(ms.mean() / hop_ms),
            "p50_vs_first_backend": p50 / baseline_p50,
        }
    return report


def backend_names(report: dict[str, Any]) -> list[str]:
    return [k for k, v in report.items() if isinstance(v, dict) and "p50_ms" in v]


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"per-frame compute, hop {report['hop_ms']:.2f} ms, {report['threads']} thread(s)"
    )
    for column in (
        "backend",
        "hops",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p99/hop",
        "misses",
        "RTF",
        "p50 ratio",
    ):
        table.add_column(column, justify="right")
    for name in backend_names(report):
        r = report[name]
        table.add_row(
            name, str(r["hops"]), f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['max_ms']:.2f}",
            f"{r['p99_over_hop']:.1%}", str(r["misses"]), f"{r['real_time_factor']:.3f}",
            f"{r['p50_vs_first_backend']:.2f}",
        )  # fmt: skip
    Console().print(table)
