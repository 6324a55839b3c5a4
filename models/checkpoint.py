"""Saving and loading model weights (torch side). The config schema is checkpoint_config."""

from __future__ import annotations

from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from models.checkpoint_config import (
    CheckpointConfig,
    CheckpointError,
    read_checkpoint_config,
    write_checkpoint_config,
)
from models.codec import Codec, CodecConfig
from models.generator import Generator, GeneratorConfig

CODEC_WEIGHTS = "codec.safetensors"
GENERATOR_WEIGHTS = "generator.safetensors"
STEERING_WEIGHTS = "steering.safetensors"  # one named tensor per attribute (`steer build`)
T = TypeVar("T")


def config_to_dict(config: object) -> dict[str, Any]:
    return asdict(config)  # type: ignore[call-overload]


def config_from_dict(cls: type[T], raw: dict[str, Any]) -> T:
    """Rebuild a frozen config dataclass from JSON, where tuples came back as lists and nested
    config dataclasses as dicts."""
    nested = {}
    for f in fields(cls):  # type: ignore[arg-type]
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if is_dataclass(default):
            nested[f.name] = type(default)
    unknown = set(raw) - {f.name for f in fields(cls)}  # type: ignore[arg-type]
    if unknown:
        raise CheckpointError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
    values = {}
    for key, value in raw.items():
        if key in nested and isinstance(value, dict):
            value = config_from_dict(nested[key], value)
        values[key] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def save_weights(module: nn.Module, path: Path, dtype: torch.dtype = torch.float32) -> None:
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in module.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)


def load_weights(module: nn.Module, path: Path, prefix: str = "") -> None:
    """Load `path` into `module`; with `prefix`, only the tensors whose names start with it
    (the others keep their initial values)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt weights file ({exc})") from None
    expected = {k: v for k, v in module.state_dict().items() if k.startswith(prefix)}
    tensors = {k: v for k, v in tensors.items() if k.startswith(prefix)}
    missing = sorted(set(expected) - set(tensors))
    if missing or any(tensors[k].shape != expected[k].shape for k in expected):
        raise CheckpointError(
            f"{path}: weights do not match the config"
            + (f" (missing {', '.join(missing[:3])})" if missing else " (shape mismatch)")
        )
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()},
                           strict=not prefix)  # fmt: skip


def save_checkpoint(
    directory: Path,
    codec: Codec,
    generator: Generator | None,
    meta: CheckpointConfig | None = None,
    dtype: torch.dtype = torch.float32,
) -> CheckpointConfig:
    """Write config.json and the weights. `meta` supplies data/training fields to keep."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    c = codec.config
    config = CheckpointConfig(
        sample_rate=c.sample_rate,
        hop=c.hop,
        latent_dim=c.latent_dim,
        codec_latency=c.latency,
        codec=config_to_dict(c),
        generator=config_to_dict(generator.config) if generator is not None else None,
        data_manifest=meta.data_manifest if meta else None,
        git_commit=meta.git_commit if meta else None,
        training=meta.training if meta else {},
        onnx=meta.onnx if meta else None,
    )
    save_weights(codec, directory / CODEC_WEIGHTS, dtype)
    if generator is not None:
        save_weights(generator, directory / GENERATOR_WEIGHTS, dtype)
    write_checkpoint_config(directory, config)
    return config


def load_codec(directory: Path, sample_rate: int | None = None) -> Codec:
    config = read_checkpoint_config(directory, sample_rate)
    codec = Codec(config_from_dict(CodecConfig, config.codec))
    load_weights(codec, Path(directory) / CODEC_WEIGHTS)
    return codec.eval()


def load_encoder(directory: Path) -> Codec:
    """The checkpoint's codec with only its analysis and encoder loaded: what the latents
    depend on, for a checkpoint whose decoder is replaced (or has changed shape since)."""
    config = read_checkpoint_config(directory)
    codec = Codec(config_from_dict(CodecConfig, config.codec))
    load_weights(codec, Path(directory) / CODEC_WEIGHTS, prefix="encoder.")
    return codec.eval()


def load_generator(directory: Path) -> Generator:
    config = read_checkpoint_config(directory)
    if config.generator is None:
        raise CheckpointError(f"checkpoint {directory}: has no generator (a codec-only checkpoint)")
    generator = Generator(config_from_dict(GeneratorConfig, config.generator))
    load_weights(generator, Path(directory) / GENERATOR_WEIGHTS)
    if config.steering is not None:
        generator.install_steering(load_steering(Path(directory)))
        # Dual steering orthogonalises by default; naive addition is kept for comparison.
        generator.orthogonal_steering = bool(config.steering.get("orthogonal", True))
    return generator.eval()


def stored_dtype(path: Path) -> str:
    """How a weights file stores its tensors: "float32" or "float16"."""
    tensors = load_file(str(path))
    first = next(iter(tensors.values()))
    return "float16" if first.dtype == torch.float16 else "float32"


def save_steering(directory: Path, vectors: dict[str, torch.Tensor]) -> None:
    path = Path(directory) / STEERING_WEIGHTS
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in vectors.items()},
              str(tmp))  # fmt: skip
    tmp.replace(path)


def load_steering(directory: Path) -> dict[str, torch.Tensor]:
    path = Path(directory) / STEERING_WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (config.json lists steering vectors)")
    try:
        return dict(load_file(str(path)))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt steering vectors ({exc})") from None
