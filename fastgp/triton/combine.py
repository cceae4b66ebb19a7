"""Triton kernel of the ``combine`` family: pixel-wise combinations of pairs of samples.

``pixelwise_combine(x, pairs, mode, threshold)`` has the name, signature and semantics of
``torch.ops.fastgp.pixelwise_combine`` and ``fastgp.reference.combine`` (csrc/ops.cpp): program
(x, y) gathers column tile x of the two rows of pairs y, y + grid_y, ... and combines them in the
accumulation dtype (mode a runtime value: one compilation serves the five modes). Registered as
``torch.ops.fastgp_triton.pixelwise_combine`` (see ``_common.register``). User input is validated
by fastgp/combine.py (pairs in range, i != j); the launcher asserts only its invariants.
"""

from __future__ import annotations

import math
import struct

import torch
import triton
import triton.language as tl

from .._layout import image_memory_format
from ._common import both, cast, grid_stride, invariant, register, scalar, tl_accumulation_dtype, wrap_triton

_BLOCK = 1024


# Compiled once per dtype, class of N (1, divisible by 16, other: the row loads vectorize on it) and
# alignment of x and out (docs/design.md, "Triton compilations"): the pair count and the pairs
# per program are not specialized, nor the pairs' pointer (read as scalars), and the mode is a
# runtime value (a branch per tile, uniform over the program).
@triton.jit(do_not_specialize=["P", "pairs_per_program", "mode"], do_not_specialize_on_alignment=["pairs_ptr"])
def _combine_kernel(
    x_ptr, pairs_ptr, out_ptr, P, N, pairs_per_program, threshold: tl.float64, mode,
    ACC: tl.constexpr, BLOCK: tl.constexpr,
):
    # ``threshold`` is typed float64: compiled Triton types an unannotated Python float as float32
    # and would round a float64 threshold (the interpreter keeps float64: only a GPU would show it).
    # The launcher has rounded it to float32 already for float32 math.
    limit = scalar(threshold, ACC)
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N
    for t in range(0, pairs_per_program):
        p = tl.program_id(1).to(tl.int64) + t * tl.num_programs(1)
        live = p < P
        i = tl.load(pairs_ptr + 2 * p, mask=live, other=0)
        j = tl.load(pairs_ptr + 2 * p + 1, mask=live, other=0)
        m = both(mask, live)
        a = tl.load(x_ptr + i * N + cols, mask=m, other=0.0).to(ACC)
        b = tl.load(x_ptr + j * N + cols, mask=m, other=0.0).to(ACC)
        if mode == 0:
            out = (a + b) * 0.5
        elif mode == 1:
            out = tl.where((a != a) | (b != b), a + b, tl.where(b < a, b, a))
        elif mode == 2:
            out = tl.where((a != a) | (b != b), a + b, tl.where(b > a, b, a))
        elif mode == 3:
            out = tl.where((a > limit) & (b > limit), 1.0, 0.0).to(ACC)
        else:
            out = tl.where((a > limit) | (b > limit), 1.0, 0.0).to(ACC)
        tl.store(out_ptr + p * N + cols, cast(out, out_ptr.dtype.element_ty), mask=m)


def _round_to_float32(value: float) -> float:
    """``value`` rounded to the nearest float32 (±inf beyond its range), as a C++ float cast."""
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)


@register("pixelwise_combine")
def pixelwise_combine(x: torch.Tensor, pairs: torch.Tensor, mode: int, threshold: float) -> torch.Tensor:
    invariant(pairs.dtype == torch.int64 and pairs.dim() == 2 and pairs.shape[1] == 2, "pairs int64 [P, 2]")
    invariant(pairs.device == x.device and x.dim() >= 1, "pairs on the device of x [B, ...]")
    fmt = image_memory_format(x)
    x = x.contiguous(memory_format=fmt)
    pairs = pairs.contiguous()
    p, n = pairs.shape[0], x[0].numel()
    out = torch.empty((p, *x.shape[1:]), dtype=x.dtype, device=x.device).contiguous(memory_format=fmt)
    if p == 0 or n == 0:
        return out
    acc = tl_accumulation_dtype(x.dtype)
    # The threshold is compared in the accumulation dtype (rounded to float32 here, as in C++);
    # rounded in Python, not through a tensor, so torch.compile can trace the launcher.
    t = threshold if x.dtype == torch.float64 else _round_to_float32(threshold)
    programs, pairs_per_program = grid_stride(p)
    grid = (triton.cdiv(n, _BLOCK), programs)
    wrap_triton(_combine_kernel)[grid](x, pairs, out, p, n, pairs_per_program, t, mode, ACC=acc, BLOCK=_BLOCK)
    return out
