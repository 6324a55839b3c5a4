"""`bandmate bench codec`: what a round trip through the codec keeps, on held-out music and on
synthetic probes, beside two references.

Held-out pieces (the data build's test split, as `bench quality` takes them): the first
`--seconds` of each piece's live part and accompaniment go through
- **codec**: the checkpoint's codec, encoded and decoded hop by hop as the engine streams it,
  latency-compensated (engine/codec_roundtrip.py);
- **time-averaged latent**: the same decoder fed each crop's mean latent: what is left when
  the latents carry nothing that changes (a codec that ignores its latents scores as here);
- **previous codec**: the waveform codec of checkpoint version 2 (its encoder and decoder
  graphs are kept in benchmarks/baselines/waveform_codec);
- **true magnitudes**: the crop's own STFT log-magnitudes, one frame per hop, through the
  same synthesis: a perfect decoder. What it loses, the synthesis loses.
Scores per crop, medians reported: spectral convergence (dB), multi-resolution log-mel L1
and per-frame chroma correlation against the original (benchmarks/spectral_metrics.py); and
per system, the harmonic fit of its round-tripped accompaniments to their live parts as a
fraction of the originals' fit. The probes (benchmarks/codec_signals.py) count the tones,
onsets and chirp pitch that survive, for the original signals too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from benchmarks import codec_signals, spectral_metrics
from benchmarks.quality_systems import derangement, load_held_out
from engine.backends import create_backend
from engine.checkpoint import ModelInfo, load_engine_checkpoint
from engine.codec_roundtrip import StreamingCodec, decode_stream, encode_stream, roundtrip
from models.data.build import BuildConfig
from models.spectral import SpectralCodec

PREVIOUS_CODEC = Path(__file__).resolve().parent / "baselines" / "waveform_codec"
SYSTEMS = ("codec", "time-averaged latent", "previous codec", "true magnitudes")
TARGETS = {  # the codec issue's acceptance bars
    "chroma_correlation": 0.9,
    "harmonic_fit_fraction": 0.9,
    "time_averaged_log_mel_ratio": 2.0,
    "chords_counted_correctly": 0.95,
    "onsets_within_one_hop": 1.0,
}


@dataclass(frozen=True)
class CodecBenchConfig:
    checkpoint: Path | None = None  # None: the shipped default
    previous: Path | None = PREVIOUS_CODEC  # None leaves the previous codec out
    data: Path | None = None  # None: as `bench quality` (data/default if built, else heldout)
    limit: int = 8
    seconds: float = 10.0
    seed: int = 0
    backend: str = "onnx"
    probes: bool = True
    plot: Path | None = None  # a PNG of spectrograms of the first piece's accompaniment
    progress: bool = True
    held_out_recipe: BuildConfig | None = None


class WaveformCodec:
    """The previous (version 2) codec's two ONNX step graphs, audio -> latent -> audio, with
    no delay of their own; read straight from their config, since the engine refuses it."""

    def __init__(self, directory: Path):
        import onnxruntime as ort

        raw = json.loads((directory / "config.json").read_text())
        self.info = ModelInfo(raw["sample_rate"], raw["hop"], raw["latent_dim"], 0, 0, 0, 0)
        self.specs = {name: raw["onnx"][name] for name in ("encoder", "decoder")}
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.sessions = {
            name: ort.InferenceSession(str(directory / spec["file"]), options,
                                       providers=["CPUExecutionProvider"])
            for name, spec in self.specs.items()
        }  # fmt: skip

    def initial_state(self, batch: int = 1) -> dict[str, list[np.ndarray]]:
        return {
            name: [np.zeros((batch, *s["shape"]), np.float32) for s in spec["state"]]
            for name, spec in self.specs.items()
        }

    def _run(self, name: str, x: np.ndarray, state: dict[str, list[np.ndarray]]) -> Any:
        spec = self.specs[name]
        feed = {spec["inputs"][0]: x} | {
            s["input"]: v for s, v in zip(spec["state"], state[name], strict=True)
        }
        out, *new = self.sessions[name].run(None, feed)
        return out, {**state, name: new}

    def encode(self, state: Any, audio: np.ndarray) -> tuple[np.ndarray, Any]:
        return self._run("encoder", audio, state)

    def decode(self, state: Any, latent: np.ndarray) -> tuple[np.ndarray, Any]:
        return self._run("decoder", latent, state)


def time_averaged(codec: StreamingCodec, audio: np.ndarray) -> np.ndarray:
    """Decode every frame from the crop's mean latent, latency-compensated (model rate)."""
    lag, hop = codec.info.codec_latency, codec.info.hop
    frames = -(-(len(audio) + lag) // hop)
    padded = np.zeros((1, frames * hop), np.float32)
    padded[0, : len(audio)] = audio
    latents = encode_stream(codec, padded)
    flat = np.repeat(latents.mean(1, keepdims=True), latents.shape[1], axis=1)
    return decode_stream(codec, flat)[0, lag : lag + len(audio)]


def true_magnitudes(spectral: SpectralCodec, audio: np.ndarray, rate: int) -> np.ndarray:
    """Synthesise the crop's own hop-end STFT frames, latency-compensated, at `rate`."""
    import soxr

    lag, hop, model_rate = spectral.config.latency, spectral.config.hop, spectral.config.sample_rate
    resampled = audio if rate == model_rate else soxr.resample(audio, rate, model_rate, "VHQ")
    frames = -(-(len(resampled) + lag) // hop)
    padded = np.zeros((1, frames * hop), np.float32)
    padded[0, : len(resampled)] = resampled
    log_mag = spectral.hop_frames(spectral.log_magnitude(padded))
    out = spectral.synthesise(log_mag)[0, lag : lag + len(resampled)]
    if rate != model_rate:
        out = soxr.resample(out, model_rate, rate, "VHQ")[: len(audio)]
    return np.pad(out, (0, len(audio) - len(out))).astype(np.float32)


def crop_scores(output: np.ndarray, original: np.ndarray, rate: int) -> dict[str, float]:
    return {
        "spectral_convergence_db": spectral_metrics.spectral_convergence_db(output, original),
        "log_mel_l1": spectral_metrics.log_mel_distance(output, original, rate),
        "chroma_correlation": spectral_metrics.frame_chroma_correlation(output, original, rate),
    }


def run_codec_benchmark(config: CodecBenchConfig) -> dict[str, Any]:
    from benchmarks.quality import QualityBenchConfig

    data = QualityBenchConfig(data=config.data).data_dir()
    checkpoint = load_engine_checkpoint(config.checkpoint, need_generator=False)
    codec = create_backend(checkpoint, config.backend)
    codecs: dict[str, StreamingCodec] = {"codec": codec}
    if config.previous is not None:
        codecs["previous codec"] = WaveformCodec(config.previous)
    pieces = load_held_out(data, config.limit, config.seconds, config.held_out_recipe,
                           config.progress)  # fmt: skip
    pairing = derangement(len(pieces), config.seed)
    scores: dict[str, list[dict[str, float]]] = {name: [] for name in SYSTEMS}
    fits: dict[str, list[float]] = {"original": [], **{name: [] for name in SYSTEMS}}
    for index, piece in enumerate(tqdm(pieces, "round trips", disable=not config.progress)):
        other_live = pieces[pairing[index]].live if pairing else piece.live
        for role, original in (("live", piece.live), ("accompaniment", piece.accompaniment)):
            outputs = {
                name: roundtrip(c, original, piece.sample_rate) for name, c in codecs.items()
            }
            outputs["time-averaged latent"] = time_averaged(codec, original)
            outputs["true magnitudes"] = true_magnitudes(codec.spectral, original,
                                                         piece.sample_rate)  # fmt: skip
            for name, output in outputs.items():
                scores[name].append(crop_scores(output, original, piece.sample_rate))
                if role == "accompaniment":
                    fits[name].append(spectral_metrics.harmonic_fit(
                        output, piece.live, other_live, piece.sample_rate))  # fmt: skip
            if role == "accompaniment":
                fits["original"].append(spectral_metrics.harmonic_fit(
                    original, piece.live, other_live, piece.sample_rate))  # fmt: skip
            if role == "accompaniment" and index == 0 and config.plot is not None:
                from benchmarks.codec_report import plot_spectrograms

                shown = {"original accompaniment": original} | {
                    f"{name} round trip": outputs[name] for name in codecs
                }
                plot_spectrograms(shown, piece.sample_rate, piece.piece_id, config.plot)
    original_fit = float(np.mean(fits["original"]))
    systems: dict[str, dict[str, float]] = {}
    for name in SYSTEMS:
        if not scores[name]:
            continue
        row = {k: float(np.nanmedian([s[k] for s in scores[name]])) for k in scores[name][0]}
        row["harmonic_fit_fraction"] = float(np.mean(fits[name])) / original_fit
        systems[name] = row
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint.directory),
        "backend": codec.name,
        "codec_latency_ms": 1e3 * checkpoint.info.codec_latency / checkpoint.info.sample_rate,
        "pieces": [p.piece_id for p in pieces],
        "crops": 2 * len(pieces),
        "seconds": config.seconds,
        "original_harmonic_fit": original_fit,
        "systems": systems,
    }
    if config.probes:
        report["probes"] = run_probes(codecs, config.seed, config.progress)
    report["targets"] = check_targets(report)
    return report


