"""A Real-ESRGAN/BasicSR-style super-resolution GAN as a client of fastgp: the one-line swap of the
legacy spectral norm.

BasicSR's ``UNetDiscriminatorSN`` (``basicsr/archs/discriminator_arch.py``, the discriminator of
Real-ESRGAN) wraps its convolutions in the LEGACY ``torch.nn.utils.spectral_norm`` (the forward
pre-hook that keeps ``weight_orig``, ``weight_u``, ``weight_v``): a plain first conv, three SN convs of
stride 2 down, three SN convs on the way up after bilinear ×2 upsampling, each added to the skip of the
same resolution, two extra SN convs and a plain conv to one logit per pixel; leaky ReLU 0.2 throughout.
Real-ESRGAN's ``optimize_parameters`` trains it against the generator in this order: a G step (D
frozen; L1 pixel loss + weighted vanilla GAN loss, BasicSR's ``GANLoss`` with ``gan_type='vanilla'``:
BCE-with-logits against a map of ones), then a D step (BCE of D(HR) against ones and of D(SR).detach()
against zeros, backpropagated one after the other), Adam for both. This file re-creates that at toy
scale — our own code, written from that structure and those formulas: 16×16 HR images of smooth
random colour blobs, their 8×8 average-pooled LR inputs, a generator of three convs + pixel shuffle ×2
(plus the bilinear upsampled input), D with ``num_feat=8`` — and swaps ONE line: the discriminator's
``norm`` becomes ``fastgp.nn.utils.spectral_norm`` (``FastgpUNetDiscriminatorSN``). Everything else,
including the checkpoint format and the ``weight_orig`` attributes, is shared.

    python examples/sr_client.py --steps 200

trains both from the same seed (float64 by default) and prints step 0's losses and D gradients side
by side, the largest difference of the loss curves over the run, and the time per step of each.
tests/test_examples_sr.py runs it on a small budget.

What it showed (2-core CPU, busy, one thread, float64, seed 0, 200 steps): step 0's losses equal to
all printed digits and D gradients to 1.1e-15 (relative); the curves (l_g_pix, l_g_gan, l_d_real,
l_d_fake per step) agree to 3e-16 over the first 20 steps, 6e-14 by step 50 and 1.5e-13 over all 200
(the pixel loss falls from 0.071 to under 0.01): the same computation up to rounding (fastgp's fused
W/σ and its backward round differently from autograd's ops), not bit for bit. Time per step: BasicSR-style 34.0 ms,
fastgp SN 36.6 ms. At this toy width (num_feat = 8, weights of at most 64 × 576) there is nothing
for the fused power iteration to save, and the hook's overhead shows: 2.6 ms a step over 8 SN convs ×
3 D forwards (and their backwards), about 0.1 ms each; at BasicSR's width (num_feat = 64) the README's measurement of
these 8 convs (``python -m bench spectral -k sn-legacy``) has fastgp's hook 1.72× torch's.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional as F

import fastgp.nn.utils

if __package__:
    from . import _client_compare
else:  # run as a script: python examples/sr_client.py
    import _client_compare

C, HR, SCALE = 3, 16, 2


# ------------------------------------------------------------------------------------------
# The client's code: data, networks, Real-ESRGAN's objective and step order
# ------------------------------------------------------------------------------------------


def blobs(n: int, seed: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """n pairs (HR [n, 3, 16, 16] in [0, 1], LR [n, 3, 8, 8]): three Gaussian blobs of random colour,
    place and width per image; LR is HR average-pooled ×2 (BasicSR degrades with bicubic; any fixed
    downsampling serves a toy)."""
    g = torch.Generator().manual_seed(seed)
    k = 3
    centre = torch.rand(n, k, 2, generator=g, dtype=dtype) * HR
    width = 1.5 + 2.5 * torch.rand(n, k, 1, 1, generator=g, dtype=dtype)
    colour = torch.rand(n, k, C, generator=g, dtype=dtype)
    grid = torch.arange(HR, dtype=dtype) + 0.5
    dy = grid.view(1, 1, HR, 1) - centre[..., 0, None, None]
    dx = grid.view(1, 1, 1, HR) - centre[..., 1, None, None]
    d2 = dy**2 + dx**2
    blob = torch.exp(-d2 / (2 * width**2))  # [n, k, H, W]
    hr = torch.einsum("nkhw,nkc->nchw", blob, colour).clamp(0, 1)
    return hr, F.avg_pool2d(hr, SCALE)


class Generator(nn.Module):
    """A tiny SR generator: features of the LR image, pixel shuffle ×2, added to its bilinear upsampling."""

    def __init__(self, feat: int = 16):
        super().__init__()
        self.head = nn.Conv2d(C, feat, 3, padding=1)
        self.body = nn.Conv2d(feat, feat, 3, padding=1)
        self.up = nn.Conv2d(feat, C * SCALE**2, 3, padding=1)

    def forward(self, lr):
        h = F.leaky_relu(self.head(lr), 0.2)
        h = F.leaky_relu(self.body(h), 0.2) + h
        base = F.interpolate(lr, scale_factor=SCALE, mode="bilinear", align_corners=False)
        return base + F.pixel_shuffle(self.up(h), SCALE)


class UNetDiscriminatorSN(nn.Module):
    """BasicSR's U-Net discriminator with (legacy) spectral norm, layer for layer; logits [B, 1, H, W]."""

    norm = staticmethod(torch.nn.utils.spectral_norm)

    def __init__(self, num_in_ch: int = C, num_feat: int = 8, skip_connection: bool = True):
        super().__init__()
        self.skip_connection = skip_connection
        norm, f = self.norm, num_feat
        self.conv0 = nn.Conv2d(num_in_ch, f, 3, 1, 1)  # the only SN-free conv besides the last
        self.conv1 = norm(nn.Conv2d(f, 2 * f, 4, 2, 1, bias=False))  # down: H/2
        self.conv2 = norm(nn.Conv2d(2 * f, 4 * f, 4, 2, 1, bias=False))  # H/4
        self.conv3 = norm(nn.Conv2d(4 * f, 8 * f, 4, 2, 1, bias=False))  # H/8
        self.conv4 = norm(nn.Conv2d(8 * f, 4 * f, 3, 1, 1, bias=False))  # up, at H/4
        self.conv5 = norm(nn.Conv2d(4 * f, 2 * f, 3, 1, 1, bias=False))  # at H/2
        self.conv6 = norm(nn.Conv2d(2 * f, f, 3, 1, 1, bias=False))  # at H
        self.conv7 = norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv8 = norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, x):
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        h = x3
        for conv, skip in ((self.conv4, x2), (self.conv5, x1), (self.conv6, x0)):
            h = act(conv(up(h)))
            if self.skip_connection:
                h = h + skip
        h = act(self.conv8(act(self.conv7(h))))
        return self.conv9(h)


