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
