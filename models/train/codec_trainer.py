"""`bandmate train codec`: the spectral codec's decoder, trained on the built stems.

The analysis is fixed (models/spectral.py); the encoder's per-band statistics are measured on
training crops before the first step. Each step then takes random crops of live parts,
accompaniments and mixes at random gains, analyses them into latents and target
log-magnitude frames (numpy, the same code the engine runs), and trains the decoder with L1 on
log-magnitude and log-mel (models/losses.py). No audio is synthesised in training: phase is
reconstructed, not learned, so validation synthesises a few crops only to report distances
on audio.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from models.checkpoint import save_checkpoint
from models.checkpoint_config import CheckpointConfig, git_commit
from models.codec import CODEC_PRESETS, Codec
from models.data.manifest import load_manifest
from models.losses import SpectralLoss
from models.spectral import band_to_bin
from models.train.audio_pool import AudioPool, fixed_crops
from models.train.common import (
    CsvLog,
    RunConfig,
    RunContext,
    TrainingError,
    check_finite,
    evaluating,
    learning_rate,
    load_state,
    save_state,
    set_learning_rate,
    setup_run,
)
from models.train.synthetic_tones import synthetic_crop


@dataclass(frozen=True, kw_only=True)
class CodecTrainConfig(RunConfig):
    data: Path  # a `bandmate data build` folder
    preset: str = "default"
    steps: int = 6_000
    segment_seconds: float = 1.0
    learning_rate: float = 1e-3
    mel_weight: float = 1.0
    peak_weight: float = 1.0  # log-magnitude error near loud bins: where partials sit
    synthetic_share: float = 0.25  # of each batch: synthetic tones (models/train/synthetic_tones)
    gain_db: tuple[float, float] = (-24.0, 6.0)  # crops are played at a random gain in range
    statistics_crops: int = 256  # crops whose analysis sets the encoder's band statistics
    pool_examples: int = 128
    rotate_every: int = 4  # steps between swapping one pooled example
    validation_crops: int = 24


class CodecTrainer:
    def __init__(self, config: CodecTrainConfig, progress: bool = True):
        if config.preset not in CODEC_PRESETS:
            raise TrainingError(
                f"unknown codec preset {config.preset!r}: {', '.join(CODEC_PRESETS)}"
            )
        self.config, self.progress = config, progress
        self.run: RunContext = setup_run(config.device, config.threads, config.seed)
        self.manifest = load_manifest(config.data)
        self.model_config = CODEC_PRESETS[config.preset]
        if self.manifest.sample_rate != self.model_config.sample_rate:
            raise TrainingError(
                f"{config.data}: data at {self.manifest.sample_rate} Hz, the codec runs at "
                f"{self.model_config.sample_rate} Hz"
            )
        self.codec = Codec(self.model_config).to(self.run.device)
        self.model = self.run.wrap(self.codec.decoder)
        self.optimizer = torch.optim.AdamW(self.codec.decoder.parameters(), config.learning_rate)
        s = self.model_config.spectral
        self.loss = SpectralLoss(s.sample_rate, s.bins, s.floor, mel_weight=config.mel_weight,
                                 peak_weight=config.peak_weight)  # fmt: skip
        self.loss.to(self.run.device)
        self.step, self.wall_s = 0, 0.0
        config.run_dir.mkdir(parents=True, exist_ok=True)
        self.train_examples = self.manifest.split("train")
        if not self.train_examples:
            raise TrainingError(f"{config.data}: the build has no train split")
        if not self._resume():
            self._start_from_interpolation()

    def _resume(self) -> bool:
        state = load_state(self.config.run_dir)
        if state is None:
            return False
        self.codec.load_state_dict(state["codec"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.wall_s = state["step"], state.get("wall_s", 0.0)
        torch.set_rng_state(state["torch_rng"])
        return True

    def _start_from_interpolation(self) -> None:
        """Set the encoder's per-band statistics from training crops (every kind), and start
        the decoder's linear path as the band-to-bin interpolation: each bin's log-magnitude
        is half the log energy of the bands around its frequency, plus the mean residual of
        that bin on the crops. A map whose outputs are averages of its inputs stays bounded for
        any latent, also those a generator makes: a least-squares start was not (adjacent
        bands are nearly collinear, and its weights reached 10^4 per band)."""
        c, s = self.config, self.model_config.spectral
        crops = fixed_crops(c.data, self.train_examples, c.statistics_crops,
                            s.sample_rate, c.seed + 7)  # fmt: skip
        bands = self.codec.spectral.analyse(crops).reshape(-1, self.model_config.latent_dim)
        encoder = self.codec.encoder
        encoder.band_mean.copy_(torch.from_numpy(bands.mean(0)))
        encoder.band_std.copy_(torch.from_numpy(bands.std(0) + 1e-3))
        weights = torch.from_numpy(band_to_bin(s)) * 0.5 * encoder.band_std  # [K, D]
        direct, out = self.codec.decoder.direct.conv, self.codec.decoder.out.conv
        assert direct.bias is not None and out.bias is not None
        with torch.no_grad():
            direct.weight.copy_(weights.unsqueeze(-1))
            direct.bias.copy_(0.5 * weights / encoder.band_std @ encoder.band_mean)
            out.bias.zero_()
            latents, target = self.features(crops)
            predicted, _ = self.codec.decoder(latents, self.codec.decoder.init_state(len(crops)))
            residual = target.clamp_min(np.log(s.floor)) - predicted  # [B, F, K]
            direct.bias += residual.mean((0, 1))

    def _save(self, started: float, validation: dict[str, float] | None = None) -> None:
        if not self.run.is_main:
            return
        wall_s = self.wall_s + time.monotonic() - started
        save_state(self.config.run_dir, {
            "codec": self.codec.state_dict(), "optimizer": self.optimizer.state_dict(),
            "step": self.step, "wall_s": wall_s, "torch_rng": torch.get_rng_state(),
        })  # fmt: skip
        training: dict[str, object] = {
            "codec_steps": self.step,
            "codec_wall_s": round(wall_s, 1),
            "codec_config": str(self.config),
        }
        if validation:
            training["codec_validation"] = validation
        meta = CheckpointConfig(
            sample_rate=self.model_config.sample_rate, hop=self.model_config.hop,
            latent_dim=self.model_config.latent_dim, codec_latency=self.model_config.latency,
            codec={}, data_manifest=self.manifest.fingerprint(), git_commit=git_commit(),
            training=training,
        )  # fmt: skip
        save_checkpoint(self.config.run_dir / "checkpoint", self.codec, None, meta)

    def features(self, audio: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Crops [B, T] -> (latents [B, D, F], target log-magnitudes [B, F, K]: the STFT
        frames ending with each hop)."""
        spectral = self.codec.spectral
        bands = torch.from_numpy(spectral.analyse(audio)).to(self.run.device)
        frames = spectral.hop_frames(spectral.log_magnitude(audio))[:, : bands.shape[1]]
        target = torch.from_numpy(np.ascontiguousarray(frames)).to(self.run.device)
        return self.codec.encoder(bands).transpose(1, 2), target

    def train(self) -> dict[str, float]:
        c = self.config
        rate, hop = self.model_config.sample_rate, self.model_config.hop
        segment = int(c.segment_seconds * rate) // hop * hop
        rng = np.random.default_rng([c.seed, self.run.rank, self.step])
        pool = AudioPool(c.data, self.train_examples, c.pool_examples, rng,
                         self.progress and self.run.is_main)  # fmt: skip
        valid = self.manifest.split("valid") or self.train_examples
        valid_audio = fixed_crops(c.data, valid, c.validation_crops, 2 * rate, c.seed)
        columns = ["loss", "log_mag", "log_mel", "log_mag_peaks"]
        validation_columns = ["val_log_mel", "val_log_mag", "val_log_mel_constant_latent",
                              "val_spectral_convergence"]  # fmt: skip
        log = CsvLog(c.run_dir / "codec_log.csv", columns + validation_columns)
        started = time.monotonic()
        validation: dict[str, float] = {}
        bar = tqdm(total=c.steps, initial=self.step, desc="codec",
                   disable=not (self.progress and self.run.is_main))  # fmt: skip
        while self.step < c.steps:
            audio = pool.batch(c.batch_size, segment)
            for i in np.flatnonzero(rng.random(len(audio)) < c.synthetic_share):
                audio[i] = synthetic_crop(segment, rng)
            gain_db = rng.uniform(*c.gain_db, size=(len(audio), 1))
            losses = self._train_step(audio * (10 ** (gain_db / 20)).astype(np.float32))
            self.step += 1
            bar.update(1)
            if self.step % c.rotate_every == 0:
                pool.rotate()
            if self.step % 10 == 0 and self.run.is_main:
                bar.set_postfix(log_mel=f"{losses['log_mel']:.3f}")
                log.write(self.step, losses, self.wall_s)
            if self.step % c.validate_every == 0 or self.step == c.steps:
                validation = self.validate(valid_audio)
                if self.run.is_main:
                    log.write(self.step, validation, self.wall_s)
            if self.step % c.audio_every == 0 and self.run.is_main:
                self._write_audio(valid_audio)
            if self.step % c.save_every == 0 or self.step == c.steps:
                self._save(started, validation)
        bar.close()
        log.close()
        return validation

    def _train_step(self, audio: np.ndarray) -> dict[str, float]:
        c = self.config
        set_learning_rate(self.optimizer, learning_rate(self.step, c.steps, c.learning_rate))
        latents, target = self.features(audio)
        with self.run.autocast(c.precision):
            predicted, _ = self.model(latents, self.codec.decoder.init_state(len(audio)))
        losses = self.loss(predicted.float(), target)
        check_finite(self.step, losses)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.codec.decoder.parameters(), 10.0)
        self.optimizer.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    def validate(self, audio: np.ndarray) -> dict[str, float]:
        """Decode the fixed validation crops from their latents and from each one's
        time-averaged latent: if the second is not clearly worse, the decoder ignores its
        input. Spectral convergence is measured on synthesised audio, latency-compensated."""
        with evaluating(self.codec):
            latents, target = self.features(audio)
            real = self.codec.decode_spectrum(latents)
            flat = self.codec.decode_spectrum(latents.mean(-1, keepdim=True).expand_as(latents))
            real_losses, flat_losses = self.loss(real, target), self.loss(flat, target)
            decoded = self.codec.spectral.synthesise(real[:4].cpu().numpy())
        lag = self.model_config.latency
        original = audio[:4, : decoded.shape[1] - lag]
        return {
            "val_log_mel": float(real_losses["log_mel"]),
            "val_log_mag": float(real_losses["log_mag"]),
            "val_log_mel_constant_latent": float(flat_losses["log_mel"]),
            "val_spectral_convergence": spectral_convergence(decoded[:, lag:], original),
        }

    def _write_audio(self, audio: np.ndarray) -> None:
        folder = self.config.run_dir / "audio"
        folder.mkdir(exist_ok=True)
        rate, lag = self.model_config.sample_rate, self.model_config.latency
        with evaluating(self.codec):
            decoded = self.codec.decode(self.codec.encode(torch.from_numpy(audio[:3]))).numpy()
        for i in range(3):
            sf.write(folder / f"step{self.step:07d}_{i}_input.wav", audio[i], rate)
            sf.write(folder / f"step{self.step:07d}_{i}_codec.wav", decoded[i, lag:], rate)


def spectral_convergence(estimate: np.ndarray, target: np.ndarray, n_fft: int = 1024) -> float:
    """|| |X| - |Y| || / || |Y| || over STFT magnitudes (Hann, hop n_fft / 4): 0 is a perfect
    magnitude match, about 1 no match at all."""
    from scipy.signal import stft

    length = min(estimate.shape[-1], target.shape[-1])
    _, _, est = stft(estimate[..., :length], nperseg=n_fft, noverlap=3 * n_fft // 4)
    _, _, ref = stft(target[..., :length], nperseg=n_fft, noverlap=3 * n_fft // 4)
    error, size = np.linalg.norm(np.abs(ref) - np.abs(est)), np.linalg.norm(np.abs(ref))
    return float(error / max(float(size), 1e-9))
