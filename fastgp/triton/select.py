"""Triton kernels of the ``select`` family (Fake-As-Real top-k + gather).

Raw launchers with the names, signatures and semantics of ``torch.ops.fastgp.far_select`` /
``far_batch`` and ``fastgp.reference.select`` (see csrc/ops.cpp): the k candidates with the
lowest logits in ascending order, NaN last, ties by ascending index.

Selection: each program takes a tile of candidates and counts, tile by tile, the candidates that
come before each of them (its rank); a candidate whose rank is below k writes its index at that
position (ranks are distinct: the order is total). O(M²) comparisons, which for the M1 = 256 of
the paper is one small launch; above ``_MAX_RANK_CANDIDATES`` the indices come from torch's
stable sort. The gather copies [real; candidates[indices]] in one launch (one program per row and
column tile). The launchers are registered as ``torch.ops.fastgp_triton.far_select`` /
``far_batch`` (see ``_common.register``). User input is validated by fastgp/select.py; the
launchers assert only what their indexing relies on.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._layout import image_memory_format
from ._common import both, grid_stride, invariant, register, tl_accumulation_dtype, wrap_triton

_BLOCK_I = 64
_BLOCK_J = 64
_BLOCK_COLS = 1024
_MAX_RANK_CANDIDATES = 16384


# Compilations (docs/design.md, "Triton compilations"): once per dtype. The ranking is
# compute-bound (O(M²) comparisons on strided loads): no size or pointer is specialized.
@triton.jit(do_not_specialize=["stride", "M", "k"], do_not_specialize_on_alignment=["logits_ptr", "indices_ptr"])
def _rank_select_kernel(
    logits_ptr, stride, M, k, indices_ptr, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, ACC: tl.constexpr
):
    i = tl.program_id(0).to(tl.int64) * BLOCK_I + tl.arange(0, BLOCK_I)
    mask_i = i < M
    vi = tl.load(logits_ptr + i * stride, mask=mask_i, other=0.0).to(ACC)
    nan_i = vi != vi
    rank = tl.zeros((BLOCK_I,), dtype=tl.int64)
    for j0 in range(0, M, BLOCK_J):
        j = j0 + tl.arange(0, BLOCK_J).to(tl.int64)
        mask_j = j < M
        vj = tl.load(logits_ptr + j * stride, mask=mask_j, other=0.0).to(ACC)
        nan_j = vj != vj
        # select::comes_before(vj, j, vi, i) on a [BLOCK_J, BLOCK_I] tile.
        nj, ni = nan_j[:, None], nan_i[None, :]
        tie = (nj & ni) | (vj[:, None] == vi[None, :])
        before = tl.where(nj != ni, ni, tl.where(tie, j[:, None] < i[None, :], vj[:, None] < vi[None, :]))
        before = before & mask_j[:, None]
        rank += tl.sum(before.to(tl.int64), axis=0)
    tl.store(indices_ptr + rank, i, mask=mask_i & (rank < k))


# The row length N and the row pointers stay specialized (the row copies vectorize on them); the
# row counts and the index table are not.
@triton.jit(do_not_specialize=["R", "rows", "rows_per_program"], do_not_specialize_on_alignment=["indices_ptr"])
def _gather_rows_kernel(real_ptr, R, cand_ptr, indices_ptr, out_ptr, rows, rows_per_program, N, BLOCK: tl.constexpr):
    """Row r of out = real row r (r < R) or candidates row indices[r − R]; program (x, y) copies
    column tile x of rows y, y + grid_y, ..."""
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N
    for t in range(0, rows_per_program):
        r = tl.program_id(1).to(tl.int64) + t * tl.num_programs(1)
        is_real = r < R
        is_cand = (r >= R) & (r < rows)
        src = tl.load(indices_ptr + tl.maximum(r - R, 0), mask=is_cand, other=0)
        from_real = tl.load(real_ptr + r * N + cols, mask=both(mask, is_real))
        from_cand = tl.load(cand_ptr + src * N + cols, mask=both(mask, is_cand))
        tl.store(out_ptr + r * N + cols, tl.where(is_real, from_real, from_cand), mask=both(mask, r < rows))


def _check(logits, candidates, k, real=None):
    """Invariants of the rank and gather kernels (the indices they write and the rows they copy)."""
    invariant(candidates.dim() >= 1 and logits.shape == (candidates.shape[0],), "logits [M] for candidates [M, ...]")
    invariant(1 <= k <= candidates.shape[0], f"k = {k} in [1, M]")
    invariant(logits.device == candidates.device, "logits on the device of candidates")
    if real is not None:
        invariant(real.shape[1:] == candidates.shape[1:] and real.dtype == candidates.dtype
                  and real.device == candidates.device, "real rows like the candidates' rows")


def _select(logits: torch.Tensor, k: int) -> torch.Tensor:
    m = logits.shape[0]
    if m > _MAX_RANK_CANDIDATES:
        return torch.sort(logits, stable=True).indices[:k].contiguous()
    indices = torch.empty(k, dtype=torch.int64, device=logits.device)
    wrap_triton(_rank_select_kernel)[(triton.cdiv(m, _BLOCK_I),)](
        logits, logits.stride(0), m, k, indices, BLOCK_I=_BLOCK_I, BLOCK_J=_BLOCK_J,
        ACC=tl_accumulation_dtype(logits.dtype),
    )
    return indices


def _gather(real, candidates, indices, k):
    fmt = image_memory_format(candidates)
    candidates = candidates.contiguous(memory_format=fmt)
    r = 0 if real is None else real.shape[0]
    real = candidates if real is None else real.contiguous(memory_format=fmt)  # a dummy pointer when R = 0
    out = torch.empty((r + k, *candidates.shape[1:]), dtype=candidates.dtype, device=candidates.device)
    out = out.contiguous(memory_format=fmt)
    n = candidates[0].numel()
    if n > 0:
        programs, rows_per_program = grid_stride(r + k)
        grid = (triton.cdiv(n, _BLOCK_COLS), programs)
        wrap_triton(_gather_rows_kernel)[grid](real, r, candidates, indices, out, r + k, rows_per_program, n, BLOCK=_BLOCK_COLS)
    return out


@register("far_select")
def far_select(logits: torch.Tensor, candidates: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    _check(logits, candidates, k)
    indices = _select(logits, k)
    return _gather(None, candidates, indices, k), indices


@register("far_batch")
def far_batch(real: torch.Tensor, logits: torch.Tensor, candidates: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    _check(logits, candidates, k, real)
    indices = _select(logits, k)
    return _gather(real, candidates, indices, k), indices
