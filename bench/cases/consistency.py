"""Benchmark cases of the consistency-regularization family (float32, on the CPU or a CUDA GPU).

  cr-augment    the CR papers' augmentation T (horizontal flip with probability ½, then a
                reflect-padded translation by up to 1/8 of the size), forward only — in a D step
                T is applied to the reals and the detached fakes, which need no gradient:
                fastgp.consistency.cr_augment (one translate kernel) vs PyTorch-StudioGAN's
                pure-PyTorch ``apply_cr_aug`` as users run it (boolean-mask flip, reflect pad,
                meshgrid index gather), written out below from its algorithm
  bcr-d-loss    a whole bCR discriminator loss on a DCGAN-style 32×32 D (the penalty family's):
                D(real), D(fake), non-saturating loss + λ_real·MSE(D(x), D(T(x))) + λ_fake·the same
                on the fakes (λ = 10), backward into D: fastgp.consistency_penalty vs the same term
                with StudioGAN's augmentation; also reports the augmentation's share of the step

Every setup first checks, from the same seed, that fastgp returns the baseline's values (the
augmented images bit for bit; the loss and D's gradient within float32 rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.cases._same import assert_same
from bench.cases.penalty import make_discriminator
from bench.harness import Case, Setup, Unsupported

FLOAT_BYTES = 4
CR_WEIGHT = 10.0  # λ_real = λ_fake = 10 (Zhao et al., AAAI 2021; StudioGAN's configs)


def _fastgp_consistency():
    try:
        import fastgp.consistency as consistency
    except Exception as error:  # pragma: no cover - reported in the table
        return Unsupported(f"import fastgp.consistency failed ({type(error).__name__}: {error})", "unavailable")
    return consistency


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def studiogan_cr_augment(x: torch.Tensor) -> torch.Tensor:
    """PyTorch-StudioGAN's CR augmentation (``src/utils/cr.py``: ``apply_cr_aug``, later renamed
    ``apply_diffaug4cr``), the algorithm as it runs there, written out here:

    flip: B uniforms drawn on the CPU (the global generator), a per-image boolean mask expanded to
    the batch's full shape and moved to x's device, and the chosen images copied flipped into a
    clone through boolean indexing; translation: integer shifts uniform in
    [−int(H/8), int(H/8)] × [−int(W/8), int(W/8)] drawn on x's device, the batch reflect-padded by
    the largest shift, and every pixel gathered with int64 (batch, row, column) index grids from
    ``meshgrid``, channels last; the result made contiguous.
    """
    n, c, h, w = x.shape
    uniforms = torch.empty(n, 1).uniform_(0.0, 1.0)
    mask = (uniforms < 0.5).view(n, 1, 1, 1).repeat(1, c, h, w).to(x.device)
    flipped = x.clone()
    flipped[mask] = torch.flip(x[mask].view(-1, c, h, w), [3]).view(-1)

    max_h, max_w = int(h * (1 / 8)), int(w * (1 / 8))
    shift_h = torch.randint(-max_h, max_h + 1, size=[n, 1, 1], device=x.device)
    shift_w = torch.randint(-max_w, max_w + 1, size=[n, 1, 1], device=x.device)
    grid_b, grid_h, grid_w = torch.meshgrid(
        torch.arange(n, dtype=torch.long, device=x.device),
        torch.arange(h, dtype=torch.long, device=x.device),
        torch.arange(w, dtype=torch.long, device=x.device),
        indexing="ij",
    )
    padded = F.pad(flipped, [max_w, max_w, max_h, max_h], mode="reflect")
    rows, cols = grid_h + shift_h + max_h, grid_w + shift_w + max_w
    return padded.permute(0, 2, 3, 1).contiguous()[grid_b, rows, cols].permute(0, 3, 1, 2).contiguous()


def _cr_augment_case(shape) -> Case:
    def setup(device: torch.device) -> Setup:
        g = torch.Generator().manual_seed(0)  # drawn on the CPU: the same images on every device
        x = torch.randn(shape, generator=g).to(device)
        consistency = _fastgp_consistency()
        if not isinstance(consistency, Unsupported):
            # Both draw from the default generators (CPU flips, shifts on x's device), as StudioGAN.
            torch.manual_seed(7)
            expected = studiogan_cr_augment(x)
            torch.manual_seed(7)
            assert_same("cr_augment vs apply_cr_aug", consistency.cr_augment(x), expected, exact=True)
        compiled = torch.compile(studiogan_cr_augment, dynamic=False)
        contenders = {
            "fastgp": consistency if isinstance(consistency, Unsupported) else lambda: consistency.cr_augment(x),
            "reference": lambda: studiogan_cr_augment(x),
            "compile": lambda: compiled(x),
        }
        return Setup(
            contenders,
            copy_bytes=2 * _numel(shape) * FLOAT_BYTES,
            notes=["copy-roofline is a plain copy of the batch's bytes (read + write); reference = "
                   "PyTorch-StudioGAN's apply_cr_aug algorithm (boolean-mask flip + reflect-padded index gather)"],
        )

    return Case(
        "cr-augment",
        "×".join(map(str, shape)),
        setup,
        "CR augmentation T (flip p=½ + reflect-padded translation ≤ 1/8), forward: "
        "cr_augment vs StudioGAN's apply_cr_aug",
    )


def reference_bcr(D, real, fake, real_logits, fake_logits):
    """bCR as PyTorch-StudioGAN's worker computes it: T(reals), then T(fakes) (apply_cr_aug each),
    λ_real·MSELoss(D(x), D(T(x))) + λ_fake·MSELoss(D(G(z)), D(T(G(z))))."""
    real_aug = studiogan_cr_augment(real)
    fake_aug = studiogan_cr_augment(fake)
    return CR_WEIGHT * F.mse_loss(real_logits, D(real_aug)) + CR_WEIGHT * F.mse_loss(fake_logits, D(fake_aug))


def _bcr_case(batch: int) -> Case:
    def setup(device: torch.device) -> Setup:
        torch.manual_seed(0)
        D = make_discriminator().to(device)
        g = torch.Generator().manual_seed(1)  # drawn on the CPU: the same images on every device
        real = torch.randn(batch, 3, 32, 32, generator=g).to(device)
        fake = torch.randn(batch, 3, 32, 32, generator=g).to(device)  # stands for G(z).detach()
        params = list(D.parameters())

        def d_loss_with(bcr):
            def call():
                for p in params:
                    p.grad = None
                real_logits, fake_logits = D(real), D(fake)
                loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
                loss = loss + bcr(real_logits, fake_logits)
                loss.backward()
                return loss

            return call

        consistency = _fastgp_consistency()
        compiled = torch.compile(reference_bcr, dynamic=False)
        contenders = {
            "reference": d_loss_with(lambda rl, fl: reference_bcr(D, real, fake, rl, fl)),
            "compile": d_loss_with(lambda rl, fl: compiled(D, real, fake, rl, fl)),
        }
        parts = {"reference.augment": lambda: (studiogan_cr_augment(real), studiogan_cr_augment(fake))}
        if isinstance(consistency, Unsupported):
            contenders["fastgp"] = consistency
        else:
            contenders["fastgp"] = d_loss_with(
                lambda rl, fl: consistency.consistency_penalty(
                    D, real, fake, real_logits=rl, fake_logits=fl, weight=CR_WEIGHT
                )
            )
            parts["fastgp.augment"] = lambda: (consistency.cr_augment(real), consistency.cr_augment(fake))
            torch.manual_seed(7)
            expected = contenders["reference"]()
            expected_grad = params[0].grad.clone()
            torch.manual_seed(7)
            got = contenders["fastgp"]()
            assert_same("bCR D loss vs StudioGAN's", (got, params[0].grad), (expected, expected_grad), rtol=1e-4, atol=1e-6)

        def derive(m: dict[str, float]) -> dict:
            out: dict = {"markdown": []}
            texts = []
            for who in ("reference", "fastgp"):
                if who in m and f"{who}.augment" in m:
                    out[f"{who}_augment_ms"] = m[f"{who}.augment"]
                    out[f"{who}_augment_share"] = m[f"{who}.augment"] / m[who]
                    texts.append(f"{who} {m[f'{who}.augment']:.3g} ms = {100 * out[f'{who}_augment_share']:.1f}%")
            if texts:
                out["markdown"].append(
                    "time share of the augmentation T (reals + fakes, timed separately in the same "
                    "alternating loop) in the bCR D loss: " + "; ".join(texts)
                )
            return out

        notes = [
            "one call: D(real), D(fake), non-saturating loss + bCR (two more D forwards on T(real), "
            "T(fake)), backward into D (no optimizer step); compile = torch.compile of the bCR term "
            "function (StudioGAN's augmentation, D, MSE), the rest eager",
            "copy-roofline moves the augmentation's own minimal traffic (read + write of reals and fakes)",
        ]
        copy_bytes = 2 * 2 * _numel(real.shape) * FLOAT_BYTES
        return Setup(contenders, copy_bytes=copy_bytes, parts=parts, notes=notes, derive=derive)

    return Case(
        "bcr-d-loss",
        f"B={batch}, 3×32×32",
        setup,
        "whole bCR D loss (DCGAN-style D, fwd + bwd): consistency_penalty vs StudioGAN's augmentation + MSE",
    )


def cases() -> list[Case]:
    return [
        _cr_augment_case((64, 3, 32, 32)),
        _cr_augment_case((64, 3, 64, 64)),
        _bcr_case(64),
    ]
