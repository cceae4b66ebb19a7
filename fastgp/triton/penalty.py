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
    (clamped at 0 when one_sided).
``grad_norm_penalty_backward(grad_penalty, grad, norm, center, one_sided) -> grad_in``
    grad_in[b] = grad[b] · (grad_penalty[b] · coef_b), coef_b = 2 (center 0) or 2·d_b / norm_b (0 at norm 0).

B = size(0), N = numel / B. The accumulation ("acc") dtype is float32 for float16, bfloat16 and
float32 inputs and float64 for float64 inputs; penalty and norm are returned in it. Sample-major
dense inputs (contiguous, channels_last, ...: every sample one contiguous block, same strides) are
read in place and the outputs keep their strides; any other layout is made contiguous first.
Reductions are deterministic: no atomics, per-program partials summed in a fixed order.

When ``torch.library.triton_op`` is available the launchers are registered as the custom ops
``torch.ops.fastgp_triton.<name>``, so that torch.compile traces into the Triton kernels. Under the
Triton interpreter (``TRITON_INTERPRET=1``) they run eagerly only: ``wrap_triton`` returns the
interpreted kernel unchanged, and fake tensors (torch.compile, opcheck) cannot be interpreted.
"""

import torch
import triton
import triton.language as tl

try:  # torch >= 2.6
    from torch.library import triton_op as _triton_op
    from torch.library import wrap_triton as _wrap_triton
except ImportError:  # pragma: no cover - older torch: plain launchers
    _triton_op = None

    def _wrap_triton(kernel):
        return kernel

# Elements per tile (one tl.arange block); smaller rows get the next power of two, at least _MIN_BLOCK.
_MAX_BLOCK = 1024
_MIN_BLOCK = 16
# Tiles summed by one program of the two-stage reduction; rows of at most
# _MAX_BLOCK * _REDUCE_TILES elements are reduced by a single program (one launch).
_REDUCE_TILES = 4
# Partials summed per step by the finishing kernel.
_FINISH_BLOCK = 256
# CUDA limits of grid.y (chunks of a row) and grid.x (rows).
_MAX_GRID_Y = 65535
_MAX_GRID_X = 2**31 - 1

_SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Compiled Triton and torch round float32 -> bfloat16 to nearest even; Triton 3.8's interpreter
# (TRITON_INTERPRET=1) truncates instead. Under the interpreter the kernels round by hand, so that
# they compute what the compiled kernels compute (and alpha matches the other backends bit for bit).
_INTERPRETED = bool(triton.knobs.runtime.interpret)
_EMULATE_BF16_RTNE = tl.constexpr(_INTERPRETED)


# ------------------------------------------------------------------------------------------------
# Kernels
# ------------------------------------------------------------------------------------------------


@triton.jit
def _cast(x, DTYPE: tl.constexpr):
    """x.to(DTYPE) rounding to nearest even (also for bfloat16 under the interpreter)."""
    if _EMULATE_BF16_RTNE and DTYPE == tl.bfloat16:
        bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
        rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
        rounded = tl.where(x != x, 0x7FC0, rounded)  # NaN stays NaN (the carry could make it inf)
        return rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(DTYPE)


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
        tl.store(out_ptr + row_start + cols, _cast(out, out_ptr.dtype.element_ty), mask=mask)


@triton.jit
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


@triton.jit
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
    alpha = _cast(tl.rand(seed, row32), alpha_ptr.dtype.element_ty)
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


@triton.jit
def _penalty_from_sum_sq(
    sum_sq,
    center,
    ACC_DTYPE: tl.constexpr,
    CENTER_ZERO: tl.constexpr,
    ONE_SIDED: tl.constexpr,
):
    """(penalty, norm) of one row from its sum of squares. NaN and inf propagate.

    ``center`` is a float64 argument, rounded to float32 for float32 math (as torch rounds a Python
    scalar). Never assign it to a local: the interpreter turns assigned Python floats into float32.
    """
    if ACC_DTYPE == tl.float64:
        norm = tl.sqrt(sum_sq)  # IEEE for float64
    else:
        norm = tl.sqrt_rn(sum_sq)  # IEEE, not the approximate sqrt.approx.f32
    if CENTER_ZERO:
        penalty = sum_sq  # never sqrt then square
    else:
        if ACC_DTYPE == tl.float64:
            d = norm - center
        else:
            d = norm - tl.cast(center, tl.float32)
        if ONE_SIDED:
            d = tl.where(d < 0, 0.0, d)  # keeps NaN (tl.maximum would not promise to)
        penalty = d * d
    return penalty, norm


@triton.jit
def _grad_norm_forward_row_kernel(
    grad_ptr,
    penalty_ptr,
    norm_ptr,
    N,
    center: tl.float64,
    BLOCK: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    CENTER_ZERO: tl.constexpr,
    ONE_SIDED: tl.constexpr,
):
    # grid (B,): one program reduces a whole (short) row and applies the penalty
    row = tl.program_id(0).to(tl.int64)
    sum_sq = _sum_sq_tiles(grad_ptr, row * N, N, 0, tl.cdiv(N, BLOCK), BLOCK, ACC_DTYPE)
    penalty, norm = _penalty_from_sum_sq(sum_sq, center, ACC_DTYPE, CENTER_ZERO, ONE_SIDED)
    tl.store(penalty_ptr + row, penalty)
    tl.store(norm_ptr + row, norm)


@triton.jit
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


@triton.jit
def _grad_norm_finish_kernel(
    partial_ptr,
    penalty_ptr,
    norm_ptr,
    num_chunks,
    center: tl.float64,
    BLOCK: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    CENTER_ZERO: tl.constexpr,
    ONE_SIDED: tl.constexpr,
):
    # grid (B,): stage 2, sums a row's partials in a fixed order and applies the penalty
    row = tl.program_id(0).to(tl.int64)
    base = partial_ptr + row * num_chunks
    acc = tl.zeros([BLOCK], dtype=ACC_DTYPE)
    for start in range(0, num_chunks, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        acc += tl.load(base + cols, mask=cols < num_chunks, other=0.0)
    sum_sq = tl.sum(acc, axis=0)
    penalty, norm = _penalty_from_sum_sq(sum_sq, center, ACC_DTYPE, CENTER_ZERO, ONE_SIDED)
    tl.store(penalty_ptr + row, penalty)
    tl.store(norm_ptr + row, norm)


@triton.jit
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
    CENTER_ZERO: tl.constexpr,
    ONE_SIDED: tl.constexpr,
):
    # grid (B, chunks): grad_in = grad · (grad_penalty · coef) in ACC_DTYPE, one pass
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1).to(tl.int64)
    grad_penalty = tl.load(grad_penalty_ptr + row * grad_penalty_stride).to(ACC_DTYPE)
    if CENTER_ZERO:
        scale = grad_penalty * 2.0
    else:
        norm = tl.load(norm_ptr + row * norm_stride).to(ACC_DTYPE)
        if ACC_DTYPE == tl.float64:
            d = norm - center
        else:
            d = norm - tl.cast(center, tl.float32)
        if ONE_SIDED:
            d = tl.where(d < 0, 0.0, d)
        positive = norm > 0
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
        tl.store(out_ptr + row_start + cols, _cast(x * scale, out_ptr.dtype.element_ty), mask=mask)


# ------------------------------------------------------------------------------------------------
# Launchers
# ------------------------------------------------------------------------------------------------

def _register(name: str):
    """Register a launcher as torch.ops.fastgp_triton.<name> when torch.library.triton_op exists."""

    def decorator(fn):
        if _triton_op is None:  # pragma: no cover
            return fn
        return _triton_op(f"fastgp_triton::{name}", mutates_args=())(fn)

    return decorator


_TL_ACC_DTYPES = {torch.float32: tl.float32, torch.float64: tl.float64}


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_batch(t, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    if t.dim() < 1:
        raise ValueError(f"{name} must have a batch dimension ([B, ...]), got a 0-d tensor")
    if t.shape[0] > _MAX_GRID_X:
        raise ValueError(f"{name} has {t.shape[0]} samples; the Triton kernels support at most {_MAX_GRID_X}")
    if not _INTERPRETED and t.device.type == "cpu":
        raise ValueError(
            f"{name} is a CPU tensor: the Triton kernels need GPU tensors "
            "(or TRITON_INTERPRET=1 set before fastgp.triton.penalty is imported)"
        )


def _check_like(t, name: str, ref: torch.Tensor, ref_name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != ref.dtype:
        raise TypeError(f"{name} must have the dtype of {ref_name} ({ref.dtype}), got {t.dtype}")
    if t.shape != ref.shape:
        raise ValueError(f"{name} must have the shape of {ref_name} {list(ref.shape)}, got {list(t.shape)}")
    if t.device != ref.device:
        raise ValueError(f"{name} must be on the device of {ref_name} ({ref.device}), got {t.device}")


def _check_per_sample(v, name: str, batch: int, dtype: torch.dtype, device: torch.device) -> None:
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
    if v.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {v.dtype}")
    if v.shape != (batch,):
        raise ValueError(f"{name} must have shape [{batch}] (one value per sample), got {list(v.shape)}")
    if v.device != device:
        raise ValueError(f"{name} must be on {device}, got {v.device}")


def _check_center(center, one_sided) -> float:
    if isinstance(center, bool) or not isinstance(center, (int, float)):
        raise TypeError(f"center must be a float, got {type(center).__name__}")
    if not isinstance(one_sided, bool):
        raise TypeError(f"one_sided must be a bool, got {type(one_sided).__name__}")
    return float(center)


def _is_sample_major(t: torch.Tensor) -> bool:
    """Every sample one contiguous block of N elements at offset b·N (contiguous, channels_last, ...)."""
    expected = 1  # non-overlapping and dense: strides of the size>1 dims, ascending, chain up to numel
    for stride, size in sorted((st, n) for n, st in zip(t.shape, t.stride()) if n > 1):
        if stride != expected:
            return False
        expected *= size
    batch = t.shape[0]
    return batch <= 1 or t.stride(0) == t.numel() // batch


def _same_memory_order(a: torch.Tensor, b: torch.Tensor) -> bool:
    return all(sa == sb for n, sa, sb in zip(a.shape, a.stride(), b.stride()) if n > 1)


def _rows(*tensors: torch.Tensor):
    """The tensors as they are when all are sample-major dense in the same memory order, else contiguous."""
    first = tensors[0]
    if all(_is_sample_major(t) and _same_memory_order(t, first) for t in tensors):
        return tensors
    return tuple(t.contiguous() for t in tensors)


def _tile(n: int):
    """(BLOCK, num_warps) for rows of n elements."""
    block = min(_MAX_BLOCK, max(_MIN_BLOCK, triton.next_power_of_2(max(n, 1))))
    return block, max(1, min(8, block // 256))


def _chunking(n: int, block: int, min_tiles_per_program: int = 1):
    """(chunks, tiles_per_program): a row's tiles split into at most _MAX_GRID_Y programs."""
    tiles = triton.cdiv(n, block)
    tiles_per_program = max(min_tiles_per_program, triton.cdiv(tiles, _MAX_GRID_Y))
    return triton.cdiv(tiles, tiles_per_program), tiles_per_program