def run_probes(codecs: dict[str, StreamingCodec], seed: int, progress: bool) -> dict[str, Any]:
    probes = codec_signals.make_probes(seed)
    hop_s = next(iter(codecs.values())).info.hop / codec_signals.RATE
    rows = {"original": codec_signals.score_probes(probes, [p.audio for p in probes], hop_s)}
    for name, codec in codecs.items():
        outputs = [roundtrip(codec, p.audio, codec_signals.RATE)
                   for p in tqdm(probes, f"probes: {name}", disable=not progress)]  # fmt: skip
        rows[name] = codec_signals.score_probes(probes, outputs, hop_s)
    return {"count": len(probes), "by_system": rows}


def check_targets(report: dict[str, Any]) -> dict[str, dict[str, float | bool]]:
    codec, flat = report["systems"]["codec"], report["systems"]["time-averaged latent"]
    measured = {
        "chroma_correlation": codec["chroma_correlation"],
        "harmonic_fit_fraction": codec["harmonic_fit_fraction"],
        "time_averaged_log_mel_ratio": flat["log_mel_l1"] / codec["log_mel_l1"],
    }
    if "probes" in report:
        probe_row = report["probes"]["by_system"]["codec"]
        measured["chords_counted_correctly"] = probe_row["chords_counted_correctly"]
        measured["onsets_within_one_hop"] = probe_row["onsets_within_one_hop"]
    return {
        name: {"measured": value, "target": TARGETS[name], "met": value >= TARGETS[name]}
        for name, value in measured.items()
    }
