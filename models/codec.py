"""The causal audio autoencoder: 48 kHz mono <-> continuous latents, one frame per hop.

Front end. A learned causal filterbank (a strided conv, kernel 2P, stride P) rather than
RAVE's PQMF. A PQMF's linear-phase prototype filter adds tens of samples of delay on each of
analysis and synthesis to stay causal; the learned filterbank adds none, costs less, and is
trained with everything else. It gives up PQMF's designed alias cancellation, which the
multi-resolution STFT loss has to learn instead.

Latents. The encoder outputs a mean and log-variance per frame (a VAE bottleneck with a
small KL weight): the latents stay near unit scale, which suits the generator's targets, and
the decoder learns to tolerate latents near, not at, the encoder's (what the generator gives).
`encode` returns the mean.

Causality and delay. Latent frame t depends on samples before the end of hop t, and decoded
hop t on latents up to t: the codec has no lookahead and no delay beyond one hop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
            CausalConv1d(config.bottleneck_channels, 2 * config.latent_dim, 3),
        ]
        self.net = StreamSequential(*layers)
        self.n_state = self.net.n_state

    def init_state(self, batch: int, device: torch.device | None = None) -> State:
        return self.net.init_state(batch, device)

    def forward(self, audio: Tensor, state: State) -> tuple[Tensor, State]:
        """audio [B, T] (T a multiple of hop) -> (mean, logvar) stacked: [B, 2D, T/hop]."""
        return self.net(audio.unsqueeze(1), state)


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
    mean: Tensor  # [B, D, F]
    logvar: Tensor  # [B, D, F]
    kl: Tensor = field(default_factory=lambda: torch.zeros(()))


class Codec(nn.Module):
    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    # Offline: whole signals, starting from the initial state.
    def encode(self, audio: Tensor) -> Tensor:
        """audio [B, T] -> latents [B, D, T // hop] (the posterior mean)."""
        mean, _ = self.posterior(audio)
        return mean

    def decode(self, latents: Tensor) -> Tensor:
        """latents [B, D, F] -> audio [B, F * hop]."""
        audio, _ = self.decoder(latents, self.decoder.init_state(latents.shape[0], latents.device))
        return audio

    def posterior(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        audio = audio[..., : audio.shape[-1] // self.config.hop * self.config.hop]
        stats, _ = self.encoder(audio, self.encoder.init_state(audio.shape[0], audio.device))
        mean, logvar = stats.chunk(2, dim=1)
        return mean, logvar.clamp(-12.0, 4.0)

    def forward(self, audio: Tensor) -> CodecOutput:
        """Training pass: sample latents from the posterior and decode them."""
        mean, logvar = self.posterior(audio)
        latents = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()
        return CodecOutput(self.decode(latents), mean, logvar, kl)

    # Streaming: one hop at a time, state owned by the caller.
    def encode_step(self, hop_audio: Tensor, state: State) -> tuple[Tensor, State]:
        """hop_audio [B, hop] -> latent frame [B, D]."""
        stats, state = self.encoder(hop_audio, state)
        return stats[:, : self.config.latent_dim, -1], state

    def decode_step(self, latent: Tensor, state: State) -> tuple[Tensor, State]:
        """latent frame [B, D] -> hop_audio [B, hop]."""
        return self.decoder(latent.unsqueeze(-1), state)
