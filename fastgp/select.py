"""Fake-As-Real (FAR) sample selection: the fused top-k + gather and the FAR discriminator loss.

Fake-As-Real (Tao & Wang, "Alleviation of Gradient Exploding in GANs: Fake Can Be Real",
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
from ._layout import image_memory_format

FAMILY = "select"
_MAX_GLOBAL_RANK = 8

__all__ = ["FakeAsReal", "TopKSchedule", "far_batch", "far_select", "far_select_global", "top_k"]


# --------------------------------------------------------------------------------------------
# Fake (meta) kernels
# --------------------------------------------------------------------------------------------


def _empty_rows(like: torch.Tensor, rows: int) -> torch.Tensor:
    return like.new_empty((rows, *like.shape[1:])).contiguous(memory_format=image_memory_format(like))


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
    _checks.boolean(detach, "detach")
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
    if not (torch.is_grad_enabled() and candidates.requires_grad):
        return backend.kernels(FAMILY, candidates.device).far_select(logits, candidates, k)
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
    if not (torch.is_grad_enabled() and (real.requires_grad or candidates.requires_grad)):
        # Nothing to differentiate (the discriminator step): skip the autograd.Function.
        return backend.kernels(FAMILY, candidates.device).far_batch(real, logits, candidates, k)
    return _FarBatch.apply(real, logits, candidates, k)


def far_select_global(logits: torch.Tensor, candidates: torch.Tensor, k: int, group=None):
    """Fake-As-Real selection across the ranks of a torch.distributed process group.

    Each of the W ranks passes its own M candidates and their logits (the same M and per-sample
    shape on every rank). The W·k lowest of all W·M logits are selected in the order of
    :func:`far_select` with global index ``rank·M + i`` (so ties go to the lower rank, then the
    lower local index), and rank r receives positions r·k … r·k + k − 1 of that ordered selection:
    every rank gets k rows, and together the ranks hold exactly the global selection.

    Returns ``(selected [k, ...], global_indices [k] int64)`` on every rank. Collective: every rank
    of ``group`` must call it. The result is detached (rows are exchanged with all_gather).
    The per-rank mode (:func:`far_select`) is the default of :class:`FakeAsReal`.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError("far_select_global needs an initialized torch.distributed process group")
    logits, k = _check_far(logits, candidates, k, True)
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    m = candidates.shape[0]
    if candidates.dim() > _MAX_GLOBAL_RANK:
        raise ValueError(f"far_select_global supports candidates of rank <= {_MAX_GLOBAL_RANK}, got {candidates.dim()}")
    # A fixed-length shape descriptor (rank, sizes padded with -1), so that ranks whose shapes
    # differ get this error rather than a failing or hanging collective.
    padded = [candidates.dim(), *candidates.shape] + [-1] * (_MAX_GLOBAL_RANK - candidates.dim())
    mine = torch.tensor(padded, dtype=torch.int64, device=candidates.device)
    shapes = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(shapes, mine, group=group)
    if any(not torch.equal(shape, mine) for shape in shapes):
        described = [str(shape[1 : 1 + int(shape[0])].tolist()) for shape in shapes]
        raise ValueError(f"candidates must have the same shape on every rank, got {', '.join(described)}")
    candidates = candidates.detach()
    gathered = [torch.empty_like(logits) for _ in range(world)]
    dist.all_gather(gathered, logits.contiguous(), group=group)
    all_logits = torch.cat(gathered)
    # The global order from the same kernel (zero-width rows: only the indices are wanted).
    kernels = backend.kernels(FAMILY, candidates.device)
    _, order = kernels.far_select(all_logits, all_logits.new_empty((world * m, 0)), world * k)
    owner, local = order // m, order % m
    # Every rank sends a [W·k, ...] buffer holding, at each selection slot it owns, that row.
    slots = (owner == rank).nonzero().flatten()
    send = candidates.new_zeros((world * k, *candidates.shape[1:]))
    send.index_copy_(0, slots, candidates.index_select(0, local[slots]))
    received = [torch.empty_like(send) for _ in range(world)]
    dist.all_gather(received, send, group=group)
    share = torch.arange(rank * k, (rank + 1) * k, device=order.device)
    stacked = torch.stack(received)  # [W, W·k, ...]
    selected = stacked[owner[share], share].contiguous(memory_format=image_memory_format(candidates))
    return selected, order[share]


