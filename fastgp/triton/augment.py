"""Triton kernels of the augment family: batched integer translation (with an optional cutout box
per output image) and its adjoint.

Raw launchers with the names, signatures and semantics of ``torch.ops.fastgp.*`` and
``fastgp.reference.augment`` (autograd lives in ``fastgp/augment.py``):

``translate(x, shifts, boxes, padding) -> out``
    x [B, C, H, W], shifts int64 [B, K, 2] of (dy, dx), boxes None or int64 [B, K, 4] of
    (top, left, height, width); out [B·K, C, H, W], out[b·K + k, c, i, j] = x[b, c, src(i, dy), src(j, dx)],
    the padding value outside the image and the pixel times 0 inside the box (NaN stays NaN).
``translate_backward(grad, shifts, boxes, padding) -> grad_x``
    the adjoint w.r.t. x, summed over the K copies; a gather over each source pixel's preimage
    (no atomics, deterministic).

Images are viewed as [rows, P, H, W·E] memory: contiguous (P = C, E = 1) or channels_last (P = 1,
E = C, kept in the output); any other layout is made contiguous first. One program handles one
image row (a chunk of it for very wide rows). User input is validated by fastgp/augment.py
(including the reflect range |shift| < size); the launchers assert only their invariants.
"""

import torch
import triton
import triton.language as tl

from .._layout import image_memory_format
from ._common import both, cast, invariant, register, tile, tl_accumulation_dtype, wrap_triton

_PADDINGS = {"zeros": 0, "reflect": 1, "replicate": 2}

# Compilations (docs/design.md, "Triton compilations"): the row length W·E (W and E, which give the
# stores' divisibility, and E = 1 removes the per-element division) and the image pointers stay
# specialized; the copies K, planes P and height H (per-row arithmetic only) are not, nor the shift
# and box tables, and the padding mode and the boxes flag are runtime values (a few selects per
# element in the forward, branches uniform over a program in the adjoint).
_NOT_SPECIALIZED = dict(do_not_specialize_on_alignment=["shifts_ptr", "boxes_ptr"])


# ------------------------------------------------------------------------------------------------
# Kernels
# ------------------------------------------------------------------------------------------------


@triton.jit
def _source(i, d, n, mode):
    """Source coordinate of output coordinate i under shift d (-1: zero padding) for the padding
    ``mode`` (a runtime value); see augment.h."""
    p = i - d
    inside = (p >= 0) & (p < n)
    reflected = tl.where(p < 0, -p, 2 * (n - 1) - p)
    reflected = tl.where(n > 1, reflected, 0)
    replicated = tl.where(p < 0, 0, n - 1)
    r = tl.where(mode == 1, reflected, replicated)
    r = tl.minimum(tl.maximum(r, 0), n - 1)
    return tl.where(inside, p, tl.where(mode == 0, -1, r))


@triton.jit
def _in_box(boxes_ptr, n, i, j, has_boxes):
    """Whether output pixel (i, j) of image n is in its box; all False without boxes (the loads are
    masked off, and a box of width 0 holds nothing)."""
    top = tl.load(boxes_ptr + 4 * n, mask=has_boxes, other=0)
    left = tl.load(boxes_ptr + 4 * n + 1, mask=has_boxes, other=0)
    height = tl.load(boxes_ptr + 4 * n + 2, mask=has_boxes, other=0)
    width = tl.load(boxes_ptr + 4 * n + 3, mask=has_boxes, other=0)
    return both((j >= left) & (j < left + width), (i >= top) & (i < top + height))  # i: per row


