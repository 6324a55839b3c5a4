"""`bandmate bench steering`: does steering move what it says, and only that?

Held-out pieces (as `bench quality`) are accompanied through file mode, exactly as a stream
plays, once unsteered and once per attribute and alpha. Each output is analysed with the
codec's fixed front end and models/attributes.py (the definition `steer build` ranked frames
by), and the attribute's mean over the frames where the output sounds, after the glide in, is
compared with the unsteered output's: the shift.
- monotone: Spearman's rho of alpha against the shift, pooled over pieces and alphas
  (alpha 0 included, shift 0), and the share of (piece, alpha != 0) shifts in alpha's
  direction;
- dual steering: two attributes at +1 together. The first one's shift should be what it is
  alone; the second's vector leaking into it is the off-target shift, |dual - alone| / |alone|,
  with Gram-Schmidt against naive addition;
- harmony: `bench quality`'s pitch-class agreement with the live part at |alpha| <= 1, as a
  share of the unsteered model's.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from benchmarks.report import targets_markdown, write_text
from engine.backends import Backend, create_backend
from engine.checkpoint import load_engine_checkpoint
from engine.errors import EngineError
from engine.filemode import accompany
from models.attributes import ATTRIBUTES, frame_attributes
from models.data.build import BuildConfig
from models.spectral import SpectralCodec, SpectralConfig

ALPHAS = (-2.0, -1.0, 0.0, 1.0, 2.0)
SKIP_SECONDS = 1.0  # the glide in (10 hops) and the model's first frames
SOUNDING_ABOVE_FLOOR_DB = 20.0
DUAL_PAIRS = (("brightness", "density"), ("register", "loudness"), ("brightness", "register"))


@dataclass(frozen=True)
class SteeringBenchConfig:
    data: Path | None = None  # as `bench quality`
    checkpoint: Path | None = None
    limit: int = 8
    seconds: float = 20.0
    seed: int = 0
    threads: int = 1
    harmony: bool = True  # Basic Pitch transcriptions for the harmony check (the slow part)
    progress: bool = True
    held_out_recipe: BuildConfig | None = None  # as `bench quality`'s


def output_attributes(audio: np.ndarray, spectral: SpectralConfig, rate: int) -> np.ndarray:
    """Mean attributes [A] of an output at the model rate, over the frames where it sounds."""
    if rate != spectral.sample_rate:
        raise EngineError(f"steering bench expects {spectral.sample_rate} Hz pieces, not {rate}")
    bands = SpectralCodec(spectral).analyse(audio[None])[0]
    values = frame_attributes(bands, spectral)
    skip = int(SKIP_SECONDS * spectral.sample_rate / spectral.hop)
    floor_db = 10 * np.log10(spectral.bands * spectral.floor**2)
    sounding = values[:, ATTRIBUTES.index("loudness")] > floor_db + SOUNDING_ABOVE_FLOOR_DB
    sounding[:skip] = False
    if not sounding.any():
        return np.full(len(ATTRIBUTES), np.nan)
    return values[sounding].mean(0)


def spearman(x: list[float], y: list[float]) -> float:
    from scipy.stats import spearmanr

    rho = spearmanr(x, y).statistic
    return float(rho) if np.isfinite(rho) else float("nan")


def naive_copy(checkpoint: Path, into: Path) -> Path:
    """The checkpoint re-exported with naive addition of steering vectors."""
    from models.checkpoint import GENERATOR_WEIGHTS, stored_dtype
    from models.checkpoint_config import read_checkpoint_config, write_checkpoint_config
    from models.export import export_checkpoint

    shutil.copytree(checkpoint, into, dirs_exist_ok=True)
    config = read_checkpoint_config(into)
    assert config.steering is not None
    config.steering = {**config.steering, "orthogonal": False}
    write_checkpoint_config(into, config)
    export_checkpoint(into, into, stored_dtype(into / GENERATOR_WEIGHTS))
    return into


def run_steering_benchmark(config: SteeringBenchConfig) -> dict[str, Any]:
    from benchmarks.quality import QualityBenchConfig
    from benchmarks.quality_systems import load_held_out

    started = time.perf_counter()
    checkpoint = load_engine_checkpoint(config.checkpoint)
    if not checkpoint.info.steering:
        raise EngineError(
            f"checkpoint {checkpoint.directory} has no steering vectors: run "
            f"'bandmate steer build --checkpoint {checkpoint.directory}'"
        )
    backend = create_backend(checkpoint, "onnx", config.threads)
    data = QualityBenchConfig(data=config.data).data_dir()
    pieces = load_held_out(
        data, config.limit, config.seconds, config.held_out_recipe, config.progress
    )
    spectral = checkpoint.spectral
    attributes = [a for a in ATTRIBUTES if a in checkpoint.info.steering]
    runs = len(pieces) * (1 + len(attributes) * (len(ALPHAS) - 1) + 2 * len(DUAL_PAIRS))
    bar = tqdm(total=runs, desc="steering", unit="run", disable=not config.progress)

    def play(backend: Backend, index: int, steer: dict[str, float]) -> np.ndarray:
        piece = pieces[index]
        bar.update(1)
        return accompany(
            piece.live, piece.sample_rate, backend, config.seed, steer=steer
        ).accompaniment

    outputs: dict[tuple[int, str, float], np.ndarray] = {}
    measured: dict[tuple[int, str, float], np.ndarray] = {}
    for i in range(len(pieces)):
        plain = play(backend, i, {})
        for attribute in attributes:
            outputs[i, attribute, 0.0] = plain
        for attribute, alpha in itertools.product(attributes, ALPHAS):
            if alpha != 0.0:
                outputs[i, attribute, alpha] = play(backend, i, {attribute: alpha})
    for key, audio in outputs.items():
        measured[key] = output_attributes(audio, spectral, pieces[key[0]].sample_rate)
    monotone = {}
    for k, attribute in enumerate(ATTRIBUTES):
        if attribute not in attributes:
            continue
        xs, ys, agree = [], [], []
        for i in range(len(pieces)):
            base = measured[i, attribute, 0.0][k]
            for alpha in ALPHAS:
                shift = float(measured[i, attribute, alpha][k] - base)
                if np.isnan(shift):
                    continue
                xs.append(alpha)
                ys.append(shift)
                if alpha != 0.0:
                    agree.append(np.sign(shift) == np.sign(alpha))
        mean_shift = {str(a): float(np.mean([y for x, y in zip(xs, ys, strict=True) if x == a]))
                      for a in ALPHAS}  # fmt: skip
        monotone[attribute] = {
            "spearman": round(spearman(xs, ys), 4),
            "in_direction": round(float(np.mean(agree)), 4) if agree else None,
            "mean_shift": {a: round(v, 4) for a, v in mean_shift.items()},
        }
    dual = dual_steering(checkpoint.directory, backend, pieces, measured, spectral, play, config)
    bar.close()
    report: dict[str, Any] = {
        "benchmark": "steering",
        "checkpoint": str(checkpoint.directory),
        "pieces": [p.piece_id for p in pieces],
        "seconds_per_piece": config.seconds,
        "alphas": list(ALPHAS),
        "layers": (checkpoint.config.steering or {}).get("layers"),
        "units": {
            "brightness": "Hz",
            "density": "nepers/frame",
            "register": "MIDI",
            "loudness": "dB",
        },
        "monotone": monotone,
        "dual": dual,
    }
    if config.harmony:
        report["harmony"] = harmony_under_steering(pieces, outputs, attributes, config.threads)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    report["targets"] = steering_targets(report)
    return report


def _check(measured: float | None, target: float, higher: bool = True) -> dict[str, Any]:
    met = measured is not None and (measured >= target if higher else measured < target)
    return {"measured": measured, "target": target, "met": bool(met)}


def steering_targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Issue 19's bars: monotone and in direction per attribute, Gram-Schmidt under naive per
    pair (measured: Gram-Schmidt's off-target minus naive's, below 0), harmony kept."""
    targets: dict[str, dict[str, Any]] = {}
    for attribute, row in report["monotone"].items():
        targets[f"{attribute}: Spearman rho"] = _check(row["spearman"], 0.9)
        targets[f"{attribute}: in direction"] = _check(row["in_direction"], 0.9)
    for pair, row in report["dual"].items():
        gap = row["gram_schmidt"] - row["naive"]
        targets[f"{pair}: off-target GS - naive"] = _check(round(gap, 4), 0.0, higher=False)
    kept = report.get("harmony", {}).get("share_of_unsteered", {})
    if kept:
        targets["harmony kept at |alpha| <= 1 (worst)"] = _check(min(kept.values()), 0.8)
    return targets


