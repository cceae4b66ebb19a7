"""Triton kernels of the spectral-normalization family: the fused power iteration.

Raw launchers with the names, signatures and semantics of ``torch.ops.fastgp.*`` and
``fastgp.reference.spectral`` (autograd lives in ``fastgp/spectral.py``):

``spectral_power_iteration(weight, u, v, n_iterations, eps) -> sigma``
    n_iterations times u = normalize(W v), v = normalize(Wᵀ u) (normalize(x) = x / max(‖x‖, eps)),
    u [h] and v [w] updated in place; returns σ = uᵀ W v (0-d, float32 for float16/bfloat16).
``spectral_power_iteration_grouped(weights, us, vs, n_iterations, eps) -> sigmas [G]``
    the same per matrix (here one chain of launches per matrix, not one launch for the group).

One iteration is two launches: ``_pass_kernel`` (one program per chunk of ROWS rows) reads its
rows of W once from memory: p_i = W_i·v for its rows, then the partial Wᵀp over its rows from the
tiles it just read (a second read of a small chunk, served by the cache); ``_finish_kernel`` (one
program) adds the partials in chunk order and normalizes (derivation in csrc/fastgp/spectral.h).
No atomics: results are deterministic. The iteration state u, v is kept in float32/float64 and
written back to the buffers (rounded by torch) at the end.
"""

import torch
import triton
import triton.language as tl

# Elements of W per program (the same split as the C++ kernels), and of one loaded tile.
_ITEM_ELEMS = 16384
_TILE_ELEMS = 4096
_MAX_ROWS = 64
_FINISH_BLOCK = 1024


@triton.jit
def _pass_kernel(
    W, stride_r, stride_c, h, w, v_ptr, u_ptr, p_ptr, partial_ptr,
    ROWS: tl.constexpr, BLOCK_W: tl.constexpr, SIGMA_ONLY: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    rows = pid * ROWS + tl.arange(0, ROWS)
    row_mask = rows < h
    cols0 = tl.arange(0, BLOCK_W)
    acc_ty = v_ptr.dtype.element_ty
    # p = W v over this program's rows.
    p = tl.zeros((ROWS,), dtype=acc_ty)
    for c in range(0, w, BLOCK_W):
        cols = c + cols0
        col_mask = cols < w
        mask = row_mask[:, None] & col_mask[None, :]
        tile = tl.load(W + rows[:, None] * stride_r + cols[None, :] * stride_c, mask=mask, other=0.0).to(acc_ty)
        vv = tl.load(v_ptr + cols, mask=col_mask, other=0.0)
        p += tl.sum(tile * vv[None, :], axis=1)
    if SIGMA_ONLY:
        uu = tl.load(u_ptr + rows, mask=row_mask, other=0.0)
        tl.store(partial_ptr + pid, tl.sum(p * uu, axis=0))
    else:
        tl.store(p_ptr + rows, p, mask=row_mask)
        # Partial Wᵀ p over these rows, written to row pid of the [items, w] partials.
        for c in range(0, w, BLOCK_W):
            cols = c + cols0
            col_mask = cols < w
            mask = row_mask[:, None] & col_mask[None, :]
            tile = tl.load(W + rows[:, None] * stride_r + cols[None, :] * stride_c, mask=mask, other=0.0).to(acc_ty)
            tl.store(partial_ptr + pid * w + cols, tl.sum(tile * p[:, None], axis=0), mask=col_mask)


@triton.jit
def _finish_kernel(p_ptr, partial_ptr, items, h, w, u_ptr, v_ptr, sigma_ptr, eps, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    acc_ty = v_ptr.dtype.element_ty
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
        ptrs = partial_ptr + cols  # advanced one partial row per step: no 32-bit k * w product
        for k in range(0, items):
            t += tl.load(ptrs, mask=col_mask, other=0.0)
            ptrs += w
        tl.store(v_ptr + cols, t, mask=col_mask)
        t_sq += t * t
    du = tl.maximum(tl.sqrt(tl.sum(p_sq, axis=0)), eps)
    wtu = tl.sqrt(tl.sum(t_sq, axis=0)) / du
    dv = tl.maximum(wtu, eps)
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
    tl.store(sigma_ptr, wtu * wtu / dv)


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check(weight, u, v, n_iterations, eps) -> None:
    if weight.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"weight must be float16, bfloat16, float32 or float64, got {weight.dtype}")
    if weight.dim() != 2:
        raise ValueError(f"weight must be a matrix [h, w], got shape {list(weight.shape)}")
    if u.shape != (weight.shape[0],) or v.shape != (weight.shape[1],):
        raise ValueError(f"u and v must have shapes [{weight.shape[0]}] and [{weight.shape[1]}], "
                         f"got {list(u.shape)} and {list(v.shape)}")
    if u.dtype != weight.dtype or v.dtype != weight.dtype:
        raise TypeError(f"u and v must have the dtype of weight ({weight.dtype}), got {u.dtype} and {v.dtype}")
    if u.device != weight.device or v.device != weight.device:
        raise ValueError("u, v and weight must be on one device")
    if n_iterations < 0:
        raise ValueError(f"n_iterations must be >= 0, got {n_iterations}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")


def _split(h: int, w: int):
    # The largest power of two <= ITEM/w rows (at most _MAX_ROWS; at least 2, masked).
    r = min(_MAX_ROWS, max(1, _ITEM_ELEMS // max(w, 1)))
    rows = max(2, 1 << (r.bit_length() - 1))
    block_w = max(16, min(triton.next_power_of_2(max(w, 1)), _TILE_ELEMS // rows))
    return rows, block_w, triton.cdiv(h, rows)


def spectral_power_iteration(weight, u, v, n_iterations: int, eps: float) -> torch.Tensor:
    _check(weight, u, v, n_iterations, eps)
    acc = _acc_dtype(weight.dtype)
    h, w = weight.shape
    u_acc, v_acc = u.to(acc, copy=True), v.to(acc, copy=True)
    if h == 0 or w == 0:  # nothing to read: the kernels need at least one program
        from fastgp.reference.spectral import spectral_power_iteration as ref
        return ref(weight, u, v, n_iterations, eps)
    rows, block_w, items = _split(h, w)
    p = torch.empty(h, dtype=acc, device=weight.device)
    sigma = torch.empty((), dtype=acc, device=weight.device)
    if n_iterations == 0:
        partial = torch.empty(items, dtype=acc, device=weight.device)
        _pass_kernel[(items,)](weight, weight.stride(0), weight.stride(1), h, w, v_acc, u_acc, p, partial,
                               ROWS=rows, BLOCK_W=block_w, SIGMA_ONLY=True)
        return partial.sum().reshape(())
    partial = torch.empty((items, w), dtype=acc, device=weight.device)
    for _ in range(n_iterations):
        _pass_kernel[(items,)](weight, weight.stride(0), weight.stride(1), h, w, v_acc, u_acc, p, partial,
                               ROWS=rows, BLOCK_W=block_w, SIGMA_ONLY=False)
        _finish_kernel[(1,)](p, partial, items, h, w, u_acc, v_acc, sigma, eps, BLOCK=_FINISH_BLOCK)
    u.copy_(u_acc)
    v.copy_(v_acc)
    return sigma


def spectral_power_iteration_grouped(weights, us, vs, n_iterations: int, eps: float) -> torch.Tensor:
    if len(weights) == 0:
        return torch.empty(0)
    sigmas = [spectral_power_iteration(w, u, v, n_iterations, eps) for w, u, v in zip(weights, us, vs)]
    return torch.stack(sigmas)
