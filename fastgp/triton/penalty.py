"""Triton kernels of the gradient-penalty family: interpolation and the gradient-norm penalty head.

Raw launchers only (no autograd: ``fastgp/penalty.py`` builds the autograd Functions on top of
whichever backend ``fastgp.backend`` picks). The four launchers have the names, signatures and
semantics of ``torch.ops.fastgp.*`` and ``fastgp.reference.penalty``:

``interpolate(real, fake, alpha) -> out``
    out[b] = a·real[b] + (1 − a)·fake[b] in the accumulation dtype, a = alpha[b].
``interpolate_random(real, fake, seed) -> (out, alpha)``
    alpha[b] = tl.rand(seed, b) (Philox4x32-10) rounded to real.dtype; out uses the rounded alpha.
``grad_norm_penalty_forward(grad, center, one_sided) -> (penalty, norm)``
    per-sample sum of squares s, norm = sqrt(s); penalty = s when center == 0, else d², d = norm − center
    (clamped at 0 when one_sided). Rows whose s over- or underflowed get the scaled norm instead
    (``_scaled_norm``) and s = norm².
``grad_norm_penalty_backward(grad_penalty, grad, norm, center, one_sided) -> grad_in``
    grad_in[b] = grad[b] · (grad_penalty[b] · coef_b), coef_b = 2 (center 0) or 2·d_b / norm_b (0 at norm 0).

B = size(0), N = numel / B. The accumulation ("acc") dtype is float32 for float16, bfloat16 and
float32 inputs and float64 for float64 inputs; penalty and norm are returned in it. Sample-major
dense inputs (contiguous, channels_last, ...: every sample one contiguous block, same strides) are
read in place and the outputs keep their strides; any other layout is made contiguous first.
Reductions are deterministic: no atomics, per-program partials summed in a fixed order.

The launchers are registered as ``torch.ops.fastgp_triton.<name>`` (see ``_common.register``).
They do not validate user input: the public layer (fastgp/penalty.py) has done it; they assert
only the invariants their pointer arithmetic relies on (``_common.invariant``).
"""

import inspect

import torch
import triton
import triton.language as tl

from .._layout import accumulation_dtype, kernel_inputs
from . import _common
from ._common import TL_DTYPES, cast, chunking, invariant, register, tl_accumulation_dtype, wrap_triton

# Tiles summed by one program of the two-stage reduction; rows of at most
# MAX_BLOCK * _REDUCE_TILES elements are reduced by a single program (one launch).
_REDUCE_TILES = 4
# Partials summed per step by the finishing kernel.
_FINISH_BLOCK = 256
# (BLOCK, num_warps) of every row kernel: one tile size whatever the row length, one compilation
# (a short row leaves lanes masked; the penalty's rows are images, thousands of elements).
_TILE = (_common.MAX_BLOCK, 4)

# Compilations (docs/design.md, "Triton compilations"): a GPU compiles a kernel once per value of
# each constexpr and per class (1, divisible by 16, other) of each specialized integer and per
# alignment of each pointer. The row length N and the data pointers stay specialized (their
# divisibility lets the compiler vectorize the row loads); loop counts, strides and row counts are
# not, nor the pointers of per-row scalars; center == 0 and one_sided are runtime flags (one
# branch per row, not per element).
_SIZES = ("tiles_per_program", "num_chunks", "alpha_stride", "grad_penalty_stride", "norm_stride")
_SCALAR_POINTERS = ("alpha_ptr", "seed_ptr", "penalty_ptr", "norm_ptr", "partial_ptr", "grad_penalty_ptr")


def _jit(fn=None, *, sizes=_SIZES, scalar_pointers=_SCALAR_POINTERS):
    """``triton.jit`` with the parameters of ``fn`` named in ``sizes`` not specialized and those in
    ``scalar_pointers`` not specialized on alignment."""

    def decorate(fn):
        names = set(inspect.signature(fn).parameters)
        return triton.jit(fn, do_not_specialize=[n for n in sizes if n in names],
                          do_not_specialize_on_alignment=[n for n in scalar_pointers if n in names])

    return decorate(fn) if fn is not None else decorate


# ------------------------------------------------------------------------------------------------
# Kernels
# ------------------------------------------------------------------------------------------------


