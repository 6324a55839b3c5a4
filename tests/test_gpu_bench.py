"""scripts/gpu-bench.sh on a machine without a GPU: its arguments, its refusal, and (with
--dry-run, on the CPU backends) the JSON it writes, imported as the GPU machine would: without
the audio stack and the server packages it lacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.gpu_bench import FILES, batch_sizes, write_json

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-bench.sh"
# Installed here, absent on the lent GPU machine (.library/device/KINDS.md): the bench must
# not import them.
ABSENT_ON_GPU_MACHINE = ("soundfile", "soxr", "sounddevice", "fastapi", "uvicorn", "websockets",
                         "music21", "pretty_midi", "mido", "rtmidi", "pylsl", "mne", "librosa",
                         "jack", "server")  # fmt: skip


def gpu_bench(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=environment)  # fmt: skip


def test_gpu_bench_without_an_out_dir_prints_its_usage() -> None:
    for args in ((), ("--dry-run",)):
        done = gpu_bench(*args)
        assert done.returncode == 2 and done.stderr.startswith("usage: scripts/gpu-bench.sh")


def test_gpu_bench_refuses_without_cuda_and_writes_nothing(tmp_path: Path) -> None:
    done = gpu_bench(tmp_path / "out")
    assert done.returncode == 2
    assert "no CUDA backend here" in done.stderr and "torch-cuda" in done.stderr
    assert not (tmp_path / "out").exists()


def test_write_json_takes_numpy_and_paths_and_drops_non_finite(tmp_path: Path) -> None:
    data = {"p50": np.float64(1.5), "n": np.int64(3), "rows": np.arange(2), "where": tmp_path,
            "nan": float("nan"), "pair": (1, np.float32(0.5))}  # fmt: skip
    read = json.loads(write_json(tmp_path / "a" / "b.json", data).read_text())
    assert read == {"p50": 1.5, "n": 3, "rows": [0, 1], "where": str(tmp_path), "nan": None,
                    "pair": [1, 0.5]}  # fmt: skip


def test_batch_sizes_double_up_to_the_largest() -> None:
    assert batch_sizes(512) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert batch_sizes(6) == [1, 2, 4, 6]
    assert batch_sizes(1) == [1]


@pytest.mark.slow
def test_gpu_bench_dry_run_writes_every_file_with_its_shape(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        + "".join(f"sys.modules[{name!r}] = None\n" for name in ABSENT_ON_GPU_MACHINE)
    )
    out = tmp_path / "out"
    done = gpu_bench(out, "--dry-run", "--checkpoint", tiny_checkpoint,
                     env={"PYTHONPATH": str(blocker)})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)  # the device returns 8 at most
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True and summary["backends"] == ["onnx-cpu"]
    assert set(summary["unavailable"]) == {"onnx-cuda", "torch-cuda"}
    headline = summary["headline"]["onnx-cpu"]
    assert 0 < headline["latency_p50_ms"] <= headline["latency_p99_ms"]
    assert 0 <= headline["sessions_with_zero_misses"] <= summary["max_batch"] == 4
    latency = json.loads((out / "latency.json").read_text())
    assert latency["onnx-cpu"]["hops"] > 0 and latency["batch"] == 1
    sweep = json.loads((out / "batch.json").read_text())["backends"]["onnx-cpu"]
    assert [row["batch"] for row in sweep] == [1, 2, 4]
    assert all(0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"] for row in sweep)
    capacity = json.loads((out / "capacity.json").read_text())
    assert capacity["server"] is None and list(capacity["engine"]) == ["onnx-cpu"]
    assert capacity["config"]["max_batch"] == "4"
