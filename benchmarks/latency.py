"""Per-frame compute of the streaming step (encode + generate + decode) for every backend
that runs here, against the hop as the deadline; and of each of the three parts.

`bandmate bench latency --json FILE [--markdown FILE] [--plot FILE]` runs it. Each backend
steps one session hop by hop through real audio (the shipped example, looped) in the same
process, so their numbers compare directly; the first backend is the baseline for the
ratios. The whole step is the headline; `benchmarks/latency_components.py` says how the
parts are timed. The report also gives the threads each runtime really uses and the model's
size (parameters per part, bytes per file).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.latency_components import COMPONENTS, ComponentStepper, model_size
from engine.backends import ModelBackend, create_backend
from engine.checkpoint import EngineCheckpoint, load_engine_checkpoint
from engine.errors import EngineError


@dataclass(frozen=True)
class LatencyBenchConfig:
    checkpoint: Path | None = None  # None: the shipped default
    # Per backend, stepped twice per hop (whole step, then its parts). 60 s keeps both CPU
    # backends within minutes on 2 cores; 600 s is the 10-minute span of the latency target.
    audio_seconds: float = 60.0
    threads: int = 1
    backends: tuple[str, ...] = field(default_factory=tuple)  # empty: every one available
    warmup_hops: int = 50
    seed: int = 0
    # Sessions stepped as one batch (the same audio, each its own noise): a GPU's figure
    # wants a batch; 1, the default, is one live session.
    batch: int = 1


def available_backends(checkpoint: EngineCheckpoint, threads: int) -> list[ModelBackend]:
    """onnxruntime always; torch when it is installed; the CUDA variants when there is a GPU."""
    found: list[ModelBackend] = [create_backend(checkpoint, "onnx", threads, "cpu")]
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
    """The shipped example recording looped to length; seeded noise if it is missing, or
    cannot be read (a GPU machine without soundfile: the step's compute is the same)."""
    from engine.demo import EXAMPLE_RECORDING

    try:
        import soundfile as sf
        import soxr
    except ImportError:
        sf = soxr = None
    if EXAMPLE_RECORDING.is_file() and sf is not None and soxr is not None:
        audio, file_rate = sf.read(str(EXAMPLE_RECORDING), dtype="float32", always_2d=True)
        mono = soxr.resample(audio.mean(axis=1), file_rate, rate).astype(np.float32)
    else:
        mono = 0.1 * np.random.default_rng(seed).standard_normal(rate).astype(np.float32)
    repeats = int(np.ceil(seconds * rate / len(mono)))
    return np.tile(mono, repeats)[: int(seconds * rate)]


def hop_frames(audio: np.ndarray, hop: int) -> np.ndarray:
    """The audio as [hops, 1, hop]: one batch-1 input per step."""
    return audio[: len(audio) // hop * hop].reshape(-1, 1, hop)


def time_step_and_parts(
    backend: ModelBackend, frames: np.ndarray, warmup: int, seed: int, batch: int = 1
) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    """Seconds per whole step, and per part, for every hop of `frames` (after `warmup`
    untimed hops); and how the parts were timed.

    Two sessions see the same audio and noise: one runs `backend.step`, the headline, as a
    live session does; the other runs the parts with a clock read between them, which
    would otherwise sit inside the headline. They alternate hop by hop, so a busy moment on
    the machine lands on both rather than on one pass of two."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    state = backend.initial_state(batch)
    parts = ComponentStepper(backend, batch)
    step_times = np.empty(len(frames))
    part_times = np.empty((len(frames), len(COMPONENTS)))
    for i in tqdm(range(warmup + len(frames)), desc=backend.name, unit="hop", leave=False):
        frame = np.repeat(frames[i % len(frames)], batch, axis=0)  # [batch, hop]
        noise = rng.standard_normal((batch, backend.info.noise_dim)).astype(np.float32)
        started = time.perf_counter()
        state, _ = backend.step(state, frame, noise)
        elapsed = time.perf_counter() - started
        part_seconds = parts.step(frame, noise)
        if i >= warmup:
            step_times[i - warmup] = elapsed
            part_times[i - warmup] = part_seconds
    by_part = {name: part_times[:, k] for k, name in enumerate(COMPONENTS)}
    return step_times, by_part, parts.method


def summarize(ms: np.ndarray, hop_ms: float) -> dict[str, Any]:
    """Percentiles of per-hop compute in ms, and the same against the hop (the deadline)."""
    p50, p99 = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
    return {
        "hops": len(ms),
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": float(ms.max()),
        "p50_over_hop": p50 / hop_ms,
        "p99_over_hop": p99 / hop_ms,
        "misses": int((ms > hop_ms).sum()),
        "real_time_factor": float(ms.mean() / hop_ms),
    }


@dataclass
class LatencyRun:
    report: dict[str, Any]  # what the JSON holds
    samples_ms: dict[str, dict[str, np.ndarray]]  # backend -> "step" or a part -> per hop


def run_latency_benchmark(config: LatencyBenchConfig) -> LatencyRun:
    checkpoint = load_engine_checkpoint(config.checkpoint)
    info = checkpoint.info
    hop_ms = 1e3 * info.hop / info.sample_rate
    backends = available_backends(checkpoint, config.threads)
    if config.backends:
        unknown = set(config.backends) - {b.name for b in backends}
        if unknown:
            here = ", ".join(b.name for b in backends)
            raise EngineError(f"backend {', '.join(sorted(unknown))} is not available: here {here}")
        backends = [b for b in backends if b.name in config.backends]
    frames = hop_frames(example_audio(config.audio_seconds, info.sample_rate, config.seed),
                        info.hop)  # fmt: skip
    report: dict[str, Any] = {
        "hop_ms": hop_ms,
        "audio_seconds_per_backend": config.audio_seconds,
        "threads": config.threads,
        "batch": config.batch,
        "checkpoint": str(checkpoint.directory),
        "model": model_size(checkpoint),
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "cpus": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0))},
        "config": {k: str(v) for k, v in asdict(config).items()},
    }  # fmt: skip
    samples: dict[str, dict[str, np.ndarray]] = {}
    baseline_p50: float | None = None
    for backend in backends:
        step_s, parts_s, method = time_step_and_parts(
            backend, frames, config.warmup_hops, config.seed, config.batch
        )
        step_ms = 1e3 * step_s
        parts_ms = {name: 1e3 * seconds for name, seconds in parts_s.items()}
        entry = summarize(step_ms, hop_ms)
        baseline_p50 = baseline_p50 or entry["p50_ms"]
        entry["p50_vs_first_backend"] = entry["p50_ms"] / baseline_p50
        entry["threads"] = backend.threads()
        entry["components"] = {name: summarize(ms, hop_ms) for name, ms in parts_ms.items()}
        entry["components_method"] = method
        parts_mean = sum(float(ms.mean()) for ms in parts_ms.values())
        entry["components_mean_sum_over_step_mean"] = parts_mean / float(step_ms.mean())
        report[backend.name] = entry
        samples[backend.name] = {"step": step_ms, **parts_ms}
    return LatencyRun(report, samples)


def backend_names(report: dict[str, Any]) -> list[str]:
    return [k for k, v in report.items() if isinstance(v, dict) and "p50_ms" in v]
