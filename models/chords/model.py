"""A small causal transformer over chord tokens (models/chords/vocab.py).

The sequence starts with a genre token and a mode token, then alternates chord and length
tokens; the model predicts each next token. Learned absolute positions (sequences are at most
`block_size` tokens; the player keeps a rolling window of the newest chords behind the same
two-token prefix).

Two adapter families can be switched on over a frozen base, as in the genre-adaptation
literature: LoRA (a low-rank update B A added to the attention's input and output
projections, B starting at zero) and IA3 (learned per-channel scales on keys, values and the
MLP's hidden units, starting at one). Both start as the identity, so an adapter begins at the
base model's predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ChordModelConfig:
    vocab_size: int = 160
    block_size: int = 64  # tokens: genre, mode and 31 (chord, length) pairs
    d_model: int = 64
    n_layers: int = 3
    n_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.1
    lora_rank: int = 0  # > 0: LoRA adapters of this rank
    ia3: bool = False  # IA3 scales

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def __post_init__(self) -> None:
        assert self.d_model % self.n_heads == 0


CHORD_PRESETS: dict[str, ChordModelConfig] = {
    "tiny": ChordModelConfig(block_size=32, d_model=32, n_layers=1, n_heads=2),
    "small": ChordModelConfig(block_size=32, n_layers=2),  # `bench chords` trains 78 of these
    "default": ChordModelConfig(),
}


class LoRALinear(nn.Module):
    """y = W x + (alpha / r) B A x, with W frozen by the caller and B starting at zero."""

    def __init__(self, base: nn.Linear, rank: int):
        super().__init__()
        self.base = base
        self.down = nn.Linear(base.in_features, rank, bias=False)
        self.up = nn.Linear(rank, base.out_features, bias=False)
        nn.init.zeros_(self.up.weight)
        self.scale = 2.0  # alpha = 2 r

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + self.scale * self.up(self.down(x))


class Attention(nn.Module):
    def __init__(self, config: ChordModelConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.qkv: nn.Module = nn.Linear(d, 3 * d, bias=False)
        self.proj: nn.Module = nn.Linear(d, d, bias=False)
        self.dropout = nn.Dropout(config.dropout)
        # IA3: keys and values scaled per channel (identity until trained).
        self.key_scale = nn.Parameter(torch.ones(d)) if config.ia3 else None
        self.value_scale = nn.Parameter(torch.ones(d)) if config.ia3 else None
        if config.lora_rank:
            self.qkv = LoRALinear(self.qkv, config.lora_rank)
            self.proj = LoRALinear(self.proj, config.lora_rank)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, length, d = x.shape
        q, k, v = self.qkv(x).split(self.config.d_model, dim=-1)
        if self.key_scale is not None and self.value_scale is not None:
            k, v = k * self.key_scale, v * self.value_scale
        shape = (b, length, self.config.n_heads, self.config.head_dim)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))  # [B, H, L, Dh]
        p = self.config.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.dropout(self.proj(y.transpose(1, 2).reshape(b, length, d)))


class MLP(nn.Module):
    def __init__(self, config: ChordModelConfig):
        super().__init__()
        hidden = config.mlp_ratio * config.d_model
        self.up = nn.Linear(config.d_model, hidden)
        self.down = nn.Linear(hidden, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.hidden_scale = nn.Parameter(torch.ones(hidden)) if config.ia3 else None

    def forward(self, x: Tensor) -> Tensor:
        h = F.gelu(self.up(x))
        if self.hidden_scale is not None:
            h = h * self.hidden_scale
        return self.dropout(self.down(h))


class Block(nn.Module):
    def __init__(self, config: ChordModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.d_model)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class ChordModel(nn.Module):
    causal: Tensor  # [block, block] additive mask

    def __init__(self, config: ChordModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.position = nn.Embedding(config.block_size, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied, as in GPT-2
        # An explicit causal mask, sliced to the length (is_causal does not survive export).
        # Additive (0 / -inf): a boolean mask exports to ONNX with the wrong meaning.
        causal = torch.ones(config.block_size, config.block_size, dtype=torch.bool).tril()
        bias = torch.zeros(causal.shape).masked_fill(~causal, float("-inf"))
        self.register_buffer("causal", bias, persistent=False)
        self.apply(init_weights)
        for module in self.modules():
            if isinstance(module, LoRALinear):
                nn.init.zeros_(module.up.weight)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens [B, L] -> next-token logits [B, L, V]."""
        length = tokens.shape[1]
        x = self.dropout(self.embed(tokens) + self.position.weight[:length])  # [B, L, d]
        mask = self.causal[:length, :length]  # [L, L]
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))

    def load_base(self, state: dict[str, Tensor]) -> None:
        """Load a plain model's weights under this model's adapters (which keep their start)."""
        renamed = {}
        for name, value in state.items():
            if self.config.lora_rank and name.split(".")[-2] in ("qkv", "proj"):
                name = name.replace(".weight", ".base.weight")
            renamed[name] = value
        missing = self.load_state_dict(renamed, strict=False).missing_keys
        assert all(is_adapter(n) for n in missing), missing

    def adapter_parameters(self) -> list[nn.Parameter]:
        """The parameters an adapter trains (LoRA's A and B, IA3's scales)."""
        return [p for n, p in self.named_parameters() if is_adapter(n)]


def is_adapter(name: str) -> bool:
    lora = any(f".{p}.{a}." in name for p in ("qkv", "proj") for a in ("down", "up"))
    return lora or name.endswith("_scale")


def init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class LastLogits(nn.Module):
    """The graph the player runs: a window of tokens [1, L] -> the next token's logits [1, V]."""

    def __init__(self, model: ChordModel):
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor) -> Tensor:
        return self.model(tokens)[:, -1, :]
