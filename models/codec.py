"""The causal audio autoencoder: 48 kHz mono <-> continuous latents, one frame per hop.

Front end. A learned causal filterbank (a strided conv, kernel 2P, stride P) rather than
RAVE's PQMF. A PQMF's linear-phase prototype filter adds tens of samples of delay on each of
analysis and synthesis to stay causal; the learned filterbank adds none, costs less, and is
trained with everything else. It gives up PQMF's designed alias cancellation, which the
multi-resolution STFT loss has to learn instead.

Latents. Deterministic, each frame scaled to unit RMS over its D values: a fixed scale that
suits the generator's targets, pointwise in time, so it streams as is. Training can add
Gaussian noise to the latents (`latent_noise`) so the decoder tolerates latents near the
encoder's; the shipped default trains without it. The first shipped codec (a VAE with a small
KL weight) collapsed: its decoder ignored its latents (`bandmate bench codec` gave the same
distance for real, time-averaged and swapped latents). The cause was the loss, not only the
bottleneck: see models/losses.py, and `val_stft_constant_latent` in the trainer's log, which
must stay clearly above `val_stft`.

Causality and delay. Latent frame t depends on samples before the end of hop t, and decoded
hop t on latents up to t: the codec has no lookahead and no delay beyond one hop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.streaming import (
    CausalConv1d,
    CausalConvTranspose1d,
    ResidualUnit,
    Snake,
    State,
    Streamable,
    StreamSequential,
)


@dataclass(frozen=True)
class CodecConfig:
    sample_rate: int = 48_000
    latent_dim: int = 32
    patch: int = 8  # front-end filterbank stride
    strides: tuple[int, ...] = (2, 4, 4, 4)  # after the patch; hop = patch * prod(strides)
    encoder_channels: tuple[int, ...] = (16, 32, 64, 128)  # per stage, before its downsampling
    decoder_channels: tuple[int, ...] = (128, 64, 32, 24)  # per stage, after its upsampling
    dilations: tuple[int, ...] = (1, 3, 9)
    bottleneck_channels: int = 128

    @property
    def hop(self) -> int:
        hop = self.patch
        for s in self.strides:
            hop *= s
        return hop

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    def __post_init__(self) -> None:
        assert len(self.encoder_channels) == len(self.strides) == len(self.decoder_channels)


CODEC_PRESETS: dict[str, CodecConfig] = {
    "tiny": CodecConfig(
        encoder_channels=(8, 8, 16, 16),
        decoder_channels=(16, 16, 8, 8),
        bottleneck_channels=16,
        dilations=(1, 3),
    ),
    "default": CodecConfig(),
}


class Encoder(Streamable):
    def __init__(self, config: CodecConfig):
        super().__init__()
        c = config.encoder_channels
        layers: list[Streamable] = [CausalConv1d(1, c[0], 2 * config.patch, stride=config.patch)]
        widths = [*c, config.bottleneck_channels]
        for stage, stride in enumerate(config.strides):
            layers += [ResidualUnit(widths[stage], d) for d in config.dilations]
            layers += [
                Snake(widths[stage]),
                CausalConv1d(widths[stage], widths[stage + 1], 2 * stride, stride=stride),
            ]
        layers += [
            Snake(config.bottleneck_channels),
            CausalConv1d(config.bottleneck_channels, config.latent_dim, 3),
        ]
        self.net = StreamSequential(*layers)
        self.n_state = self.net.n_state

    def init_state(self, batch: int, device: torch.device | None = None) -> State:
        return self.net.init_state(batch, device)

    def forward(self, audio: Tensor, state: State) -> tuple[Tensor, State]:
        """audio [B, T] (T a multiple of hop) -> latents [B, D, T/hop], unit RMS per frame."""
        latents, state = self.net(audio.unsqueeze(1), state)
        return latents * torch.rsqrt(latents.pow(2).mean(1, keepdim=True) + 1e-6), state


class Decoder(Streamable):
    def __init__(self, config: CodecConfig):
        super().__init__()
        c = config.decoder_channels
        layers: list[Streamable] = [CausalConv1d(config.latent_dim, config.bottleneck_channels, 3)]
        widths = [config.bottleneck_channels, *c]
        for stage, stride in enumerate(reversed(config.strides)):
            layers += [
                Snake(widths[stage]),
                CausalConvTranspose1d(widths[stage], widths[stage + 1], stride),
            ]
            layers += [ResidualUnit(widths[stage + 1], d) for d in config.dilations]
        layers += [Snake(c[-1]), CausalConvTranspose1d(c[-1], 1, config.patch)]
        self.net = StreamSequential(*layers)
        self.n_state = self.net.n_state

    def init_state(self, batch: int, device: torch.device | None = None) -> State:
        return self.net.init_state(batch, device)

    def forward(self, latents: Tensor, state: State) -> tuple[Tensor, State]:
        """latents [B, D, F] -> audio [B, F * hop]."""
        audio, state = self.net(latents, state)
        return audio.squeeze(1), state


@dataclass
class CodecOutput:
    audio: Tensor  # [B, T]
    latents: Tensor  # [B, D, F], before the training noise


class Codec(nn.Module):
    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    # Offline: whole signals, starting from the initial state.
    def encode(self, audio: Tensor) -> Tensor:
        """audio [B, T] -> latents [B, D, T // hop]."""
        audio = audio[..., : audio.shape[-1] // self.config.hop * self.config.hop]
        latents, _ = self.encoder(audio, self.encoder.init_state(audio.shape[0], audio.device))
        return latents

    def decode(self, latents: Tensor) -> Tensor:
        """latents [B, D, F] -> audio [B, F * hop]."""
        audio, _ = self.decoder(latents, self.decoder.init_state(latents.shape[0], latents.device))
        return audio

    def forward(self, audio: Tensor, noise_std: float = 0.0) -> CodecOutput:
        """Training pass: encode, add Gaussian noise of `noise_std` to the latents, decode."""
        latents = self.encode(audio)
        noisy = latents + noise_std * torch.randn_like(latents) if noise_std > 0 else latents
        return CodecOutput(self.decode(noisy), latents)

    # Streaming: one hop at a time, state owned by the caller.
    def encode_step(self, hop_audio: Tensor, state: State) -> tuple[Tensor, State]:
        """hop_audio [B, hop] -> latent frame [B, D]."""
        latents, state = self.encoder(hop_audio, state)
        return latents[:, :, -1], state

    def decode_step(self, latent: Tensor, state: State) -> tuple[Tensor, State]:
        """latent frame [B, D] -> hop_audio [B, hop]."""
        return self.decoder(latent.unsqueeze(-1), state)
