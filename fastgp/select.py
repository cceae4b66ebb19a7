"""Fake-As-Real (FAR) sample selection: the fused top-k + gather and the FAR discriminator loss.

Fake-As-Real (Tao, Wang, et al., "Alleviation of Gradient Exploding in GANs: Fake Can Be Real",
CVPR 2020): generate M1 candidate fakes, score them with the discriminator, and train the M0
candidates with the LOWEST logits as real, in place of M0 of the N real samples; the zero-centred
penalty (R1) is then taken on real ∪ FAR.

Selection order (every backend, see csrc/fastgp/select.h): ascending logit, NaN after every
number (as ``torch.sort``), ties — and NaN among NaN — by ascending index; ``indices`` is the
first k of that order, i.e. ``torch.sort(logits, stable=True).indices[:k]``.

Gradients: the selection itself is not differentiable (indices are integers; ``logits`` get no
gradient). With ``detach=False`` the selected rows are differentiable w.r.t. ``candidates``; the
backward scatters the gradient rows into the selected positions (``index_copy`` into zeros —
deterministic, since the indices are distinct) and is itself differentiable (its adjoint is the
gather with the same indices), so double backward (R1 through the selection) works.
"""

from __future__ import annotations

import torch

from . import _checks, backend
from .reference.select import rows_format

FAMILY = "select"

__all__ = ["FakeAsReal", "far_batch", "far_select"]


# --------------------------------------------------------------------------------------------
# Fake (meta) kernels
# --------------------------------------------------------------------------------------------


def _empty_rows(like: torch.Tensor, rows: int) -> torch.Tensor:
    return like.new_empty((rows, *like.shape[1:])).contiguous(memory_format=rows_format(like))


def _register_fake_kernels() -> None:
    if not backend._load_extension():
        return

    @torch.library.register_fake("fastgp::far_select")
    def _(logits, candidates, k):
        return _empty_rows(candidates, k), logits.new_empty((k,), dtype=torch.int64)

    @torch.library.register_fake("fastgp::far_batch")
    def _(real, logits, candidates, k):
        return _empty_rows(candidates, real.shape[0] + k), logits.new_empty((k,), dtype=torch.int64)


_register_fake_kernels()


# --------------------------------------------------------------------------------------------
# Autograd
# --------------------------------------------------------------------------------------------


class _ScatterRows(torch.autograd.Function):
    """out = zeros[M, ...] with out[indices] = rows: the adjoint of gathering rows at ``indices``."""

    @staticmethod
    def forward(ctx, rows, indices, num_rows):
        ctx.save_for_backward(indices)
        out = rows.new_zeros((num_rows, *rows.shape[1:]))
        return out.index_copy_(0, indices, rows)

    @staticmethod
    def backward(ctx, grad_out):
        (indices,) = ctx.saved_tensors
        return _GatherRows.apply(grad_out, indices), None, None


class _GatherRows(torch.autograd.Function):
    """rows = x[indices], whose backward is _ScatterRows (so every derivative order exists)."""

    @staticmethod
    def forward(ctx, x, indices):
        ctx.save_for_backward(indices)
        ctx.num_rows = x.shape[0]
        return x.index_select(0, indices)

    @staticmethod
    def backward(ctx, grad_rows):
        (indices,) = ctx.saved_tensors
        return _ScatterRows.apply(grad_rows, indices, ctx.num_rows), None


class _FarSelect(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, candidates, k):
        selected, indices = backend.kernels(FAMILY, candidates.device).far_select(logits, candidates, k)
        ctx.mark_non_differentiable(indices)
        ctx.save_for_backward(indices)
        ctx.num_rows = candidates.shape[0]
        return selected, indices

    @staticmethod
    def backward(ctx, grad_selected, _grad_indices):
        (indices,) = ctx.saved_tensors
        grad_candidates = None
        if ctx.needs_input_grad[1]:
            grad_candidates = _ScatterRows.apply(grad_selected, indices, ctx.num_rows)
        return None, grad_candidates, None


class _FarBatch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, real, logits, candidates, k):
        batch, indices = backend.kernels(FAMILY, candidates.device).far_batch(real, logits, candidates, k)
        ctx.mark_non_differentiable(indices)
        ctx.save_for_backward(indices)
        ctx.num_rows, ctx.num_real = candidates.shape[0], real.shape[0]
        return batch, indices

    @staticmethod
    def backward(ctx, grad_batch, _grad_indices):
        (indices,) = ctx.saved_tensors
        r = ctx.num_real
        grad_real = grad_batch[:r] if ctx.needs_input_grad[0] else None
        grad_candidates = None
        if ctx.needs_input_grad[2]:
            grad_candidates = _ScatterRows.apply(grad_batch[r:], indices, ctx.num_rows)
        return grad_real, None, grad_candidates, None


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _check_far(logits, candidates, k, detach) -> tuple[torch.Tensor, int]:
    """Validated (logits as [M], k)."""
    _checks.batch(candidates, "candidates", min_rank=1)
    _checks.floating(logits, "logits")
    m = candidates.shape[0]
    if tuple(logits.shape) not in ((m,), (m, 1)):
        raise ValueError(
            f"logits must have shape [M] or [M, 1] with M = {m} (one logit per candidate), got {list(logits.shape)}"
        )
    if logits.device != candidates.device:
        raise ValueError(f"logits and candidates must be on the same device, got {logits.device} and {candidates.device}")
    k = _checks.integer(k, "k")
    if not 1 <= k <= m:
        raise ValueError(f"k must be in [1, M] with M = {m} candidates, got {k}")
    if not isinstance(detach, bool):
        raise TypeError(f"detach must be a bool, got {type(detach).__name__}")
    return logits.detach().reshape(m), k


