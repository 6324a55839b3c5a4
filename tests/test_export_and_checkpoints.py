"""ONNX step graphs equal torch; checkpoints round-trip; bad checkpoints give one clear line."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from models.attributes import ATTRIBUTES
from models.checkpoint import load_codec, load_generator
from models.checkpoint_config import CheckpointError, read_checkpoint_config
from models.export import check_parity
from tests.helpers import BANDMATE


def test_onnx_step_graphs_match_torch_over_256_frames(tiny_checkpoint: Path) -> None:
    config = read_checkpoint_config(tiny_checkpoint)
    assert config.onnx is not None
    parity = check_parity(load_codec(tiny_checkpoint), load_generator(tiny_checkpoint),
                          tiny_checkpoint, config.onnx, frames=256, seed=5)  # fmt: skip
    assert set(parity) == {"encoder", "decoder", "generator"}
    assert max(parity.values()) <= 1e-4, parity


def test_export_then_onnxruntime_load_then_step(tiny_checkpoint: Path) -> None:
    import onnxruntime as ort

    config = read_checkpoint_config(tiny_checkpoint, sample_rate=48_000)
    assert config.onnx is not None and config.onnx.generator is not None
    outputs = {}
    bands = np.full((3, config.latent_dim), -3.0, np.float32)
    for name, spec, inputs in (
        ("encoder", config.onnx.encoder, {"bands": bands}),
        ("decoder", config.onnx.decoder, {"latent": np.zeros((3, config.latent_dim), np.float32)}),
        ("generator", config.onnx.generator, {
            "live": np.zeros((3, config.latent_dim), np.float32),
            "noise": np.ones((3, int(config.generator["noise_dim"])), np.float32),  # type: ignore[index]
            "steer": np.zeros((3, len(ATTRIBUTES)), np.float32)}),
    ):  # fmt: skip
        session = ort.InferenceSession(
            str(tiny_checkpoint / spec.file), providers=["CPUExecutionProvider"]
        )
        state = {s.input: np.zeros((3, *s.shape), np.int64 if s.dtype == "int64" else np.float32)
                 for s in spec.state}  # fmt: skip
        result = session.run(None, inputs | state)
        outputs[name] = result
        assert all(np.isfinite(r).all() for r in result)
    assert outputs["encoder"][0].shape == (3, config.latent_dim)
    spectral = config.codec["spectral"]  # one log-magnitude frame per hop
    assert outputs["decoder"][0].shape == (3, spectral["n_fft"] // 2 + 1)
    assert outputs["generator"][0].shape == (3, config.latent_dim)
    assert outputs["generator"][1].tolist() == [1, 1, 1]  # the position advanced


def test_corrupt_weights_name_the_file(checkpoint_copy: Path) -> None:
    (checkpoint_copy / "codec.safetensors").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match=r"codec\.safetensors: corrupt weights file"):
        load_codec(checkpoint_copy)


@pytest.mark.parametrize("version", [2, 99])
def test_another_checkpoint_version_names_the_file_and_version(
    checkpoint_copy: Path, version: int
) -> None:
    """Version 2 had the waveform codec: its latents mean nothing to this one."""
    config_path = checkpoint_copy / "config.json"
    raw = json.loads(config_path.read_text())
    raw["version"] = version
    config_path.write_text(json.dumps(raw))
    with pytest.raises(
        CheckpointError,
        match=rf"config\.json: checkpoint version {version}, this Bandmate reads version 3 only",
    ):
        read_checkpoint_config(checkpoint_copy)


def test_a_sample_rate_mismatch_is_named(tiny_checkpoint: Path) -> None:
    with pytest.raises(
        CheckpointError, match=r"config\.json: sample rate mismatch: .*48000 Hz, 44100 Hz"
    ):
        read_checkpoint_config(tiny_checkpoint, sample_rate=44_100)


def test_a_config_that_is_not_json_is_named(checkpoint_copy: Path) -> None:
    (checkpoint_copy / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        read_checkpoint_config(checkpoint_copy)


def test_export_of_a_corrupt_checkpoint_is_one_line_from_the_cli(
    checkpoint_copy: Path, tmp_path: Path
) -> None:
    (checkpoint_copy / "generator.safetensors").write_bytes(b"\x00" * 64)
    command = [BANDMATE, "export", str(checkpoint_copy), "--out", str(tmp_path / "x")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "generator.safetensors: corrupt weights file" in lines[0]


def test_export_takes_a_retrained_decoder_with_the_same_encoder_and_refuses_another(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """The generator trains on latents, which depend on the encoder only: a codec whose
    decoder trained on may be swapped in at export, a codec with another encoder may not."""
    from models.checkpoint import save_weights
    from models.export import export_checkpoint

    codec = load_codec(tiny_checkpoint)
    retrained = tmp_path / "retrained"
    shutil.copytree(tiny_checkpoint, retrained)
    with torch.no_grad():
        codec.decoder.direct.conv.weight.add_(1.0)
    save_weights(codec, retrained / "codec.safetensors")
    export_checkpoint(tiny_checkpoint, tmp_path / "swapped", codec_from=retrained)
    swapped = load_codec(tmp_path / "swapped")
    assert torch.equal(swapped.decoder.direct.conv.weight, codec.decoder.direct.conv.weight)

    with torch.no_grad():
        codec.encoder.band_mean.add_(1.0)
    save_weights(codec, retrained / "codec.safetensors")
    with pytest.raises(CheckpointError, match="not the one the generator was trained on"):
        export_checkpoint(tiny_checkpoint, tmp_path / "refused", codec_from=retrained)


def test_export_sets_the_generators_playing_temperature(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from models.export import export_checkpoint

    export_checkpoint(tiny_checkpoint, tmp_path / "cool", temperature=0.5)
    assert read_checkpoint_config(tmp_path / "cool").generator["temperature"] == 0.5  # type: ignore[index]
    generator, cool = load_generator(tiny_checkpoint), load_generator(tmp_path / "cool")
    live, noise = torch.randn(1, 8, generator.config.latent_dim), torch.zeros(1, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(generator(live, noise).latents, cool(live, noise).latents)