def dual_steering(checkpoint: Path, backend: Backend, pieces: list[Any],
                  measured: dict[tuple[int, str, float], np.ndarray], spectral: SpectralConfig,
                  play: Any, config: SteeringBenchConfig) -> dict[str, Any]:  # fmt: skip
    """Per pair (first, second), both at +1: the off-target shift of `first`, |dual - alone| /
    |alone|, with Gram-Schmidt (the checkpoint) and with naive addition."""
    with tempfile.TemporaryDirectory() as tmp:
        naive = create_backend(
            load_engine_checkpoint(naive_copy(checkpoint, Path(tmp) / "naive")),
            "onnx",
            config.threads,
        )
        result: dict[str, Any] = {}
        for first, second in DUAL_PAIRS:
            k = ATTRIBUTES.index(first)
            off: dict[str, list[float]] = {"gram_schmidt": [], "naive": []}
            for i, piece in enumerate(pieces):
                alone = measured[i, first, 1.0][k] - measured[i, first, 0.0][k]
                for method, chosen in (("gram_schmidt", backend), ("naive", naive)):
                    audio = play(chosen, i, {first: 1.0, second: 1.0})
                    both = output_attributes(audio, spectral, piece.sample_rate)[k]
                    leak = abs(both - measured[i, first, 0.0][k] - alone)
                    off[method].append(float(leak / max(abs(alone), 1e-9)))
            result[f"{first}+{second}"] = {m: round(float(np.nanmedian(v)), 4)
                                           for m, v in off.items()}  # fmt: skip
    return result


