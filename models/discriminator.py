"""The sequence-level discriminator and the adversarial losses.

The discriminator judges (mix, accompaniment) latent sequences: a real accompaniment against
a generated one for the same mix, so it checks that the accompaniment fits what is played, not
only that it sounds like an accompaniment. It is a stack of dilated convs over time (receptive
field of about 1.3 s at the finest scale) run at two time scales, giving a logit per
position: every window of the sequence is judged, and long-range fit comes from the
coarser scale.

Loss choice: hinge, with spectral norm on the discriminator, plus feature matching for the
generator. Hinge stops pushing on samples the discriminator already classifies with a margin,
which keeps its gradients bounded on small batches; feature matching (L1 between the
discriminator's features of real and generated sequences for the same mix) gives the generator
a dense, stable signal early on, when the discriminator alone is uninformative. It compares
features, not latents, so it does not pull the generator to the mean the way a regression
loss would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


class ScaleDiscriminator(nn.Module):
    def __init__(self, in_channels: int, channels: int, dilations: tuple[int, ...]):
        super().__init__()
        layers = [spectral_norm(nn.Conv1d(in_channels, channels, 3, padding=1))]
        layers += [
            spectral_norm(nn.Conv1d(channels, channels, 5, padding=2 * d, dilation=d))
            for d in dilations
        ]
        self.layers = nn.ModuleList(layers)
        self.out = spectral_norm(nn.Conv1d(channels, 1, 3, padding=1))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
            features.append(x)
        return self.out(x).squeeze(1), features


class SequenceDiscriminator(nn.Module):
    def __init__(
        self, latent_dim: int, channels: int = 128, dilations: tuple[int, ...] = (1, 2, 4, 8)
    ):
        super().__init__()
        self.scales = nn.ModuleList(
            ScaleDiscriminator(2 * latent_dim, channels, dilations) for _ in range(2)
        )

    def forward(self, mix: Tensor, accompaniment: Tensor) -> list[tuple[Tensor, list[Tensor]]]:
        """mix, accompaniment: [B, L, D] (normalised latents, aligned in time)."""
        x = torch.cat([mix, accompaniment], dim=-1).transpose(1, 2)  # [B, 2D, L]
        results = []
        for scale, disc in enumerate(self.scales):
            results.append(disc(x if scale == 0 else F.avg_pool1d(x, 2**scale)))
        return results


def discriminator_hinge_loss(
    real: list[tuple[Tensor, list[Tensor]]], fake: list[tuple[Tensor, list[Tensor]]]
) -> Tensor:
    return sum(
        (
            F.relu(1 - r).mean() + F.relu(1 + f).mean()
            for (r, _), (f, _) in zip(real, fake, strict=True)
        ),
        torch.zeros(()),
    )


def generator_adversarial_loss(fake: list[tuple[Tensor, list[Tensor]]]) -> Tensor:
    return sum((-f.mean() for f, _ in fake), torch.zeros(()))


def feature_matching_loss(
    real: list[tuple[Tensor, list[Tensor]]], fake: list[tuple[Tensor, list[Tensor]]]
) -> Tensor:
    terms = [
        F.l1_loss(f, r.detach())
        for (_, real_feats), (_, fake_feats) in zip(real, fake, strict=True)
        for r, f in zip(real_feats, fake_feats, strict=True)
    ]
    return torch.stack(terms).mean()


class SpectrogramDiscriminator(nn.Module):
    """For the codec's optional adversarial term: 2-D convs over log-magnitude spectrograms at
    several resolutions, each giving logits and features like the sequence discriminator."""

    def __init__(self, fft_sizes: tuple[int, ...] = (1024, 512, 256), channels: int = 16):
        super().__init__()
        self.fft_sizes = fft_sizes
        self.nets = nn.ModuleList(self._net(channels) for _ in fft_sizes)
        for n in fft_sizes:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    @staticmethod
    def _net(channels: int) -> nn.ModuleList:
        return nn.ModuleList(
            [
                spectral_norm(nn.Conv2d(1, channels, (3, 9), padding=(1, 4))),
                spectral_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4))),
                spectral_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4))),
                spectral_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1))),
            ]
        )

    def forward(self, audio: Tensor) -> list[tuple[Tensor, list[Tensor]]]:
        results = []
        for n, net in zip(self.fft_sizes, self.nets, strict=True):
            window = getattr(self, f"window_{n}")
            spec = torch.stft(audio, n, n // 4, window=window, return_complex=True)
            x = spec.abs().clamp_min(1e-5).log().unsqueeze(1)  # [B, 1, F, T]
            features = []
            *hidden, last = list(net)  # type: ignore[call-overload]
            for layer in hidden:
                x = F.leaky_relu(layer(x), 0.2)
                features.append(x)
            results.append((last(x).flatten(1), features))
        return results