@triton.jit
def _lerp_tiles(
    real_ptr,
    fake_ptr,
    out_ptr,
    row_start,
    N,
    first_tile,
    tiles_per_program,
    a,
    BLOCK: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):
    """out = a·real + (1 − a)·fake over tiles [first_tile, first_tile + tiles_per_program) of a row."""
    one_minus_a = 1.0 - a
    for t in range(0, tiles_per_program):
        cols = (first_tile + t) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < N
        r = tl.load(real_ptr + row_start + cols, mask=mask, other=0.0).to(ACC_DTYPE)
        f = tl.load(fake_ptr + row_start + cols, mask=mask, other=0.0).to(ACC_DTYPE)
        out = a * r + one_minus_a * f
        tl.store(out_ptr + row_start + cols, cast(out, out_ptr.dtype.element_ty), mask=mask)


@_jit
def _interpolate_kernel(
    real_ptr,
    fake_ptr,
    alpha_ptr,
    out_ptr,
    alpha_stride,
    N,
    tiles_per_program,
    BLOCK: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):
    # grid (B, chunks): one program per (row, chunk of tiles_per_program tiles)
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1).to(tl.int64)
    a = tl.load(alpha_ptr + row * alpha_stride).to(ACC_DTYPE)
    _lerp_tiles(real_ptr, fake_ptr, out_ptr, row * N, N, chunk * tiles_per_program, tiles_per_program, a,
                BLOCK, ACC_DTYPE)


@_jit
def _interpolate_random_kernel(
    real_ptr,
    fake_ptr,
    seed_ptr,
    alpha_ptr,
    out_ptr,
    N,
    tiles_per_program,
    BLOCK: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):
    # grid (B, chunks). Every program draws its row's alpha (Philox4x32-10, counter (b, 0, 0, 0),
    # key = seed's low/high 32 bits: exactly tl.rand(seed, b) with b an int32), rounds it to the
    # input dtype, and lerps with the rounded value; the chunk-0 program stores alpha.
    row32 = tl.program_id(0)
    row = row32.to(tl.int64)
    chunk = tl.program_id(1).to(tl.int64)
    seed = tl.load(seed_ptr)
    alpha = cast(tl.rand(seed, row32), alpha_ptr.dtype.element_ty)
    tl.store(alpha_ptr + row, alpha, mask=chunk == 0)
    _lerp_tiles(real_ptr, fake_ptr, out_ptr, row * N, N, chunk * tiles_per_program, tiles_per_program,
                alpha.to(ACC_DTYPE), BLOCK, ACC_DTYPE)


@triton.jit
def _sum_sq_tiles(
    x_ptr,
    row_start,
    N,
    first_tile,
    num_tiles,
    BLOCK: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):
    """Sum of squares of tiles [first_tile, first_tile + num_tiles) of a row, in ACC_DTYPE."""
    acc = tl.zeros([BLOCK], dtype=ACC_DTYPE)
    for t in range(0, num_tiles):
        cols = (first_tile + t) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < N
        x = tl.load(x_ptr + row_start + cols, mask=mask, other=0.0).to(ACC_DTYPE)
        acc += x * x
    return tl.sum(acc, axis=0)


# Below this a row's sum of squares may have lost precision to underflow (csrc/fastgp/penalty.h).
_LOWEST_TRUSTED_SUM_SQUARES = {torch.float32: 2.0**-100, torch.float64: 2.0**-969}