def vanilla_gan_loss(logits, target_is_real: bool):
    """BasicSR's ``GANLoss(gan_type='vanilla')``: BCE-with-logits against a map of ones or zeros."""
    target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


# ------------------------------------------------------------------------------------------
# The swap: one line, the discriminator's spectral norm (the rest of the client is unchanged)
# ------------------------------------------------------------------------------------------


class FastgpUNetDiscriminatorSN(UNetDiscriminatorSN):
    norm = staticmethod(fastgp.nn.utils.spectral_norm)


# ------------------------------------------------------------------------------------------
# The loop (Real-ESRGAN's optimize_parameters: G step with D frozen, then D step)
# ------------------------------------------------------------------------------------------


def train(discriminator_cls, steps: int, seed: int = 0, batch: int = 8, gan_weight: float = 0.1,
          dtype=torch.float32, images: int = 256):
    """Train from ``seed``; returns (history, step-0 D gradients, seconds per step, D). ``history`` has
    one (l_g_pix, l_g_gan, l_d_real, l_d_fake) row per step."""
    hr_all, lr_all = blobs(images, seed, dtype)
    torch.manual_seed(seed)
    G, D = Generator().to(dtype), discriminator_cls().to(dtype)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.9, 0.99))
    g = torch.Generator().manual_seed(seed + 1)
    history, first_grads = [], None
    start = time.perf_counter()
    for step in range(steps):
        i = torch.randint(0, images, (batch,), generator=g)
        hr, lr = hr_all[i], lr_all[i]
        # G step: D frozen (its SN hooks still run their power iteration: D is in training mode)
        D.requires_grad_(False)
        opt_g.zero_grad(set_to_none=True)
        sr = G(lr)
        l_g_pix = F.l1_loss(sr, hr)
        l_g_gan = gan_weight * vanilla_gan_loss(D(sr), True)
        (l_g_pix + l_g_gan).backward()
        opt_g.step()
        # D step: real and fake backpropagated one after the other, as Real-ESRGAN does
        D.requires_grad_(True)
        opt_d.zero_grad(set_to_none=True)
        l_d_real = vanilla_gan_loss(D(hr), True)
        l_d_real.backward()
        l_d_fake = vanilla_gan_loss(D(sr.detach().clone()), False)
        l_d_fake.backward()
        if step == 0:
            first_grads = [p.grad.clone() for p in D.parameters()]
        opt_d.step()
        history.append([float(t.detach()) for t in (l_g_pix, l_g_gan, l_d_real, l_d_fake)])
    seconds = (time.perf_counter() - start) / max(steps, 1)
    return torch.tensor(history, dtype=torch.float64), first_grads, seconds, D


def compare(steps: int, seed: int = 0, dtype=torch.float32) -> dict:
    ref = train(UNetDiscriminatorSN, steps, seed, dtype=dtype)
    ours = train(FastgpUNetDiscriminatorSN, steps, seed, dtype=dtype)
    return {**_client_compare.summarize(ref[:3], ours[:3]), "reference_D": ref[3], "fastgp_D": ours[3]}


def main(argv=None) -> None:
    _client_compare.main(argv, description=__doc__.splitlines()[0], compare=compare,
                         columns="l_g_pix, l_g_gan, l_d_real, l_d_fake", names=("BasicSR-style", "fastgp SN"),
                         dtype_help="float64 (default): the curves agree to ~1e-13 over hundreds of steps; in "
                                    "float32 rounding differences grow with the GAN's dynamics sooner")


if __name__ == "__main__":
    main()
