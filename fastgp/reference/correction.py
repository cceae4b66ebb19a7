"""Pure-PyTorch reference for the ``correction`` family (nearest-neighbour distance).

``nearest_distance(samples, bank, chunk)`` has the signature and semantics of
``torch.ops.fastgp.nearest_distance`` (csrc/ops.cpp): for each sample the squared L2 distance to
its nearest bank row, max(0, |a|² + |b|² − 2a·b) in the accumulation dtype, and that row's index
(the lowest among exactly equal computed distances; rows within rounding of each other may come
back either way on another BLAS or backend; the first NaN when a distance is NaN). Like every
backend's op this is the fast path: fastgp.correction repairs over/underflow and cancellation in
the public function. The reference visits the bank in the
same chunks, so its memory is O(B·chunk) too.
"""

from __future__ import annotations

import torch

from .._layout import accumulation_dtype


def nearest_distance(samples: torch.Tensor, bank: torch.Tensor, chunk: int):
    acc = accumulation_dtype(samples.dtype)
    a = samples.reshape(samples.shape[0], -1).to(acc)
    sa = (a * a).sum(1)
    best = torch.full((a.shape[0],), float("inf"), dtype=acc, device=a.device)
    best_j = torch.full((a.shape[0],), -1, dtype=torch.int64, device=a.device)
    for j0 in range(0, bank.shape[0], chunk):
        kc = bank[j0 : j0 + chunk].reshape(-1, a.shape[1]).to(acc)
        d = (sa[:, None] + (kc * kc).sum(1)[None, :] - 2 * (a @ kc.t())).clamp_min(0)
        best, best_j = fold_chunk(best, best_j, d, j0)
    return best, best_j


def fold_chunk(best, best_j, d, j0: int):
    """Folds the distances d [B, c] to bank rows j0 .. j0 + c − 1 into the running minima (best,
    best_j) [B] (best_j −1: nothing seen yet): the first NaN if any, else the first minimum."""
    nan = d.isnan()
    j_min = torch.where(nan, torch.inf, d).argmin(1)  # argmin returns the first minimum
    j_nan = nan.to(torch.int8).argmax(1)
    has_nan = nan.any(1)
    j = torch.where(has_nan, j_nan, j_min)
    value = d.gather(1, j[:, None])[:, 0]
    best_nan = best.isnan()
    take = (best_j < 0) | (~best_nan & (has_nan | (value < best)))
    return torch.where(take, value, best), torch.where(take, j + j0, best_j)


def nearest_distance_reference(samples: torch.Tensor, bank: torch.Tensor):
    """Nearest distance as GAN code writes it: torch.cdist(...).min(1) (the benchmark baseline)."""
    d = torch.cdist(samples.flatten(1), bank.flatten(1))
    return d.min(1)
