"""`bandmate train codec`: the causal autoencoder, trained on the built stems.

Loss: multi-resolution STFT on audio decoded from noisy latents (see models/codec.py) + an
optional adversarial term (a spectrogram
discriminator with hinge and feature matching), which starts after `adversarial_start` steps
so the discriminator meets a codec that already reconstructs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from models.checkpoint import save_checkpoint
from models.checkpoint_config import CheckpointConfig, git_commit
from models.codec import CODEC_PRESETS, Codec
from models.data.manifest import load_manifest
from models.discriminator import (
    SpectrogramDiscriminator,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from models.losses import MultiResolutionSTFTLoss, si_sdr
from models.train.audio_pool import AudioPool, fixed_crops
from models.train.common import (
    CsvLog,
    RunContext,
    TrainingError,
    check_finite,
    evaluating,
    learning_rate,
    load_state,
    save_state,
    set_learning_rate,
    setup_run,
    unwrap,
)


@dataclass(frozen=True)
class CodecTrainConfig:
    data: Path  # a `bandmate data build` folder
    run_dir: Path  # state, logs, audio and the checkpoint go here; re-running resumes
    preset: str = "default"
    steps: int = 20_000
    batch_size: int = 8
    segment_seconds: float = 0.5
    learning_rate: float = 3e-4
    latent_noise: float = 0.0  # std of noise added to the unit-RMS latents in training
    adversarial_weight: float = 0.0  # 0 turns the adversarial term off
    adversarial_start: int = 5_000
    feature_matching_weight: float = 2.0
    pool_examples: int = 128
    rotate_every: int = 4  # steps between swapping one pooled example
    validate_every: int = 500
    save_every: int = 250
    audio_every: int = 2_000
    validation_crops: int = 24
    seed: int = 0
    threads: int = 2
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"


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
        device = self.run.device
        self.codec = Codec(self.model_config).to(device)
        self.model = self.run.wrap(self.codec)
        self.optimizer = torch.optim.AdamW(
            self.codec.parameters(), config.learning_rate, betas=(0.8, 0.99)
        )
        self.stft_loss = MultiResolutionSTFTLoss().to(device)
        self.disc = SpectrogramDiscriminator().to(device) if config.adversarial_weight > 0 else None
        self.disc_optimizer = (
            torch.optim.AdamW(self.disc.parameters(), config.learning_rate, betas=(0.8, 0.99))
            if self.disc is not None
            else None
        )
        self.step, self.wall_s = 0, 0.0
        config.run_dir.mkdir(parents=True, exist_ok=True)
        self._resume()

    def _resume(self) -> None:
        state = load_state(self.config.run_dir)
        if state is None:
            return
        self.codec.load_state_dict(state["codec"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.disc is not None and "disc" in state:
            self.disc.load_state_dict(state["disc"])
            self.disc_optimizer.load_state_dict(state["disc_optimizer"])  # type: ignore[union-attr]
        self.step, self.wall_s = state["step"], state.get("wall_s", 0.0)
        torch.set_rng_state(state["torch_rng"])

    def _save(self, started: float) -> None:
        if not self.run.is_main:
            return
        wall_s = self.wall_s + time.monotonic() - started
        state: dict[str, object] = {
            "codec": self.codec.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "wall_s": wall_s,
            "torch_rng": torch.get_rng_state(),
        }
        if self.disc is not None:
            state["disc"] = self.disc.state_dict()
            state["disc_optimizer"] = self.disc_optimizer.state_dict()  # type: ignore[union-attr]
        save_state(self.config.run_dir, state)
        self.export_checkpoint(wall_s)

    def export_checkpoint(self, wall_s: float, validation: dict[str, float] | None = None) -> None:
        directory = self.config.run_dir / "checkpoint"
        training = {
            "codec_steps": self.step,
            "codec_wall_s": round(wall_s, 1),
            "codec_config": str(self.config),
        }
        if validation:
            training["codec_validation"] = validation
        meta = CheckpointConfig(
            sample_rate=self.model_config.sample_rate, hop=self.model_config.hop,
            latent_dim=self.model_config.latent_dim, codec={},
            data_manifest=self.manifest.fingerprint(), git_commit=git_commit(), training=training,
        )  # fmt: skip
        save_checkpoint(directory, self.codec, None, meta)

    def train(self) -> dict[str, float]:
        c = self.config
        segment = int(c.segment_seconds * self.model_config.sample_rate) // self.model_config.hop
        segment *= self.model_config.hop
        rng = np.random.default_rng([c.seed, self.run.rank, self.step])
        train_examples = self.manifest.split("train")
        if not train_examples:
            raise TrainingError(f"{c.data}: the build has no train split")
        pool = AudioPool(
            c.data, train_examples, c.pool_examples, rng, self.progress and self.run.is_main
        )
        valid = self.manifest.split("valid") or train_examples
        valid_audio = torch.from_numpy(
            fixed_crops(
                c.data, valid, c.validation_crops, 2 * self.model_config.sample_rate, c.seed
            )
        )
        columns = ["loss", "stft", "latent_std", "adv", "fm", "disc"]
        validation_columns = ["val_stft", "val_si_sdr", "val_stft_constant_latent"]
        log = CsvLog(c.run_dir / "codec_log.csv", columns + validation_columns)
        started = time.monotonic()
        validation: dict[str, float] = {}
        bar = tqdm(
            total=c.steps,
            initial=self.step,
            desc="codec",
            disable=not (self.progress and self.run.is_main),
        )
        while self.step < c.steps:
            batch = torch.from_numpy(pool.batch(c.batch_size, segment)).to(self.run.device)
            losses = self._train_step(batch)
            self.step += 1
            bar.update(1)
            if self.step % c.rotate_every == 0:
                pool.rotate()
            if self.step % 10 == 0 and self.run.is_main:
                bar.set_postfix(stft=f"{losses['stft']:.3f}")
                log.write(self.step, losses, self.wall_s)
            if self.step % c.validate_every == 0 or self.step == c.steps:
                validation = self.validate(valid_audio)
                if self.run.is_main:
                    log.write(self.step, validation, self.wall_s)
            if self.step % c.audio_every == 0 and self.run.is_main:
                self._write_audio(valid_audio)
            if self.step % c.save_every == 0 or self.step == c.steps:
                self._save(started)
        bar.close()
        log.close()
        if self.run.is_main:
            self.export_checkpoint(
                self.wall_s + time.monotonic() - started, validation or self.validate(valid_audio)
            )
        return validation

    def _train_step(self, batch: torch.Tensor) -> dict[str, float]:
        c = self.config
        rate = learning_rate(self.step, c.steps, c.learning_rate)
        for optimizer in (self.optimizer, self.disc_optimizer):
            if optimizer is not None:
                set_learning_rate(optimizer, rate)
        with self.run.autocast(c.precision):
            out = self.model(batch, c.latent_noise)
            stft = self.stft_loss(out.audio.float(), batch)
        # How much the latents move over time: near 0 means the decoder is being fed a constant.
        losses = {"stft": stft, "latent_std": out.latents.detach().std(-1).mean()}
        loss = stft
        adversarial = self.disc is not None and self.step >= c.adversarial_start
        if adversarial:
            assert self.disc is not None and self.disc_optimizer is not None
            disc_loss = discriminator_hinge_loss(self.disc(batch), self.disc(out.audio.detach()))
            check_finite(self.step, {"disc": disc_loss})
            self.disc_optimizer.zero_grad(set_to_none=True)
            disc_loss.backward()
            self.disc_optimizer.step()
            real, fake = self.disc(batch), self.disc(out.audio)
            losses["adv"] = generator_adversarial_loss(fake)
            losses["fm"] = feature_matching_loss(real, fake)
            losses["disc"] = disc_loss
            loss = loss + c.adversarial_weight * (
                losses["adv"] + c.feature_matching_weight * losses["fm"]
            )
        losses["loss"] = loss
        check_finite(self.step, losses)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.codec.parameters(), 10.0)
        self.optimizer.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    def validate(self, audio: torch.Tensor) -> dict[str, float]:
        """Offline encode -> decode of the fixed validation crops (no latent noise)."""
        codec = unwrap(self.model)
        with evaluating(codec):
            audio = audio.to(self.run.device)
            latents = [codec.encode(a[None]) for a in audio]  # type: ignore[operator]
            recon = torch.cat([codec.decode(z) for z in latents])  # type: ignore[operator]
            # The same crops decoded from each one's time-averaged latent: if this is no worse,
            # the decoder ignores its input (the collapse models/codec.py describes).
            flat = torch.cat(
                [codec.decode(z.mean(-1, keepdim=True).expand_as(z)) for z in latents]  # type: ignore[operator]
            )
            target = audio[:, : recon.shape[-1]]
            return {
                "val_stft": float(self.stft_loss(recon, target)),
                "val_si_sdr": float(si_sdr(recon, target).median()),
                "val_stft_constant_latent": float(self.stft_loss(flat, target)),
            }

    def _write_audio(self, audio: torch.Tensor) -> None:
        folder = self.config.run_dir / "audio"
        folder.mkdir(exist_ok=True)
        with evaluating(self.codec):
            for i in range(3):
                recon = self.codec.decode(self.codec.encode(audio[i : i + 1].to(self.run.device)))
                rate = self.model_config.sample_rate
                sf.write(folder / f"step{self.step:07d}_{i}_input.wav", audio[i].numpy(), rate)
                sf.write(
                    folder / f"step{self.step:07d}_{i}_codec.wav", recon[0].cpu().numpy(), rate
                )
