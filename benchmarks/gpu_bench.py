"""What one GPU does for Bandmate: `scripts/gpu-bench.sh OUT_DIR` runs this on a CUDA
machine, in under 8 minutes, and writes JSON to OUT_DIR:

- `latency.json`: `bench latency` (benchmarks/latency.py) on the CUDA backends here,
  onnx-cuda when onnxruntime has its CUDA provider and torch-cuda (each part a captured CUDA
  graph per batch size), with onnx-cpu beside them for scale; one session, batch 1.
- `batch.json`: the batched step alone at batch 1, 2, 4, ... up to --max-batch (512): p50
  and p99 ms per step, and the sessions a hop's worth of p99 steps could carry. The GPU's
  side of the bound, without the per-session Python work of a real round.
- `capacity.json`: the engine's capacity search (benchmarks/capacity_search.py) per CUDA
  backend, up to --max-batch sessions stepped as one batch: the most sessions at real-time
  pace with zero misses, the per-session work included, as the server would step them.
- `summary.json`: the machine (GPU, driver-side versions), the date, which backends ran and
  why any did not, the headline figures and the wall time.

Without a GPU it refuses (exit 2) and writes nothing. `--dry-run` runs the same code on the
CPU backends with tiny durations and batches: it checks the arguments and the JSON's shape
(tests/test_gpu_bench.py), and measures nothing worth reporting. The GPU machine has no
soundfile, soxr or audio stack: nothing here needs them (the latency bench falls back to
seeded noise, which costs the step the same).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FILES = ("latency.json", "batch.json", "capacity.json", "summary.json")


@dataclass(frozen=True)
class GpuBenchConfig:
    out_dir: Path
    dry_run: bool = False
    checkpoint: Path | None = None  # None: the shipped default
    max_batch: int = 512
    budget_seconds: float = 400.0  # the capacity searches stop confirming after this
    latency_seconds: float = 20.0  # audio per backend in latency.json
    steps_per_batch: int = 100  # timed steps per batch size in batch.json
    screen_seconds: float = 3.0
    confirm_seconds: float = 30.0

    @classmethod
    def dry(cls, out_dir: Path, checkpoint: Path | None) -> GpuBenchConfig:
        return cls(out_dir, True, checkpoint, max_batch=4, budget_seconds=60.0,
                   latency_seconds=1.0, steps_per_batch=10, screen_seconds=0.5,
                   confirm_seconds=1.0)  # fmt: skip


def cuda_backends() -> tuple[list[str], dict[str, str]]:
    """The CUDA backends that run here, and why each other one does not."""
    found: list[str] = []
    missing: dict[str, str] = {}
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        found.append("onnx-cuda")
    else:
        missing["onnx-cuda"] = (
            f"onnxruntime {ort.__version__} has no CUDA provider (onnxruntime-gpu is not "
            "installed, or not built for this CUDA)"
        )
    try:
        import torch
    except ImportError:
        missing["torch-cuda"] = "torch is not installed"
        return found, missing
    if torch.cuda.is_available():
        found.append("torch-cuda")
    else:
        missing["torch-cuda"] = f"torch {torch.__version__} sees no CUDA device"
    return found, missing


def machine() -> dict[str, Any]:
    import onnxruntime as ort

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
    }
    try:
        import torch
    except ImportError:
        return info
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info["gpu"] = properties.name
        info["gpu_memory_gib"] = properties.total_memory / 2**30
        info["gpu_count"] = torch.cuda.device_count()
    return info


def to_json(value: Any) -> Any:
    """numpy scalars and arrays, paths and tuples as JSON takes them."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    return value


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(data), indent=2, allow_nan=False) + "\n")
    return path


def batch_sizes(largest: int) -> list[int]:
    """1, 2, 4, ... up to `largest`, which is always last."""
    sizes = [1 << k for k in range(int(math.log2(largest)) + 1) if 1 << k < largest]
    return [*sizes, largest]


def batch_sweep(backend: Any, config: GpuBenchConfig) -> list[dict[str, Any]]:
    """The batched step alone at each batch size (after its first, untimed step)."""
    from benchmarks.latency import example_audio, hop_frames

    info = backend.info
    hop_ms = 1e3 * info.hop / info.sample_rate
    frames = hop_frames(example_audio(5.0, info.sample_rate, 0), info.hop)[:, 0]
    rng = np.random.default_rng(0)
    rows = []
    for batch in batch_sizes(config.max_batch):
        state = backend.initial_state(batch)
        times = []
        for k in range(config.steps_per_batch + 3):  # three untimed: capture, plans, caches
            audio = np.stack([frames[(k + 97 * i) % len(frames)] for i in range(batch)])
            noise = rng.standard_normal((batch, info.noise_dim)).astype(np.float32)
            started = time.perf_counter()
            state, _ = backend.step(state, audio, noise)
            if k >= 3:
                times.append(1e3 * (time.perf_counter() - started))
        p50, p99 = float(np.percentile(times, 50)), float(np.percentile(times, 99))
        rows.append({"batch": batch, "steps": len(times), "p50_ms": p50, "p99_ms": p99,
                     "max_ms": float(max(times)), "p99_over_hop": p99 / hop_ms,
                     "sessions_per_hop_at_p99": batch if p99 <= hop_ms else 0})  # fmt: skip
    return rows


