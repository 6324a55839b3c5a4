"""`bandmate train generator`: the causal transformer, on codec latents of the live part and
the accompaniment.

One parallel pass under the sliding-window causal mask per step; no teacher forcing: the
generator sees the live part's latents and noise, never the accompaniment. Output t is the
accompaniment for frame t + a, so it is judged against accompaniment[a:] beside live[a:].

Two phases. For `warmup_steps` only the supervised terms train (models/train/
generator_losses.py): they give gradient from the first step. Then LiveBand's adversarial
sequence loss joins them: the discriminator learns real pairs from generated ones and from
real accompaniments beside a live part that is not theirs, and the generator gets its hinge
loss plus feature matching, weighted by `adversarial_weight`. Every sequence is transposed
by a random number of semitones (live and accompaniment together), which with semitone-band
latents is a roll of the bands.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from models.checkpoint import load_codec
from models.checkpoint_config import read_checkpoint_config
from models.data.manifest import load_manifest
from models.discriminator import (
    SequenceDiscriminator,
    discriminator_hinge_loss,
    discriminator_negative_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from models.generator import GENERATOR_PRESETS, Generator, GeneratorOutput
from models.train.common import (
    CsvLog,
    RunConfig,
    TrainingError,
    check_finite,
    learning_rate,
    load_state,
    set_learning_rate,
    setup_run,
)
from models.train.generator_losses import (
    mismatched_live,
    supervised_losses,
    transpose,
    weighted_supervised,
)
from models.train.generator_outputs import GeneratorRunFiles
from models.train.latents import LatentSet, codec_fingerprint, encode_examples, sample_windows
from models.train.pack import read_pack


@dataclass(frozen=True, kw_only=True)
class GeneratorTrainConfig(RunConfig):
    codec: Path  # a codec checkpoint directory (`bandmate train codec` writes RUN/checkpoint)
    data: Path | None = None  # the data build, whose latents are encoded on first use ...
    pack: Path | None = None  # ... or a features pack of them (`bandmate data pack`)
    max_minutes: float | None = None  # stop (and save) after this much wall time
    preset: str = "default"
    window: int | None = None  # override the preset's W
    anticipation: int | None = None  # override the preset's a
    steps: int = 8_000
    warmup_steps: int = 3_000  # supervised only; then the adversarial terms join
    sequence_windows: float = 1.0  # training sequences are this many W long (plus a)
    learning_rate: float = 3e-4
    disc_learning_rate: float = 2e-4
    adversarial_weight: float = 0.1  # of the adversarial terms against the supervised ones
    feature_matching_weight: float = 2.0
    eisbach_lambda: float = 0.0  # 0 turns the Eisbach log-barrier off
    transpose_semitones: int = 5  # sequences are transposed by -5..+5 semitones
    max_examples: int | None = None  # encode only this many examples (quick runs)
    validation_batches: int = 4


class GeneratorTrainer:
    def __init__(self, config: GeneratorTrainConfig, progress: bool = True):
        if config.preset not in GENERATOR_PRESETS:
            raise TrainingError(f"unknown generator preset {config.preset!r}")
        if (config.data is None) == (config.pack is None):
            raise TrainingError("give the generator trainer a data build or a features pack")
        self.config, self.progress = config, progress
        self.run = setup_run(config.device, config.threads, config.seed)
        self.codec_meta = read_checkpoint_config(config.codec)
        self.codec = load_codec(config.codec).to(self.run.device)
        spectral = self.codec.config.spectral
        preset = GENERATOR_PRESETS[config.preset]
        self.model_config = replace(
            preset,
            latent_dim=self.codec.config.latent_dim,
            pitch_bands=spectral.highest_midi - spectral.lowest_midi + 1,
            log_floor=2 * math.log(spectral.floor),
            window=config.window or preset.window,
            anticipation=preset.anticipation if config.anticipation is None
            else config.anticipation,
        )  # fmt: skip
        device = self.run.device
        self.generator = Generator(self.model_config).to(device)
        self.disc = SequenceDiscriminator(self.model_config.latent_dim).to(device)
        # Only the generator is DDP-wrapped: the discriminator runs several times a step,
        # so its gradients are averaged by hand (RunContext.average_gradients).
        self.g_model = self.run.wrap(self.generator)
        self.g_opt = torch.optim.AdamW(self.generator.parameters(), config.learning_rate,
                                       betas=(0.8, 0.99))  # fmt: skip
        self.d_opt = torch.optim.AdamW(self.disc.parameters(), config.disc_learning_rate,
                                       betas=(0.5, 0.9))  # fmt: skip
        self.step, self.wall_s = 0, 0.0
        self.rng = torch.Generator().manual_seed(config.seed + 17)
        config.run_dir.mkdir(parents=True, exist_ok=True)
        self.latents, self.data_fingerprint = self._load_latents()
        self.files = GeneratorRunFiles(self)
        self._resume_or_start()

    def _load_latents(self) -> tuple[LatentSet, str]:
        c = self.config
        if c.pack is not None:
            latents, info = read_pack(c.pack)
            if info.codec_fingerprint != codec_fingerprint(self.codec):
                raise TrainingError(f"{c.pack}: made with another codec than {c.codec}")
            return latents, info.data_fingerprint
        assert c.data is not None
        manifest = load_manifest(c.data)
        if manifest.sample_rate != self.codec.config.sample_rate:
            raise TrainingError(f"{c.data}: data at {manifest.sample_rate} Hz, the codec "
                                f"runs at {self.codec.config.sample_rate} Hz")  # fmt: skip
        latents = encode_examples(self.codec, c.data, manifest, c.run_dir, c.max_examples,
                                  self.progress and self.run.is_main)  # fmt: skip
        return latents, manifest.fingerprint()

    def _resume_or_start(self) -> None:
        state = load_state(self.config.run_dir)
        if state is None:
            with torch.no_grad():
                self.generator.band_mean.copy_(self.codec.encoder.band_mean)
                self.generator.band_std.copy_(self.codec.encoder.band_std)
                # Start the level at the data's mean level, not at 0 (a loud flat spectrum).
                train = self.latents.indices("train") or [0]
                sample = torch.from_numpy(self.latents.accompaniment[train[0]].astype(np.float32))
                p = self.model_config.pitch_bands
                level = torch.logsumexp(self.generator.log_energy(sample)[:, :p], -1).mean()
                bias = self.generator.head.bias
                assert bias is not None
                bias[p] = level
            return
        self.generator.load_state_dict(state["generator"])
        self.disc.load_state_dict(state["disc"])
        self.g_opt.load_state_dict(state["g_opt"])
        self.d_opt.load_state_dict(state["d_opt"])
        self.step, self.wall_s = state["step"], state.get("wall_s", 0.0)
        torch.set_rng_state(state["torch_rng"])
        self.rng.set_state(state["augment_rng"])

    @property
    def adversarial(self) -> bool:
        return self.config.adversarial_weight > 0 and self.step >= self.config.warmup_steps

    def augment(self, live: Tensor, acc: Tensor) -> tuple[Tensor, Tensor]:
        """The same random transposition for a sequence's live part and accompaniment."""
        span = self.config.transpose_semitones
        if span == 0:
            return live, acc
        shifts = torch.randint(-span, span + 1, (live.shape[0],), generator=self.rng)
        return transpose(self.generator, live, shifts), transpose(self.generator, acc, shifts)

    def generate(self, live: Tensor) -> tuple[Tensor, GeneratorOutput]:
        """(live part aligned with the output, the output for frames a..L-1)."""
        a = self.model_config.anticipation
        noise = torch.randn(*live.shape[:2], self.model_config.noise_dim, device=live.device)
        out: GeneratorOutput = self.g_model(live, noise)
        end = live.shape[1] - a
        aligned = GeneratorOutput(
            out.latents[:, :end], out.pitch_logits[:, :end], out.level[:, :end]
        )
        return live[:, a:], aligned

    def train_step(self, live: Tensor, acc: Tensor) -> dict[str, float]:
        c = self.config
        set_learning_rate(self.g_opt, learning_rate(self.step, c.steps, c.learning_rate))
        set_learning_rate(self.d_opt, learning_rate(self.step, c.steps, c.disc_learning_rate))
        live, acc = self.augment(live, acc)
        real = acc[:, self.model_config.anticipation :]
        with self.run.autocast(c.precision):
            cond, out = self.generate(live)
            terms = supervised_losses(self.generator, out, real)
            loss = weighted_supervised(terms, out.level, c.eisbach_lambda)
        losses: dict[str, Tensor] = {k: v.mean() for k, v in terms.items()}
        losses["supervised"] = loss
        if self.adversarial:
            wrong = mismatched_live(self.generator, cond, self.rng)
            with self.run.autocast(c.precision):
                disc_loss = discriminator_hinge_loss(
                    self.disc(cond, real), self.disc(cond, out.latents.detach())
                ) + discriminator_negative_loss(self.disc(wrong, real))
            check_finite(self.step, {"disc": disc_loss})
            self.d_opt.zero_grad(set_to_none=True)
            disc_loss.backward()
            self.run.average_gradients(self.disc)
            self.d_opt.step()
            with self.run.autocast(c.precision), torch.no_grad():
                real_out = self.disc(cond, real)
            with self.run.autocast(c.precision):
                fake_out = self.disc(cond, out.latents)
                losses["adv"] = generator_adversarial_loss(fake_out)
                losses["fm"] = feature_matching_loss(real_out, fake_out)
            losses["disc"] = disc_loss
            loss = loss + c.adversarial_weight * (
                losses["adv"] + c.feature_matching_weight * losses["fm"]
            )
        losses["g_loss"] = loss
        check_finite(self.step, losses)
        self.g_opt.zero_grad(set_to_none=True)
        loss.backward(inputs=list(self.generator.parameters()))
        torch.nn.utils.clip_grad_norm_(self.generator.parameters(), 5.0)
        self.g_opt.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    def train(self) -> dict[str, float]:
        c = self.config
        length = int(c.sequence_windows * self.model_config.window) + self.model_config.anticipation
        rng = np.random.default_rng([c.seed, self.run.rank, self.step])
        train_ids = self.latents.indices("train")
        valid_ids = self.latents.indices("valid") or train_ids
        terms = ("pitch", "chroma", "level", "high", "onset")
        columns = ["g_loss", "supervised", *terms, "adv", "fm", "disc"]
        measured = ("supervised", *terms, "chroma_corr", "echo_chroma_corr")
        validation_columns = [f"val_{k}" for k in measured]
        log = CsvLog(c.run_dir / "generator_log.csv", columns + validation_columns)
        started = time.monotonic()
        validation: dict[str, float] = {}
        bar = tqdm(total=c.steps, initial=self.step, desc="generator",
                   disable=not (self.progress and self.run.is_main))  # fmt: skip
        deadline = None if c.max_minutes is None else started + 60 * c.max_minutes
        while self.step < c.steps and (deadline is None or time.monotonic() < deadline):
            windows = sample_windows(self.latents, train_ids, c.batch_size, length, rng)
            live, acc = (torch.from_numpy(x).to(self.run.device) for x in windows)
            losses = self.train_step(live, acc)
            self.step += 1
            bar.update(1)
            if self.step % 10 == 0 and self.run.is_main:
                bar.set_postfix(pitch=f"{losses['pitch']:.3f}", level=f"{losses['level']:.2f}")
                log.write(self.step, losses, self.wall_s)
            if self.step % c.validate_every == 0 or self.step == c.steps:
                validation = self.files.validate(valid_ids, length)
                if self.run.is_main:
                    log.write(self.step, validation, self.wall_s)
            if self.step % c.audio_every == 0 and self.run.is_main:
                self.files.write_audio(valid_ids)
            if self.step % c.save_every == 0 or self.step == c.steps:
                self.files.save(started, validation)
        if self.step % c.save_every:  # stopped by the clock between saves
            validation = self.files.validate(valid_ids, length)
            self.files.save(started, validation)
        bar.close()
        log.close()
        return validation