@triton.jit
def _scaled_norm(x_ptr, row_start, N, BLOCK: tl.constexpr, ACC_DTYPE: tl.constexpr):
    """Overflow/underflow-safe norm of a NaN-free row: m·sqrt(Σ (x/m)²), m = max |x| (0 and inf
    returned as they are), as csrc/fastgp/penalty.h's scaled_norm."""
    m = tl.zeros([BLOCK], dtype=ACC_DTYPE)
    for start in range(0, N, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row_start + cols, mask=cols < N, other=0.0).to(ACC_DTYPE)
        m = tl.maximum(m, tl.abs(x))
    m_row = tl.max(m, axis=0)
    safe = tl.where(m_row > 0, m_row, 1.0)
    acc = tl.zeros([BLOCK], dtype=ACC_DTYPE)
    for start in range(0, N, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        v = tl.load(x_ptr + row_start + cols, mask=cols < N, other=0.0).to(ACC_DTYPE) / safe
        acc += v * v
    if ACC_DTYPE == tl.float64:
        norm = m_row * tl.sqrt(tl.sum(acc, axis=0))
    else:
        norm = m_row * tl.sqrt_rn(tl.sum(acc, axis=0))
    return tl.where((m_row > 0) & (m_row - m_row == 0), norm, m_row)


@triton.jit
def _penalty_from_sum_sq(
    sum_sq,
    x_ptr,
    row_start,
    N,
    center,
    lowest_trusted,
    BLOCK: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    center_zero,
    one_sided,
):
    """(penalty, norm) of one row (x_ptr + row_start, N elements) from its sum of squares. NaN and
    inf propagate. A sum that overflowed (inf without NaN) or fell below ``lowest_trusted``
    (underflow) is replaced by the scaled norm's square, as head_forward_row in
    csrc/fastgp/penalty.h; ordinary rows never take that second pass over the row.

    ``center`` is a float64 argument, rounded to float32 for float32 math (as torch rounds a Python
    scalar). Never assign it to a local: the interpreter turns assigned Python floats into float32.
    """
    if ACC_DTYPE == tl.float64:
        norm = tl.sqrt(sum_sq)  # IEEE for float64
        rescale = sum_sq < lowest_trusted
    else:
        norm = tl.sqrt_rn(sum_sq)  # IEEE, not the approximate sqrt.approx.f32
        rescale = sum_sq < tl.cast(lowest_trusted, tl.float32)
    rescale = rescale | ((sum_sq - sum_sq != 0) & (sum_sq == sum_sq))  # inf, not NaN
    if rescale:
        norm = _scaled_norm(x_ptr, row_start, N, BLOCK, ACC_DTYPE)
        sum_sq = norm * norm
    if center_zero:
        penalty = sum_sq  # never sqrt then square
    else:
        if ACC_DTYPE == tl.float64:
            d = norm - center
        else:
            d = norm - tl.cast(center, tl.float32)
        if one_sided:
            d = tl.where(d < 0, 0.0, d)  # keeps NaN (tl.maximum would not promise to)
        penalty = d * d
    return penalty, norm


@_jit
def _grad_norm_forward_row_kernel(
    grad_ptr,
    penalty_ptr,
    norm_ptr,
    N,
    center: tl.float64,
    lowest_trusted: tl.float64,
    BLOCK: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    center_zero,
    one_sided,
):
    # grid (B,): one program reduces a whole (short) row and applies the penalty
    row = tl.program_id(0).to(tl.int64)
    sum_sq = _sum_sq_tiles(grad_ptr, row * N, N, 0, tl.cdiv(N, BLOCK), BLOCK, ACC_DTYPE)
    penalty, norm = _penalty_from_sum_sq(sum_sq, grad_ptr, row * N, N, center, lowest_trusted, BLOCK,
                                         ACC_DTYPE, center_zero, one_sided)
    tl.store(penalty_ptr + row, penalty)
    tl.store(norm_ptr + row, norm)


@_jit
def _grad_norm_partial_kernel(
    grad_ptr,
    partial_ptr,
    N,
    num_chunks,
    tiles_per_program,
    BLOCK: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):
    # grid (B, chunks): stage 1 of the deterministic two-stage reduction, partial[b, chunk]
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1).to(tl.int64)
    partial = _sum_sq_tiles(grad_ptr, row * N, N, chunk * tiles_per_program, tiles_per_program, BLOCK,
                            ACC_DTYPE)
    tl.store(partial_ptr + row * num_chunks + chunk, partial)


