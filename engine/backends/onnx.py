"""The default backend: onnxruntime, with the CUDA EP when onnxruntime-gpu and a GPU are there."""

from __future__ import annotations

import numpy as np

from engine.backends.base import Arrays, GeneratorState, ModelBackend
from engine.checkpoint import EngineCheckpoint
from engine.errors import EngineError
from models.checkpoint_config import GraphSpec


def cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


class OnnxBackend(ModelBackend):
    def __init__(self, checkpoint: EngineCheckpoint, threads: int = 1, device: str = "auto"):
        import onnxruntime as ort

        super().__init__(checkpoint)
        use_cuda = device == "cuda" or (device == "auto" and cuda_available())
        if device == "cuda" and not cuda_available():
            raise EngineError("onnxruntime has no CUDA provider here: install onnxruntime-gpu")
        providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"]
            if use_cuda
            else ["CPUExecutionProvider"]
        )
        self.name = "onnx-cuda" if use_cuda else "onnx-cpu"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        onnx = checkpoint.config.onnx
        assert onnx is not None
        self.specs: dict[str, GraphSpec] = {"encoder": onnx.encoder, "decoder": onnx.decoder}
        if onnx.generator is not None:  # a codec-only checkpoint has none (`bandmate codec`)
            self.specs["generator"] = onnx.generator
        self.sessions = {}
        for name in self.specs:
            path = checkpoint.graph_path(name)
            try:
                self.sessions[name] = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as exc:  # onnxruntime raises its own types for a bad file
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise EngineError(f"{path}: cannot load ONNX graph ({first})") from None
        self.state_outputs = {
            name: spec.outputs + [s.output for s in spec.state] for name, spec in self.specs.items()
        }
        # The generator graph's state inputs are named position, keys_in_0, values_in_0
        # (models/export.py): each binds to the GeneratorState field its name starts with.
        self.generator_fields: list[str] = []
        if "generator" in self.specs:
            names = [s.input for s in self.specs["generator"].state]
            self.generator_fields = [name.split("_")[0] for name in names]
            if sorted(self.generator_fields) != ["keys", "position", "values"]:
                raise EngineError(f"the generator graph's state is {names}, not a KV window")
        # Graphs exported before steering have no steer input; a session never steers them
        # (ModelInfo.steering is empty for them).
        generator = self.specs.get("generator")
        self.steerable_graph = generator is not None and "steer" in generator.inputs

    def network_state(self, batch: int) -> tuple[Arrays, GeneratorState | None, Arrays]:
        def zeros(spec: GraphSpec) -> Arrays:
            return [
                np.zeros((batch, *s.shape), np.int64 if s.dtype == "int64" else np.float32)
                for s in spec.state
            ]

        generator = None
        if "generator" in self.specs:
            generator = self._named(zeros(self.specs["generator"]))
        return zeros(self.specs["encoder"]), generator, zeros(self.specs["decoder"])

    def _named(self, arrays: Arrays) -> GeneratorState:
        """The generator graph's state, in its order, as named fields."""
        return GeneratorState(**dict(zip(self.generator_fields, arrays, strict=True)))

    def run_graph(self, name: str, inputs: Arrays, state: Arrays) -> Arrays:
        """One of the three step graphs: its outputs, then its new state."""
        spec = self.specs[name]
        feed = dict(zip(spec.inputs, inputs, strict=True))
        feed.update({s.input: v for s, v in zip(spec.state, state, strict=True)})
        return self.sessions[name].run(self.state_outputs[name], feed)

    def run_encoder(self, bands: np.ndarray, state: Arrays) -> tuple[np.ndarray, Arrays]:
        latent, *state = self.run_graph("encoder", [bands], state)
        return latent, state

    def run_generator(
        self, latent: np.ndarray, noise: np.ndarray, steer: np.ndarray, state: GeneratorState
    ) -> tuple[np.ndarray, GeneratorState]:
        inputs = [latent, noise, steer] if self.steerable_graph else [latent, noise]
        ordered = [getattr(state, name) for name in self.generator_fields]
        accompaniment, *new = self.run_graph("generator", inputs, ordered)
        return accompaniment, self._named(new)

    def run_decoder(self, latent: np.ndarray, state: Arrays) -> tuple[np.ndarray, Arrays]:
        spectrum, *state = self.run_graph("decoder", [latent], state)
        return spectrum, state

    def threads(self) -> dict[str, int]:
        options = self.sessions["generator"].get_session_options()
        return {"intra_op": options.intra_op_num_threads, "inter_op": options.inter_op_num_threads}
