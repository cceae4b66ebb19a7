"""Pixel-wise combination regularization (PCR): combinations of pairs of different real samples
used as extra negatives for the discriminator.

The combinations of a pair (i, j), i ≠ j, element by element:

========  =======================================================================
mode      value
========  =======================================================================
mean      (x_i + x_j) / 2 (computed in float32 for float16/bfloat16, float64 for float64)
min       min(x_i, x_j)  (NaN propagates)
max       max(x_i, x_j)  (NaN propagates)
and       1 where x_i > threshold AND x_j > threshold, else 0 (binary images)
or        1 where x_i > threshold OR  x_j > threshold, else 0
========  =======================================================================

The binary modes return the values {0, 1} in the input's dtype (rescale them yourself if your
images live in [−1, 1]: ``2·out − 1``); the comparison is made in the accumulation dtype.
The discriminator loss of the method is E_real f1(D(x)) + ½[E_fake f2(D(x)) + E_comb f2(D(x))]
(:func:`d_loss`).

Gradients: mean, min and max are differentiable w.r.t. x (for min/max the gradient goes to the
chosen element, to x_i on ties); their backward is made of differentiable torch ops (index_add),
so double backward works. On CUDA, index_add accumulates with atomics, so gradients of rows that
appear in several pairs may differ in the last bits between runs. The binary modes are not
differentiable (their output never requires grad).
"""

from __future__ import annotations

import torch

from . import _checks, backend
from ._layout import image_memory_format
from .reference.combine import MODES

FAMILY = "combine"

__all__ = ["MODES", "d_loss", "pixelwise", "random_pairs"]


def _register_fake_kernels() -> None:
    if not backend._load_extension():
        return

    @torch.library.register_fake("fastgp::pixelwise_combine")
    def _(x, pairs, mode, threshold):
        return x.new_empty((pairs.shape[0], *x.shape[1:])).contiguous(memory_format=image_memory_format(x))


_register_fake_kernels()


def _scatter_pairs(grad_a, grad_b, pairs, num_rows):
    """zeros[B, ...] with grad_a added at pairs[:, 0] and grad_b at pairs[:, 1] (differentiable)."""
    out = grad_a.new_zeros((num_rows, *grad_a.shape[1:]))
    return out.index_add(0, pairs[:, 0], grad_a).index_add(0, pairs[:, 1], grad_b)


class _Pixelwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, pairs, mode, threshold):
        out = backend.kernels(FAMILY, x.device).pixelwise_combine(x, pairs, mode, threshold)
        ctx.mode = mode
        ctx.num_rows = x.shape[0]
        if mode >= 3:
            ctx.mark_non_differentiable(out)
            ctx.save_for_backward(pairs, None)
        else:
            ctx.save_for_backward(pairs, x if mode in (1, 2) else None)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        pairs, x = ctx.saved_tensors
        if ctx.mode >= 3 or not ctx.needs_input_grad[0]:
            return None, None, None, None
        if ctx.mode == 0:
            half = grad_out * 0.5
            return _scatter_pairs(half, half, pairs, ctx.num_rows), None, None, None
        a, b = x[pairs[:, 0]], x[pairs[:, 1]]
        # The chosen element: x_i when it is the min (max) or on ties; NaN goes to x_i too.
        take_a = ~(b < a) if ctx.mode == 1 else ~(b > a)
        zero = torch.zeros_like(grad_out)
        grad_a = torch.where(take_a, grad_out, zero)
        grad_b = torch.where(take_a, zero, grad_out)
        return _scatter_pairs(grad_a, grad_b, pairs, ctx.num_rows), None, None, None


