"""What the reliability suite shares: a --models-dir offering the tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import models_dir


@pytest.fixture(scope="package")
def tiny_models_dir(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models_dir(tmp_path_factory.mktemp("models"), tiny_checkpoint)
