"""Loading an exported checkpoint for the engine: config.json plus ONNX step graphs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import EngineError
from models.checkpoint_config import CheckpointConfig, CheckpointError, read_checkpoint_config
from models.spectral import SpectralConfig

# The checkpoint that ships in the repository, used when none is given.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "models" / "checkpoints" / "default"


@dataclass(frozen=True)
class ModelInfo:
    """What the engine needs to know about a model to frame audio for it."""

    sample_rate: int
    hop: int
    latent_dim: int
    noise_dim: int
    anticipation: int
    window: int
    codec_latency: int  # samples by which the codec's analysis + synthesis delay its output
    # Attributes the generator can be steered along (`bandmate steer build`); () for none.
    steering: tuple[str, ...] = ()

    def cannot_steer(self, attributes: Iterable[str]) -> str | None:
        """Why these attributes cannot be steered here, in one line; None when they can."""
        unknown = [name for name in attributes if name not in self.steering]
        if not unknown:
            return None
        have = ", ".join(self.steering) or "nothing (run 'bandmate steer build')"
        return f"cannot steer {', '.join(map(repr, unknown))}: this checkpoint steers {have}"


@dataclass(frozen=True)
class EngineCheckpoint:
    directory: Path
    config: CheckpointConfig
    info: ModelInfo
    spectral: SpectralConfig  # the codec's numpy analysis and synthesis (models/spectral.py)

    def graph_path(self, name: str) -> Path:
        assert self.config.onnx is not None
        return self.directory / getattr(self.config.onnx, name).file


def load_engine_checkpoint(
    directory: Path | None = None, need_generator: bool = True
) -> EngineCheckpoint:
    """Read and check a checkpoint directory; every problem is one EngineError line.
    `need_generator=False` also accepts a codec-only checkpoint (`bandmate codec`)."""
    directory = Path(directory) if directory is not None else DEFAULT_CHECKPOINT
    try:
        config = read_checkpoint_config(directory)
    except CheckpointError as exc:
        raise EngineError(str(exc)) from None
    if config.generator is None and need_generator:
        raise EngineError(f"checkpoint {directory}: has no generator, only a codec")
    if config.onnx is None or (config.generator is not None and config.onnx.generator is None):
        raise EngineError(
            f"checkpoint {directory}: has no ONNX graphs; run 'bandmate export {directory} "
            f"--out DIR' and use DIR"
        )
    for spec in (config.onnx.encoder, config.onnx.decoder, config.onnx.generator):
        if spec is not None and not (directory / spec.file).is_file():
            raise EngineError(f"checkpoint {directory}: ONNX graph {spec.file} is missing")
    generator = config.generator or {"noise_dim": 0, "anticipation": 0, "window": 0}
    info = ModelInfo(
        sample_rate=config.sample_rate,
        hop=config.hop,
        latent_dim=config.latent_dim,
        noise_dim=int(generator["noise_dim"]),
        anticipation=int(generator["anticipation"]),
        window=int(generator["window"]),
        codec_latency=config.codec_latency,
        steering=tuple(config.steering["attributes"])
        if config.steering is not None
        and config.onnx.generator is not None
        and "steer" in config.onnx.generator.inputs
        else (),
    )
    try:
        spectral = SpectralConfig(**config.codec["spectral"])
    except (KeyError, TypeError) as exc:
        raise EngineError(f"checkpoint {directory}: bad codec.spectral config ({exc})") from None
    return EngineCheckpoint(directory, config, info, spectral)