@triton.jit(do_not_specialize=["K", "P", "H", "mode"], **_NOT_SPECIALIZED)
def _translate_kernel(
    x_ptr, shifts_ptr, boxes_ptr, out_ptr, K, P, H, W, E, mode, has_boxes,
    BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)  # (n, p, i)
    i = row % H
    n = row // H // P
    p = (row // H) % P
    b = n // K
    # Shifts clamped into [-size, size] (clamp_shift in csrc/fastgp/augment.h): the same image under
    # zeros / replicate padding, and i - d cannot overflow (a shift of -2**63 would wrap around).
    dy = tl.minimum(tl.maximum(tl.load(shifts_ptr + 2 * n), -H), H)
    dx = tl.minimum(tl.maximum(tl.load(shifts_ptr + 2 * n + 1), -W), W)
    L = W * E
    cols = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    in_row = cols < L
    j = cols // E
    e = cols % E
    sy = _source(i, dy, H, mode)
    sx = _source(j, dx, W, mode)
    valid = both(in_row & (sx >= 0), sy >= 0)  # sy is per row (a scalar)
    src = ((b * P + p) * H + sy) * L + sx * E + e
    v = tl.load(x_ptr + src, mask=valid, other=0.0)
    # Multiplied by 0 in the box, as DiffAugment's mask: a NaN/inf pixel there stays NaN.
    v = tl.where(_in_box(boxes_ptr, n, i, j, has_boxes), v * 0.0, v)
    tl.store(out_ptr + row * L + cols, v, mask=in_row)


@triton.jit
def _cut(v, boxes_ptr, n, i, j, has_boxes):
    """v, times 0 where output pixel (i, j) of image n is in its cutout box (NaN/inf stay NaN)."""
    return tl.where(_in_box(boxes_ptr, n, i, j, has_boxes), v * 0.0, v)


@triton.jit
def _gather_row(
    acc, g_ptr, boxes_ptr, n, i, x, e, dx, W, E, in_row,
    has_boxes, mode,
):  # fmt: skip
    """acc += the grad of output row i (a [W·E] row at g_ptr) over each source column's preimage,
    times 0 inside the cutout box (grad * mask, as DiffAugment: a NaN/inf gradient there gives NaN)."""
    # The direct preimage j = x + dx (every mode).
    j = x + dx
    acc += _cut(tl.load(g_ptr + j * E + e, mask=in_row & (j >= 0) & (j < W), other=0.0).to(acc.dtype),
                boxes_ptr, n, i, j, has_boxes)
    if mode == 1:  # reflect: the mirror images -x + dx (x > 0) and 2(W-1) - x + dx (x < W-1)
        j = -x + dx
        m = in_row & (x > 0) & (j >= 0) & (j < W)
        acc += _cut(tl.load(g_ptr + j * E + e, mask=m, other=0.0).to(acc.dtype), boxes_ptr, n, i, j, has_boxes)
        j = 2 * (W - 1) - x + dx
        m = in_row & (x < W - 1) & (j >= 0) & (j < W)
        acc += _cut(tl.load(g_ptr + j * E + e, mask=m, other=0.0).to(acc.dtype), boxes_ptr, n, i, j, has_boxes)
    if mode == 2:  # replicate: column 0 also collects j < dx, column W-1 also j >= W + dx
        for t in range(0, tl.minimum(dx, W)):
            v = tl.load(g_ptr + t * E + e, mask=in_row & (x == 0), other=0.0).to(acc.dtype)
            acc += _cut(v, boxes_ptr, n, i, t + x * 0, has_boxes)
        for t in range(tl.maximum(W + dx, 0), W):
            v = tl.load(g_ptr + t * E + e, mask=in_row & (x == W - 1), other=0.0).to(acc.dtype)
            acc += _cut(v, boxes_ptr, n, i, t + x * 0, has_boxes)
    return acc


@triton.jit(do_not_specialize=["K", "P", "H", "mode"], **_NOT_SPECIALIZED)
def _translate_backward_kernel(
    g_ptr, shifts_ptr, boxes_ptr, out_ptr, K, P, H, W, E,
    mode, has_boxes, BLOCK: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)  # (b, p, y): one row of grad_x
    y = row % H
    b = row // H // P
    p = (row // H) % P
    L = W * E
    cols = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    in_row = cols < L
    x = cols // E
    e = cols % E
    acc = tl.zeros([BLOCK], dtype=ACC_DTYPE)
    for k in range(0, K):
        n = b * K + k
        dy = tl.minimum(tl.maximum(tl.load(shifts_ptr + 2 * n), -H), H)  # clamped as in the forward
        dx = tl.minimum(tl.maximum(tl.load(shifts_ptr + 2 * n + 1), -W), W)
        plane = g_ptr + (n * P + p) * H * L
        # The output rows whose source row is y, as intervals (see preimages in augment.h).
        if mode == 2:  # replicate: one interval
            lo = tl.where(y == 0, 0, y + dy)
            hi = tl.where(y == H - 1, H - 1, y + dy)
            lo = tl.maximum(lo, 0)
            hi = tl.minimum(hi, H - 1)
            for source_row in range(lo, hi + 1):  # not `i`: the else branch assigns i (a runtime if)
                acc = _gather_row(acc, plane + source_row * L, boxes_ptr, n, source_row, x, e, dx, W, E, in_row,
                                  has_boxes, mode)
        else:
            i = y + dy
            if (i >= 0) & (i < H):
                acc = _gather_row(acc, plane + i * L, boxes_ptr, n, i, x, e, dx, W, E, in_row, has_boxes, mode)
            if mode == 1:
                i = -y + dy
                if (y > 0) & (i >= 0) & (i < H):
                    acc = _gather_row(acc, plane + i * L, boxes_ptr, n, i, x, e, dx, W, E, in_row, has_boxes, mode)
                i = 2 * (H - 1) - y + dy
                if (y < H - 1) & (i >= 0) & (i < H):
                    acc = _gather_row(acc, plane + i * L, boxes_ptr, n, i, x, e, dx, W, E, in_row, has_boxes, mode)
    tl.store(out_ptr + row * L + cols, cast(acc, out_ptr.dtype.element_ty), mask=in_row)


# ------------------------------------------------------------------------------------------------
# Launchers
# ------------------------------------------------------------------------------------------------


def _check_args(image, shifts, boxes, padding, batch=None):
    """Invariants of the kernels' indexing: [B, C, H, W] images, int64 shifts [B, K, 2] (B = batch
    when given) and boxes [B, K, 4] on the image's device. Returns contiguous shifts and boxes
    (read as flat arrays)."""
    invariant(image.dim() == 4 and padding in _PADDINGS, f"an image [B, C, H, W] and a padding, got {padding!r}")
    invariant(shifts.dtype == torch.int64 and shifts.dim() == 3 and shifts.shape[2] == 2
              and (batch is None or shifts.shape[0] == batch) and shifts.device == image.device,
              "int64 shifts [B, K, 2]")
    if boxes is not None:
        invariant(boxes.dtype == torch.int64 and boxes.shape == (*shifts.shape[:2], 4)
                  and boxes.device == image.device, "int64 boxes [B, K, 4]")
        boxes = boxes.contiguous()
    return shifts.contiguous(), boxes


def _view(t: torch.Tensor):
    """(tensor to read, channels_last, P, E, memory format) as in csrc/fastgp/augment.h."""
    if image_memory_format(t) == torch.channels_last:
        return t, True, 1, t.shape[1], torch.channels_last
    return t.contiguous(), False, t.shape[1], 1, torch.contiguous_format


def _grid(rows: int, length: int):
    block, num_warps = tile(length)
    return block, (rows, triton.cdiv(length, block)), num_warps


@register("translate")
def translate(x: torch.Tensor, shifts: torch.Tensor, boxes: torch.Tensor | None, padding: str) -> torch.Tensor:
    shifts, boxes = _check_args(x, shifts, boxes, padding, x.shape[0])
    x, _, planes, pixel, fmt = _view(x)
    batch, channels, height, width = x.shape
    copies = shifts.shape[1]
    out = torch.empty((batch * copies, channels, height, width), dtype=x.dtype, device=x.device, memory_format=fmt)
    if out.numel() == 0:
        return out
    block, grid, num_warps = _grid(batch * copies * planes * height, width * pixel)
    wrap_triton(_translate_kernel)[grid](
        x, shifts, boxes if boxes is not None else shifts, out, copies, planes, height, width, pixel,
        _PADDINGS[padding], boxes is not None, BLOCK=block, num_warps=num_warps,
    )  # fmt: skip
    return out


@register("translate_backward")
def translate_backward(grad: torch.Tensor, shifts: torch.Tensor, boxes: torch.Tensor | None, padding: str) -> torch.Tensor:
    shifts, boxes = _check_args(grad, shifts, boxes, padding)
    batch, copies = shifts.shape[:2]
    invariant(grad.shape[0] == batch * copies, f"grad with B * K = {batch * copies} rows")
    grad, _, planes, pixel, fmt = _view(grad)
    _, channels, height, width = grad.shape
    out = torch.empty((batch, channels, height, width), dtype=grad.dtype, device=grad.device, memory_format=fmt)
    if out.numel() == 0:
        return out
    block, grid, num_warps = _grid(batch * planes * height, width * pixel)
    acc = tl_accumulation_dtype(grad.dtype)
    wrap_triton(_translate_backward_kernel)[grid](
        grad, shifts, boxes if boxes is not None else shifts, out, copies, planes, height, width, pixel,
        _PADDINGS[padding], boxes is not None, BLOCK=block, ACC_DTYPE=acc, num_warps=num_warps,
    )  # fmt: skip
    return out
