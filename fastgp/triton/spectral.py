"""Triton kernels of the spectral-normalization family: the fused power iteration.

Raw launchers with the names, signatures and semantics of ``torch.ops.fastgp.*`` and
``fastgp.reference.spectral`` (autograd lives in ``fastgp/spectral.py``):

``spectral_power_iteration(weight, u, v, n_iterations, eps) -> sigma``
    n_iterations times u = normalize(W v), v = normalize(Wᵀ u) (normalize(x) = x / max(‖x‖, eps)),
    u [h] and v [w] updated in place; returns σ = uᵀ W v (0-d, float32 for float16/bfloat16).
``spectral_power_iteration_grouped(weights, us, vs, n_iterations, eps) -> sigmas [G]``
    the same for every matrix of a list of different shapes (one dtype, one device).

Both are one implementation, the multi-tensor pattern of apex's multi_tensor_apply: a metadata
table (int64 tensors: each matrix's data pointer, shape, strides and offsets) and a work list of
(matrix, row chunk) items, so one iteration over the WHOLE list is two launches, whatever its
length: ``_pass_kernel`` (one program per item) reads its rows of W once from memory: p_i = W_i·v
for its rows, then the partial Wᵀp over its rows from the tiles it just read (a second read of a
small chunk, served by the cache); ``_finish_kernel`` (one program per matrix) adds that matrix's
partials in chunk order and normalizes (derivation in csrc/fastgp/spectral.h). No atomics: results
are deterministic. The iteration state u, v of all matrices is kept in two flat float32/float64
buffers and written back to the buffers (rounded by torch) at the end. User input is validated by
fastgp/spectral.py; the launchers assert only what the kernels' indexing relies on.
"""

import functools

import torch
import triton
import triton.language as tl

from .._layout import accumulation_dtype
from ._common import TL_DTYPES, invariant, scalar

# Elements of W per program (the same split as the C++ kernels), and of one loaded tile.
_ITEM_ELEMS = 16384
_TILE_ELEMS = 4096
_MAX_ROWS = 64
_FINISH_BLOCK = 1024


# Columns of the metadata table (int64, one row per matrix): shape and strides of W, the offsets of
# its u (and p) and v in the flat vector buffers and of its block of partials, its first work
# item and its number of items (row chunks).
_H = tl.constexpr(0)
_W = tl.constexpr(1)
_STRIDE_R = tl.constexpr(2)
_STRIDE_C = tl.constexpr(3)
_U_OFFSET = tl.constexpr(4)
_V_OFFSET = tl.constexpr(5)
_PARTIAL_OFFSET = tl.constexpr(6)
_FIRST_ITEM = tl.constexpr(7)
_ITEMS = tl.constexpr(8)
_META_COLS = tl.constexpr(9)


