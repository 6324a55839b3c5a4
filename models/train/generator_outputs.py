"""What a generator run writes besides its loss curve: validation figures, listening
excerpts, and the resumable state with the checkpoint the engine exports from."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from models.checkpoint import load_codec, save_checkpoint
from models.checkpoint_config import CheckpointConfig, CheckpointError, git_commit
from models.generator import Generator
from models.train.common import TrainingError, evaluating, save_state
from models.train.generator_losses import supervised_losses
from models.train.latents import codec_fingerprint, sample_windows

if TYPE_CHECKING:
    from models.train.generator_trainer import GeneratorTrainer


def latent_chroma(generator: Generator, latents: Tensor) -> Tensor:
    """[B, L, D] -> [B, L, 12]: energy in each pitch class, from the semitone bands."""
    p = generator.config.pitch_bands
    energy = torch.exp(generator.log_energy(latents)[..., :p])
    return energy.reshape(*energy.shape[:-1], p // 12, 12).sum(-2)


def chroma_correlation(estimate: Tensor, reference: Tensor) -> float:
    """Mean per-frame Pearson correlation of the two chroma sequences."""
    a = estimate - estimate.mean(-1, keepdim=True)
    b = reference - reference.mean(-1, keepdim=True)
    norms = a.norm(dim=-1) * b.norm(dim=-1)
    return float(((a * b).sum(-1) / norms.clamp_min(1e-12)).mean())


class GeneratorRunFiles:
    def __init__(self, trainer: GeneratorTrainer):
        self.trainer = trainer

    def validate(self, valid_ids: list[int], length: int) -> dict[str, float]:
        """Supervised terms on fixed validation windows, and the per-frame chroma correlation
        of the output with the real accompaniment, beside an echo of the live part's."""
        t = self.trainer
        rng = np.random.default_rng(t.config.seed + 1)  # the same windows every time
        totals: dict[str, float] = {}
        torch_state = torch.get_rng_state()
        torch.manual_seed(t.config.seed + 1)
        batches = t.config.validation_batches
        a = t.model_config.anticipation
        with evaluating(t.generator, t.disc):
            for _ in range(batches):
                windows = sample_windows(t.latents, valid_ids, t.config.batch_size, length, rng)
                live, acc = (torch.from_numpy(x).to(t.run.device) for x in windows)
                cond, out = t.generate(live)
                real = acc[:, a:]
                terms = {k: v.mean() for k, v in supervised_losses(t.generator, out, real).items()}
                terms["supervised"] = sum(terms.values(), torch.zeros(()))
                real_chroma = latent_chroma(t.generator, real)
                terms["chroma_corr"] = torch.tensor(
                    chroma_correlation(latent_chroma(t.generator, out.latents), real_chroma)
                )
                terms["echo_chroma_corr"] = torch.tensor(
                    chroma_correlation(latent_chroma(t.generator, cond), real_chroma))  # fmt: skip
                for k, v in terms.items():
                    totals[f"val_{k}"] = totals.get(f"val_{k}", 0.0) + float(v) / batches
        torch.set_rng_state(torch_state)
        return totals

    def write_audio(self, valid_ids: list[int]) -> None:
        """A validation excerpt: the live part, the real and the generated accompaniment."""
        import soundfile as sf  # here: a GPU machine training from a pack has no audio stack

        t = self.trainer
        folder = t.config.run_dir / "audio"
        folder.mkdir(exist_ok=True)
        i = valid_ids[0]
        frames = min(len(t.latents.live[i]), 12 * 47)
        live, acc = (torch.from_numpy(x[i][:frames].astype(np.float32))[None].to(t.run.device)
                     for x in (t.latents.live, t.latents.accompaniment))  # fmt: skip
        a = t.model_config.anticipation
        with evaluating(t.generator, t.codec):
            noise = torch.randn(1, frames, t.model_config.noise_dim, device=live.device)
            generated = t.generator(live, noise).latents
            # Output t sounds at frame t + a: shift it so it lines up with the live part.
            silence = torch.full_like(generated[:, :a], -3.0)
            generated = torch.cat([silence, generated[:, : frames - a]], 1)
            rate, lag = t.codec.config.sample_rate, t.codec.config.latency
            for name, latents in (("live", live), ("real", acc), ("generated", generated)):
                audio = t.codec.decode(latents.transpose(1, 2))[0, lag:].cpu().numpy()
                sf.write(folder / f"step{t.step:07d}_{name}.wav", audio, rate)

    def save(self, started: float, validation: dict[str, float]) -> None:
        t = self.trainer
        if not t.run.is_main:
            return
        wall_s = t.wall_s + time.monotonic() - started
        save_state(t.config.run_dir, {
            "generator": t.generator.state_dict(), "disc": t.disc.state_dict(),
            "g_opt": t.g_opt.state_dict(), "d_opt": t.d_opt.state_dict(),
            "step": t.step, "wall_s": wall_s, "torch_rng": torch.get_rng_state(),
            "augment_rng": t.rng.get_state(),
        })  # fmt: skip
        training = dict(t.codec_meta.training)
        training.update({"generator_steps": t.step, "generator_wall_s": round(wall_s, 1),
                         "generator_config": str(t.config), "generator_validation": validation,
                         "generator_examples": len(t.latents.splits)})  # fmt: skip
        # The codec as it is now: its decoder may have trained on while this generator did.
        # The latents' encoder must be the one this run was trained on.
        try:
            latest = load_codec(t.config.codec)
        except CheckpointError:  # being rewritten right now: keep the one this run loaded
            latest = t.codec
        if codec_fingerprint(latest) != codec_fingerprint(t.codec):
            raise TrainingError(f"{t.config.codec}: the codec's encoder changed during this run")
        codec = latest.config
        meta = CheckpointConfig(
            sample_rate=codec.sample_rate, hop=codec.hop, latent_dim=codec.latent_dim,
            codec_latency=codec.latency, codec={}, data_manifest=t.data_fingerprint,
            git_commit=git_commit(), training=training,
        )  # fmt: skip
        save_checkpoint(t.config.run_dir / "checkpoint", latest, t.generator, meta)
