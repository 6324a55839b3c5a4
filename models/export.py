"""`bandmate export`: ONNX step graphs, the form the engine runs.

Three graphs, each one streaming step with its state as explicit inputs and outputs and a
dynamic batch axis (so the engine can step many sessions as one batch):
    encoder_step:   bands [B, D]                            -> latent [B, D]
    decoder_step:   latent [B, D], conv caches             -> spectrum [B, K], conv caches
    generator_step: live [B, D], noise [B, N], steer [B, A], position [B],
                    keys, values [B, layers, H, W, Dh]      -> out [B, D], position, keys, values
(steer: alpha per steering attribute, models/attributes.py; zeros play unsteered.)
The codec's fixed analysis (audio -> bands) and synthesis (spectrum -> audio) are numpy code
the engine runs around the graphs (models/spectral.py): an STFT does not export to ONNX.
Export checks ONNX against torch over `parity_frames` consecutive frames and records the
largest difference in config.json; it fails if that exceeds the tolerance.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from models.attributes import ATTRIBUTES
from models.checkpoint import (
    CODEC_WEIGHTS,
    GENERATOR_WEIGHTS,
    load_codec,
    load_encoder,
    load_generator,
    save_steering,
    save_weights,
)
from models.checkpoint_config import (
    CheckpointConfig,
    CheckpointError,
    GraphSpec,
    OnnxSpec,
    StateSpec,
    read_checkpoint_config,
    write_checkpoint_config,
)
from models.codec import Codec
from models.generator import Generator, KVState

OPSET = 17
PARITY_TOLERANCE = 1e-4


class EncoderStep(nn.Module):
    def __init__(self, codec: Codec):
        super().__init__()
        self.codec = codec

    def forward(self, bands: Tensor) -> tuple[Tensor, ...]:
        return (self.codec.encode_step(bands),)


class DecoderStep(nn.Module):
    def __init__(self, codec: Codec):
        super().__init__()
        self.codec = codec

    def forward(self, latent: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        spectrum, new_state = self.codec.decode_step(latent, list(state))
        return (spectrum, *new_state)


class GeneratorStep(nn.Module):
    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator

    def forward(
        self,
        live: Tensor,
        noise: Tensor,
        steer: Tensor,
        position: Tensor,
        keys: Tensor,
        values: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        state, out = self.generator.step(KVState(keys, values, position), live, noise, steer)
        return out, state.position, state.keys, state.values


def _state_specs(prefix: str, state: list[Tensor]) -> list[StateSpec]:
    return [
        StateSpec(input=f"{prefix}_in_{i}", output=f"{prefix}_out_{i}", shape=list(s.shape[1:]),
                  dtype="int64" if s.dtype == torch.int64 else "float32")
        for i, s in enumerate(state)
    ]  # fmt: skip


def _export(module: nn.Module, args: tuple[Tensor, ...], path: Path, spec: GraphSpec) -> None:
    names_in = spec.inputs + [s.input for s in spec.state]
    names_out = spec.outputs + [s.output for s in spec.state]
    # The TorchScript exporter: the dynamo one needs onnxscript, and these graphs need nothing
    # it adds. torch marks the legacy path deprecated; the warning says nothing about ours.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module, args, str(path), input_names=names_in, output_names=names_out,
            dynamic_axes={n: {0: "batch"} for n in names_in + names_out},
            opset_version=OPSET, dynamo=False,
        )  # fmt: skip


def export_codec(codec: Codec, out: Path) -> tuple[GraphSpec, GraphSpec]:
    dim = codec.config.latent_dim
    dec_state = codec.decoder.init_state(1)
    encoder = GraphSpec(file="encoder_step.onnx", inputs=["bands"], outputs=["latent"], state=[])
    decoder = GraphSpec(file="decoder_step.onnx", inputs=["latent"], outputs=["spectrum"],
                        state=_state_specs("dec_state", dec_state))  # fmt: skip
    _export(EncoderStep(codec), (torch.zeros(1, dim),), out / encoder.file, encoder)
    _export(DecoderStep(codec), (torch.zeros(1, dim), *dec_state), out / decoder.file, decoder)
    return encoder, decoder


def export_generator(generator: Generator, out: Path) -> GraphSpec:
    c = generator.config
    state = generator.init_state(1)
    spec = GraphSpec(
        file="generator_step.onnx", inputs=["live", "noise", "steer"], outputs=["out"],
        state=[
            StateSpec(input="position", output="next_position", shape=[], dtype="int64"),
            *_state_specs("keys", [state.keys]), *_state_specs("values", [state.values]),
        ],
    )  # fmt: skip
    args = (
        torch.zeros(1, c.latent_dim),
        torch.zeros(1, c.noise_dim),
        torch.zeros(1, len(ATTRIBUTES)),
        state.position,
        state.keys,
        state.values,
    )
    _export(GeneratorStep(generator), args, out / spec.file, spec)
    return spec


def _session(path: Path):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run_steps(module: nn.Module, path: Path, spec: GraphSpec, inputs: list[list[np.ndarray]],
               state: list[np.ndarray]) -> float:  # fmt: skip
    """Step torch and ONNX side by side over consecutive frames; the largest output difference."""
    session = _session(path)
    torch_state = [torch.from_numpy(s.copy()) for s in state]
    onnx_state = [s.copy() for s in state]
    worst = 0.0
    with torch.no_grad():
        for frame in inputs:
            torch_out = module(*(torch.from_numpy(x) for x in frame), *torch_state)
            feed = dict(zip(spec.inputs, frame, strict=True))
            feed |= {s.input: v for s, v in zip(spec.state, onnx_state, strict=True)}
            onnx_out = session.run(spec.outputs + [s.output for s in spec.state], feed)
            n = len(spec.outputs)
            for t, o in zip(torch_out[:n], onnx_out[:n], strict=True):
                worst = max(worst, float(np.abs(t.numpy() - o).max()))
            torch_state, onnx_state = list(torch_out[n:]), list(onnx_out[n:])
    return worst


def check_parity(codec: Codec, generator: Generator | None, out: Path, spec: OnnxSpec,
                 frames: int = 256, seed: int = 0) -> dict[str, float]:  # fmt: skip
    rng = np.random.default_rng(seed)
    dim = codec.config.latent_dim
    bands = [[rng.uniform(-14, 8, (2, dim)).astype(np.float32)] for _ in range(frames)]
    latents = [[rng.standard_normal((2, dim)).astype(np.float32)] for _ in range(frames)]

    def zeros(graph: GraphSpec) -> list[np.ndarray]:
        return [np.zeros((2, *s.shape), np.float32) for s in graph.state]

    parity = {
        "encoder": _run_steps(
            EncoderStep(codec), out / spec.encoder.file, spec.encoder, bands, zeros(spec.encoder)
        ),
        "decoder": _run_steps(
            DecoderStep(codec), out / spec.decoder.file, spec.decoder, latents, zeros(spec.decoder)
        ),
    }
    if generator is not None and spec.generator is not None:
        noise_dim = generator.config.noise_dim
        inputs = [
            [
                rng.standard_normal((2, dim)).astype(np.float32),
                rng.standard_normal((2, noise_dim)).astype(np.float32),
                # Steered frames (two attributes at once, so the orthogonalisation runs too),
                # then unsteered ones.
                (
                    rng.uniform(-2, 2, (2, len(ATTRIBUTES)))
                    * (np.arange(len(ATTRIBUTES)) < 2)
                    * (frame < frames // 2)
                ).astype(np.float32),
            ]
            for frame in range(frames)
        ]
        state = generator.init_state(2)
        init = [state.position.numpy(), state.keys.numpy(), state.values.numpy()]
        parity["generator"] = _run_steps(
            GeneratorStep(generator), out / spec.generator.file, spec.generator, inputs, init
        )
    return parity


def swap_codec(
    codec: Codec, config: CheckpointConfig, codec_from: Path
) -> tuple[Codec, CheckpointConfig]:
    """The codec of `codec_from`, and `config` with its codec settings and training record."""
    from models.train.latents import codec_fingerprint

    other = load_codec(codec_from)
    if codec_fingerprint(other) != codec_fingerprint(codec):
        raise CheckpointError(
            f"{codec_from}: its encoder is not the one the generator was trained on"
        )
    other_config = read_checkpoint_config(codec_from)
    training = {k: v for k, v in config.training.items() if not k.startswith("codec")}
    training |= {k: v for k, v in other_config.training.items() if k.startswith("codec")}
    return other, config.model_copy(update={"codec": other_config.codec, "training": training})


def with_temperature(generator: Generator, temperature: float) -> Generator:
    playing = Generator(replace(generator.config, temperature=temperature))
    playing.load_state_dict(generator.state_dict())
    playing.steering.copy_(generator.steering)  # not in the state dict
    return playing.eval()


def round_weights(module: nn.Module, dtype: torch.dtype) -> None:
    """Round weights through `dtype` in place, so torch and ONNX hold the same values when the
    shipped safetensors are stored in half precision."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.to(dtype).to(p.dtype))


