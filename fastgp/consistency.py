"""Consistency regularization of the discriminator: CR, balanced CR (bCR) and latent CR (zCR).

CR (Zhang, Zhang, Odena, Lee, "Consistency Regularization for Generative Adversarial Networks",
ICLR 2020) penalizes D's sensitivity to a semantics-preserving augmentation T of the reals:

    L_cr = λ · mean((D(x) − D(T(x)))²)

bCR and zCR (Zhao, Singh, Zhang, Lee, Odena, Zhang, "Improved Consistency Regularization for
GANs", AAAI 2021): bCR takes the same term on the fakes too (λ_real = λ_fake = 10); zCR perturbs
the latent, Δz ~ N(0, σ²I) (σ = 0.03), adds λ_dis · mean((D(G(z)) − D(G(z + Δz)))²) to D's loss
(λ_dis = 5) and −λ_gen · mean((G(z) − G(z + Δz))²) to G's loss (λ_gen = 0.5), so that D is
consistent in the latent while G is pushed to make z + Δz a visibly different image. ICR is bCR +
zCR. (PyTorch-StudioGAN's CIFAR-10 ICR configs use σ = 0.05 and λ_dis = 20 instead.)

Facts taken from the reference implementation, PyTorch-StudioGAN (POSTECH-CVLab,
``src/worker.py``, ``src/utils/cr.py``, ``src/utils/sample.py``):

- every squared difference is ``torch.nn.MSELoss()``: the mean over all elements (the batch of
  logits for the D terms, every pixel of every image for the G term), not a sum;
- no stop-gradient anywhere: both D(x) and D(T(x)) (and both G(z), G(z + Δz)) carry gradients.
  D(x) is the forward of D's main loss, reused; the fakes are whatever the caller gives (detached
  in a D step, as for D's loss);
- T of the CR paper (``apply_cr_aug``): a horizontal flip with probability ½, then a translation
  by an integer shift uniform in [−int(size/8), int(size/8)] per axis with reflect padding;
  :func:`cr_augment` makes the same random draws in the same order (``translate`` runs it);
- Δz = σ · ``torch.randn(B, dim)`` added to z.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from . import _checks, augment as _augment

CR_AUGMENT = "cr"


def cr_augment(x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """The CR paper's augmentation T: a horizontal flip with probability ½ per image, then a
    translation by integer shifts uniform in [−int(H/8), int(H/8)] × [−int(W/8), int(W/8)] with
    reflect padding (``fastgp.augment.translate``). Differentiable to any order.

    Seed for seed with PyTorch-StudioGAN's ``apply_cr_aug``: it draws B uniforms for the flips
    (``torch.FloatTensor(B, 1).uniform_()``, on the CPU), then the vertical and the horizontal
    shifts (one ``randint`` each, on x's device). With ``generator`` every draw comes from it
    (on its device); without one the flips come from the CPU default generator and the shifts
    from x's device, as the original's.

    Args:
        x: images [B, C, H, W] (floating).
        generator: a ``torch.Generator`` for reproducible draws.
    """
    _augment._check_image(x)
    _checks.generator(generator)
    batch, _, height, width = x.shape
    source = generator.device if generator is not None else torch.device("cpu")
    flip = torch.rand(batch, 1, generator=generator, device=source) < 0.5
    flip = flip.to(x.device).view(batch, 1, 1, 1)
    x = torch.where(flip, x.flip(3), x)
    # StudioGAN's max shift is int(size · 1/8), without DiffAugment's + 0.5 rounding.
    return _augment.translate(x, max_shift=(int(height / 8), int(width / 8)), padding="reflect", generator=generator)


def _augmentation(augment) -> Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]:
    """T as a function of (x, generator): "cr", a DiffAugment policy or the user's callable."""
    if callable(augment):
        return lambda x, generator: augment(x)
    if not isinstance(augment, str):
        raise TypeError(f"augment must be 'cr', a DiffAugment policy string or a callable, got {type(augment).__name__}")
    if augment == CR_AUGMENT:
        return lambda x, generator: cr_augment(x, generator=generator)
    words = augment.split(",") if augment else []
    if not words:
        raise ValueError("augment must not be empty: use 'cr', DiffAugment words or a callable")
    for word in words:
        if word not in _augment.POLICY_WORDS:
            raise ValueError(
                f"augment has an unknown word {word!r}; use 'cr' or comma-separated words of "
                + ", ".join(_augment.POLICY_WORDS)
            )
    return lambda x, generator: _augment.DiffAugment(x, augment, generator=generator)


def _logits_of(D, x: torch.Tensor, logits, name: str) -> torch.Tensor:
    if logits is None:
        return D(x)
    _checks.floating(logits, name)
    if logits.shape[0] != x.shape[0]:
        raise ValueError(f"{name} must hold one row per sample of the batch ({x.shape[0]}), got shape {tuple(logits.shape)}")
    return logits


def _consistency(D, x: torch.Tensor, logits: torch.Tensor, transform, generator, name: str) -> torch.Tensor:
    augmented = transform(x, generator)
    if not isinstance(augmented, torch.Tensor) or augmented.shape[0] != x.shape[0]:
        got = tuple(augmented.shape) if isinstance(augmented, torch.Tensor) else type(augmented).__name__
        raise ValueError(f"augment must return one augmented sample per sample of {name} ({x.shape[0]}), got {got}")
    augmented_logits = D(augmented)
    if augmented_logits.shape != logits.shape:
        raise ValueError(
            f"D's logits of the augmented {name} have shape {tuple(augmented_logits.shape)}, "
            f"{name}_logits {tuple(logits.shape)}: they must match"
        )
    return F.mse_loss(logits, augmented_logits)


def consistency_penalty(
    D: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor | None = None,
    *,
    real_logits: torch.Tensor | None = None,
    fake_logits: torch.Tensor | None = None,
    augment: str | Callable[[torch.Tensor], torch.Tensor] = CR_AUGMENT,
    weight: float = 10.0,
    fake_weight: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Consistency regularization of D: CR on the reals, and with ``fake`` given balanced CR.

        CR:  weight · mean((D(x) − D(T(x)))²)                                (Zhang et al., ICLR 2020)
        bCR: weight · mean((D(x) − D(T(x)))²) + fake_weight · mean((D(G(z)) − D(T(G(z))))²)
                                                                             (Zhao et al., AAAI 2021)

    The means run over every element of the logits (``MSELoss``, as PyTorch-StudioGAN); both
    branches carry gradients (no stop-gradient, as the original). Add the result to D's loss.

    Args:
        D: the discriminator, a callable from a batch to logits [N] or [N, ...].
        real: the real batch x (images [B, C, H, W] for ``"cr"`` and DiffAugment policies).
        fake: the fake batch G(z) for bCR (detach it in D's step, as for D's loss); None: CR only.
        real_logits: D(real) when already computed for D's loss (the original reuses that
            forward); computed here when None.
        fake_logits: D(fake) likewise, for bCR.
        augment: T — ``"cr"`` (:func:`cr_augment`, the papers' flip + translation), a DiffAugment
            policy (``"translation"``, ``"color,translation,cutout"``, ...; StudioGAN's
            ``diffaug`` option) or a callable returning one augmented sample per sample.
        weight: λ (CR) or λ_real (bCR), >= 0; the papers use 10.
        fake_weight: λ_fake (bCR), >= 0; default ``weight``.
        generator: a ``torch.Generator`` for T's draws (reals first, then fakes); ignored by a
            callable ``augment``.

    Returns:
        a scalar tensor.
    """
    if not callable(D):
        raise TypeError(f"D must be callable (the discriminator), got {type(D).__name__}")
    _checks.batch(real, "real", min_rank=1)
    if fake is not None:
        _checks.batch(fake, "fake", min_rank=1)
    elif fake_logits is not None or fake_weight is not None:
        raise ValueError("fake_logits and fake_weight apply to bCR: pass fake as well")
    weight = _checks.real_number(weight, "weight", minimum=0.0)
    fake_weight = weight if fake_weight is None else _checks.real_number(fake_weight, "fake_weight", minimum=0.0)
    _checks.generator(generator)
    transform = _augmentation(augment)
    if not callable(augment):  # "cr" and DiffAugment transform images
        _augment._check_image(real, "real")
        if fake is not None:
            _augment._check_image(fake, "fake")
    real_logits = _logits_of(D, real, real_logits, "real_logits")
    total = weight * _consistency(D, real, real_logits, transform, generator, "real")
    if fake is not None:
        fake_logits = _logits_of(D, fake, fake_logits, "fake_logits")
        total = total + fake_weight * _consistency(D, fake, fake_logits, transform, generator, "fake")
    return total


def perturb_latent(z: torch.Tensor, sigma: float = 0.03, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """z + Δz with Δz ~ N(0, σ²I): zCR's perturbed latent (σ = 0.03 in Zhao et al., 2021).

    Draws ``torch.randn(z.shape)`` in z's dtype on the generator's device (z's device without
    one), as StudioGAN's ``z + radius · randn(B, dim)`` for a float32 z.
    """
    _checks.batch(z, "z", min_rank=1)
    sigma = _checks.real_number(sigma, "sigma", minimum=0.0)
    _checks.generator(generator)
    source = generator.device if generator is not None else z.device
    noise = torch.randn(z.shape, generator=generator, device=source, dtype=z.dtype).to(z.device)
    return z + sigma * noise


def latent_consistency(
    D: Callable[[torch.Tensor], torch.Tensor],
    fake: torch.Tensor,
    fake_perturbed: torch.Tensor,
    *,
    fake_logits: torch.Tensor | None = None,
    weight: float = 5.0,
) -> torch.Tensor:
    """zCR's discriminator term (Zhao et al., "Improved Consistency Regularization for GANs",
    AAAI 2021): weight · mean((D(G(z)) − D(G(z + Δz)))²), added to D's loss (λ_dis = 5).

    Args:
        D: the discriminator.
        fake: G(z) (detached in D's step); fake_perturbed: G(z + Δz) (``perturb_latent``), same shape.
        fake_logits: D(G(z)) when already computed for D's loss; computed here when None.
        weight: λ_dis >= 0.
    """
    if not callable(D):
        raise TypeError(f"D must be callable (the discriminator), got {type(D).__name__}")
    _checks.batch(fake, "fake", min_rank=1)
    _checks.batch(fake_perturbed, "fake_perturbed", min_rank=1)
    _checks.same_as(fake_perturbed, "fake_perturbed", fake, "fake")
    weight = _checks.real_number(weight, "weight", minimum=0.0)
    fake_logits = _logits_of(D, fake, fake_logits, "fake_logits")
    perturbed_logits = D(fake_perturbed)
    if perturbed_logits.shape != fake_logits.shape:
        raise ValueError(
            f"D(fake_perturbed) has shape {tuple(perturbed_logits.shape)}, fake_logits {tuple(fake_logits.shape)}: they must match"
        )
    return weight * F.mse_loss(fake_logits, perturbed_logits)


def latent_diversity(fake: torch.Tensor, fake_perturbed: torch.Tensor, *, weight: float = 0.5) -> torch.Tensor:
    """zCR's generator term (Zhao et al., AAAI 2021): −weight · mean((G(z) − G(z + Δz))²), added to
    G's loss (λ_gen = 0.5): minimizing it pushes G(z + Δz) away from G(z), against mode collapse.
    The mean runs over every element of the images (``MSELoss``, as StudioGAN); both carry gradients.

    Args:
        fake: G(z); fake_perturbed: G(z + Δz), same shape, both from G's step (not detached).
        weight: λ_gen >= 0.
    """
    _checks.batch(fake, "fake", min_rank=1)
    _checks.batch(fake_perturbed, "fake_perturbed", min_rank=1)
    _checks.same_as(fake_perturbed, "fake_perturbed", fake, "fake")
    weight = _checks.real_number(weight, "weight", minimum=0.0)
    return -weight * F.mse_loss(fake, fake_perturbed)
