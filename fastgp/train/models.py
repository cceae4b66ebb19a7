"""Networks of the reference trainer (``model.name``).

- ``mlp``: the 2-D pair of the zero-centred-GP paper (Thanh-Tung et al. 2019): G and D are MLPs
  with ``model.depth`` hidden layers (2 by default; the paper's code builds 3) of ``model.hidden``
  units; the activation is an option.
- ``mlp-gan``: the generalization paper's MLP GAN for images of any size: G maps the noise through
  128 → 256 → 512 → 1024 units (each Linear followed by batch norm and LeakyReLU 0.2; with
  ``model.g_norm=none`` without the batch norm, so that the scale of z reaches the output and G must
  absorb it in its weights, the setting of the noise-bound argument) to one tanh output per pixel,
  reshaped to the image; D flattens the image and maps it through 512 → 256
  units (LeakyReLU 0.2) to one logit. D takes image-shaped input [B, C, H, W] so that augmentations
  of D's input see images.
- ``dcgan``, for 32×32: G projects the noise to 4×4 and doubles the resolution three times with
  transposed convolutions (batch norm and ReLU, tanh output); D halves it three times with strided
  convolutions and LeakyReLU 0.2.
- ``resnet``, for 32×32: the SNGAN / GAN_stability residual pair at a small width. G: noise → 4×4,
  three up-sampling blocks (batch norm, ReLU, nearest ×2, 3×3 convolutions, 1×1 shortcut), batch
  norm, ReLU, a 3×3 convolution and tanh; D: four blocks (3×3 convolutions with ReLU, the first
  two halving the resolution by average pooling), ReLU, a sum over positions and a linear logit.

The encoder of the latent-path penalty (``regularizers.penalty.path: latent``, ``encoder``) is
D's architecture with ``noise.dim`` outputs instead of one logit: it reads what D reads.

No discriminator has batch norm: a gradient penalty is per sample, and batch norm in D would mix
the samples of a batch.
"""

from __future__ import annotations

import math

from torch import nn

from .config import flatten, model_name

MLP_GAN_G_WIDTHS = (128, 256, 512, 1024)
MLP_GAN_D_WIDTHS = (512, 256)


def mlp(in_dim: int, hidden: int, out_dim: int, activation: str, depth: int = 2) -> nn.Sequential:
    """``depth`` hidden layers of ``hidden`` units (Linear + activation), then a Linear to ``out_dim``."""

    def act():
        return nn.ReLU() if activation == "relu" else nn.LeakyReLU(0.2)

    layers, width = [], in_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), act()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, out_dim))


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