@_register("interpolate")
def interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """out[b] = alpha[b]·real[b] + (1 − alpha[b])·fake[b], computed in the accumulation dtype."""
    _check_batch(real, "real")
    _check_like(fake, "fake", real, "real")
    _check_per_sample(alpha, "alpha", real.shape[0], real.dtype, real.device)
    real, fake = _rows(real, fake)
    out = torch.empty_like(real)
    batch = real.shape[0]
    if out.numel() == 0:
        return out
    n = real.numel() // batch
    block, num_warps = _tile(n)
    chunks, tiles_per_program = _chunking(n, block)
    _wrap_triton(_interpolate_kernel)[(batch, chunks)](
        real, fake, alpha, out, alpha.stride(0), n, tiles_per_program,
        BLOCK=block, ACC_DTYPE=_TL_ACC_DTYPES[_acc_dtype(real.dtype)], num_warps=num_warps,
    )  # fmt: skip
    return out


@_register("interpolate_random")
def interpolate_random(real: torch.Tensor, fake: torch.Tensor, seed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolate with alpha[b] = tl.rand(seed, b) rounded to real.dtype; returns (out, alpha).

    ``seed`` is a one-element int64 tensor on the device of ``real``, read by the kernel (no host sync).
    """
    _check_batch(real, "real")
    _check_like(fake, "fake", real, "real")
    if not isinstance(seed, torch.Tensor):
        raise TypeError(f"seed must be a torch.Tensor, got {type(seed).__name__}")
    if seed.dtype != torch.int64:
        raise TypeError(f"seed must be an int64 tensor, got {seed.dtype}")
    if seed.numel() != 1:
        raise ValueError(f"seed must have exactly one element, got shape {list(seed.shape)}")
    if seed.device != real.device:
        raise ValueError(f"seed must be on the device of real ({real.device}), got {seed.device}")
    real, fake = _rows(real, fake)
    batch = real.shape[0]
    out = torch.empty_like(real)
    alpha = torch.empty(batch, dtype=real.dtype, device=real.device)
    if batch == 0:
        return out, alpha
    n = real.numel() // batch
    block, num_warps = _tile(n)
    # N == 0 still needs one program per row to draw alpha (its tile loop is empty).
    chunks, tiles_per_program = _chunking(n, block) if n > 0 else (1, 0)
    _wrap_triton(_interpolate_random_kernel)[(batch, chunks)](
        real, fake, seed, alpha, out, n, tiles_per_program,
        BLOCK=block, ACC_DTYPE=_TL_ACC_DTYPES[_acc_dtype(real.dtype)], num_warps=num_warps,
    )  # fmt: skip
    return out, alpha


@_register("grad_norm_penalty_forward")
def grad_norm_penalty_forward(grad: torch.Tensor, center: float, one_sided: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (penalty, norm), both [B] in the accumulation dtype."""
    _check_batch(grad, "grad")
    center = _check_center(center, one_sided)
    (grad,) = _rows(grad)
    batch = grad.shape[0]
    acc = _acc_dtype(grad.dtype)
    penalty = torch.empty(batch, dtype=acc, device=grad.device)
    norm = torch.empty(batch, dtype=acc, device=grad.device)
    if batch == 0:
        return penalty, norm
    n = grad.numel() // batch
    block, num_warps = _tile(n)
    modes = dict(ACC_DTYPE=_TL_ACC_DTYPES[acc], CENTER_ZERO=center == 0.0, ONE_SIDED=one_sided)
    if n <= block * _REDUCE_TILES:  # one program per row
        _wrap_triton(_grad_norm_forward_row_kernel)[(batch,)](
            grad, penalty, norm, n, center, BLOCK=block, num_warps=num_warps, **modes
        )
        return penalty, norm
    chunks, tiles_per_program = _chunking(n, block, _REDUCE_TILES)
    partial = torch.empty((batch, chunks), dtype=acc, device=grad.device)
    _wrap_triton(_grad_norm_partial_kernel)[(batch, chunks)](
        grad, partial, n, chunks, tiles_per_program,
        BLOCK=block, ACC_DTYPE=modes["ACC_DTYPE"], num_warps=num_warps,
    )  # fmt: skip
    finish_block = min(_FINISH_BLOCK, max(_MIN_BLOCK, triton.next_power_of_2(chunks)))
    _wrap_triton(_grad_norm_finish_kernel)[(batch,)](
        partial, penalty, norm, chunks, center, BLOCK=finish_block, num_warps=1, **modes
    )
    return penalty, norm


@_register("grad_norm_penalty_backward")
def grad_norm_penalty_backward(
    grad_penalty: torch.Tensor, grad: torch.Tensor, norm: torch.Tensor, center: float, one_sided: bool
) -> torch.Tensor:
    """grad_in[b] = grad[b]·(grad_penalty[b]·coef_b) with grad's shape, dtype and (sample-major) layout."""
    _check_batch(grad, "grad")
    center = _check_center(center, one_sided)
    acc = _acc_dtype(grad.dtype)
    batch = grad.shape[0]
    _check_per_sample(grad_penalty, "grad_penalty", batch, acc, grad.device)
    _check_per_sample(norm, "norm", batch, acc, grad.device)
    (grad,) = _rows(grad)
    out = torch.empty_like(grad)
    if out.numel() == 0:
        return out
    n = grad.numel() // batch
    block, num_warps = _tile(n)
    chunks, tiles_per_program = _chunking(n, block)
    _wrap_triton(_grad_norm_backward_kernel)[(batch, chunks)](
        grad_penalty, grad, norm, out, grad_penalty.stride(0), norm.stride(0), n, tiles_per_program, center,
        BLOCK=block, ACC_DTYPE=_TL_ACC_DTYPES[acc], CENTER_ZERO=center == 0.0, ONE_SIDED=one_sided,
        num_warps=num_warps,
    )  # fmt: skip
    return out


def grad_norm_penalty_sum(grad: torch.Tensor, center: float, one_sided: bool, scale: float) -> torch.Tensor:
    """scale · Σ_b penalty[b] (0-d, accumulation dtype): the head reduced to a scalar, as the C++ op
    ``grad_norm_penalty_sum`` (every backend implements every op: tests/test_contract.py)."""
    return grad_norm_penalty_forward(grad, center, one_sided)[0].sum() * scale