# Compilations (docs/design.md, "Triton compilations"): once per weight dtype and row split (ROWS and
# BLOCK_W, one pair per ROWS); the σ-only pass (no iteration) is a runtime flag. Every pointer argument is a table or a flat buffer
# reached through offsets loaded from the table, so their alignment tells the compiler nothing:
# not specialized.
@triton.jit(do_not_specialize_on_alignment=["w_ptrs", "meta", "work", "v_all", "u_all", "p_all", "partials"])
def _pass_kernel(
    w_ptrs, meta, work, v_all, u_all, p_all, partials,
    sigma_only, W_DTYPE: tl.constexpr, ROWS: tl.constexpr, BLOCK_W: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    # The work list maps this program to (matrix g, row chunk) and the table describes matrix g.
    g = tl.load(work + 2 * pid)
    chunk = tl.load(work + 2 * pid + 1)
    W = tl.load(w_ptrs + g).to(tl.pointer_type(W_DTYPE))
    row = meta + g * _META_COLS
    h = tl.load(row + _H)
    w = tl.load(row + _W)
    stride_r = tl.load(row + _STRIDE_R)
    stride_c = tl.load(row + _STRIDE_C)
    u_ptr = u_all + tl.load(row + _U_OFFSET)
    v_ptr = v_all + tl.load(row + _V_OFFSET)
    p_ptr = p_all + tl.load(row + _U_OFFSET)  # p has u's length and offset
    rows = chunk * ROWS + tl.arange(0, ROWS)
    row_mask = rows < h
    cols0 = tl.arange(0, BLOCK_W)
    acc_ty = v_all.dtype.element_ty
    # p = W v over this program's rows.
    p = tl.zeros((ROWS,), dtype=acc_ty)
    for c in range(0, w, BLOCK_W):
        cols = c + cols0
        col_mask = cols < w
        mask = row_mask[:, None] & col_mask[None, :]
        tile = tl.load(W + rows[:, None] * stride_r + cols[None, :] * stride_c, mask=mask, other=0.0).to(acc_ty)
        vv = tl.load(v_ptr + cols, mask=col_mask, other=0.0)
        p += tl.sum(tile * vv[None, :], axis=1)
    if sigma_only:  # a runtime flag: one branch per program
        uu = tl.load(u_ptr + rows, mask=row_mask, other=0.0)
        tl.store(partials + pid, tl.sum(p * uu, axis=0))
    else:
        tl.store(p_ptr + rows, p, mask=row_mask)
        # Partial Wᵀ p over these rows: row `chunk` of this matrix's [items, w] block of partials.
        partial_ptr = partials + tl.load(row + _PARTIAL_OFFSET) + chunk * w
        for c in range(0, w, BLOCK_W):
            cols = c + cols0
            col_mask = cols < w
            mask = row_mask[:, None] & col_mask[None, :]
            tile = tl.load(W + rows[:, None] * stride_r + cols[None, :] * stride_c, mask=mask, other=0.0).to(acc_ty)
            tl.store(partial_ptr + cols, tl.sum(tile * p[:, None], axis=0), mask=col_mask)


@triton.jit(do_not_specialize_on_alignment=["meta", "p_all", "partials", "u_all", "v_all", "sigmas"])
def _finish_kernel(
    meta, p_all, partials, u_all, v_all, sigmas, eps: tl.float64, BLOCK: tl.constexpr, SIGMA_ONLY: tl.constexpr
):
    # ``eps`` is typed float64 (an unannotated Python float compiles as float32, rounding a float64
    # eps) and rounded to the accumulation dtype once, as the C++ static_cast<acc_t>(eps).
    g = tl.program_id(0).to(tl.int64)
    row = meta + g * _META_COLS
    first_item = tl.load(row + _FIRST_ITEM)
    items = tl.load(row + _ITEMS)
    acc_ty = v_all.dtype.element_ty
    if SIGMA_ONLY:  # σ = Σ of this matrix's per-chunk uᵀ(W v), in chunk order
        sigma = tl.zeros((), dtype=acc_ty)
        for k in range(0, items):
            sigma += tl.load(partials + first_item + k)
        tl.store(sigmas + g, sigma)
        return
    h = tl.load(row + _H)
    w = tl.load(row + _W)
    u_ptr = u_all + tl.load(row + _U_OFFSET)
    v_ptr = v_all + tl.load(row + _V_OFFSET)
    p_ptr = p_all + tl.load(row + _U_OFFSET)
    partial_base = partials + tl.load(row + _PARTIAL_OFFSET)
    offs = tl.arange(0, BLOCK)
    p_sq = tl.zeros((BLOCK,), dtype=acc_ty)
    for i in range(0, h, BLOCK):
        pp = tl.load(p_ptr + i + offs, mask=i + offs < h, other=0.0)
        p_sq += pp * pp
    # t = Σ partials in chunk order, kept in v (v is not needed again this iteration).
    t_sq = tl.zeros((BLOCK,), dtype=acc_ty)
    for j in range(0, w, BLOCK):
        cols = j + offs
        col_mask = cols < w
        t = tl.zeros((BLOCK,), dtype=acc_ty)
        ptrs = partial_base + cols  # advanced one partial row per step: no 32-bit k * w product
        for k in range(0, items):
            t += tl.load(ptrs, mask=col_mask, other=0.0)
            ptrs += w
        tl.store(v_ptr + cols, t, mask=col_mask)
        t_sq += t * t
    eps_acc = scalar(eps, acc_ty)
    du = tl.maximum(tl.sqrt(tl.sum(p_sq, axis=0)), eps_acc)
    wtu = tl.sqrt(tl.sum(t_sq, axis=0)) / du
    dv = tl.maximum(wtu, eps_acc)
    inv_du = 1.0 / du
    inv_dv = 1.0 / (dv * du)
    for i in range(0, h, BLOCK):
        rows = i + offs
        pp = tl.load(p_ptr + rows, mask=rows < h, other=0.0)
        tl.store(u_ptr + rows, pp * inv_du, mask=rows < h)
    for j in range(0, w, BLOCK):
        cols = j + offs
        t = tl.load(v_ptr + cols, mask=cols < w, other=0.0)
        tl.store(v_ptr + cols, t * inv_dv, mask=cols < w)
    tl.store(sigmas + g, wtu * wtu / dv)


def _check(weight, u, v, like) -> None:
    """Invariants of the tables the kernels index: matrices [h, w] with u [h] and v [w], one dtype
    and device for the whole group (that of ``like``)."""
    invariant(weight.dim() == 2 and weight.dtype in TL_DTYPES, f"a floating matrix, got shape {list(weight.shape)}")
    invariant(u.shape == (weight.shape[0],) and v.shape == (weight.shape[1],), "u [h] and v [w]")
    invariant(all(t.dtype == like.dtype and t.device == like.device for t in (weight, u, v)),
              "one dtype and device for every matrix and vector")


def _split(max_w: int):
    """Rows per item (a power of two, 2 to _MAX_ROWS) and the column tile, from the widest matrix:
    about _ITEM_ELEMS elements of W per item for it, fewer for narrower matrices."""
    r = min(_MAX_ROWS, max(1, _ITEM_ELEMS // max(max_w, 1)))
    rows = max(2, 1 << (r.bit_length() - 1))
    # _TILE_ELEMS // rows: narrow matrices (w < 64) use a wider tile than their rows, masked,
    # rather than another compilation per width.
    block_w = min(_TILE_ELEMS // rows, max(64, triton.next_power_of_2(max(max_w, 1))))
    return rows, block_w


@functools.lru_cache(maxsize=64)
def _tables(layout: tuple, rows: int, device: torch.device):
    """The int64 pointer table [G], metadata table [G, _META_COLS] and work list [items, 2] of the
    matrices described by ``layout`` ((data pointer, h, w, stride_r, stride_c) per matrix).

    The tables are a pure function of their key, so they are cached: a model's SN layers keep their
    storage from step to step, and the host-to-device copy of the tables is paid once, not per call.
    """
    pointers, meta, work = [], [], []
    u_offset = v_offset = partial_offset = 0
    for g, (pointer, h, w, stride_r, stride_c) in enumerate(layout):
        items = triton.cdiv(h, rows)
        row = [0] * _META_COLS.value
        row[_H.value], row[_W.value] = h, w
        row[_STRIDE_R.value], row[_STRIDE_C.value] = stride_r, stride_c
        row[_U_OFFSET.value], row[_V_OFFSET.value], row[_PARTIAL_OFFSET.value] = u_offset, v_offset, partial_offset
        row[_FIRST_ITEM.value], row[_ITEMS.value] = len(work), items
        pointers.append(pointer)
        meta.append(row)
        work.extend([g, k] for k in range(items))
        u_offset, v_offset, partial_offset = u_offset + h, v_offset + w, partial_offset + items * w

    def table(values, columns):
        return torch.tensor(values, dtype=torch.int64).reshape(len(values), columns).to(device)

    return table(pointers, 1).reshape(-1), table(meta, _META_COLS.value), table(work, 2), len(work), partial_offset


def spectral_power_iteration_grouped(weights, us, vs, n_iterations: int, eps: float) -> torch.Tensor:
    weights, us, vs = list(weights), list(us), list(vs)
    if len(weights) == 0:
        return torch.empty(0)
    # n_iterations < 0 would skip every launch and return sigmas' uninitialized memory.
    invariant(len(weights) == len(us) == len(vs) and n_iterations >= 0, "one u, v per matrix; n_iterations >= 0")
    for weight, u, v in zip(weights, us, vs):
        _check(weight, u, v, weights[0])
    device, dtype = weights[0].device, weights[0].dtype
    acc = accumulation_dtype(dtype)
    rows, block_w = _split(max(weight.shape[1] for weight in weights))
    layout = tuple((weight.data_ptr(), *weight.shape, *weight.stride()) for weight in weights)
    w_ptrs, meta, work, n_items, n_partials = _tables(layout, rows, device)
    u_all = torch.cat([u.to(acc) for u in us])
    v_all = torch.cat([v.to(acc) for v in vs])
    sigmas = torch.empty(len(weights), dtype=acc, device=device)
    grid = (n_items,)  # zero only when every matrix has no rows: then no pass is launched
    if n_iterations == 0:
        partials = torch.empty(max(n_items, 1), dtype=acc, device=device)
        if n_items:
            _pass_kernel[grid](w_ptrs, meta, work, v_all, u_all, u_all, partials,
                               sigma_only=True, W_DTYPE=TL_DTYPES[dtype], ROWS=rows, BLOCK_W=block_w)
        _finish_kernel[(len(weights),)](meta, u_all, partials, u_all, v_all, sigmas, eps,
                                        BLOCK=_FINISH_BLOCK, SIGMA_ONLY=True)
        return sigmas
    p_all = torch.empty_like(u_all)
    partials = torch.empty(max(n_partials, 1), dtype=acc, device=device)
    for _ in range(n_iterations):
        if n_items:
            _pass_kernel[grid](w_ptrs, meta, work, v_all, u_all, p_all, partials,
                               sigma_only=False, W_DTYPE=TL_DTYPES[dtype], ROWS=rows, BLOCK_W=block_w)
        _finish_kernel[(len(weights),)](meta, p_all, partials, u_all, v_all, sigmas, eps,
                                        BLOCK=_FINISH_BLOCK, SIGMA_ONLY=False)
    torch._foreach_copy_(us, list(u_all.split([u.numel() for u in us])))
    torch._foreach_copy_(vs, list(v_all.split([v.numel() for v in vs])))
    return sigmas


def spectral_power_iteration(weight, u, v, n_iterations: int, eps: float) -> torch.Tensor:
    """One matrix: the grouped launch over a list of one."""
    return spectral_power_iteration_grouped([weight], [u], [v], n_iterations, eps)[0]
