"""Where a step's time goes: encode, generate and decode timed one by one, and the model's size.

Both backends already run the step as three separate parts, so no extra export is needed:
the ONNX checkpoint holds three step graphs (encoder, generator, decoder) with their state as
explicit inputs and outputs, and the torch backend calls `codec.encode_step`,
`generator.step` and `codec.decode_step` in turn. The component timers make exactly those
calls, with a clock read between them:

- onnx (CPU or CUDA): `OnnxBackend.run_graph` for each graph, the very calls `step` makes.
  Each returns host arrays, so on CUDA every part includes its own copies in and out, as
  the step does.
- torch on CPU: the three module calls under `inference_mode`, the state kept as tensors.
  The step adds only zero-copy numpy views around them.
- torch on CUDA: the three module calls eagerly, with `torch.cuda.synchronize()` after each
  so a part's time is its own. The step itself replays one captured CUDA graph, so there
  the parts add up to more than the step: they show proportions, the step is the headline.

Percentiles do not add: on a busy machine a step is slow when any one of its parts is, so
its p50 can exceed the sum of the parts' p50s. Means do add, hence the report's check
`components_mean_sum_over_step_mean` (about 1 on CPU).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engine.backends import Backend
from engine.backends.base import ModelState
from engine.backends.onnx import OnnxBackend
from engine.backends.torch_backend import TorchBackend
from engine.checkpoint import EngineCheckpoint

COMPONENTS = ("encode", "generate", "decode")


class ComponentStepper(Protocol):
    method: str  # how the parts are timed, for the report

    def step(self, audio: np.ndarray, noise: np.ndarray) -> tuple[float, float, float]:
        """One hop for one session; seconds spent in encode, generate and decode."""
        ...


class OnnxComponents:
    method = "each ONNX step graph timed around the same run_graph call the step makes"

    def __init__(self, backend: OnnxBackend):
        self.backend = backend
        self.state = backend.initial_state(1)

    def step(self, audio: np.ndarray, noise: np.ndarray) -> tuple[float, float, float]:
        run, state = self.backend.run_graph, self.state
        started = time.perf_counter()
        latent, *encoder = run("encoder", [audio], state.encoder)
        encoded = time.perf_counter()
        accompaniment, *generator = run("generator", [latent, noise], state.generator)
        generated = time.perf_counter()
        _, *decoder = run("decoder", [accompaniment], state.decoder)
        decoded = time.perf_counter()
        self.state = ModelState(encoder, decoder, generator)
        return encoded - started, generated - encoded, decoded - generated


class TorchComponents:
    def __init__(self, backend: TorchBackend):
        from models.generator import KVState

        self.torch, self.device = backend.torch, backend.device
        self.codec, self.generator = backend.codec, backend.generator
        self.on_cuda = self.device.type == "cuda"
        self.method = (
            "torch modules called eagerly with cuda.synchronize() after each "
            "(the step replays one CUDA graph, so the parts sum to more than it)"
            if self.on_cuda
            else "torch modules timed one by one under inference_mode, as the step calls them"
        )
        self.encoder_state = self.codec.encoder.init_state(1, self.device)
        self.decoder_state = self.codec.decoder.init_state(1, self.device)
        self.kv: KVState = self.generator.init_state(1, self.device)

    def _clock(self) -> float:
        if self.on_cuda:
            self.torch.cuda.synchronize()
        return time.perf_counter()

    def step(self, audio: np.ndarray, noise: np.ndarray) -> tuple[float, float, float]:
        torch = self.torch
        with torch.inference_mode():
            hop = torch.from_numpy(audio).to(self.device)
            noise_in = torch.from_numpy(noise).to(self.device)
            started = self._clock()
            latent, self.encoder_state = self.codec.encode_step(hop, self.encoder_state)
            encoded = self._clock()
            self.kv, accompaniment = self.generator.step(self.kv, latent, noise_in)
            generated = self._clock()
            _, self.decoder_state = self.codec.decode_step(accompaniment, self.decoder_state)
            decoded = self._clock()
        return encoded - started, generated - encoded, decoded - generated


def component_stepper(backend: Backend) -> ComponentStepper:
    if isinstance(backend, OnnxBackend):
        return OnnxComponents(backend)
    if isinstance(backend, TorchBackend):
        return TorchComponents(backend)
    raise TypeError(f"no component timer for backend {backend.name}")


def backend_threads(backend: Backend) -> dict[str, int]:
    """The threads the backend really uses, read back from the runtime, not the request."""
    if isinstance(backend, OnnxBackend):
        options = backend.sessions["generator"].get_session_options()
        return {"intra_op": options.intra_op_num_threads, "inter_op": options.inter_op_num_threads}
    if isinstance(backend, TorchBackend):
        torch = backend.torch
        return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    return {}


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