def far_select(logits: torch.Tensor, candidates: torch.Tensor, k: int, *, detach: bool = True):
    """The k candidates with the lowest logits: ``(selected [k, ...], indices [k] int64)``.

    Args:
        logits: discriminator logits of the candidates, shape [M] or [M, 1] (never differentiated).
        candidates: [M, ...] candidate fakes (float; channels_last is kept).
        k: how many to select, 1 <= k <= M.
        detach: ``True`` (the discriminator step) returns rows without gradient; ``False`` lets the
            gradient flow back to the selected candidates (any order).

    ``indices`` are in ascending logit order, NaN last, ties by ascending index.
    """
    logits, k = _check_far(logits, candidates, k, detach)
    if detach:
        candidates = candidates.detach()
    return _FarSelect.apply(logits, candidates, k)


def far_batch(real: torch.Tensor, logits: torch.Tensor, candidates: torch.Tensor, k: int, *, detach: bool = True):
    """The FAR real batch ``[real; candidates[indices]]`` written in one pass: ``(batch, indices)``.

    ``real`` is [R, ...] with the per-sample shape, dtype and device of ``candidates`` (the real
    samples that are kept; R may be 0); the selection is that of :func:`far_select`. ``real`` is
    differentiable; ``candidates`` only with ``detach=False``.
    """
    logits, k = _check_far(logits, candidates, k, detach)
    _checks.floating(real, "real")
    if real.dim() != candidates.dim() or real.shape[1:] != candidates.shape[1:]:
        raise ValueError(
            f"real must have the per-sample shape of candidates, got {list(real.shape)} and {list(candidates.shape)}"
        )
    if real.dtype != candidates.dtype:
        raise TypeError(f"real and candidates must have the same dtype, got {real.dtype} and {candidates.dtype}")
    if real.device != candidates.device:
        raise ValueError(f"real and candidates must be on the same device, got {real.device} and {candidates.device}")
    if detach:
        candidates = candidates.detach()
    return _FarBatch.apply(real, logits, candidates, k)


class FakeAsReal:
    """The Fake-As-Real discriminator loss: non-saturating loss on real ∪ FAR vs fakes + R1 on real ∪ FAR.

    With N real samples per batch, ``n_far`` (M0) of them are replaced by the ``n_far`` of
    ``n_candidates`` (M1) candidate fakes that D scores LOWEST; the discriminator loss is

        E_{x ∈ real ∪ FAR} softplus(−D(x)) + E_fake softplus(D(x)) + weight · E_{x ∈ real ∪ FAR} ‖∇D(x)‖²

    with R1 from the same forward as the loss (``fastgp.r1_penalty``). Paper defaults: N = 64,
    M0 = 16 or 32, M1 = 256, weight = 10.

    Example (only the discriminator step changes)::

        far = fastgp.select.FakeAsReal(n_far=32, n_candidates=256, weight=10.0)
        with torch.no_grad():
            fake = G(torch.randn(64, nz))
            candidates = G(torch.randn(far.n_candidates, nz))
        d_loss = far(D, real, fake, candidates)
        d_opt.zero_grad(); d_loss.backward(); d_opt.step()
    """

    def __init__(self, n_far: int, n_candidates: int, weight: float = 10.0):
        self.n_far = _checks.integer(n_far, "n_far", minimum=1)
        self.n_candidates = _checks.integer(n_candidates, "n_candidates", minimum=1)
        if self.n_far > self.n_candidates:
            raise ValueError(f"n_far must be <= n_candidates ({self.n_candidates}), got {self.n_far}")
        self.weight = _checks.real_number(weight, "weight", minimum=0.0)

    def mixed_batch(self, real: torch.Tensor, candidate_logits: torch.Tensor, candidates: torch.Tensor):
        """``(batch, indices)``: the first N − n_far real samples followed by the n_far FAR samples."""
        _checks.batch(real, "real", min_rank=1)
        _checks.batch(candidates, "candidates", min_rank=1)
        if candidates.shape[0] != self.n_candidates:
            raise ValueError(
                f"candidates must hold n_candidates = {self.n_candidates} samples, got {candidates.shape[0]}"
            )
        if real.shape[0] < self.n_far:
            raise ValueError(f"real must hold at least n_far = {self.n_far} samples, got {real.shape[0]}")
        kept = real[: real.shape[0] - self.n_far]
        return far_batch(kept.detach(), candidate_logits, candidates, self.n_far, detach=True)

    def __call__(self, D, real: torch.Tensor, fake: torch.Tensor, candidates: torch.Tensor, candidate_logits=None):
        """The discriminator loss (a scalar). D's logits of the candidates are computed without
        gradient unless given as ``candidate_logits``; ``fake`` and ``candidates`` are detached."""
        if not callable(D):
            raise TypeError(f"D must be callable (a module or function), got {type(D).__name__}")
        _checks.batch(fake, "fake", min_rank=1)
        if candidate_logits is None:
            with torch.no_grad():
                candidate_logits = D(candidates.detach())
        batch, _ = self.mixed_batch(real, candidate_logits, candidates)
        from . import losses
        from .penalty import r1_penalty

        batch = batch.requires_grad_(True)
        real_logits = D(batch)
        fake_logits = D(fake.detach())
        loss = losses.d_nonsaturating(real_logits, fake_logits)
        if self.weight > 0:
            loss = loss + r1_penalty(real_logits, batch, self.weight)
        return loss
