"""The torch backend (CPU or CUDA). torch is imported here only, never at module level, so the
runtime runs without it. On CUDA each network part is captured as a CUDA graph per batch
size: one launch per part and hop instead of hundreds of small kernels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engine.backends.base import Arrays, GeneratorState, ModelBackend
from engine.checkpoint import EngineCheckpoint
from engine.errors import EngineError


class TorchBackend(ModelBackend):
    def __init__(self, checkpoint: EngineCheckpoint, threads: int = 1, device: str = "auto"):
        super().__init__(checkpoint)
        try:
            import torch
        except ImportError:
            raise EngineError(
                "the torch backend needs torch: pip install 'bandmate[train]'"
            ) from None
        from models.checkpoint import load_codec, load_generator
        from models.checkpoint_config import CheckpointError

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise EngineError("torch sees no CUDA device here")
        if device == "cpu":
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = torch.device(device)
        self.name = f"torch-{self.device.type}"
        try:
            self.codec = load_codec(checkpoint.directory).to(self.device)
            # A codec-only checkpoint (`bandmate codec`) has no generator.
            has_generator = checkpoint.config.generator is not None
            self.generator = (
                load_generator(checkpoint.directory).to(self.device) if has_generator else None
            )
        except CheckpointError as exc:
            raise EngineError(str(exc)) from None
        self._graphs: dict[tuple[str, int], Any] = {}

    def threads(self) -> dict[str, int]:
        torch = self.torch
        return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}

    def network_state(self, batch: int) -> tuple[Arrays, GeneratorState | None, Arrays]:
        decoder = [t.numpy() for t in self.codec.decoder.init_state(batch)]
        if self.generator is None:
            return [], None, decoder
        kv = self.generator.init_state(batch)
        return [], GeneratorState(kv.position.numpy(), kv.keys.numpy(), kv.values.numpy()), decoder

    # The parts as functions of tensors, in the ONNX graphs' input and state order.
    def _encoder(self, bands: Any) -> tuple[Any, ...]:
        return (self.codec.encode_step(bands),)

    def _generator(self, latent: Any, noise: Any, steer: Any, position: Any, keys: Any,
                   values: Any) -> tuple[Any, ...]:  # fmt: skip
        from models.generator import KVState

        assert self.generator is not None, "a codec-only checkpoint cannot generate"
        kv, accompaniment = self.generator.step(
            KVState(keys, values, position), latent, noise, steer
        )
        return accompaniment, kv.position, kv.keys, kv.values

    def _decoder(self, latent: Any, *state: Any) -> tuple[Any, ...]:
        spectrum, new_state = self.codec.decode_step(latent, list(state))
        return (spectrum, *new_state)

    def _run(self, name: str, part: Callable[..., tuple[Any, ...]], inputs: Arrays) -> Arrays:
        torch = self.torch
        if self.device.type == "cuda":
            return self._run_cuda_graph(name, part, inputs)
        with torch.inference_mode():
            outputs = part(*(torch.from_numpy(x) for x in inputs))
        return [t.numpy() for t in outputs]

    def run_encoder(self, bands: np.ndarray, state: Arrays) -> tuple[np.ndarray, Arrays]:
        (latent,) = self._run("encoder", self._encoder, [bands])
        return latent, []

    def run_generator(
        self, latent: np.ndarray, noise: np.ndarray, steer: np.ndarray, state: GeneratorState
    ) -> tuple[np.ndarray, GeneratorState]:
        inputs = [latent, noise, steer, state.position, state.keys, state.values]
        accompaniment, position, keys, values = self._run("generator", self._generator, inputs)
        return accompaniment, GeneratorState(position, keys, values)

    def run_decoder(self, latent: np.ndarray, state: Arrays) -> tuple[np.ndarray, Arrays]:
        spectrum, *state = self._run("decoder", self._decoder, [latent, *state])
        return spectrum, state

    def _run_cuda_graph(
        self, name: str, part: Callable[..., tuple[Any, ...]], inputs: Arrays
    ) -> Arrays:
        """Copy inputs into static buffers, replay the part's captured graph, copy out."""
        torch = self.torch
        key = (name, inputs[0].shape[0])
        if key not in self._graphs:
            self._graphs[key] = self._capture(part, inputs)
        graph, buffers, outputs = self._graphs[key]
        for buffer, value in zip(buffers, inputs, strict=True):
            buffer.copy_(torch.from_numpy(value), non_blocking=True)
        graph.replay()
        return [t.cpu().numpy() for t in outputs]

    def _capture(self, part: Callable[..., tuple[Any, ...]], inputs: Arrays) -> tuple[Any, ...]:
        torch = self.torch
        buffers = [torch.from_numpy(v).to(self.device) for v in inputs]
        with torch.inference_mode():
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm up outside the graph, as capture requires
                for _ in range(3):
                    part(*buffers)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = part(*buffers)
        return graph, buffers, outputs
