"""The causal spectral codec: 48 kHz mono <-> log-frequency latents, one frame per hop.

Analysis is fixed (models/spectral.py): per hop, the log energy in semitone bands of a causal
Hann window. The encoder only standardises each band by statistics of the training data, so
latent dimension d is the band d: pitch and harmony are in the latents from the first step,
and a transposition is a roll of the semitone dimensions.

The decoder is the part that learns: a small causal convolutional network from latents to
one log-magnitude STFT frame per hop, the one whose window ends with the hop (the synthesis
interpolates the frames in between: models/spectral.py says why). A linear
path from the current latent (least squares alone reaches a per-frame chroma correlation of
about 0.98 on held-out music) plus a convolutional path over past latents, which sharpens the
partials inside each band. Phase is not learned: the fixed
synthesis reconstructs it in real time (models/spectral.py).

The codec's latency is the synthesis overlap, `n_fft - stft_hop` samples (37.3 ms at the
defaults); the checkpoint reports it and the engine's latency accounting includes it.
Decoded hop t depends on latents up to t only: nothing reads the future.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from models.spectral import SpectralCodec, SpectralConfig
from models.streaming import (
    CausalConv1d,
    Pointwise,
    ResidualUnit,
    Snake,
    State,
    Streamable,
    StreamSequential,
)


@dataclass(frozen=True)
class CodecConfig:
    spectral: SpectralConfig = field(default_factory=SpectralConfig)
    channels: int = 256  # the decoder's width
    dilations: tuple[int, ...] = (1, 2, 4)  # residual units, kernel 3: 15 frames (0.3 s) back

    @property
    def sample_rate(self) -> int:
        return self.spectral.sample_rate

    @property
    def hop(self) -> int:
        return self.spectral.hop

    @property
    def latent_dim(self) -> int:
        return self.spectral.bands

    @property
    def latency(self) -> int:
        return self.spectral.latency


CODEC_PRESETS: dict[str, CodecConfig] = {
    "tiny": CodecConfig(channels=16, dilations=(1,)),
    "default": CodecConfig(),
}


class Encoder(nn.Module):
    """Log band energies -> latents: (bands - mean) / std per band. No state: the analysis
    window's history is the spectral analysis state."""

    band_mean: Tensor
    band_std: Tensor

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.register_buffer("band_mean", torch.zeros(config.latent_dim))
        self.register_buffer("band_std", torch.ones(config.latent_dim))

    def forward(self, bands: Tensor) -> Tensor:
        """bands [..., D] -> latents [..., D]."""
        return (bands - self.band_mean) / self.band_std


class Decoder(Streamable):
    """latents [B, D, F] -> log-magnitude frames [B, F, bins], one per hop."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        s, c = config.spectral, config.channels
        layers: list[Streamable] = [CausalConv1d(config.latent_dim, c, 3)]
        layers += [ResidualUnit(c, d, kernel=3) for d in config.dilations]
        layers += [Snake(c)]
        self.body = StreamSequential(*layers)
        self.out = Pointwise(c, s.bins)
        self.direct = Pointwise(config.latent_dim, s.bins)
        self.n_state = self.body.n_state
        with torch.no_grad():  # start from silence-ish, not from a random spectrum
            self.out.conv.weight.mul_(0.1)
            bias = self.out.conv.bias
            assert bias is not None
            bias.fill_(float(np.log(s.floor)) / 2)

    def init_state(self, batch: int, device: torch.device | None = None) -> State:
        return self.body.init_state(batch, device)

    def forward(self, latents: Tensor, state: State) -> tuple[Tensor, State]:
        hidden, state = self.body(latents, state)
        spectrum = self.out(hidden, [])[0] + self.direct(latents, [])[0]  # [B, K, F]
        return spectrum.transpose(1, 2), state


class Codec(nn.Module):
    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        self.spectral = SpectralCodec(config.spectral)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    # Offline: whole signals, from the initial state.
    def analyse(self, audio: Tensor) -> Tensor:
        """audio [B, T] -> log bands [B, T // hop, D] (the fixed analysis, in numpy)."""
        bands = self.spectral.analyse(audio.detach().cpu().numpy())
        return torch.from_numpy(bands).to(audio.device)

    def encode(self, audio: Tensor) -> Tensor:
        """audio [B, T] -> latents [B, D, T // hop]."""
        return self.encoder(self.analyse(audio)).transpose(1, 2)

    def decode_spectrum(self, latents: Tensor) -> Tensor:
        """latents [B, D, F] -> log-magnitudes [B, F, bins], one per hop."""
        state = self.decoder.init_state(latents.shape[0], latents.device)
        return self.decoder(latents, state)[0]

    def decode(self, latents: Tensor) -> Tensor:
        """latents [B, D, F] -> audio [B, F * hop], `config.latency` samples late."""
        spectrum = self.decode_spectrum(latents).detach().float().cpu().numpy()
        return torch.from_numpy(self.spectral.synthesise(spectrum)).to(latents.device)

    # Streaming: the network parts of one hop; the engine runs the numpy analysis before the
    # encoder and the synthesis after the decoder (engine/backends/base.py).
    def encode_step(self, bands: Tensor) -> Tensor:
        """bands [B, D] -> latent frame [B, D]."""
        return self.encoder(bands)

    def decode_step(self, latent: Tensor, state: State) -> tuple[Tensor, State]:
        """latent frame [B, D] -> the hop's log-magnitude frame [B, bins]."""
        spectrum, state = self.decoder(latent.unsqueeze(-1), state)
        return spectrum[:, 0], state
