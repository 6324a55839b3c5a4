"""The causal transformer that plays the accompaniment (LiveBand's generator).

At latent frame t it sees the live part's latents m_0..m_t (and, computed from m_t, the live
part's chroma) and per-frame Gaussian noise e_0..e_t, and outputs the accompaniment latent
for frame t + a (a = anticipation).

Output. The codec's latents are standardised log energies in semitone bands plus a few high
bands (models/spectral.py). The head predicts them as a distribution over the semitone bands
(logits), the total level of those bands, and the high bands directly: log band energy =
log softmax(logits) + level. A distribution over pitch trains with cross-entropy, which keeps
the pitch classes that fit apart, where a regression to the mean latent blurs them together
(models/train/generator_losses.py).

Attention is sliding-window causal over W frames (frame t sees t-W+1..t) with ALiBi biases.
ALiBi depends only on distances, so a stream of any length needs no absolute positions and
stays exact after hours; RoPE would rotate by ever larger angles in float32. Training runs
the whole sequence in one pass under exactly this mask; streaming runs `step` with a rolling
KV cache of W slots, so the two compute the same function (tested to 1e-4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class GeneratorConfig:
    latent_dim: int = 104
    pitch_bands: int = 96  # the first latent dimensions are semitone bands, lowest a C
    noise_dim: int = 32
    d_model: int = 192
    n_layers: int = 4
    n_heads: int = 4
    window: int = 128  # W: frames each frame attends to, itself included
    anticipation: int = 2  # a: output frame t predicts accompaniment frame t + a
    mlp_ratio: int = 4
    log_floor: float = -13.8155  # the codec's log band-energy floor, log(1e-3 ** 2)
    # Playing temperature of the pitch distribution: below 1 puts the energy on the likeliest
    # bands. Training leaves it at 1; `bandmate export --temperature` sets what plays.
    temperature: float = 1.0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def __post_init__(self) -> None:
        assert self.d_model % self.n_heads == 0
        assert self.noise_dim < self.d_model
        assert self.pitch_bands % 12 == 0 and self.pitch_bands <= self.latent_dim


GENERATOR_PRESETS: dict[str, GeneratorConfig] = {
    "tiny": GeneratorConfig(d_model=32, n_layers=2, n_heads=2, window=16, noise_dim=8),
    "default": GeneratorConfig(),
}


def alibi_slopes(n_heads: int) -> Tensor:
    """Geometric slopes 2^(-8/n), 2^(-16/n), ... (Press et al.), one per head."""
    return torch.tensor([2 ** (-8.0 * (h + 1) / n_heads) for h in range(n_heads)])


def window_bias(length: int, window: int, slopes: Tensor) -> Tensor:
    """Additive attention bias for a whole sequence: -slope * (t - s) inside the causal window,
    -inf outside. [H, L, L]"""
    t = torch.arange(length)
    distance = (t[:, None] - t[None, :]).float()
    inside = (distance >= 0) & (distance < window)
    bias = -slopes[:, None, None] * distance
    return bias.masked_fill(~inside, float("-inf"))


@dataclass
class KVState:
    """The rolling KV cache for all layers, owned by the caller.

    keys/values: [B, n_layers, H, W, head_dim]. Frame t is written to slot t % W, so the cache
    holds frames t-W+1..t after the write. position: [B] int64, the frame each stream is at,
    so sessions at different positions can be stepped as one batch.
    """

    keys: Tensor
    values: Tensor
    position: Tensor


class Attention(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def split_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, length, _ = x.shape
        q, k, v = self.qkv(x).split(self.config.d_model, dim=-1)
        shape = (b, length, self.config.n_heads, self.config.head_dim)
        return (
            q.view(shape).transpose(1, 2),
            k.view(shape).transpose(1, 2),
            v.view(shape).transpose(1, 2),
        )

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        q, k, v = self.split_heads(x)  # [B, H, L, Dh]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(y.transpose(1, 2).reshape(x.shape))

    def step(
        self, x: Tensor, keys: Tensor, values: Tensor, slot: Tensor, bias: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, 1, d]; keys/values [B, H, W, Dh]; slot [B] where this frame is written;
        bias [B, H, 1, W] for the cache after the write."""
        q, k, v = self.split_heads(x)  # [B, H, 1, Dh]
        write = F.one_hot(slot, self.config.window).to(x.dtype)[:, None, :, None]  # [B,1,W,1]
        keys = keys * (1 - write) + k * write
        values = values * (1 - write) + v * write
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=bias)
        return self.proj(y.transpose(1, 2).reshape(x.shape)), keys, values


