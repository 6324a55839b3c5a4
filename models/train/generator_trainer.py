"""`bandmate train generator`: the causal transformer, trained adversarially on codec latents.

One parallel pass under the sliding-window causal mask per step; no teacher forcing: the
generator sees the mix latents and noise, never the accompaniment. Output t is the
accompaniment for frame t + a, so the discriminator judges (mix[a:], generated[:-a]) against
(mix[a:], accompaniment[a:]): pairs aligned in time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
from torch import Tensor
from tqdm import tqdm

from models.checkpoint import load_codec, save_checkpoint
from models.checkpoint_config import CheckpointConfig, git_commit, read_checkpoint_config
from models.data.manifest import load_manifest
from models.discriminator import (
    SequenceDiscriminator,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from models.generator import GENERATOR_PRESETS, Generator
from models.train.common import (
    CsvLog,
    TrainingError,
    check_finite,
    evaluating,
    learning_rate,
    load_state,
    save_state,
    set_learning_rate,
    setup_run,
)
from models.train.latents import encode_examples, sample_windows


@dataclass(frozen=True)
class GeneratorTrainConfig:
    data: Path  # the data build
    codec: Path  # a codec checkpoint directory (`bandmate train codec` writes RUN/checkpoint)
    run_dir: Path
    preset: str = "default"
    window: int | None = None  # override the preset's W
    anticipation: int | None = None  # override the preset's a
    steps: int = 10_000
    batch_size: int = 16
    sequence_windows: float = 2.0  # training sequences are this many W long (rolling windows)
    learning_rate: float = 2e-4
    disc_learning_rate: float = 2e-4
    feature_matching_weight: float = 10.0
    max_examples: int | None = None  # encode only this many examples (quick runs)
    validate_every: int = 500
    save_every: int = 250
    audio_every: int = 2_000
    validation_batches: int = 4
    seed: int = 0
    threads: int = 2
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"


class GeneratorTrainer:
    def __init__(self, config: GeneratorTrainConfig, progress: bool = True):
        if config.preset not in GENERATOR_PRESETS:
            raise TrainingError(f"unknown generator preset {config.preset!r}")
        self.config, self.progress = config, progress
        self.run = setup_run(config.device, config.threads, config.seed)
        self.manifest = load_manifest(config.data)
        self.codec_meta = read_checkpoint_config(config.codec, self.manifest.sample_rate)
        self.codec = load_codec(config.codec).to(self.run.device)
        preset = GENERATOR_PRESETS[config.preset]
        self.model_config = replace(
            preset,
            latent_dim=self.codec.config.latent_dim,
            window=config.window or preset.window,
            anticipation=preset.anticipation
            if config.anticipation is None
            else config.anticipation,
        )
        device = self.run.device
        self.generator = Generator(self.model_config).to(device)
        self.disc = SequenceDiscriminator(self.model_config.latent_dim).to(device)
        # Only the generator is DDP-wrapped: the discriminator runs several times a step,
        # so its gradients are averaged by hand (RunContext.average_gradients).
        self.g_model = self.run.wrap(self.generator)
        self.g_opt = torch.optim.AdamW(
            self.generator.parameters(), config.learning_rate, betas=(0.5, 0.9)
        )
        self.d_opt = torch.optim.AdamW(
            self.disc.parameters(), config.disc_learning_rate, betas=(0.5, 0.9)
        )
        self.step, self.wall_s = 0, 0.0
        config.run_dir.mkdir(parents=True, exist_ok=True)
        self.latents = encode_examples(
            self.codec, config.data, self.manifest, config.run_dir, config.max_examples,
            progress and self.run.is_main,
        )  # fmt: skip
        self._resume_or_init_statistics()

    def _resume_or_init_statistics(self) -> None:
        state = load_state(self.config.run_dir)
        if state is None:
            mean, std = self.latents.statistics()
            self.generator.latent_mean.copy_(torch.from_numpy(mean))
            self.generator.latent_std.copy_(torch.from_numpy(std))
            return
        self.generator.load_state_dict(state["generator"])
        self.disc.load_state_dict(state["disc"])
        self.g_opt.load_state_dict(state["g_opt"])
        self.d_opt.load_state_dict(state["d_opt"])
        self.step, self.wall_s = state["step"], state.get("wall_s", 0.0)
        torch.set_rng_state(state["torch_rng"])

    def normalise(self, latents: Tensor) -> Tensor:
        return (latents - self.generator.latent_mean) / self.generator.latent_std

    def generate(self, mix: Tensor, acc: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(condition, real, fake), normalised and aligned: the discriminator's inputs.
        Output t is the accompaniment for frame t + a, so it pairs with mix[t + a]."""
        a = self.model_config.anticipation
        noise = torch.randn(*mix.shape[:2], self.model_config.noise_dim, device=mix.device)
        generated = self.g_model(mix, noise)  # [B, L, D]
        end = generated.shape[1] - a
        return (
            self.normalise(mix[:, a:]),
            self.normalise(acc[:, a:]),
            self.normalise(generated[:, :end]),
        )

    def discriminator_loss(self, cond: Tensor, real: Tensor, fake: Tensor) -> Tensor:
        return discriminator_hinge_loss(self.disc(cond, real), self.disc(cond, fake.detach()))

    def generator_losses(self, cond: Tensor, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            real_out = self.disc(cond, real)
        fake_out = self.disc(cond, fake)
        adv, fm = generator_adversarial_loss(fake_out), feature_matching_loss(real_out, fake_out)
        return {
            "g_loss": adv + self.config.feature_matching_weight * fm,
            "adv": adv,
            "fm": fm,
            "latent_l1": (fake.detach() - real).abs().mean(),  # reported only, never trained on
        }

    def train_step(self, mix: Tensor, acc: Tensor) -> dict[str, float]:
        c = self.config
        set_learning_rate(self.g_opt, learning_rate(self.step, c.steps, c.learning_rate))
        set_learning_rate(self.d_opt, learning_rate(self.step, c.steps, c.disc_learning_rate))
        with self.run.autocast(self.config.precision):
            cond, real, fake = self.generate(mix, acc)
            disc_loss = self.discriminator_loss(cond, real, fake)
        check_finite(self.step, {"disc": disc_loss})
        self.d_opt.zero_grad(set_to_none=True)
        disc_loss.backward()
        self.run.average_gradients(self.disc)
        self.d_opt.step()
        # The generator is judged by the discriminator as it is after this step's update.
        with self.run.autocast(self.config.precision):
            losses = self.generator_losses(cond, real, fake)
        check_finite(self.step, losses)
        self.g_opt.zero_grad(set_to_none=True)
        losses["g_loss"].backward(inputs=list(self.generator.parameters()))
        torch.nn.utils.clip_grad_norm_(self.generator.parameters(), 5.0)
        self.g_opt.step()
        losses["disc"] = disc_loss
        return {k: float(v.detach()) for k, v in losses.items()}

    def train(self) -> dict[str, float]:
        c = self.config
        length = int(c.sequence_windows * self.model_config.window) + self.model_config.anticipation
        rng = np.random.default_rng([c.seed, self.run.rank, self.step])
        train_ids = self.latents.indices("train")
        valid_ids = self.latents.indices("valid") or train_ids
        columns = ["g_loss", "adv", "fm", "disc", "latent_l1"]
        log = CsvLog(c.run_dir / "generator_log.csv", columns + [f"val_{k}" for k in columns[1:]])
        started = time.monotonic()
        validation: dict[str, float] = {}
        bar = tqdm(
            total=c.steps,
            initial=self.step,
            desc="generator",
            disable=not (self.progress and self.run.is_main),
        )
        while self.step < c.steps:
            mix, acc = (
                torch.from_numpy(x).to(self.run.device)
                for x in sample_windows(self.latents, train_ids, c.batch_size, length, rng)
            )
            losses = self.train_step(mix, acc)
            self.step += 1
            bar.update(1)
            if self.step % 10 == 0 and self.run.is_main:
                bar.set_postfix(fm=f"{losses['fm']:.3f}", disc=f"{losses['disc']:.2f}")
                log.write(self.step, losses, self.wall_s)
            if self.step % c.validate_every == 0 or self.step == c.steps:
                validation = self.validate(valid_ids, length)
                if self.run.is_main:
                    log.write(self.step, validation, self.wall_s)
            if self.step % c.audio_every == 0 and self.run.is_main:
                self.write_audio(valid_ids)
            if self.step % c.save_every == 0 or self.step == c.steps:
                self.save(started, validation)
        bar.close()
        log.close()
        return validation

    def validate(self, valid_ids: list[int], length: int) -> dict[str, float]:
        rng = np.random.default_rng(self.config.seed + 1)  # the same windows every time
        totals: dict[str, float] = {}
        torch_state = torch.get_rng_state()
        torch.manual_seed(self.config.seed + 1)
        with evaluating(self.generator, self.disc):
            for _ in range(self.config.validation_batches):
                batch = sample_windows(self.latents, valid_ids, self.config.batch_size, length, rng)
                cond, real, fake = self.generate(
                    *(torch.from_numpy(x).to(self.run.device) for x in batch)
                )
                losses = self.generator_losses(cond, real, fake)
                losses["disc"] = self.discriminator_loss(cond, real, fake)
                for k in ("adv", "fm", "disc", "latent_l1"):
                    totals[f"val_{k}"] = (
                        totals.get(f"val_{k}", 0.0)
                        + float(losses[k]) / self.config.validation_batches
                    )
        torch.set_rng_state(torch_state)
        return totals

    def write_audio(self, valid_ids: list[int]) -> None:
        """A validation excerpt: the live part, the real and the generated accompaniment."""
        folder = self.config.run_dir / "audio"
        folder.mkdir(exist_ok=True)
        i = valid_ids[0]
        frames = min(len(self.latents.live[i]), 12 * 47)
        mix = torch.from_numpy(self.latents.live[i][:frames].astype(np.float32))[None].to(
            self.run.device
        )
        acc = torch.from_numpy(self.latents.accompaniment[i][:frames].astype(np.float32))[None].to(
            self.run.device
        )
        with evaluating(self.generator, self.codec):
            noise = torch.randn(1, frames, self.model_config.noise_dim, device=mix.device)
            generated = self.generator(mix, noise)
            # Output t sounds at frame t + a: shift it so it lines up with the live part.
            a = self.model_config.anticipation
            generated = (
                torch.cat(
                    [
                        torch.zeros_like(generated[:, :a]) + self.generator.latent_mean,
                        generated[:, :-a],
                    ],
                    1,
                )
                if a
                else generated
            )
            rate = self.codec.config.sample_rate
            for name, latents in (("live", mix), ("real", acc), ("generated", generated)):
                audio = self.codec.decode(latents.transpose(1, 2))[0].cpu().numpy()
                sf.write(folder / f"step{self.step:07d}_{name}.wav", audio, rate)

    def save(self, started: float, validation: dict[str, float]) -> None:
        if not self.run.is_main:
            return
        wall_s = self.wall_s + time.monotonic() - started
        save_state(self.config.run_dir, {
            "generator": self.generator.state_dict(), "disc": self.disc.state_dict(),
            "g_opt": self.g_opt.state_dict(), "d_opt": self.d_opt.state_dict(),
            "step": self.step, "wall_s": wall_s, "torch_rng": torch.get_rng_state(),
        })  # fmt: skip
        training = dict(self.codec_meta.training)
        training.update({"generator_steps": self.step, "generator_wall_s": round(wall_s, 1),
                         "generator_config": str(self.config), "generator_validation": validation,
                         "generator_examples": len(self.latents.splits)})  # fmt: skip
        meta = CheckpointConfig(
            sample_rate=self.codec.config.sample_rate,
            hop=self.codec.config.hop,
            latent_dim=self.codec.config.latent_dim,
            codec={},
            data_manifest=self.manifest.fingerprint(),
            git_commit=git_commit(),
            training=training,
        )
        save_checkpoint(self.config.run_dir / "checkpoint", self.codec, self.generator, meta)