def run(config: GpuBenchConfig) -> dict[str, Any]:
    from benchmarks.capacity_search import CapacitySearchConfig, run_capacity_search
    from benchmarks.latency import LatencyBenchConfig, run_latency_benchmark
    from engine.backends import create_backend
    from engine.checkpoint import DEFAULT_CHECKPOINT, load_engine_checkpoint

    started = time.monotonic()
    found, missing = cuda_backends()
    if config.dry_run:
        found = ["onnx-cpu"]
    checkpoint_dir = config.checkpoint or DEFAULT_CHECKPOINT
    latency = run_latency_benchmark(LatencyBenchConfig(
        checkpoint_dir, config.latency_seconds, backends=tuple(dict.fromkeys(["onnx-cpu", *found])),
        warmup_hops=5 if config.dry_run else 50,
    )).report  # fmt: skip
    write_json(config.out_dir / "latency.json", latency)
    checkpoint = load_engine_checkpoint(checkpoint_dir)
    sweeps = {}
    for name in found:
        kind, _, device = name.partition("-")
        sweeps[name] = batch_sweep(create_backend(checkpoint, kind, 1, device), config)
    write_json(config.out_dir / "batch.json", {"hop_ms": latency["hop_ms"], "backends": sweeps})
    search = CapacitySearchConfig(
        seconds=config.confirm_seconds, screen_seconds=config.screen_seconds,
        max_sessions=config.max_batch, max_batch=config.max_batch, backends=tuple(found),
        checkpoint=checkpoint_dir,
        budget_seconds=max(30.0, config.budget_seconds - (time.monotonic() - started)),
        server=False,
    )  # fmt: skip
    capacity = run_capacity_search(search)
    write_json(config.out_dir / "capacity.json", capacity)
    headline = {
        name: {
            "latency_p50_ms": latency[name]["p50_ms"],
            "latency_p99_ms": latency[name]["p99_ms"],
            "largest_batch_within_hop_at_p99": max(
                (row["batch"] for row in sweeps[name] if row["sessions_per_hop_at_p99"]), default=0
            ),
            "sessions_with_zero_misses": capacity["engine"][name]["capacity"],
            "capacity_confirmed": capacity["engine"][name]["confirmed"],
        }
        for name in found
    }
    summary = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "dry_run": config.dry_run,
        "machine": machine(),
        "checkpoint": str(checkpoint.directory),
        "backends": found,
        "unavailable": missing,
        "max_batch": config.max_batch,
        "headline": headline,
        "files": list(FILES),
        "wall_s": time.monotonic() - started,
    }
    write_json(config.out_dir / "summary.json", summary)
    return summary


def parse(argv: list[str]) -> GpuBenchConfig:
    parser = argparse.ArgumentParser(
        prog="scripts/gpu-bench.sh",
        description="Latency, batch sweep and capacity on one CUDA GPU, as JSON in OUT_DIR.",
    )
    parser.add_argument("out_dir", type=Path, help="Where the JSON files go (made if missing).")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="Run on the CPU with tiny durations: checks shape, measures nothing.",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="An exported checkpoint (default: the shipped one).",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="Largest batch and session count (default 512; 4 dry).",
    )
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=None,
        help="Time for everything; the capacity search gets what is left.",
    )
    args = parser.parse_args(argv)
    config = (GpuBenchConfig.dry(args.out_dir, args.checkpoint) if args.dry_run
              else GpuBenchConfig(args.out_dir, checkpoint=args.checkpoint))  # fmt: skip
    overrides: dict[str, Any] = {}
    if args.max_batch is not None:
        if args.max_batch < 1:
            parser.error("--max-batch must be at least 1")
        overrides["max_batch"] = args.max_batch
    if args.budget_seconds is not None:
        overrides["budget_seconds"] = args.budget_seconds
    return GpuBenchConfig(**{**config.__dict__, **overrides}) if overrides else config


def main(argv: list[str] | None = None) -> int:
    config = parse(sys.argv[1:] if argv is None else argv)
    if not config.dry_run:
        found, missing = cuda_backends()
        if not found:
            reasons = "; ".join(f"{name}: {why}" for name, why in missing.items())
            print(f"gpu-bench: no CUDA backend here ({reasons}); nothing written. "
                  "--dry-run checks the script on the CPU.", file=sys.stderr)  # fmt: skip
            return 2
    summary = run(config)
    print(json.dumps(to_json(summary["headline"]), indent=2))
    print(f"gpu-bench: wrote {', '.join(FILES)} to {config.out_dir} in {summary['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