class Block(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.d_model)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.d_model)
        hidden = config.mlp_ratio * config.d_model
        self.mlp = nn.Sequential(
            nn.Linear(config.d_model, hidden), nn.GELU(), nn.Linear(hidden, config.d_model)
        )

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), bias)
        return x + self.mlp(self.norm2(x))

    def step(
        self, x: Tensor, keys: Tensor, values: Tensor, slot: Tensor, bias: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        y, keys, values = self.attn.step(self.norm1(x), keys, values, slot, bias)
        x = x + y
        return x + self.mlp(self.norm2(x)), keys, values


@dataclass
class GeneratorOutput:
    """The parallel pass's output: the latents, and the parts the training losses read."""

    latents: Tensor  # [B, L, D], the codec's standardised units
    pitch_logits: Tensor  # [B, L, pitch_bands]
    level: Tensor  # [B, L], log of the semitone bands' total energy


class Generator(nn.Module):
    slopes: Tensor
    band_mean: Tensor
    band_std: Tensor

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        self.live_in = nn.Linear(config.latent_dim + 12, config.d_model - config.noise_dim)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.latent_dim + 1)  # logits, level, high
        self.register_buffer("slopes", alibi_slopes(config.n_heads), persistent=False)
        # The codec encoder's per-band statistics (latent = (log energy - mean) / std), copied
        # in by the trainer: the generator reads pitch and level in log energies.
        self.register_buffer("band_mean", torch.zeros(config.latent_dim))
        self.register_buffer("band_std", torch.ones(config.latent_dim))
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def log_energy(self, latents: Tensor) -> Tensor:
        """Standardised latents -> log band energies (natural log)."""
        return latents * self.band_std + self.band_mean

    def chroma(self, latents: Tensor) -> Tensor:
        """Log of the semitone bands' energy folded into 12 pitch classes, normalised. [.., 12]"""
        p = self.config.pitch_bands
        energy = torch.exp(self.log_energy(latents)[..., :p])
        folded = energy.reshape(*energy.shape[:-1], p // 12, 12).sum(-2)
        return torch.log(folded / folded.sum(-1, keepdim=True).clamp_min(1e-12) + 1e-3)

    def embed(self, live: Tensor, noise: Tensor) -> Tensor:
        """The input per frame: the projected live latent and chroma, then the noise."""
        features = torch.cat([live, self.chroma(live)], dim=-1)
        return torch.cat([self.live_in(features), noise], dim=-1)

    def unembed(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Hidden state -> (latents, pitch logits, level)."""
        c = self.config
        out = self.head(self.norm(x))
        logits, level, high = (
            out[..., : c.pitch_bands],
            out[..., c.pitch_bands],
            out[..., c.pitch_bands + 1 :],
        )
        log_energy = torch.log_softmax(logits / c.temperature, -1) + level.unsqueeze(-1)
        pitch = (
            log_energy.clamp_min(c.log_floor) - self.band_mean[: c.pitch_bands]
        ) / self.band_std[: c.pitch_bands]
        return torch.cat([pitch, high], dim=-1), logits, level

    def forward(self, live: Tensor, noise: Tensor) -> GeneratorOutput:
        """Parallel pass for training. live [B, L, D], noise [B, L, noise_dim]; output t is
        the accompaniment for frame t + a."""
        x = self.embed(live, noise)
        bias = window_bias(live.shape[1], self.config.window, self.slopes).to(x.dtype)
        for block in self.blocks:
            x = block(x, bias)
        return GeneratorOutput(*self.unembed(x))

    def layer_blocks(self) -> list[Block]:
        return list(self.blocks)  # type: ignore[arg-type]

    def init_state(self, batch: int, device: torch.device | None = None) -> KVState:
        c = self.config
        shape = (batch, c.n_layers, c.n_heads, c.window, c.head_dim)
        return KVState(
            keys=torch.zeros(shape, device=device),
            values=torch.zeros(shape, device=device),
            position=torch.zeros(batch, dtype=torch.long, device=device),
        )

    def step(self, state: KVState, live: Tensor, noise: Tensor) -> tuple[KVState, Tensor]:
        """One frame for each stream. live [B, D], noise [B, noise_dim] -> out [B, D]."""
        window = self.config.window
        slot = state.position % window  # [B]
        # Distance from this frame to the frame in each slot, after writing this one.
        slots = torch.arange(window, device=live.device)
        distance = (slot[:, None] - slots[None, :]) % window  # [B, W]
        valid = distance <= state.position[:, None]  # slots not yet written are empty
        bias = -self.slopes[None, :, None] * distance[:, None, :].to(live.dtype)  # [B, H, W]
        bias = bias.masked_fill(~valid[:, None, :], float("-inf")).unsqueeze(2)  # [B, H, 1, W]
        x = self.embed(live, noise).unsqueeze(1)  # [B, 1, d]
        keys, values = [], []
        for layer, block in enumerate(self.layer_blocks()):
            x, k, v = block.step(x, state.keys[:, layer], state.values[:, layer], slot, bias)
            keys.append(k)
            values.append(v)
        out = self.unembed(x)[0].squeeze(1)
        new_state = KVState(torch.stack(keys, 1), torch.stack(values, 1), state.position + 1)
        return new_state, out
