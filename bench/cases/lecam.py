"""Benchmark cases of the LeCam family (float32, on the CPU or a CUDA GPU).

  lecam   one D step's LeCam term, B = 64 real and 64 fake logits: update the anchors from the
          batch means, then λ·(mean(ReLU(D(x) − α_F)²) + mean(ReLU(α_R − D(G(z)))²)), forward +
          backward into the logits. fastgp.LeCam vs the authors' code (google/lecam-gan: the
          ``ema_losses`` class fed ``torch.mean(...).item()`` and ``lecam_reg``), written out below.

A parity case, not a kernel: both are a handful of elementwise ops and two means over [B] logits,
nothing next to D's forward and backward. What differs is the bookkeeping: the authors move each
batch mean to a Python float with ``.item()`` (a host synchronization per mean on a GPU), fastgp
keeps the anchors as float64 tensors on the logits' device and validates its arguments. The setup
first checks that both return the same penalty and logit gradients over a few steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.cases._same import assert_same
from bench.harness import Case, Setup, Unsupported

WEIGHT = 0.3  # --LC 0.3, the authors' BigGAN CIFAR scripts
DECAY = 0.99
START = 0
STEP = 2000  # past the start: the anchors average with DECAY and the penalty applies
INIT = 0.0  # anchors near the logits, so both ReLUs are partly active (the authors start from 1000)


class AuthorsAnchors:
    """The authors' ``ema_losses``: Python-float anchors, decay 0 before ``start``, updated from
    ``torch.mean(logits).item()`` (google/lecam-gan, third_party/utils.py)."""

    def __init__(self, init: float = INIT, decay: float = DECAY, start: int = START):
        self.real, self.fake, self.decay, self.start = init, init, decay, start

    def update(self, real_mean: float, fake_mean: float, step: int) -> None:
        decay = 0.0 if step < self.start else self.decay
        self.real = self.real * decay + real_mean * (1 - decay)
        self.fake = self.fake * decay + fake_mean * (1 - decay)


def authors_lecam(anchors: AuthorsAnchors, real_logits: torch.Tensor, fake_logits: torch.Tensor, step: int):
    """The hinge loss's anchor update, then λ·``lecam_reg`` (google/lecam-gan, biggan_cifar/losses.py)."""
    anchors.update(torch.mean(real_logits).item(), torch.mean(fake_logits).item(), step)
    reg = torch.mean(F.relu(real_logits - anchors.fake).pow(2)) + torch.mean(F.relu(anchors.real - fake_logits).pow(2))
    return WEIGHT * reg


def _lecam_case(batch: int) -> Case:
    def setup(device: torch.device) -> Setup:
        g = torch.Generator().manual_seed(0)  # drawn on the CPU: the same data on every device
        real_logits = (torch.randn(batch, 1, generator=g) + 1).to(device).requires_grad_(True)
        fake_logits = (torch.randn(batch, 1, generator=g) - 1).to(device).requires_grad_(True)

        def run(fn):
            def call():
                real_logits.grad = fake_logits.grad = None
                loss = fn(real_logits, fake_logits, STEP)
                loss.backward()
                return loss

            return call

        def authors():
            anchors = AuthorsAnchors()
            return lambda r, f, step: authors_lecam(anchors, r, f, step)

        ours, unavailable = None, None
        try:
            import fastgp

            def ours():
                return fastgp.LeCam(weight=WEIGHT, decay=DECAY, start=START, init=INIT)
        except Exception as error:  # pragma: no cover - shown in the table
            unavailable = Unsupported(f"import fastgp failed ({type(error).__name__}: {error})", "unavailable")
        compiled_anchors = AuthorsAnchors()
        compiled = torch.compile(lambda r, f, step: authors_lecam(compiled_anchors, r, f, step), dynamic=False)
        contenders = {
            "fastgp": unavailable if ours is None else run(ours()),
            "reference": run(authors()),
            "compile": run(compiled),
        }
        if ours is not None:
            ref_call, our_call = run(authors()), run(ours())  # fresh anchors, stepped alike
            for _ in range(3):
                expected = (ref_call().detach(), real_logits.grad.clone(), fake_logits.grad.clone())
                got = (our_call().detach(), real_logits.grad.clone(), fake_logits.grad.clone())
                assert_same("LeCam vs the authors' ema_losses + lecam_reg", got, expected)
        # At the least: read both logit vectors, write both gradients.
        return Setup(contenders, copy_bytes=4 * batch * 4, notes=[
            "parity case: a few elementwise ops on [B] logits; the authors' code calls .item() twice "
            "per step (a host synchronization on a GPU), fastgp keeps float64 anchors on the device",
        ])

    return Case(
        "lecam",
        f"B={batch}",
        setup,
        "LeCam term (anchor update + penalty), fwd + bwd into the logits: fastgp.LeCam vs the authors' code",
    )


def cases() -> list[Case]:
    return [_lecam_case(64)]