@_jit(sizes=(*_SIZES, "N"), scalar_pointers=(*_SCALAR_POINTERS, "grad_ptr"))
def _grad_norm_finish_kernel(
    partial_ptr,
    grad_ptr,
    penalty_ptr,
    norm_ptr,
    N,
    num_chunks,
    center: tl.float64,
    lowest_trusted: tl.float64,
    BLOCK: tl.constexpr,
    ROW_BLOCK: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    center_zero,
    one_sided,
):
    # grid (B,): stage 2, sums a row's partials in a fixed order and applies the penalty
    row = tl.program_id(0).to(tl.int64)
    base = partial_ptr + row * num_chunks
    acc = tl.zeros([BLOCK], dtype=ACC_DTYPE)
    for start in range(0, num_chunks, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        acc += tl.load(base + cols, mask=cols < num_chunks, other=0.0)
    sum_sq = tl.sum(acc, axis=0)
    penalty, norm = _penalty_from_sum_sq(sum_sq, grad_ptr, row * N, N, center, lowest_trusted, ROW_BLOCK,
                                         ACC_DTYPE, center_zero, one_sided)
    tl.store(penalty_ptr + row, penalty)
    tl.store(norm_ptr + row, norm)


@_jit
def _grad_norm_backward_kernel(
    grad_penalty_ptr,
    grad_ptr,
    norm_ptr,
    out_ptr,
    grad_penalty_stride,
    norm_stride,
    N,
    tiles_per_program,
    center: tl.float64,
    BLOCK: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    center_zero,
    one_sided,
):
    # grid (B, chunks): grad_in = grad · (grad_penalty · coef) in ACC_DTYPE, one pass
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1).to(tl.int64)
    grad_penalty = tl.load(grad_penalty_ptr + row * grad_penalty_stride).to(ACC_DTYPE)
    if center_zero:
        scale = grad_penalty * 2.0
    else:
        norm = tl.load(norm_ptr + row * norm_stride).to(ACC_DTYPE)
        if ACC_DTYPE == tl.float64:
            d = norm - center
        else:
            d = norm - tl.cast(center, tl.float32)
        if one_sided:
            d = tl.where(d < 0, 0.0, d)
        positive = norm != 0  # a NaN norm keeps its NaN coefficient (nothing masked but a zero norm)
        safe_norm = tl.where(positive, norm, 1.0)
        if ACC_DTYPE == tl.float64:
            ratio = (2.0 * d) / safe_norm
        else:
            ratio = tl.math.div_rn(2.0 * d, safe_norm)  # IEEE, not div.full.f32
        scale = grad_penalty * tl.where(positive, ratio, 0.0)
    row_start = row * N
    first_tile = chunk * tiles_per_program
    for t in range(0, tiles_per_program):
        cols = (first_tile + t) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < N
        x = tl.load(grad_ptr + row_start + cols, mask=mask, other=0.0).to(ACC_DTYPE)
        tl.store(out_ptr + row_start + cols, cast(x * scale, out_ptr.dtype.element_ty), mask=mask)


# ------------------------------------------------------------------------------------------------
# Launchers
# ------------------------------------------------------------------------------------------------


def _check_rows(first: torch.Tensor, *others: torch.Tensor) -> None:
    """Invariants of the row kernels: [B, ...] tensors of one shape and device, B within grid.x."""
    invariant(first.dim() >= 1 and first.shape[0] <= _common.MAX_GRID_X, f"rows of shape {list(first.shape)}")
    for other in others:
        invariant(other.shape == first.shape and other.device == first.device, "tensors of one shape and device")


def _check_per_sample(v: torch.Tensor, batch: int, device: torch.device) -> None:
    """Invariant of a per-sample vector read through its stride: [B] on the rows' device."""
    invariant(v.shape == (batch,) and v.device == device, f"a per-sample vector [{batch}] on {device}")


@register("interpolate")
def interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """out[b] = alpha[b]·real[b] + (1 − alpha[b])·fake[b], computed in the accumulation dtype."""
    _check_rows(real, fake)
    _check_per_sample(alpha, real.shape[0], real.device)
    real, fake = kernel_inputs(real, fake)
    out = torch.empty_like(real)
    batch = real.shape[0]
    if out.numel() == 0:
        return out
    n = real.numel() // batch
    block, num_warps = _TILE
    chunks, tiles_per_program = chunking(n, block)
    wrap_triton(_interpolate_kernel)[(batch, chunks)](
        real, fake, alpha, out, alpha.stride(0), n, tiles_per_program,
        BLOCK=block, ACC_DTYPE=tl_accumulation_dtype(real.dtype), num_warps=num_warps,
    )  # fmt: skip
    return out


