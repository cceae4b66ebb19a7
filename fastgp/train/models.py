"""Networks of the reference trainer.

The 2-D pair is the zero-centred-GP paper's (Thanh-Tung et al. 2019): G and D are MLPs with two
hidden layers; the width and activation are options. The image pair is DCGAN-style for 32×32:
G projects the noise to 4×4 and doubles the resolution three times with transposed convolutions
(batch norm and ReLU, tanh output); D halves it three times with strided convolutions and
LeakyReLU 0.2, without batch norm — a gradient penalty is per sample, and batch norm in D would
mix the samples of a batch.
"""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, activation: str) -> nn.Sequential:
    def act():
        return nn.ReLU() if activation == "relu" else nn.LeakyReLU(0.2)

    return nn.Sequential(
        nn.Linear(in_dim, hidden), act(), nn.Linear(hidden, hidden), act(), nn.Linear(hidden, out_dim)
    )


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim: int, channels: int, out_channels: int):
        super().__init__()
        c = channels
        self.c = c
        self.project = nn.Sequential(nn.Linear(z_dim, 4 * c * 4 * 4), nn.BatchNorm1d(4 * c * 4 * 4), nn.ReLU())

        def up(cin, cout):
            return [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            *up(4 * c, 2 * c), *up(2 * c, c), nn.ConvTranspose2d(c, out_channels, 4, 2, 1), nn.Tanh()
        )

    def forward(self, z):
        return self.body(self.project(z).view(z.shape[0], 4 * self.c, 4, 4))


def dcgan_discriminator(in_channels: int, channels: int) -> nn.Sequential:
    c = channels
    return nn.Sequential(
        nn.Conv2d(in_channels, c, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(c, 2 * c, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(2 * c, 4 * c, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(4 * c * 4 * 4, 1),
    )


def build(cfg: dict, data_shape: tuple) -> tuple[nn.Module, nn.Module]:
    """(G, D) for a resolved config: G maps noise [B, noise.dim] to [B, *data_shape], D to logits [B, 1]."""
    m, z_dim = cfg["model"], cfg["noise"]["dim"]
    if len(data_shape) == 1:
        return mlp(z_dim, m["hidden"], data_shape[0], m["activation"]), mlp(data_shape[0], m["hidden"], 1, m["activation"])
    return DCGANGenerator(z_dim, m["channels"], data_shape[0]), dcgan_discriminator(data_shape[0], m["channels"])
