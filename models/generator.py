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

Steering (the activation-steering seed paper): one difference-in-means vector per attribute
and layer (`bandmate steer build`, models/steering.py), added to the residual stream after
that layer as h_l += sum_k alpha_k v_kl. alpha is an input per frame, so a frame's keys and
values keep the alpha they were computed with. With several attributes steered at once, each
vector is first made orthogonal (Gram-Schmidt, per layer) to those before it in ATTRIBUTES
order that are being steered, so steering a second attribute does not move the first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.attributes import ATTRIBUTES


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
    steering: Tensor

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
        # [attributes, layers, d_model]; zeros (steering does nothing) until built. Not in the
        # weights file: a checkpoint keeps its vectors apart (models/checkpoint.py).
        shape = (len(ATTRIBUTES), config.n_layers, config.d_model)
        self.register_buffer("steering", torch.zeros(shape), persistent=False)
        # Naive addition of the vectors instead, for comparison (`bench steering`).
        self.orthogonal_steering = True
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

    def install_steering(self, vectors: dict[str, Tensor]) -> None:
        """Named vectors [layers, d_model] into the steering buffer (ATTRIBUTES order); an
        attribute not named steers nothing."""
        unknown = set(vectors) - set(ATTRIBUTES)
        if unknown:
            raise ValueError(f"unknown steering attributes: {', '.join(sorted(unknown))}")
        with torch.no_grad():
            self.steering.zero_()
            for name, vector in vectors.items():
                self.steering[ATTRIBUTES.index(name)] = vector.to(self.steering.dtype)

    def steering_delta(self, alpha: Tensor) -> Tensor:
        """alpha [..., attributes] -> what steering adds to each layer's output [..., layers, d].

        Gram-Schmidt with soft membership: attribute j takes part in orthogonalising those
        after it with weight min(|alpha_j|, 1), so the directions turn smoothly as an alpha
        ramps up from 0 instead of jumping when it leaves 0."""
        vectors = self.steering.to(alpha.dtype)
        if not self.orthogonal_steering:
            return torch.einsum("...a,ald->...ld", alpha, vectors)
        activity = alpha.abs().clamp(max=1.0)
        units: list[Tensor] = []
        delta = torch.zeros(*alpha.shape[:-1], *vectors.shape[1:], dtype=alpha.dtype,
                            device=alpha.device)  # fmt: skip
        for k in range(vectors.shape[0]):
            u = vectors[k].expand_as(delta)
            for j, unit in enumerate(units):
                along = (u * unit).sum(-1, keepdim=True) * unit
                u = u - activity[..., j, None, None] * along
            units.append(u / u.norm(dim=-1, keepdim=True).clamp_min(1e-8))
            delta = delta + alpha[..., k, None, None] * u
        return delta

    def residuals(self, live: Tensor, noise: Tensor, steer: Tensor | None = None) -> Tensor:
        """Each layer's output, the residual stream steering reads and writes: [B, L, layers, d]."""
        x = self.embed(live, noise)
        bias = window_bias(live.shape[1], self.config.window, self.slopes).to(x.dtype)
        delta = None if steer is None else self.steering_delta(steer)
        layers = []
        for i, block in enumerate(self.blocks):
            x = block(x, bias)
            if delta is not None:
                x = x + delta[:, :, i]
            layers.append(x)
        return torch.stack(layers, 2)

    def forward(self, live: Tensor, noise: Tensor, steer: Tensor | None = None) -> GeneratorOutput:
        """Parallel pass for training. live [B, L, D], noise [B, L, noise_dim], steer (alpha
        per attribute) [B, L, attributes] or None; output t is the accompaniment for t + a."""
        return GeneratorOutput(*self.unembed(self.residuals(live, noise, steer)[:, :, -1]))

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

    def step(
        self, state: KVState, live: Tensor, noise: Tensor, steer: Tensor | None = None
    ) -> tuple[KVState, Tensor]:
        """One frame for each stream. live [B, D], noise [B, noise_dim], steer [B, attributes]
        or None -> out [B, D]."""
        window = self.config.window
        slot = state.position % window  # [B]
        # Distance from this frame to the frame in each slot, after writing this one.
        slots = torch.arange(window, device=live.device)
        distance = (slot[:, None] - slots[None, :]) % window  # [B, W]
        valid = distance <= state.position[:, None]  # slots not yet written are empty
        bias = -self.slopes[None, :, None] * distance[:, None, :].to(live.dtype)  # [B, H, W]
        bias = bias.masked_fill(~valid[:, None, :], float("-inf")).unsqueeze(2)  # [B, H, 1, W]
        x = self.embed(live, noise).unsqueeze(1)  # [B, 1, d]
        delta = None if steer is None else self.steering_delta(steer).unsqueeze(1)
        keys, values = [], []
        for layer, block in enumerate(self.layer_blocks()):
            x, k, v = block.step(x, state.keys[:, layer], state.values[:, layer], slot, bias)
            if delta is not None:
                x = x + delta[:, :, layer]
            keys.append(k)
            values.append(v)
        out = self.unembed(x)[0].squeeze(1)
        new_state = KVState(torch.stack(keys, 1), torch.stack(values, 1), state.position + 1)
        return new_state, out
