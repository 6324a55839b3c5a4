"""`bandmate bench quality`: how well does the accompaniment fit the live part?

Every system (see `benchmarks.quality_systems`) accompanies the same crop of every held-out
piece, and every output is scored the same way against the live part it accompanies:

- **beat alignment**: librosa's beat tracker on the live part and on the output, then
  mir_eval's beat F-measure (+-70 ms) of the output's beats against the live part's;
- **harmonic adherence**: both are transcribed with Basic Pitch's bundled ONNX model
  (`benchmarks.pitch_transcription`); *pitch-class agreement* is the mean cosine similarity
  of their pitch-class profiles per 4 s window, *key consistency* MIREX's weighted score of
  the output's Krumhansl-Schmuckler key against the live part's;
- **onset and dynamics correlation**: Pearson correlation of the onset-strength envelopes
  (+-46 ms tolerance) and of the loudness contours (dB, smoothed over 0.5 s);
- **Fréchet distance** between the set of a system's outputs and the set of real
  accompaniments, on a fixed, hand-made embedding per 1 s window (`window_embeddings`: MFCC
  means, Basic Pitch's pitch-class profile, loudness and onset statistics). Why this one:
  no learned audio embedding ships offline here (VGGish, PANNs, CLAP, EnCodec all download
  weights), and a fixed embedding cannot drift between runs or versions; these features
  cover what an accompaniment must get right (timbre, harmony, dynamics, rhythmic
  activity), and at 36 dimensions a covariance is estimable from the windows of a few
  pieces (39 per 20 s piece, 156 at the default --limit 4).
  The real accompaniments are the reference set, so ground truth scores 0 by construction
  and random pairing (the same audio, other pieces) nearly 0: this metric asks whether the
  output *sounds like* an accompaniment, while the others ask whether it *fits this one*.
  Like any Fréchet distance it is biased upward on few windows; compare at equal --limit.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from benchmarks.report import targets_markdown, write_text
from engine.errors import EngineError
from models.data.build import BuildConfig

METRICS = (
    "beat_f_measure",
    "pitch_class_agreement",
    "key_consistency",
    "chroma_vs_truth",
    "onset_correlation",
    "dynamics_correlation",
)
COLUMNS = {
    "beat_f_measure": "beat F",
    "pitch_class_agreement": "pitch-class agr.",
    "key_consistency": "key cons.",
    "chroma_vs_truth": "chroma corr. vs truth",
    "onset_correlation": "onset corr.",
    "dynamics_correlation": "dynamics corr.",
    "frechet_distance": "Fréchet dist.",
}
# Where `--data` is not given: the training build when there is one, else a held-out-only build.
DEFAULT_DATA, HELD_OUT_DATA = Path("data/default"), Path("data/heldout")


@dataclass(frozen=True)
class QualityBenchConfig:
    data: Path | None = None  # None: DEFAULT_DATA if built, else HELD_OUT_DATA (built on use)
    checkpoint: Path | None = None  # None: the shipped default
    limit: int = 8  # held-out pieces
    seconds: float = 20.0  # crop of each piece, from its start
    seed: int = 0  # the model's noise and the random pairing
    threads: int = 1
    backend: str = "onnx"
    plot: Path | None = None  # a folder: one PNG per piece (live, model, real accompaniment)
    progress: bool = True
    # How missing held-out pieces are rendered; None: exactly as the default data build.
    held_out_recipe: BuildConfig | None = None

    def data_dir(self) -> Path:
        if self.data is not None:
            return self.data
        return DEFAULT_DATA if (DEFAULT_DATA / "manifest.json").is_file() else HELD_OUT_DATA


def require_quality_packages() -> None:
    missing = []
    for module, package in (("librosa", "librosa"), ("mir_eval", "mir_eval")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise EngineError(
            f"bandmate bench quality needs {' and '.join(missing)}: pip install -e '.[quality]'"
        )
    from benchmarks.pitch_transcription import basic_pitch_model_path

    basic_pitch_model_path()  # says how to install it when it is missing


def _clean(value: float) -> float | None:
    """JSON has no NaN: a metric that is undefined for a piece is null."""
    return None if math.isnan(value) else round(float(value), 4)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def run_quality_benchmark(config: QualityBenchConfig) -> dict[str, Any]:
    if config.limit < 1:
        raise EngineError(f"--limit must be at least 1, not {config.limit}")
    if config.seconds < 6:
        raise EngineError(
            f"--seconds must be at least 6 (beats before 5 s are not scored), not {config.seconds}"
        )
    require_quality_packages()
    from benchmarks.pitch_transcription import to_analysis_rate
    from benchmarks.quality_metrics import (
        analyse,
        frechet_distance,
        pair_metrics,
        window_embeddings,
    )
    from benchmarks.quality_plot import plot_piece
    from benchmarks.quality_systems import SYSTEMS, load_held_out, system_outputs
    from benchmarks.spectral_metrics import frame_chroma_correlation
    from engine.backends import create_backend
    from engine.checkpoint import load_engine_checkpoint

    started = time.perf_counter()
    # The checkpoint first: a bad one must fail before held-out pieces are rendered into data/.
    checkpoint = load_engine_checkpoint(config.checkpoint)
    backend = create_backend(checkpoint, config.backend, config.threads)
    data = config.data_dir()
    pieces = load_held_out(
        data, config.limit, config.seconds, config.held_out_recipe, config.progress
    )

    def analysed(audio: np.ndarray, rate: int) -> Any:
        return analyse(to_analysis_rate(audio, rate), config.threads)

    systems = [s for s in SYSTEMS if len(pieces) > 1 or s != "random pairing"]
    total = len(pieces) * (1 + len(systems))
    per_piece: dict[str, dict[str, dict[str, float]]] = {s: {} for s in systems}
    embeddings: dict[str, list[np.ndarray]] = {s: [] for s in systems}
    with tqdm(total=total, unit="signal", desc="scoring", disable=not config.progress) as bar:
        lives = []
        for piece in pieces:
            lives.append(analysed(piece.live, piece.sample_rate))
            bar.update(1)
        for system, index, output in system_outputs(pieces, backend, config.seed):
            piece = pieces[index]
            result = analysed(output, piece.sample_rate)
            row = pair_metrics(lives[index], result)
            row["chroma_vs_truth"] = frame_chroma_correlation(
                output, piece.accompaniment, piece.sample_rate
            )
            per_piece[system][piece.piece_id] = row
            embeddings[system].append(window_embeddings(result))
            if system == "model" and config.plot is not None:
                plot_piece(piece, output, config.plot / f"{piece.piece_id.replace('/', '__')}.png")
            bar.update(1)
    reference = np.concatenate(embeddings["ground truth"])
    report_systems: dict[str, Any] = {}
    for system in systems:
        rows = per_piece[system]
        means = {m: _clean(_mean([row[m] for row in rows.values()])) for m in METRICS}
        means["frechet_distance"] = _clean(
            frechet_distance(np.concatenate(embeddings[system]), reference)
        )
        report_systems[system] = {
            "mean": means,
            "per_piece": {pid: {m: _clean(v) for m, v in row.items()} for pid, row in rows.items()},
        }
    report = {
        "benchmark": "quality",
        "checkpoint": str(checkpoint.directory),
        "backend": backend.name,
        "data": str(data),
        "pieces": [{"piece_id": p.piece_id, "source": p.source} for p in pieces],
        "seconds_per_piece": [round(len(p.live) / p.sample_rate, 3) for p in pieces],
        "seed": config.seed,
        "beat_tracker": "librosa",
        "transcriber": "basic-pitch nmp.onnx (onnxruntime)",
        "embedding_windows_per_system": len(reference),
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": platform.machine(),
        "systems": report_systems,
    }
    report["targets"] = quality_targets(report)
    return report


def _gap_closed(report: dict[str, Any], metric: str, pieces: list[str] | None = None) -> float:
    """(model - random pairing) / (ground truth - random pairing), over `pieces` (all if None)."""

    def mean(system: str) -> float:
        rows = report["systems"][system]["per_piece"]
        values = [v[metric] for pid, v in rows.items() if pieces is None or pid in pieces]
        return _mean([float("nan") if x is None else x for x in values])

    random_pairing = mean("random pairing")
    return (mean("model") - random_pairing) / (mean("ground truth") - random_pairing)


def quality_targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The generator issue's acceptance bars, measured on this report."""
    systems = report["systems"]
    if "random pairing" not in systems:
        return {}
    band = [p["piece_id"] for p in report["pieces"] if p["source"] == "band"]
    mean = {name: row["mean"] for name, row in systems.items()}
    truth_key = mean["ground truth"]["key_consistency"] or float("nan")
    checks = {
        "pitch_class_gap_closed": (_gap_closed(report, "pitch_class_agreement"), 0.5),
        "key_consistency_vs_truth": ((mean["model"]["key_consistency"] or 0) / truth_key, 0.5),
        "chroma_vs_truth": (mean["model"]["chroma_vs_truth"] or 0, 0.15),
        "beats_echo_on_chroma_vs_truth": (
            (mean["model"]["chroma_vs_truth"] or 0) - (mean["echo"]["chroma_vs_truth"] or 0),
            0.0,
        ),
        "beats_no_past_context_on_pitch_class": (
            (mean["model"]["pitch_class_agreement"] or 0)
            - (mean["model, no past context"]["pitch_class_agreement"] or 0),
            0.0,
        ),
    }
    if band:
        checks["band_beat_f_gap_closed"] = (_gap_closed(report, "beat_f_measure", band), 0.5)
    return {
        name: {"measured": _clean(value), "target": bar, "met": bool(value > bar) if bar == 0
               else bool(value >= bar)}
        for name, (value, bar) in checks.items()
    }  # fmt: skip


def _format(value: float | None, metric: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" if metric == "frechet_distance" else f"{value:.3f}"


def markdown_table(report: dict[str, Any]) -> str:
    header = ["system", *COLUMNS.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for system, row in report["systems"].items():
        cells = [_format(row["mean"][m], m) for m in COLUMNS]
        lines.append("| " + " | ".join([system, *cells]) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(report: dict[str, Any], path: Path | None) -> None:
    write_text(path, markdown_table(report) + "\n" + targets_markdown(report["targets"]))


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    seconds = report["seconds_per_piece"]
    table = Table(
        title=f"accompaniment quality: {len(seconds)} held-out pieces, "
        f"{min(seconds):.0f}-{max(seconds):.0f} s each ({report['backend']})"
    )
    table.add_column("system")
    for title in COLUMNS.values():
        table.add_column(title, justify="right")
    for system, row in report["systems"].items():
        table.add_row(system, *(_format(row["mean"][m], m) for m in COLUMNS))
    Console().print(table)
    print(targets_markdown(report["targets"]))
