"""Triton kernels of the ``correction`` family: each sample's nearest bank row, bank in chunks.

``nearest_distance(samples, bank, chunk)`` has the name, signature and semantics of
``torch.ops.fastgp.nearest_distance`` and ``fastgp.reference.correction`` (csrc/ops.cpp). As in
the C++/CUDA kernels the chunk's dot products come from the BLAS (``torch.mm``), and the Triton
kernels do the fused part: the bank rows' squared norms, then per sample (one program) the
clamped distances, and the running minimum with its index (NaN first, then the smaller distance,
then the lower index). Registered as ``torch.ops.fastgp_triton.nearest_distance`` (see
``_common.register``). User input is validated by fastgp/correction.py; the launcher asserts only
its invariants.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._layout import accumulation_dtype
from ._common import TL_DTYPES, invariant, register, wrap_triton

_BLOCK_D = 1024
_BLOCK_J = 256
_BIG = 2**62


@triton.jit
def _sum_squares_kernel(x_ptr, D, out_ptr, BLOCK: tl.constexpr, ACC: tl.constexpr):
    r = tl.program_id(0).to(tl.int64)
    s = tl.zeros((BLOCK,), dtype=ACC)
    for d0 in range(0, D, BLOCK):
        cols = d0 + tl.arange(0, BLOCK)
        v = tl.load(x_ptr + r * D + cols, mask=cols < D, other=0.0).to(ACC)
        s += v * v
    tl.store(out_ptr + r, tl.sum(s, axis=0))


# Compilations (docs/design.md, "Triton compilations"): the bank chunk's size c and offset j0 (which
# changes from chunk to chunk) are not specialized, nor the per-sample vectors' pointers; the row
# length D of _sum_squares_kernel is (its row loads vectorize on it).
@triton.jit(do_not_specialize=["c", "j0"],
            do_not_specialize_on_alignment=["dot_ptr", "sa_ptr", "sb_ptr", "best_ptr", "best_j_ptr"])
def _update_minima_kernel(
    dot_ptr, sa_ptr, sb_ptr, c, j0, best_ptr, best_j_ptr, BIG: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr
):
    b = tl.program_id(0).to(tl.int64)
    sa = tl.load(sa_ptr + b)
    best = tl.load(best_ptr + b)
    best_j = tl.load(best_j_ptr + b)
    for t0 in range(0, c, BLOCK):
        j = t0 + tl.arange(0, BLOCK).to(tl.int64)
        valid = j < c
        dot = tl.load(dot_ptr + b * c + j, mask=valid, other=0.0)
        sb = tl.load(sb_ptr + j, mask=valid, other=0.0)
        d = sa + sb - 2.0 * dot
        d = tl.where(d < 0.0, 0.0, d).to(ACC)
        nan = (d != d) & valid
        nan_j = tl.min(tl.where(nan, j, BIG), axis=0)
        number = valid & (d == d)
        dv = tl.where(number, d, float("inf"))
        m = tl.min(dv, axis=0)
        min_j = tl.min(tl.where(number & (dv == m), j, BIG), axis=0)
        # The tile's candidate in the visiting order: its first NaN, else its first minimum.
        tile_nan = nan_j < BIG
        tile_j = tl.where(tile_nan, nan_j, min_j)
        tile_d = tl.where(tile_nan, float("nan"), m).to(ACC)
        take = (tile_j < BIG) & ((best_j < 0) | ((best == best) & (tile_nan | (tile_d < best))))
        best = tl.where(take, tile_d, best)
        best_j = tl.where(take, tile_j + j0, best_j)
    tl.store(best_ptr + b, best)
    tl.store(best_j_ptr + b, best_j)


@register("nearest_distance")
def nearest_distance(samples: torch.Tensor, bank: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    invariant(samples.dim() >= 1 and bank.dim() >= 1 and bank.shape[0] > 0, "a non-empty bank [N, ...]")
    invariant(samples.shape[1:].numel() == bank.shape[1:].numel() and samples.dtype == bank.dtype
              and samples.device == bank.device, "samples and bank rows alike")
    invariant(chunk >= 1, f"chunk = {chunk} >= 1")
    acc = accumulation_dtype(samples.dtype)
    tl_acc = TL_DTYPES[acc]
    b, n = samples.shape[0], bank.shape[0]
    a = samples.reshape(b, -1).to(acc).contiguous()
    d = a.shape[1]
    best = torch.full((b,), float("inf"), dtype=acc, device=samples.device)
    best_j = torch.full((b,), -1, dtype=torch.int64, device=samples.device)
    if b == 0:
        return best, best_j
    sa = torch.empty(b, dtype=acc, device=samples.device)
    wrap_triton(_sum_squares_kernel)[(b,)](a, d, sa, BLOCK=_BLOCK_D, ACC=tl_acc)
    c_max = min(chunk, n)
    sb = torch.empty(c_max, dtype=acc, device=samples.device)
    for j0 in range(0, n, c_max):
        kc = bank[j0 : j0 + c_max].reshape(-1, d).to(acc).contiguous()  # only this chunk is copied
        c = kc.shape[0]
        dot = torch.mm(a, kc.t())
        wrap_triton(_sum_squares_kernel)[(c,)](kc, d, sb, BLOCK=_BLOCK_D, ACC=tl_acc)
        wrap_triton(_update_minima_kernel)[(b,)](dot, sa, sb, c, j0, best, best_j, BIG=_BIG, BLOCK=_BLOCK_J, ACC=tl_acc)
    return best, best_j
