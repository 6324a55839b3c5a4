"""The trainers: resume, stop on divergence naming the step, config errors, DDP via torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.data.manifest import Manifest
from models.train.codec_trainer import CodecTrainConfig, CodecTrainer
from models.train.common import TrainingError, load_train_config
from models.train.generator_trainer import GeneratorTrainConfig, GeneratorTrainer

# Slow, so not in `make test-quick`: every test here trains models, one under torchrun.
pytestmark = pytest.mark.slow

QUIET = {"validate_every": 1000, "audio_every": 1000, "threads": 1}


def codec_config(data: Path, run_dir: Path, steps: int) -> CodecTrainConfig:
    return CodecTrainConfig(data=data, run_dir=run_dir, preset="tiny", steps=steps, batch_size=2,
                            pool_examples=2, save_every=2, validation_crops=3, **QUIET)  # type: ignore[arg-type]  # fmt: skip


def test_codec_training_resumes_where_it_stopped(
    tiny_data: tuple[Path, Manifest], tmp_path: Path
) -> None:
    data, _ = tiny_data
    CodecTrainer(codec_config(data, tmp_path, steps=4), progress=False).train()
    resumed = CodecTrainer(codec_config(data, tmp_path, steps=6), progress=False)
    assert resumed.step == 4
    resumed.train()
    assert resumed.step == 6
    logged = [
        int(line.split(",")[0])
        for line in (tmp_path / "codec_log.csv").read_text().splitlines()[1:]
    ]
    assert logged == sorted(logged)
    assert (tmp_path / "checkpoint" / "codec.safetensors").is_file()


def test_a_nan_loss_stops_training_and_names_the_step(
    tiny_data: tuple[Path, Manifest], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    data, _ = tiny_data
    config = GeneratorTrainConfig(
        data=data, codec=tiny_checkpoint, run_dir=tmp_path, preset="tiny", steps=3, batch_size=2,
        save_every=1, validation_batches=1, **QUIET,  # type: ignore[arg-type]
    )  # fmt: skip
    trainer = GeneratorTrainer(config, progress=False)
    for live in trainer.latents.live:  # data gone bad: one dimension NaN throughout
        live[:, 0] = np.nan
    with pytest.raises(TrainingError, match=r"loss \w+ is nan at step 0: training stopped"):
        trainer.train()
    assert not (tmp_path / "training_state.pt").exists(), "a diverged step must not be saved"


def test_a_bad_config_field_is_named(tmp_path: Path) -> None:
    path = tmp_path / "codec.yaml"
    path.write_text("data: /tmp\nrun_dir: /tmp/run\nsteps: lots\n")
    with pytest.raises(TrainingError, match=r"codec\.yaml: field steps: "):
        load_train_config(CodecTrainConfig, path)


def test_generator_trains_under_torchrun_ddp_on_cpu(
    tiny_data: tuple[Path, Manifest], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Two processes with the gloo backend: the same code path as multi-GPU NCCL runs."""
    data, _ = tiny_data
    config = tmp_path / "generator.yaml"
    config.write_text(
        f"data: {data}\ncodec: {tiny_checkpoint}\nrun_dir: {tmp_path / 'run'}\npreset: tiny\n"
        "steps: 2\nbatch_size: 2\nsave_every: 2\nvalidate_every: 2\nvalidation_batches: 1\n"
        "threads: 1\ndevice: cpu\n"
    )
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "server.cli", "train", "generator",
         "--config", str(config)],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-8000:]
    assert (tmp_path / "run" / "checkpoint" / "generator.safetensors").is_file()
    assert "validation:" in result.stdout


def test_the_gpu_script_trains_from_a_features_pack_here_on_the_cpu(
    tiny_data: tuple[Path, Manifest], tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """scripts/train-gpu.sh as a GPU machine runs it, on a tiny CPU config: a pack of latents
    (no audio) under its size limit, then a checkpoint and a summary from the pack alone."""
    data, _ = tiny_data
    pack = tmp_path / "pack.npz"
    done = subprocess.run(
        [Path(sys.executable).parent / "bandmate", "data", "pack", "--data", str(data),
         "--codec", str(tiny_checkpoint), "--out", str(pack), "--max-mib", "0.5"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert 0 < pack.stat().st_size <= 0.5 * 2**20
    config = tmp_path / "tiny-gpu.yaml"
    config.write_text(
        f"codec: {tiny_checkpoint}\nrun_dir: unused\npreset: tiny\nsteps: 3\nwarmup_steps: 1\n"
        "batch_size: 2\nsave_every: 2\nvalidate_every: 2\nvalidation_batches: 1\n"
        "audio_every: 1000\nthreads: 1\ndevice: cpu\nmax_minutes: 2\n"
    )
    out = tmp_path / "out"
    script = Path(__file__).resolve().parents[1] / "scripts" / "train-gpu.sh"
    result = subprocess.run(
        [script, str(pack), str(out), str(config)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHON": sys.executable},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "checkpoint" / "generator.safetensors").is_file()
    assert '"steps": 3' in (out / "summary.json").read_text()
