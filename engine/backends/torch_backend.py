"""The torch backend (CPU or CUDA). torch is imported here only, never at module level, so the
runtime runs without it. On CUDA the step is captured as a CUDA graph per batch size: one
launch per hop instead of hundreds of small kernels."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.backends.base import ModelInfo, ModelState
from engine.checkpoint import EngineCheckpoint
from engine.errors import EngineError


class TorchBackend:
    def __init__(self, checkpoint: EngineCheckpoint, threads: int = 1, device: str = "auto"):
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
        self.info: ModelInfo = checkpoint.info
        try:
            self.codec = load_codec(checkpoint.directory).to(self.device)
            self.generator = load_generator(checkpoint.directory).to(self.device)
        except CheckpointError as exc:
            raise EngineError(str(exc)) from None
        self._graphs: dict[int, Any] = {}

    def initial_state(self, batch: int = 1) -> ModelState:
        encoder = [t.numpy() for t in self.codec.encoder.init_state(batch)]
        decoder = [t.numpy() for t in self.codec.decoder.init_state(batch)]
        kv = self.generator.init_state(batch)
        return ModelState(
            encoder, decoder, [kv.position.numpy(), kv.keys.numpy(), kv.values.numpy()]
        )

    def _forward(self, audio: Any, noise: Any, encoder: list[Any], decoder: list[Any],
                 generator: list[Any]) -> tuple[Any, ...]:  # fmt: skip
        from models.generator import KVState

        latent, encoder = self.codec.encode_step(audio, encoder)
        position, keys, values = generator  # the ONNX graph's state order
        kv, accompaniment = self.generator.step(KVState(keys, values, position), latent, noise)
        out, decoder = self.codec.decode_step(accompaniment, decoder)
        return out, encoder, decoder, [kv.position, kv.keys, kv.values]

    def step(
        self, state: ModelState, audio: np.ndarray, noise: np.ndarray
    ) -> tuple[ModelState, np.ndarray]:
        torch = self.torch
        if self.device.type == "cuda":
            return self._step_cuda_graph(state, audio, noise)
        with torch.inference_mode():
            out, encoder, decoder, generator = self._forward(
                torch.from_numpy(audio), torch.from_numpy(noise),
                [torch.from_numpy(a) for a in state.encoder],
                [torch.from_numpy(a) for a in state.decoder],
                [torch.from_numpy(a) for a in state.generator],
            )  # fmt: skip
        numpy = lambda ts: [t.numpy() for t in ts]  # noqa: E731
        return ModelState(numpy(encoder), numpy(decoder), numpy(generator)), out.numpy()

    def _step_cuda_graph(
        self, state: ModelState, audio: np.ndarray, noise: np.ndarray
    ) -> tuple[ModelState, np.ndarray]:
        """Copy inputs into static buffers, replay the captured graph, copy results out."""
        torch = self.torch
        batch = audio.shape[0]
        if batch not in self._graphs:
            self._graphs[batch] = self._capture(state, audio, noise)
        graph, inputs, outputs = self._graphs[batch]
        flat_in = [audio, noise, *state.encoder, *state.decoder, *state.generator]
        for buffer, value in zip(inputs, flat_in, strict=True):
            buffer.copy_(torch.from_numpy(value), non_blocking=True)
        graph.replay()
        out, encoder, decoder, generator = outputs
        host = lambda ts: [t.cpu().numpy() for t in ts]  # noqa: E731
        return ModelState(host(encoder), host(decoder), host(generator)), out.cpu().numpy()

    def _capture(self, state: ModelState, audio: np.ndarray, noise: np.ndarray) -> tuple[Any, ...]:
        torch = self.torch
        flat = [audio, noise, *state.encoder, *state.decoder, *state.generator]
        inputs = [torch.from_numpy(v).to(self.device) for v in flat]
        n_enc, n_dec = len(state.encoder), len(state.decoder)

        def run() -> tuple[Any, ...]:
            a, z, rest = inputs[0], inputs[1], inputs[2:]
            return self._forward(
                a, z, rest[:n_enc], rest[n_enc : n_enc + n_dec], rest[n_enc + n_dec :]
            )

        with torch.inference_mode():
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm up outside the graph, as capture requires
                for _ in range(3):
                    run()
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = run()
        return graph, inputs, outputs
