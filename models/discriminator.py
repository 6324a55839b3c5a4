"""The sequence-level discriminator and the adversarial losses.

The discriminator judges (live, accompaniment) latent sequences: a real accompaniment against
a generated one for the same live part, so it checks that the accompaniment fits what is
played, not only that it sounds like an accompaniment. Its negatives also include real
accompaniments beside a live part that is not theirs (another piece's, the same one shifted
in time, or transposed: models/train/generator_losses.py), in the spirit of contrastive
adversarial training: "sounds real" is not enough, it must fit. Stacks of dilated convs over
time at three scales give a logit per position: every window of the sequence is judged.

Loss choice: hinge, with spectral norm on the discriminator, plus feature matching for the
generator. Hinge stops pushing on samples the discriminator already classifies with a margin,
which keeps its gradients bounded on small batches; feature matching (L1 between the
discriminator's features of real and generated sequences for the same live part) gives the
generator a dense, stable signal. It compares features, not latents, so it does not pull the
generator to the mean the way a regression loss would.
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
    """Three scales whose receptive fields span about 17, 66 and 260 frames (0.4, 1.4 and
    5.5 s): a note's fit, a bar's, a phrase's. Scale s sees the sequence average-pooled by
    `pools[s]`."""

    def __init__(self, latent_dim: int, channels: int = 128, pools: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        self.pools = pools
        dilations = ((1, 2), (1, 2, 4), (1, 2, 4, 8))
        self.scales = nn.ModuleList(
            ScaleDiscriminator(2 * latent_dim, channels, d) for d in dilations[: len(pools)]
        )

    def forward(self, live: Tensor, accompaniment: Tensor) -> list[tuple[Tensor, list[Tensor]]]:
        """live, accompaniment: [B, L, D] (standardised latents, aligned in time)."""
        x = torch.cat([live, accompaniment], dim=-1).transpose(1, 2)  # [B, 2D, L]
        return [
            disc(x if pool == 1 else F.avg_pool1d(x, pool))
            for pool, disc in zip(self.pools, self.scales, strict=True)
        ]


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


def discriminator_negative_loss(fake: list[tuple[Tensor, list[Tensor]]]) -> Tensor:
    """Hinge on pairs that must be judged wrong (generated, or real but mismatched)."""
    return sum((F.relu(1 + f).mean() for f, _ in fake), torch.zeros(()))


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
