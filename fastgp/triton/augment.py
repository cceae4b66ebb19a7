"""Triton kernels of the augment family: batched integer translation (with an optional cutout box
per output image) and its adjoint.

Raw launchers with the names, signatures and semantics of ``torch.ops.fastgp.*`` and
``fastgp.reference.augment`` (autograd lives in ``fastgp/augment.py``):

``translate(x, shifts, boxes, padding) -> out``
    x [B, C, H, W], shifts int64 [B, K, 2] of (dy, dx), boxes None or int64 [B, K, 4] of
    (top, left, height, width); out [B·K, C, H, W], out[b·K + k, c, i, j] = x[b, c, src(i, dy), src(j, dx)],
    the padding value outside the image and 0 inside the box.
``translate_backward(grad, shifts, boxes, padding) -> grad_x``
    the adjoint w.r.t. x, summed over the K copies; a gather over each source pixel's preimage
    (no atomics, deterministic).

Images are viewed as [rows, P, H, W·E] memory: contiguous (P = C, E = 1) or channels_last (P = 1,
E = C, kept in the output); any other layout is made contiguous first. One program handles one
image row (a chunk of it for very wide rows).
"""

import torch
import triton
import triton.language as tl

from .penalty import _cast, _register, _wrap_triton

_PADDINGS = {"zeros": 0, "reflect": 1, "replicate": 2}
_SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_MAX_BLOCK = 1024
_MIN_BLOCK = 16
_MAX_GRID_Y = 65535
_INTERPRETED = bool(triton.knobs.runtime.interpret)


# ------------------------------------------------------------------------------------------------
# Kernels
# ------------------------------------------------------------------------------------------------


@triton.jit
def _source(i, d, n, MODE: tl.constexpr):
    """Source coordinate of output coordinate i under shift d (-1: zero padding); see augment.h."""
    p = i - d
    inside = (p >= 0) & (p < n)
    if MODE == 0:
        q = tl.where(inside, p, -1)
    else:
        if MODE == 1:
            r = tl.where(p < 0, -p, 2 * (n - 1) - p)
            r = tl.where(n > 1, r, 0)
        else:
            r = tl.where(p < 0, 0, n - 1)
        r = tl.minimum(tl.maximum(r, 0), n - 1)
        q = tl.where(inside, p, r)
    return q


@triton.jit
def _in_box(boxes_ptr, n, i, j, HAS_BOXES: tl.constexpr):
    if HAS_BOXES:
        top = tl.load(boxes_ptr + 4 * n)
        left = tl.load(boxes_ptr + 4 * n + 1)
        height = tl.load(boxes_ptr + 4 * n + 2)
        width = tl.load(boxes_ptr + 4 * n + 3)
        result = (i >= top) & (i < top + height) & (j >= left) & (j < left + width)
    else:
        result = j < 0  # all False
    return result