@register("interpolate_random")
def interpolate_random(real: torch.Tensor, fake: torch.Tensor, seed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolate with alpha[b] = tl.rand(seed, b) rounded to real.dtype; returns (out, alpha).

    ``seed`` is a one-element int64 tensor on the device of ``real``, read by the kernel (no host sync).
    """
    _check_rows(real, fake)
    invariant(seed.dtype == torch.int64 and seed.numel() == 1 and seed.device == real.device,
              "seed: one int64 element on the device of real")
    real, fake = kernel_inputs(real, fake)
    batch = real.shape[0]
    out = torch.empty_like(real)
    alpha = torch.empty(batch, dtype=real.dtype, device=real.device)
    if batch == 0:
        return out, alpha
    n = real.numel() // batch
    block, num_warps = _TILE
    # N == 0 still needs one program per row to draw alpha (its tile loop is empty).
    chunks, tiles_per_program = chunking(n, block) if n > 0 else (1, 0)
    wrap_triton(_interpolate_random_kernel)[(batch, chunks)](
        real, fake, seed, alpha, out, n, tiles_per_program,
        BLOCK=block, ACC_DTYPE=tl_accumulation_dtype(real.dtype), num_warps=num_warps,
    )  # fmt: skip
    return out, alpha


@register("grad_norm_penalty_forward")
def grad_norm_penalty_forward(grad: torch.Tensor, center: float, one_sided: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (penalty, norm), both [B] in the accumulation dtype."""
    _check_rows(grad)
    center = float(center)
    (grad,) = kernel_inputs(grad)
    batch = grad.shape[0]
    acc = accumulation_dtype(grad.dtype)
    penalty = torch.empty(batch, dtype=acc, device=grad.device)
    norm = torch.empty(batch, dtype=acc, device=grad.device)
    if batch == 0:
        return penalty, norm
    n = grad.numel() // batch
    block, num_warps = _TILE
    modes = dict(ACC_DTYPE=TL_DTYPES[acc], center_zero=center == 0.0, one_sided=bool(one_sided))
    lowest = _LOWEST_TRUSTED_SUM_SQUARES[acc]
    if n <= block * _REDUCE_TILES:  # one program per row
        wrap_triton(_grad_norm_forward_row_kernel)[(batch,)](
            grad, penalty, norm, n, center, lowest, BLOCK=block, num_warps=num_warps, **modes
        )
        return penalty, norm
    chunks, tiles_per_program = chunking(n, block, _REDUCE_TILES)
    partial = torch.empty((batch, chunks), dtype=acc, device=grad.device)
    wrap_triton(_grad_norm_partial_kernel)[(batch, chunks)](
        grad, partial, n, chunks, tiles_per_program,
        BLOCK=block, ACC_DTYPE=modes["ACC_DTYPE"], num_warps=num_warps,
    )  # fmt: skip
    wrap_triton(_grad_norm_finish_kernel)[(batch,)](
        partial, grad, penalty, norm, n, chunks, center, lowest, BLOCK=_FINISH_BLOCK, ROW_BLOCK=block,
        num_warps=1, **modes,
    )  # fmt: skip
    return penalty, norm


@register("grad_norm_penalty_backward")
def grad_norm_penalty_backward(
    grad_penalty: torch.Tensor, grad: torch.Tensor, norm: torch.Tensor, center: float, one_sided: bool
) -> torch.Tensor:
    """grad_in[b] = grad[b]·(grad_penalty[b]·coef_b) with grad's shape, dtype and (sample-major) layout."""
    _check_rows(grad)
    center = float(center)
    acc = accumulation_dtype(grad.dtype)
    batch = grad.shape[0]
    _check_per_sample(grad_penalty, batch, grad.device)
    _check_per_sample(norm, batch, grad.device)
    (grad,) = kernel_inputs(grad)
    out = torch.empty_like(grad)
    if out.numel() == 0:
        return out
    n = grad.numel() // batch
    block, num_warps = _TILE
    chunks, tiles_per_program = chunking(n, block)
    wrap_triton(_grad_norm_backward_kernel)[(batch, chunks)](
        grad_penalty, grad, norm, out, grad_penalty.stride(0), norm.stride(0), n, tiles_per_program, center,
        BLOCK=block, ACC_DTYPE=TL_DTYPES[acc], center_zero=center == 0.0, one_sided=bool(one_sided),
        num_warps=num_warps,
    )  # fmt: skip
    return out


def grad_norm_penalty_sum(grad: torch.Tensor, center: float, one_sided: bool, scale: float) -> torch.Tensor:
    """scale · Σ_b penalty[b] (0-d, accumulation dtype): the head reduced to a scalar, as the C++ op
    ``grad_norm_penalty_sum`` (every backend implements every op: tests/test_contract.py)."""
    return grad_norm_penalty_forward(grad, center, one_sided)[0].sum() * scale
