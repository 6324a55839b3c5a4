"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from models.data.arrange import AugmentConfig
from models.data.build import BuildConfig

BANDMATE = str(Path(sys.executable).parent / "bandmate")


def tiny_build_config(out: Path, **overrides: object) -> BuildConfig:
    """A handful of short pieces on the small SoundFont: builds in seconds."""
    settings: dict[str, object] = {
        "out": out,
        "seed": 0,
        "limit": 6,
        "soundfonts": ("timgm6mb",),
        "augment": AugmentConfig(max_seconds=10.0),
    }
    settings.update(overrides)
    return BuildConfig(**settings)  # type: ignore[arg-type]


def train_tiny_checkpoint(data_root: Path, work: Path) -> Path:
    """A real, tiny, briefly trained codec + generator, exported: what the engine runs."""
    from models.export import export_checkpoint
    from models.train.codec_trainer import CodecTrainConfig, CodecTrainer
    from models.train.generator_trainer import GeneratorTrainConfig, GeneratorTrainer

    quiet = {"validate_every": 1000, "audio_every": 1000, "save_every": 1000, "threads": 1}
    CodecTrainer(
        CodecTrainConfig(data=data_root, run_dir=work / "codec", preset="tiny", steps=3,
                         batch_size=2, pool_examples=3, validation_crops=3, **quiet),  # type: ignore[arg-type]
        progress=False,
    ).train()  # fmt: skip
    GeneratorTrainer(
        GeneratorTrainConfig(data=data_root, codec=work / "codec" / "checkpoint",
                             run_dir=work / "generator", preset="tiny", steps=3, batch_size=2,
                             validation_batches=1, **quiet),  # type: ignore[arg-type]
        progress=False,
    ).train()  # fmt: skip
    exported = work / "exported"
    export_checkpoint(work / "generator" / "checkpoint", exported)
    return exported