def dcgan_discriminator(in_channels: int, channels: int, out_dim: int = 1) -> nn.Sequential:
    c = channels
    return nn.Sequential(
        nn.Conv2d(in_channels, c, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(c, 2 * c, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(2 * c, 4 * c, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(4 * c * 4 * 4, out_dim),
    )


class MLPGANGenerator(nn.Module):
    def __init__(self, z_dim: int, image_shape: tuple, norm: str = "batch"):
        super().__init__()
        self.image_shape = tuple(image_shape)
        layers, width = [], z_dim
        for out in MLP_GAN_G_WIDTHS:
            layers += [nn.Linear(width, out), *([nn.BatchNorm1d(out)] if norm == "batch" else []), nn.LeakyReLU(0.2)]
            width = out
        self.net = nn.Sequential(*layers, nn.Linear(width, math.prod(image_shape)), nn.Tanh())

    def forward(self, z):
        return self.net(z).view(z.shape[0], *self.image_shape)


def mlp_gan_discriminator(image_shape: tuple, out_dim: int = 1) -> nn.Sequential:
    layers, width = [nn.Flatten()], math.prod(image_shape)
    for out in MLP_GAN_D_WIDTHS:
        layers += [nn.Linear(width, out), nn.LeakyReLU(0.2)]
        width = out
    return nn.Sequential(*layers, nn.Linear(width, out_dim))


class ResBlockUp(nn.Module):
    """G's block: (BN, ReLU, nearest ×2, conv 3×3, BN, ReLU, conv 3×3) + (conv 1×1, nearest ×2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(), nn.Upsample(scale_factor=2), nn.Conv2d(cin, cout, 3, padding=1),
            nn.BatchNorm2d(cout), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1),
        )
        # 1×1 convolution before the nearest up-sampling: the same linear map at a quarter of the cost.
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.Upsample(scale_factor=2))

    def forward(self, x):
        return self.residual(x) + self.shortcut(x)


class ResBlockDown(nn.Module):
    """D's block: ([ReLU,] conv 3×3, ReLU, conv 3×3[, avg-pool /2]) + ([avg-pool /2,] conv 1×1 if needed).
    The first block takes the image itself, so it starts with a convolution rather than a ReLU
    (SNGAN's "optimized" block)."""

    def __init__(self, cin: int, cout: int, down: bool, first: bool = False):
        super().__init__()
        pool = [nn.AvgPool2d(2)] if down else []
        self.residual = nn.Sequential(
            *([] if first else [nn.ReLU()]), nn.Conv2d(cin, cout, 3, padding=1),
            nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), *pool,
        )
        # The shortcut pools before its 1×1 convolution (4× cheaper, the same linear map).
        self.shortcut = nn.Sequential(*pool, nn.Conv2d(cin, cout, 1)) if down or cin != cout else nn.Identity()

    def forward(self, x):
        return self.residual(x) + self.shortcut(x)


class ResNetGenerator(nn.Module):
    def __init__(self, z_dim: int, channels: int, out_channels: int):
        super().__init__()
        self.c = channels
        self.project = nn.Linear(z_dim, channels * 4 * 4)
        self.body = nn.Sequential(
            ResBlockUp(channels, channels), ResBlockUp(channels, channels), ResBlockUp(channels, channels),
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, out_channels, 3, padding=1), nn.Tanh(),
        )

    def forward(self, z):
        return self.body(self.project(z).view(z.shape[0], self.c, 4, 4))


class ResNetDiscriminator(nn.Module):
    def __init__(self, in_channels: int, channels: int, out_dim: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            ResBlockDown(in_channels, channels, down=True, first=True), ResBlockDown(channels, channels, down=True),
            ResBlockDown(channels, channels, down=False), ResBlockDown(channels, channels, down=False), nn.ReLU(),
        )
        self.head = nn.Linear(channels, out_dim)

    def forward(self, x):
        return self.head(self.body(x).sum((2, 3)))


def build(cfg: dict, data_shape: tuple) -> tuple[nn.Module, nn.Module]:
    """(G, D) for a resolved config: G maps noise [B, noise.dim] to [B, *data_shape], D to logits [B, 1]."""
    m, z_dim = cfg["model"], cfg["noise"]["dim"]
    name = model_name(flatten(cfg))
    if name == "mlp":
        return (mlp(z_dim, m["hidden"], data_shape[0], m["activation"], m["depth"]),
                mlp(data_shape[0], m["hidden"], 1, m["activation"], m["depth"]))
    if name == "mlp-gan":
        return MLPGANGenerator(z_dim, data_shape, m["g_norm"]), mlp_gan_discriminator(data_shape)
    if name == "resnet":
        return ResNetGenerator(z_dim, m["channels"], data_shape[0]), ResNetDiscriminator(data_shape[0], m["channels"])
    return DCGANGenerator(z_dim, m["channels"], data_shape[0]), dcgan_discriminator(data_shape[0], m["channels"])


def encoder(cfg: dict, data_shape: tuple) -> nn.Module:
    """E for the latent-path penalty: D's architecture for this config, mapping [B, *data_shape]
    to latent codes [B, noise.dim]."""
    m, z_dim = cfg["model"], cfg["noise"]["dim"]
    name = model_name(flatten(cfg))
    if name == "mlp":
        return mlp(data_shape[0], m["hidden"], z_dim, m["activation"], m["depth"])
    if name == "mlp-gan":
        return mlp_gan_discriminator(data_shape, z_dim)
    if name == "resnet":
        return ResNetDiscriminator(data_shape[0], m["channels"], z_dim)
    return dcgan_discriminator(data_shape[0], m["channels"], z_dim)
