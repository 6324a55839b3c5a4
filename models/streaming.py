"""Causal convolution layers whose streaming state is explicit.

Every layer here computes `forward(x, state) -> (y, state)`, where `state` is a list of
tensors, batch first, owned by the caller. The offline call is the same call with the
initial (zero) state over the whole signal, so offline and streaming cannot drift apart:
they are one implementation. Explicit state is also what an ONNX step graph needs (state in,
state out) and what batched multi-session stepping gathers and scatters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

State = list[Tensor]


class Streamable(nn.Module):
    """A layer with `n_state` state tensors; stateless layers have none."""

    n_state: int = 0

    def init_state(self, batch: int, device: torch.device | None = None) -> State:
        return []

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:  # pragma: no cover
        raise NotImplementedError


class CausalConv1d(Streamable):
    """A conv that sees only the past: its state is the last `context` input frames.

    With kernel k, dilation d and stride s, an output frame needs (k-1)*d + 1 inputs, the last
    s of which are new; the other (k-1)*d + 1 - s come from the state. Inputs must arrive in
    multiples of the stride.
    """

    n_state = 1

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, dilation=dilation)
        self.c_in, self.stride = c_in, stride
        self.context = (kernel - 1) * dilation + 1 - stride
        assert self.context >= 0, "kernel shorter than stride would skip input"

    def init_state(self, batch: int, device: torch.device | None = None) -> State:
        return [torch.zeros(batch, self.c_in, self.context, device=device)]

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        full = torch.cat([state[0], x], dim=-1)  # [B, C, context + T]
        return self.conv(full), [full[..., full.shape[-1] - self.context :]]


class CausalConvTranspose1d(Streamable):
    """Upsampling by `stride` with a kernel of `overlap * stride`: output block t mixes input
    frames t, t-1, ... t-overlap+1 (overlap-add), so its state is the last overlap-1 frames."""

    n_state = 1

    def __init__(self, c_in: int, c_out: int, stride: int, overlap: int = 2):
        super().__init__()
        self.conv = nn.ConvTranspose1d(c_in, c_out, overlap * stride, stride=stride)
        self.c_in, self.stride, self.overlap = c_in, stride, overlap

    def init_state(self, batch: int, device: torch.device | None = None) -> State:
        return [torch.zeros(batch, self.c_in, self.overlap - 1, device=device)]

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        full = torch.cat([state[0], x], dim=-1)  # [B, C, overlap - 1 + T]
        y = self.conv(full)  # [B, C', (overlap - 1 + T - 1) * s + overlap * s]
        head = (self.overlap - 1) * self.stride  # output owed to frames before x
        y = y[..., head : head + x.shape[-1] * self.stride]
        return y, [full[..., full.shape[-1] - (self.overlap - 1) :]]


class Snake(Streamable):
    """x + sin^2(a x) / a, per channel: a periodic inductive bias that suits audio (BigVGAN)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        return x + torch.sin(self.alpha * x).pow(2) / (self.alpha + 1e-9), state


class Pointwise(Streamable):
    """A 1x1 conv: no time context, no state."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, 1)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        return self.conv(x), state


class StreamSequential(Streamable):
    """Layers in order; the state is the concatenation of theirs."""

    def __init__(self, *layers: Streamable):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.n_state = sum(layer.n_state for layer in layers)

    def init_state(self, batch: int, device: torch.device | None = None) -> State:
        return [s for layer in self.streamables() for s in layer.init_state(batch, device)]

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        new_state: State = []
        i = 0
        for layer in self.streamables():
            x, s = layer(x, state[i : i + layer.n_state])
            new_state += s
            i += layer.n_state
        return x, new_state

    def streamables(self) -> list[Streamable]:
        return list(self.layers)  # type: ignore[arg-type]


class ResidualUnit(Streamable):
    """x + pointwise(snake(dilated causal conv(snake(x))))."""

    def __init__(self, channels: int, dilation: int, kernel: int = 7):
        super().__init__()
        self.body = StreamSequential(
            Snake(channels),
            CausalConv1d(channels, channels, kernel, dilation=dilation),
            Snake(channels),
            Pointwise(channels, channels),
        )
        self.n_state = self.body.n_state

    def init_state(self, batch: int, device: torch.device | None = None) -> State:
        return self.body.init_state(batch, device)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        y, state = self.body(x, state)
        return x + y, state