class FakeAsReal:
    """The Fake-As-Real discriminator loss: non-saturating loss on real ∪ FAR vs fakes + R1 on real ∪ FAR.

    With N real samples per batch, ``n_far`` (M0) of them are replaced by the ``n_far`` of
    ``n_candidates`` (M1) candidate fakes that D scores LOWEST; the discriminator loss is

        E_{x ∈ real ∪ FAR} softplus(−D(x)) + E_fake softplus(D(x)) + weight · E_{x ∈ real ∪ FAR} ‖∇D(x)‖²

    with R1 from the same forward as the loss (``fastgp.r1_penalty``). Paper defaults: N = 64,
    M0 = 16 or 32, M1 = 256, weight = 10. The selection is per rank by default; with
    ``global_selection=True`` (under torch.distributed) the n_far·W lowest of all ranks' candidates
    are selected and shared out, n_far per rank (:func:`far_select_global`).

    Example (only the discriminator step changes)::

        far = fastgp.select.FakeAsReal(n_far=32, n_candidates=256, weight=10.0)
        with torch.no_grad():
            fake = G(torch.randn(64, nz))
            candidates = G(torch.randn(far.n_candidates, nz))
        d_loss = far(D, real, fake, candidates)
        d_opt.zero_grad(); d_loss.backward(); d_opt.step()
    """

    def __init__(self, n_far: int, n_candidates: int, weight: float = 10.0, *, global_selection: bool = False, group=None):
        self.n_far = _checks.integer(n_far, "n_far", minimum=1)
        self.n_candidates = _checks.integer(n_candidates, "n_candidates", minimum=1)
        if self.n_far > self.n_candidates:
            raise ValueError(f"n_far must be <= n_candidates ({self.n_candidates}), got {self.n_far}")
        self.weight = _checks.real_number(weight, "weight", minimum=0.0)
        _checks.boolean(global_selection, "global_selection")
        self.global_selection, self.group = global_selection, group

    def mixed_batch(self, real: torch.Tensor, candidate_logits: torch.Tensor, candidates: torch.Tensor):
        """``(batch, indices)``: the first N − n_far real samples followed by the n_far FAR samples
        (``indices`` are global indices ``rank·n_candidates + i`` with ``global_selection``)."""
        _checks.batch(real, "real", min_rank=1)
        _checks.batch(candidates, "candidates", min_rank=1)
        if candidates.shape[0] != self.n_candidates:
            raise ValueError(
                f"candidates must hold n_candidates = {self.n_candidates} samples, got {candidates.shape[0]}"
            )
        if real.shape[0] < self.n_far:
            raise ValueError(f"real must hold at least n_far = {self.n_far} samples, got {real.shape[0]}")
        kept = real[: real.shape[0] - self.n_far].detach()
        if self.global_selection:
            selected, indices = far_select_global(candidate_logits, candidates, self.n_far, self.group)
            return torch.cat([kept, selected]), indices
        return far_batch(kept, candidate_logits, candidates, self.n_far, detach=True)

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


# --------------------------------------------------------------------------------------------
# Top-k generator training
# --------------------------------------------------------------------------------------------


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` highest of ``scores``: ``(kept [k], indices [k] int64)``, for top-k generator
    training (Sinha, Zhao, Goyal, Raffel & Odena, "Top-k Training of GANs: Improving GAN
    Performance by Throwing Away Bad Samples", NeurIPS 2020): G's loss is taken over the k fakes
    that D scores highest only, ``loss_G = g_loss(kept)``.

    The selection runs on every backend with Fake-As-Real's fused selection (:func:`far_select`,
    which picks the lowest) applied to the negated scores: ``indices`` are in descending score
    order, ties by ascending index, NaN never before a number (``torch.topk`` would rank NaN
    highest: a NaN score is the last one kept here). ``kept = scores.flatten()[indices]`` is
    differentiable: the gradient reaches the kept samples only, which is the point of the method.

    Args:
        scores: D's outputs on the fakes, shape [B] or [B, 1] (float).
        k: how many to keep, 1 <= k <= B (see :class:`TopKSchedule`).
    """
    _checks.floating(scores, "scores")
    if scores.dim() not in (1, 2) or (scores.dim() == 2 and scores.shape[1] != 1) or scores.shape[0] == 0:
        raise ValueError(f"scores must have shape [B] or [B, 1] with B >= 1, got {list(scores.shape)}")
    flat = scores.reshape(scores.shape[0])
    # Lowest of −scores = highest of scores; zero-width rows: only the indices are wanted.
    _, indices = far_select(-flat.detach(), flat.new_empty((flat.shape[0], 0)), k)
    return flat.index_select(0, indices), indices


class TopKSchedule:
    """The annealed k of top-k training (Sinha et al., NeurIPS 2020):

        k(epoch) = max(γ^epoch, ν) · B, rounded down (at least 1)

    k starts at the whole batch B and decays by γ each epoch down to the fraction ν. The paper uses
    γ = 0.99 and ν ∈ {0.5, 0.75}; 0.5 is the default of the public implementations (the
    ``TopKGenerator`` of torch-mimicry based code: ``max(0.99 ** epoch, 0.5)``, ``int(rate * N)``).

    Args:
        gamma: γ, the per-epoch decay, in (0, 1].
        min_fraction: ν, the smallest kept fraction, in (0, 1].
    """

    def __init__(self, gamma: float = 0.99, min_fraction: float = 0.5):
        self.gamma = _checks.real_number(gamma, "gamma")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        self.min_fraction = _checks.real_number(min_fraction, "min_fraction")
        if not 0.0 < self.min_fraction <= 1.0:
            raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")

    def fraction(self, epoch: int) -> float:
        """max(γ^epoch, ν)."""
        epoch = _checks.integer(epoch, "epoch", minimum=0)
        return max(self.gamma**epoch, self.min_fraction)

    def k(self, batch_size: int, epoch: int) -> int:
        """How many of ``batch_size`` fakes to keep at ``epoch`` (0-based)."""
        batch_size = _checks.integer(batch_size, "batch_size", minimum=1)
        return max(1, int(self.fraction(epoch) * batch_size))