def harmony_under_steering(pieces: list[Any], outputs: dict[tuple[int, str, float], np.ndarray],
                           attributes: list[str], threads: int) -> dict[str, Any]:  # fmt: skip
    """Pitch-class agreement with the live part (`bench quality`'s), steered at +-1, as a
    share of the unsteered output's."""
    from benchmarks.pitch_transcription import to_analysis_rate, transcribe
    from benchmarks.quality_metrics import pitch_class_agreement

    def classes(audio: np.ndarray, rate: int) -> np.ndarray:
        return transcribe(to_analysis_rate(audio, rate), threads).pitch_class_activity()

    agreement: dict[str, list[float]] = {"unsteered": []}
    for i, piece in enumerate(pieces):
        live = classes(piece.live, piece.sample_rate)
        agreement["unsteered"].append(
            pitch_class_agreement(live, classes(outputs[i, attributes[0], 0.0], piece.sample_rate))
        )
        for attribute, alpha in itertools.product(attributes, (-1.0, 1.0)):
            key = f"{attribute} {alpha:+.0f}"
            out = classes(outputs[i, attribute, alpha], piece.sample_rate)
            agreement.setdefault(key, []).append(pitch_class_agreement(live, out))
    base = float(np.nanmean(agreement["unsteered"]))
    return {
        "unsteered": round(base, 4),
        "share_of_unsteered": {
            k: round(float(np.nanmean(v)) / base, 4)
            for k, v in agreement.items()
            if k != "unsteered"
        },
    }


def markdown_table(report: dict[str, Any]) -> str:
    lines = ["| attribute | Spearman rho | in direction | mean shift at -2 / -1 / +1 / +2 | "
             "harmony kept at -1 / +1 |", "|---|---|---|---|---|"]  # fmt: skip
    kept = report.get("harmony", {}).get("share_of_unsteered", {})
    for attribute, row in report["monotone"].items():
        shifts = " / ".join(f"{row['mean_shift'][str(a)]:+.3g}" for a in ALPHAS if a != 0.0)
        harmony = " / ".join(f"{kept[f'{attribute} {a:+.0f}']:.2f}" for a in (-1.0, 1.0)
                             if f"{attribute} {a:+.0f}" in kept) or "n/a"  # fmt: skip
        unit = report["units"][attribute]
        lines.append(
            f"| {attribute} ({unit}) | {row['spearman']:.3f} | "
            f"{row['in_direction']:.0%} | {shifts} | {harmony} |"
        )
    lines += ["", "| dual (both +1) | off-target, Gram-Schmidt | off-target, naive |",
              "|---|---|---|"]  # fmt: skip
    for pair, row in report["dual"].items():
        lines.append(f"| {pair} | {row['gram_schmidt']:.3f} | {row['naive']:.3f} |")
    return "\n".join(lines) + "\n\n" + targets_markdown(report["targets"])


def print_table(report: dict[str, Any]) -> None:
    print(markdown_table(report))


def write_markdown(report: dict[str, Any], path: Path | None) -> None:
    write_text(path, markdown_table(report) + "\n")
