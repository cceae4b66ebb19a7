"""What every Triton family module shares: registration, the rounding cast, dtypes and tiling.

``register(name)``
    a launcher becomes the custom op ``torch.ops.fastgp_triton.<name>`` when
    ``torch.library.triton_op`` exists (torch >= 2.6), so torch.compile traces into its kernels;
    every launch inside goes through ``wrap_triton``. Under the interpreter (``TRITON_INTERPRET=1``)
    the ops run eagerly only: ``wrap_triton`` passes the interpreted kernel through unchanged and
    fake tensors (torch.compile, opcheck) cannot be interpreted.
``cast(x, DTYPE)``
    ``x.to(DTYPE)`` rounding to nearest even, also for bfloat16 under the interpreter.
``tile(n)``, ``chunking(n, block)``, ``grid_stride(count)``
    block sizes and grids within CUDA's limits.
``invariant(condition, message)``
    a launcher's guard of its own memory safety. User input is validated once, in the public layer
    (fastgp/<family>.py with fastgp/_checks.py); a launcher only asserts what its raw pointer
    arithmetic relies on, so a failed invariant is a bug in the caller, not a user error.

The layout rule (which inputs are read in place) and the accumulation dtype come from
``fastgp._layout``, their one home in Python.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._layout import accumulation_dtype

try:  # torch >= 2.6
    from torch.library import triton_op as _triton_op
    from torch.library import wrap_triton
except ImportError:  # pragma: no cover - older torch: plain launchers
    _triton_op = None

    def wrap_triton(kernel):
        return kernel


# Triton reads TRITON_INTERPRET when a kernel is defined: the family modules are imported after it.
INTERPRETED = bool(triton.knobs.runtime.interpret)

# Elements per tile (one tl.arange block): SMALL_BLOCK for rows of at most SMALL_BLOCK elements,
# MAX_BLOCK otherwise. Two sizes, not every power of two: each block size is another compilation of
# every row kernel on a GPU (docs/design.md, "Triton compilations"), and a row shorter than its
# tile only leaves lanes masked. MIN_BLOCK: the smallest tile of the other per-row loops.
MAX_BLOCK = 1024
SMALL_BLOCK = 128
MIN_BLOCK = 16
# CUDA limits of grid.y and grid.x. Read at call time (tests lower MAX_GRID_Y to exercise the
# several-items-per-program paths on small inputs).
MAX_GRID_Y = 65535
MAX_GRID_X = 2**31 - 1

TL_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32, torch.float64: tl.float64}

# Compiled Triton and torch round float32 -> bfloat16 to nearest even; Triton 3.8's interpreter
# truncates instead. Under the interpreter ``cast`` rounds by hand, so that the kernels compute
# what the compiled kernels compute (and match the other backends bit for bit).
_EMULATE_BF16_RTNE = tl.constexpr(INTERPRETED)


def register(name: str):
    """Register a launcher as torch.ops.fastgp_triton.<name> when torch.library.triton_op exists."""

    def decorator(fn):
        if _triton_op is None:  # pragma: no cover
            return fn
        return _triton_op(f"fastgp_triton::{name}", mutates_args=())(fn)

    return decorator


@triton.jit
def cast(x, DTYPE: tl.constexpr):
    """x.to(DTYPE) rounding to nearest even (also for bfloat16 under the interpreter)."""
    if _EMULATE_BF16_RTNE and DTYPE == tl.bfloat16:
        bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
        rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
        rounded = tl.where(x != x, 0x7FC0, rounded)  # NaN stays NaN (the carry could make it inf)
        return rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(DTYPE)


@triton.jit
def scalar(value, DTYPE: tl.constexpr):
    """A float launch argument (a parameter typed ``tl.float64``) as a DTYPE scalar, rounded once
    to nearest, as a C++ ``static_cast<acc_t>(double)``.

    Why not ``tl.cast`` or a bare ``tl.maximum(x, value)``: the interpreter passes the argument as
    a Python float, which those first turn into a float32 tensor, rounding a float64 value (only
    arithmetic and comparison operators convert a Python float to the other operand's dtype).
    ``tl.full`` converts the Python float straight to DTYPE; compiled, ``value`` is a float64
    tensor and ``tl.full`` casts it.
    """
    return tl.full((), value, DTYPE)


@triton.jit
def both(block_mask, scalar_condition):
    """``block_mask & scalar_condition`` for a per-program (scalar) condition, written as a select.

    Why: Triton 3.9's interpreter (torch 2.15) computes ``block & scalar`` of two int1 values with
    int64 data, which ``tl.load`` then rejects as a mask ("mask has unsupported dtype"). A select
    means the same thing and compiles to the same predicate on a GPU.
    """
    return tl.where(scalar_condition, block_mask, False)


def tl_accumulation_dtype(dtype: torch.dtype):
    """The Triton type of ``fastgp._layout.accumulation_dtype(dtype)``."""
    return TL_DTYPES[accumulation_dtype(dtype)]


def tile(n: int) -> tuple[int, int]:
    """(BLOCK, num_warps) for rows of n elements: (SMALL_BLOCK, 1) or (MAX_BLOCK, 4)."""
    block = SMALL_BLOCK if n <= SMALL_BLOCK else MAX_BLOCK
    return block, max(1, min(8, block // 256))


def chunking(n: int, block: int, min_tiles_per_program: int = 1) -> tuple[int, int]:
    """(chunks, tiles_per_program): a row's tiles split into at most MAX_GRID_Y programs."""
    tiles = triton.cdiv(n, block)
    tiles_per_program = max(min_tiles_per_program, triton.cdiv(tiles, MAX_GRID_Y))
    return triton.cdiv(tiles, tiles_per_program), tiles_per_program


def grid_stride(count: int) -> tuple[int, int]:
    """(programs, items_per_program): ``count`` items (rows, pairs) over at most MAX_GRID_Y programs
    along grid.y, program y taking items y, y + programs, ..."""
    programs = max(1, min(count, MAX_GRID_Y))
    return programs, triton.cdiv(count, programs)


def invariant(condition: bool, message: str) -> None:
    """Assert an internal invariant of a launcher (kept under ``python -O``, unlike ``assert``)."""
    if not condition:
        raise AssertionError(f"fastgp internal error: {message} (the public layer should have rejected this input)")