@triton.jit
def _translate_kernel(
    x_ptr, shifts_ptr, boxes_ptr, out_ptr, K, P, H, W, E,
    BLOCK: tl.constexpr, MODE: tl.constexpr, HAS_BOXES: tl.constexpr,
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
    sy = _source(i, dy, H, MODE)
    sx = _source(j, dx, W, MODE)
    valid = in_row & (sy >= 0) & (sx >= 0) & ~_in_box(boxes_ptr, n, i, j, HAS_BOXES)
    src = ((b * P + p) * H + sy) * L + sx * E + e
    v = tl.load(x_ptr + src, mask=valid, other=0.0)
    tl.store(out_ptr + row * L + cols, v, mask=in_row)


@triton.jit
def _gather_row(
    acc, g_ptr, boxes_ptr, n, i, x, e, dx, W, E, in_row,
    MODE: tl.constexpr, HAS_BOXES: tl.constexpr,
):  # fmt: skip
    """acc += the grad of output row i (a [W·E] row at g_ptr) over each source column's preimage."""
    # The direct preimage j = x + dx (every mode).
    j = x + dx
    m = in_row & (j >= 0) & (j < W) & ~_in_box(boxes_ptr, n, i, j, HAS_BOXES)
    acc += tl.load(g_ptr + j * E + e, mask=m, other=0.0).to(acc.dtype)
    if MODE == 1:  # reflect: the mirror images -x + dx (x > 0) and 2(W-1) - x + dx (x < W-1)
        j = -x + dx
        m = in_row & (x > 0) & (j >= 0) & (j < W) & ~_in_box(boxes_ptr, n, i, j, HAS_BOXES)
        acc += tl.load(g_ptr + j * E + e, mask=m, other=0.0).to(acc.dtype)
        j = 2 * (W - 1) - x + dx
        m = in_row & (x < W - 1) & (j >= 0) & (j < W) & ~_in_box(boxes_ptr, n, i, j, HAS_BOXES)
        acc += tl.load(g_ptr + j * E + e, mask=m, other=0.0).to(acc.dtype)
    if MODE == 2:  # replicate: column 0 also collects j < dx, column W-1 also j >= W + dx
        for t in range(0, tl.minimum(dx, W)):
            m = in_row & (x == 0) & ~_in_box(boxes_ptr, n, i, t + x * 0, HAS_BOXES)
            acc += tl.load(g_ptr + t * E + e, mask=m, other=0.0).to(acc.dtype)
        for t in range(tl.maximum(W + dx, 0), W):
            m = in_row & (x == W - 1) & ~_in_box(boxes_ptr, n, i, t + x * 0, HAS_BOXES)
            acc += tl.load(g_ptr + t * E + e, mask=m, other=0.0).to(acc.dtype)
    return acc


@triton.jit
def _translate_backward_kernel(
    g_ptr, shifts_ptr, boxes_ptr, out_ptr, K, P, H, W, E,
    BLOCK: tl.constexpr, MODE: tl.constexpr, HAS_BOXES: tl.constexpr, ACC_DTYPE: tl.constexpr,
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
        if MODE == 2:  # replicate: one interval
            lo = tl.where(y == 0, 0, y + dy)
            hi = tl.where(y == H - 1, H - 1, y + dy)
            lo = tl.maximum(lo, 0)
            hi = tl.minimum(hi, H - 1)
            for i in range(lo, hi + 1):
                acc = _gather_row(acc, plane + i * L, boxes_ptr, n, i, x, e, dx, W, E, in_row, MODE, HAS_BOXES)
        else:
            i = y + dy
            if (i >= 0) & (i < H):
                acc = _gather_row(acc, plane + i * L, boxes_ptr, n, i, x, e, dx, W, E, in_row, MODE, HAS_BOXES)
            if MODE == 1:
                i = -y + dy
                if (y > 0) & (i >= 0) & (i < H):
                    acc = _gather_row(acc, plane + i * L, boxes_ptr, n, i, x, e, dx, W, E, in_row, MODE, HAS_BOXES)
                i = 2 * (H - 1) - y + dy
                if (y < H - 1) & (i >= 0) & (i < H):
                    acc = _gather_row(acc, plane + i * L, boxes_ptr, n, i, x, e, dx, W, E, in_row, MODE, HAS_BOXES)
    tl.store(out_ptr + row * L + cols, _cast(acc, out_ptr.dtype.element_ty), mask=in_row)


# ------------------------------------------------------------------------------------------------
# Launchers
# ------------------------------------------------------------------------------------------------


def _check_image(t, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    if t.dim() != 4:
        raise ValueError(f"{name} must have shape [B, C, H, W], got {list(t.shape)}")
    if not _INTERPRETED and t.device.type == "cpu":
        raise ValueError(
            f"{name} is a CPU tensor: the Triton kernels need GPU tensors "
            "(or TRITON_INTERPRET=1 set before fastgp.triton.augment is imported)"
        )


def _check_args(shifts, boxes, padding, batch, image):
    if padding not in _PADDINGS:
        raise ValueError(f"padding must be 'zeros', 'reflect' or 'replicate', got {padding!r}")
    if not isinstance(shifts, torch.Tensor) or shifts.dtype != torch.int64:
        raise TypeError("shifts must be an int64 tensor")
    if shifts.dim() != 3 or shifts.shape[2] != 2 or shifts.shape[1] < 1 or (batch is not None and shifts.shape[0] != batch):
        raise ValueError(f"shifts must have shape [B, K, 2] with K >= 1, got {list(shifts.shape)}")
    if shifts.device != image.device:
        raise ValueError(f"shifts must be on the device of the image ({image.device}), got {shifts.device}")
    if boxes is not None:
        if not isinstance(boxes, torch.Tensor) or boxes.dtype != torch.int64:
            raise TypeError("boxes must be an int64 tensor")
        if boxes.shape != (shifts.shape[0], shifts.shape[1], 4):
            raise ValueError(f"boxes must have shape [{shifts.shape[0]}, {shifts.shape[1]}, 4], got {list(boxes.shape)}")
        if boxes.device != image.device:
            raise ValueError(f"boxes must be on the device of the image ({image.device}), got {boxes.device}")
        boxes = boxes.contiguous()
    return shifts.contiguous(), boxes


def _view(t: torch.Tensor):
    """(tensor to read, channels_last, P, E, memory format) as in csrc/fastgp/augment.h."""
    channels_last = not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)
    if channels_last:
        return t, True, 1, t.shape[1], torch.channels_last
    return t.contiguous(), False, t.shape[1], 1, torch.contiguous_format


def _grid(rows: int, length: int):
    block = min(_MAX_BLOCK, max(_MIN_BLOCK, triton.next_power_of_2(max(length, 1))))
    chunks = triton.cdiv(length, block)
    return block, (rows, chunks), max(1, min(8, block // 256))


@_register("translate")
def translate(x: torch.Tensor, shifts: torch.Tensor, boxes: torch.Tensor | None, padding: str) -> torch.Tensor:
    _check_image(x, "x")
    shifts, boxes = _check_args(shifts, boxes, padding, x.shape[0], x)
    x, _, planes, pixel, fmt = _view(x)
    batch, channels, height, width = x.shape
    copies = shifts.shape[1]
    out = torch.empty((batch * copies, channels, height, width), dtype=x.dtype, device=x.device, memory_format=fmt)
    if out.numel() == 0:
        return out
    block, grid, num_warps = _grid(batch * copies * planes * height, width * pixel)
    _wrap_triton(_translate_kernel)[grid](
        x, shifts, boxes if boxes is not None else shifts, out, copies, planes, height, width, pixel,
        BLOCK=block, MODE=_PADDINGS[padding], HAS_BOXES=boxes is not None, num_warps=num_warps,
    )  # fmt: skip
    return out


@_register("translate_backward")
def translate_backward(grad: torch.Tensor, shifts: torch.Tensor, boxes: torch.Tensor | None, padding: str) -> torch.Tensor:
    _check_image(grad, "grad")
    shifts, boxes = _check_args(shifts, boxes, padding, None, grad)
    batch, copies = shifts.shape[:2]
    if grad.shape[0] != batch * copies:
        raise ValueError(f"grad must have B * K = {batch * copies} rows, got {grad.shape[0]}")
    grad, _, planes, pixel, fmt = _view(grad)
    _, channels, height, width = grad.shape
    out = torch.empty((batch, channels, height, width), dtype=grad.dtype, device=grad.device, memory_format=fmt)
    if out.numel() == 0:
        return out
    block, grid, num_warps = _grid(batch * planes * height, width * pixel)
    acc = tl.float64 if grad.dtype == torch.float64 else tl.float32
    _wrap_triton(_translate_backward_kernel)[grid](
        grad, shifts, boxes if boxes is not None else shifts, out, copies, planes, height, width, pixel,
        BLOCK=block, MODE=_PADDINGS[padding], HAS_BOXES=boxes is not None, ACC_DTYPE=acc, num_warps=num_warps,
    )  # fmt: skip
    return out
