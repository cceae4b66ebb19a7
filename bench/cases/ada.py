"""Benchmark cases of the adaptive-augmentation family (float32, on the CPU or a CUDA GPU).

  gate   ADA's per-sample gating at p = 0.5, forward + ``out.backward(grad)`` (the augmented fakes
         of G's step carry gradients): fastgp.ada.random_apply(x, p, words) — each DiffAugment word
         by fastgp's fused kernels, then one U(0, 1) per sample and ``torch.where`` — vs the same
         gate written in plain torch around DiffAugment's own word functions (the original
         ``DiffAugment_pytorch.py`` functions, ``fastgp.reference.augment``), as users combine
         DiffAugment with an ADA-style probability today. Words ``translation,cutout`` and
         ``color``.

Every setup first checks, from the same seed, that fastgp returns the baseline's images and input
gradient (within float32 rounding: the colour words take means).
"""

from __future__ import annotations

import torch

from bench.cases._same import assert_same
from bench.harness import Case, Setup, Unsupported
from fastgp.reference import augment as ref

FLOAT_BYTES = 4
P = 0.5


def reference_random_apply(x: torch.Tensor, p: float, policy: str) -> torch.Tensor:
    """Per word: DiffAugment's word on the whole batch, then one uniform per sample; the augmented
    image where it is below p, the input image elsewhere (ADA's per-transform, per-sample gate)."""
    for word in policy.split(","):
        augmented = ref.diff_augment(x, word)
        drawn = torch.rand(x.shape[0], device=x.device) < p
        x = torch.where(drawn.view(-1, 1, 1, 1), augmented, x)
    return x


def _gate_case(shape, policy: str) -> Case:
    def setup(device: torch.device) -> Setup:
        g = torch.Generator().manual_seed(0)  # drawn on the CPU: the same data on every device
        x = torch.randn(shape, generator=g).to(device).requires_grad_(True)
        grad = torch.randn(shape, generator=g).to(device)
        try:
            from fastgp.ada import random_apply
        except Exception as error:  # pragma: no cover - reported in the table
            random_apply = Unsupported(f"import fastgp.ada failed ({type(error).__name__}: {error})", "unavailable")

        def run(fn):
            def call():
                x.grad = None
                out = fn(x)
                out.backward(grad)
                return out

            return call

        compiled = torch.compile(lambda t: reference_random_apply(t, P, policy), dynamic=False)
        contenders = {
            "reference": run(lambda t: reference_random_apply(t, P, policy)),
            "compile": run(compiled),
        }
        if isinstance(random_apply, Unsupported):
            contenders["fastgp"] = random_apply
        else:
            contenders["fastgp"] = run(lambda t: random_apply(t, P, policy))
            # Same default-generator stream: each word's draws, then B uniforms, word after word.
            torch.manual_seed(7)
            expected = contenders["reference"]().detach()
            expected_grad = x.grad.clone()
            torch.manual_seed(7)
            got = contenders["fastgp"]().detach()
            assert_same(f"random_apply({policy!r}) vs plain-torch gate", (got, x.grad), (expected, expected_grad))
        nbytes = 1
        for s in shape:
            nbytes *= s
        nbytes *= FLOAT_BYTES
        words = len(policy.split(","))
        return Setup(
            contenders,
            copy_bytes=4 * nbytes * words,
            notes=[f"copy-roofline moves 4× the batch's bytes per word ({words}: fwd + bwd)"],
        )

    return Case(
        "gate",
        f"{'×'.join(map(str, shape))}, {policy}",
        setup,
        f"ADA gate p={P}: random_apply(x, p, {policy!r}) fwd + bwd vs a plain-torch per-sample gate around DiffAugment",
    )


def cases() -> list[Case]:
    return [
        _gate_case((64, 3, 32, 32), "translation,cutout"),
        _gate_case((64, 3, 32, 32), "color"),
        _gate_case((64, 3, 64, 64), "translation,cutout"),
    ]