def random_pairs(batch: int, num_pairs: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """[num_pairs, 2] int64 pairs (i, j) of distinct indices drawn uniformly from [0, batch)."""
    batch = _checks.integer(batch, "batch")
    if batch < 2:
        raise ValueError(f"need at least 2 samples to combine, got {batch}")
    num_pairs = _checks.integer(num_pairs, "num_pairs", minimum=1)
    _checks.generator(generator)
    source = generator.device if generator is not None else (device or "cpu")
    i = torch.randint(0, batch, (num_pairs,), generator=generator, device=source)
    j = torch.randint(0, batch - 1, (num_pairs,), generator=generator, device=source)
    j = j + (j >= i).to(j.dtype)  # skip i: uniform over the other batch − 1 samples
    pairs = torch.stack([i, j], dim=1)
    return pairs.to(device) if device is not None else pairs


def _check_pairs(pairs, batch: int, device) -> torch.Tensor:
    _checks.tensor(pairs, "pairs")
    if pairs.dtype != torch.int64:
        raise TypeError(f"pairs must be an int64 tensor, got {pairs.dtype}")
    if pairs.dim() != 2 or pairs.shape[1] != 2 or pairs.shape[0] == 0:
        raise ValueError(f"pairs must have shape [P, 2] with P >= 1, got {list(pairs.shape)}")
    if pairs.device != device:
        raise ValueError(f"pairs must be on the device of x ({device}), got {pairs.device}")
    outside = (pairs < 0) | (pairs >= batch)
    if bool(outside.any()):
        raise ValueError(f"pairs must hold indices in [0, {batch}), got {int(pairs[outside][0])}")
    same = pairs[:, 0] == pairs[:, 1]
    if bool(same.any()):
        p = int(same.nonzero()[0, 0])
        raise ValueError(f"pairs must combine different samples (i != j), got pair {p} = ({int(pairs[p, 0])}, {int(pairs[p, 1])})")
    return pairs


def pixelwise(
    x: torch.Tensor,
    mode: str = "mean",
    pairs: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    threshold: float = 0.5,
    num_pairs: int | None = None,
) -> torch.Tensor:
    """Pixel-wise combinations of pairs of different samples of x, in one fused kernel.

    Args:
        x: real samples [B, ...] with B >= 2 (float; channels_last is kept).
        mode: ``"mean"``, ``"min"``, ``"max"``, ``"and"`` or ``"or"`` (see the module docstring).
        pairs: [P, 2] int64 pairs (i, j), i != j, in [0, B); when omitted, ``num_pairs`` (default
            B) random pairs are drawn with ``generator``.
        threshold: the binarization threshold of ``"and"`` / ``"or"`` (x > threshold is 1).

    Returns [P, ...] combinations in x's dtype.
    """
    _checks.batch(x, "x", min_rank=1)
    if x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 samples to combine, got {x.shape[0]}")
    _checks.choice(mode, "mode", MODES)
    threshold = _checks.real_number(threshold, "threshold")
    _checks.generator(generator)
    if pairs is None:
        n = x.shape[0] if num_pairs is None else num_pairs
        pairs = random_pairs(x.shape[0], n, generator, device=x.device)
    else:
        if generator is not None or num_pairs is not None:
            raise ValueError("generator and num_pairs apply only to random pairs; pass pairs or them, not both")
        pairs = _check_pairs(pairs, x.shape[0], x.device)
    return _Pixelwise.apply(x, pairs, MODES.index(mode), threshold)


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, comb_logits: torch.Tensor, loss="non-saturating"):
    """E_real f1(D(x)) + ½[E_fake f2(D(x)) + E_comb f2(D(x))] for a separable D loss of ``fastgp.losses``.

    ``loss`` is a loss name (with its default parameters) or the ``(d_loss, g_loss)`` pair of
    ``fastgp.losses.get(name, **params)`` — built once, which also saves the Lipschitz-GAN pairs'
    condition check on every call. Every loss of ``fastgp.losses`` but the relativistic ones
    (``losses.RELATIVISTIC``, which compare real with fake logits and are refused) is separable,
    E f1(r) + E f2(f).
    With the default non-saturating loss, f1(r) = softplus(−r) and f2(f) = softplus(f).
    """
    from . import losses

    if isinstance(loss, losses.GANLoss):
        d = loss.d_loss
    elif isinstance(loss, str):
        d = losses.get(loss).d_loss
    else:
        raise TypeError(f"loss must be a loss name or a fastgp.losses.GANLoss pair, got {type(loss).__name__}")
    if d in (losses.d_relativistic_pairing, losses.d_relativistic_average):
        raise ValueError("loss must be separable (E f1(real) + E f2(fake)) for the PCR loss; the relativistic losses "
                         "compare real with fake logits and have no such split")
    return 0.5 * (d(real_logits, fake_logits) + d(real_logits, comb_logits))
