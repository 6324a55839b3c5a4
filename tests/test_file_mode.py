"""`bandmate accompany` (file mode) and `bandmate bench latency`, run as real commands."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from engine.backends import create_backend
from engine.checkpoint import load_engine_checkpoint
from engine.filemode import accompany
from models.data.manifest import Manifest, read_audio
from tests.helpers import BANDMATE


def bandmate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BANDMATE, *map(str, args)], capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def stereo_44k(tiny_data: tuple[Path, Manifest], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds of a real live part at 44.1 kHz, in the right channel of a stereo WAV."""
    root, manifest = tiny_data
    live = read_audio(root, manifest.examples[1].live.file)[: 2 * 48_000]
    live = soxr.resample(live, 48_000, 44_100).astype(np.float32)
    path = tmp_path_factory.mktemp("inputs") / "take.wav"
    sf.write(str(path), np.stack([np.zeros_like(live), live], axis=1), 44_100, subtype="FLOAT")
    return path


def test_accompany_writes_the_same_as_the_session_path_at_the_input_rate(
    tiny_checkpoint: Path, stereo_44k: Path, tmp_path: Path
) -> None:
    out, mix = tmp_path / "acc.wav", tmp_path / "mix.wav"
    options = ["--channel", "1", "--seed", "7", "--blocksize", "100"]
    result = bandmate(
        "accompany", stereo_44k, "-o", out, "--mix", mix, "--checkpoint", tiny_checkpoint, *options
    )
    assert result.returncode == 0, result.stderr
    assert "backend: onnx-cpu" in result.stdout
    written, rate = sf.read(str(out), dtype="float32")
    live, _ = sf.read(str(stereo_44k), dtype="float32")
    assert rate == 44_100 and written.shape == (len(live),)
    backend = create_backend(load_engine_checkpoint(tiny_checkpoint), "onnx")
    expected = accompany(live[:, 1].copy(), 44_100, backend, seed=7, blocksize=512)
    np.testing.assert_array_equal(written, expected.accompaniment)
    assert np.abs(written).max() > 0
    mixed, _ = sf.read(str(mix), dtype="float32")
    np.testing.assert_allclose(mixed, live[:, 1] + written, atol=1e-7)


def test_an_unreadable_wav_is_one_line(tiny_checkpoint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(100))
    result = bandmate("accompany", bad, "-o", tmp_path / "o.wav", "--checkpoint", tiny_checkpoint)
    assert_one_line_error(result, "cannot read audio file", str(bad))


def test_a_missing_input_file_is_called_missing(tmp_path: Path) -> None:
    """libsndfile's own words for it are "System error"."""
    missing = tmp_path / "nope.wav"
    result = bandmate("accompany", missing, "-o", tmp_path / "o.wav")
    assert_one_line_error(result, f"cannot read audio file {missing}: no such file")


def test_an_unsupported_sample_rate_is_one_line(tiny_checkpoint: Path, tmp_path: Path) -> None:
    odd = tmp_path / "odd.wav"
    sf.write(str(odd), np.zeros(12_345, np.float32), 12_345)
    result = bandmate("accompany", odd, "-o", tmp_path / "o.wav", "--checkpoint", tiny_checkpoint)
    assert_one_line_error(result, "unsupported sample rate 12345 Hz")


def test_a_checkpoint_without_onnx_graphs_is_one_line(
    tiny_checkpoint: Path, stereo_44k: Path, tmp_path: Path
) -> None:
    # The trainer's own checkpoint (weights, no graphs) sits beside the exported one.
    trained = tiny_checkpoint.parent / "generator" / "checkpoint"
    assert (trained / "config.json").is_file()
    result = bandmate("accompany", stereo_44k, "-o", tmp_path / "o.wav", "--checkpoint", trained)
    assert_one_line_error(result, "has no ONNX graphs", "bandmate export")
    gone = tmp_path / "gone"
    shutil.copytree(tiny_checkpoint, gone)
    (gone / "generator_step.onnx").unlink()
    result = bandmate("accompany", stereo_44k, "-o", tmp_path / "o.wav", "--checkpoint", gone)
    assert_one_line_error(result, "generator_step.onnx is missing")


def test_bench_latency_reports_every_backend_against_the_hop(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    report_path = tmp_path / "latency.json"
    result = bandmate("bench", "latency", "--json", report_path, "--seconds", "3",
                      "--checkpoint", tiny_checkpoint)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert report["hop_ms"] == pytest.approx(1e3 * 1024 / 48_000)
    for name in ("onnx-cpu", "torch-cpu"):
        entry = report[name]
        assert 0 < entry["p50_ms"] <= entry["p99_ms"] <= entry["max_ms"]
        assert entry["p99_over_hop"] == pytest.approx(entry["p99_ms"] / report["hop_ms"])
        assert entry["hops"] == 3 * 48_000 // 1024
    assert "p99/hop" in result.stdout  # the readable table follows the JSON