def export_checkpoint(checkpoint: Path, out: Path, weights_dtype: str = "float32",
                      parity_frames: int = 256, codec_from: Path | None = None,
                      temperature: float | None = None) -> OnnxSpec:  # fmt: skip
    """Export `checkpoint`; with `codec_from`, its codec is replaced by that checkpoint's
    (same encoder required: a decoder trained on while the generator was); `temperature`
    sets the generator's playing temperature."""
    config = read_checkpoint_config(checkpoint)
    if codec_from is None:
        codec = load_codec(checkpoint)
    else:
        codec, config = swap_codec(load_encoder(checkpoint), config, codec_from)
    generator = load_generator(checkpoint) if config.generator is not None else None
    if generator is not None and temperature is not None:
        generator = with_temperature(generator, temperature)
        config.generator = {**(config.generator or {}), "temperature": temperature}
    dtype = {"float32": torch.float32, "float16": torch.float16}[weights_dtype]
    out.mkdir(parents=True, exist_ok=True)
    for module in (codec, generator):
        if module is not None:
            round_weights(module, dtype)
    encoder, decoder = export_codec(codec, out)
    generator_spec = export_generator(generator, out) if generator is not None else None
    spec = OnnxSpec(opset=OPSET, encoder=encoder, decoder=decoder, generator=generator_spec)
    spec.parity = check_parity(codec, generator, out, spec, parity_frames)
    worst = max(spec.parity.values())
    if worst > PARITY_TOLERANCE:
        raise CheckpointError(f"ONNX export of {checkpoint} differs from torch by {worst:.2e} "
                              f"(tolerance {PARITY_TOLERANCE:.0e}): {spec.parity}")  # fmt: skip
    save_weights(codec, out / CODEC_WEIGHTS, dtype)
    if generator is not None:
        save_weights(generator, out / GENERATOR_WEIGHTS, dtype)
        if config.steering is not None:
            save_steering(out, dict(zip(ATTRIBUTES, generator.steering, strict=True)))
    config.onnx = spec
    write_checkpoint_config(out, config)
    for extra in ("README.md",):
        if (checkpoint / extra).is_file() and checkpoint.resolve() != out.resolve():
            shutil.copy(checkpoint / extra, out / extra)
    return spec
