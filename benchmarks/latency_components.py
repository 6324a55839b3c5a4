"""Where a step's time goes: encode, generate and decode timed one by one, and the model's size.

Every backend's `step` is the composition of its `encode`, `generate` and `decode` methods
(engine/backends/base.py), so the component timer calls exactly those methods, with a clock
read between them: encode is the codec's numpy analysis plus its encoder network, decode the
decoder network plus the numpy synthesis (phase reconstruction and overlap-add). Each method
returns host arrays, so on CUDA every part includes its own copies in and out, as the step
does.

Percentiles do not add: on a busy machine a step is slow when any one of its parts is, so
its p50 can exceed the sum of the parts' p50s. Means do add, hence the report's check
`components_mean_sum_over_step_mean` (about 1).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.backends import ModelBackend
from engine.checkpoint import EngineCheckpoint

COMPONENTS = ("encode", "generate", "decode")


class ComponentStepper:
    method = "the backend's encode, generate and decode methods, the calls its step makes"

    def __init__(self, backend: ModelBackend, batch: int = 1):
        self.backend = backend
        self.state = backend.initial_state(batch)

    def step(self, audio: np.ndarray, noise: np.ndarray) -> tuple[float, float, float]:
        """One hop for each of the batch's sessions; seconds in encode, generate and decode."""
        backend = self.backend
        started = time.perf_counter()
        latent, state = backend.encode(self.state, audio)
        encoded = time.perf_counter()
        accompaniment, state = backend.generate(state, latent, noise)
        generated = time.perf_counter()
        _, self.state = backend.decode(state, accompaniment)
        decoded = time.perf_counter()
        return encoded - started, generated - encoded, decoded - generated


def _tensor_elements(path: Path, prefixes: dict[str, str]) -> tuple[dict[str, int], str]:
    """Elements per part of a safetensors file (part chosen by key prefix), and its dtypes."""
    from safetensors import safe_open

    counts = dict.fromkeys(prefixes.values(), 0)
    dtypes: set[str] = set()
    with safe_open(str(path), "np") as weights:
        for key in weights.keys():  # noqa: SIM118 - safe_open is not a mapping
            part = next((p for prefix, p in prefixes.items() if key.startswith(prefix)), None)
            if part is None:
                continue
            tensor: Any = weights.get_slice(key)
            counts[part] += int(np.prod(tensor.get_shape()))
            dtypes.add(str(tensor.get_dtype()))
    return counts, ",".join(sorted(dtypes))


def model_size(checkpoint: EngineCheckpoint) -> dict[str, Any]:
    """Parameters per part (tensor elements in the safetensors weights, so normalisation
    buffers count too) and the bytes of every file in the checkpoint folder."""
    directory = checkpoint.directory
    files = {p.name: p.stat().st_size for p in sorted(directory.iterdir()) if p.is_file()}
    size: dict[str, Any] = {
        "files_bytes": files,
        "onnx_bytes": sum(b for name, b in files.items() if name.endswith(".onnx")),
        "weights_bytes": sum(b for name, b in files.items() if name.endswith(".safetensors")),
        "total_bytes": sum(files.values()),
        "parameters": None,
    }
    codec, generator = directory / "codec.safetensors", directory / "generator.safetensors"
    if codec.is_file() and generator.is_file():
        parts, codec_dtype = _tensor_elements(codec, {"encoder.": "encode", "decoder.": "decode"})
        generator_counts, generator_dtype = _tensor_elements(generator, {"": "generate"})
        parts.update(generator_counts)
        size["parameters"] = {**{k: parts[k] for k in COMPONENTS}, "total": sum(parts.values())}
        size["weights_dtype"] = {"codec": codec_dtype, "generator": generator_dtype}
    return size
