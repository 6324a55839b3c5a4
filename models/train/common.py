"""What every trainer shares: device and DDP set-up, resumable state, logs, divergence checks.

Multi-GPU runs go through torchrun, which sets RANK/WORLD_SIZE/LOCAL_RANK: the process group
is NCCL on CUDA and gloo on CPU (so DDP is testable on CPU). Only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
import yaml
from pydantic import TypeAdapter, ValidationError
from torch import nn

from models.errors import ModelsError

T = TypeVar("T")
TRAINING_STATE = "training_state.pt"


class TrainingError(ModelsError):
    """Training cannot go on: bad config, diverged loss, missing data."""


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """What every trainer's run has: where it writes, how long, how it checks and saves, and on
    what it runs. A trainer's config adds its own fields and its own defaults."""

    run_dir: Path  # state, logs, audio and the checkpoint go here; re-running resumes
    steps: int
    batch_size: int = 16
    learning_rate: float
    validate_every: int = 500
    save_every: int = 250
    audio_every: int = 2_000
    seed: int = 0
    threads: int = 2
    device: str = "auto"  # CUDA when there is one
    precision: Literal["fp32", "bf16"] = "fp32"


def load_train_config(cls: type[T], path: Path, overrides: dict[str, Any] | None = None) -> T:
    """A YAML file validated into a config dataclass; errors name the field."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise TrainingError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise TrainingError(f"{path}: not valid YAML ({exc})") from None
    raw.update(overrides or {})
    try:
        return TypeAdapter(cls).validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TrainingError(f"{path}: field {where}: {first['msg']}") from None


@dataclass
class RunContext:
    device: torch.device
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self, precision: str) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on CUDA when asked; plain fp32 elsewhere."""
        if precision == "bf16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def average_gradients(self, module: nn.Module) -> None:
        """All-reduce a module's gradients across ranks (for modules not wrapped in DDP)."""
        if self.world_size == 1:
            return
        for p in module.parameters():
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= self.world_size

    def wrap(self, module: nn.Module) -> nn.Module:
        if self.world_size == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def setup_run(device: str, threads: int, seed: int) -> RunContext:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch_device = torch.device("cuda", local_rank)
        torch.cuda.set_device(torch_device)
    else:
        torch_device = torch.device("cpu")
        torch.set_num_threads(threads)
    if world_size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
    torch.manual_seed(seed + rank)
    return RunContext(torch_device, rank, world_size)


def check_finite(step: int, losses: dict[str, torch.Tensor]) -> None:
    """Stop on a NaN or infinite loss, naming the step, instead of training through it."""
    for name, value in losses.items():
        number = float(value.detach())
        if not math.isfinite(number):
            raise TrainingError(
                f"loss {name} is {number} at step {step}: training stopped; the last saved "
                f"state is kept, so lower the learning rate and resume"
            )


def save_state(run_dir: Path, state: dict[str, Any]) -> None:
    """Atomic: a crash mid-save leaves the previous state."""
    path = run_dir / TRAINING_STATE
    tmp = path.with_name(f".{TRAINING_STATE}.tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_state(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / TRAINING_STATE
    if not path.is_file():
        return None
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
        return state
    except Exception as exc:  # torch raises many types for a damaged file
        raise TrainingError(f"{path}: cannot resume from a damaged state ({exc})") from None


class CsvLog:
    """Loss curves as CSV, one row per logged step, flushed as written so a crash loses nothing."""

    def __init__(self, path: Path, columns: list[str]):
        self.path, self.columns = path, ["step", "wall_s", *columns]
        new = not path.exists()
        if not new:  # a resumed run whose columns changed: rewrite the rows under the new ones
            with path.open(newline="") as old:
                reader = csv.DictReader(old)
                if reader.fieldnames != self.columns:
                    rows = list(reader)
                    with path.open("w", newline="") as rewritten:
                        writer = csv.DictWriter(rewritten, self.columns, extrasaction="ignore")
                        writer.writeheader()
                        writer.writerows(rows)
        self.file = path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, self.columns, extrasaction="ignore")
        if new:
            self.writer.writeheader()
        self.start = time.monotonic()

    def write(self, step: int, values: dict[str, float], wall_offset: float = 0.0) -> None:
        row = {"step": step, "wall_s": round(wall_offset + time.monotonic() - self.start, 1)}
        row.update({k: round(float(v), 6) for k, v in values.items()})
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


@contextlib.contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """Eval mode and no grad for the block; the previous modes come back afterwards."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


def learning_rate(step: int, total: int, base: float, warmup: int = 500) -> float:
    """Linear warm-up, then cosine decay to a tenth of the base rate at the last step."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def set_learning_rate(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = value


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module
