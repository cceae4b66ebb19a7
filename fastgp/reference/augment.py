"""Pure-PyTorch reference of the augment family: integer translation of images, written the way
DiffAugment's ``rand_translation`` writes it (a padded copy and an index gather, once per copy).

Raw functions with the names, signatures and semantics of ``torch.ops.fastgp.*`` and
``fastgp.triton.augment`` (see ``fastgp/augment.py`` for the public API):

``translate(x, shifts, boxes, padding) -> out``
    x [B, C, H, W], shifts int64 [B, K, 2] of (dy, dx); out [B·K, C, H, W] with
    out[b·K + k, c, i, j] = x[b, c, i − dy, j − dx] inside the image, else the padding value
    ("zeros"), or x at the reflected ("reflect", edge not repeated) / clamped ("replicate") index.
    boxes (optional) int64 [B, K, 4] of (top, left, height, width): a cutout rectangle per output
    image, zeroed after the translation.
``translate_backward(grad, shifts, boxes, padding) -> grad_x``
    the adjoint w.r.t. x: grad [B·K, C, H, W] (times 0 inside the boxes) scattered back onto the
    source pixels and summed over the K copies, [B, C, H, W].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._layout import accumulation_dtype

PADDINGS = ("zeros", "reflect", "replicate")


def source_index(i: torch.Tensor, d: torch.Tensor, n: int, padding: str):
    """(source coordinate clamped into [0, n), inside-the-image mask or None) of output coordinate i."""
    p = i - d
    if padding == "zeros":
        return p.clamp(0, n - 1), (p >= 0) & (p < n)
    if padding == "reflect" and n > 1:
        p = torch.where(p < 0, -p, p)
        p = torch.where(p > n - 1, 2 * (n - 1) - p, p)
    return p.clamp(0, n - 1), None


def translate_once(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """One translation per sample by (dy[b], dx[b]), DiffAugment style: pad, then gather with index grids."""
    batch, _, height, width = x.shape
    grid_b, grid_y, grid_x = torch.meshgrid(
        torch.arange(batch, device=x.device),
        torch.arange(height, device=x.device),
        torch.arange(width, device=x.device),
        indexing="ij",
    )
    if padding == "zeros":
        # One ring of zeros; every index that leaves the image is clamped onto it.
        pad = 1
        x_pad = F.pad(x, [1, 1, 1, 1])
        grid_y = torch.clamp(grid_y - dy.view(-1, 1, 1) + pad, 0, height + 1)
        grid_x = torch.clamp(grid_x - dx.view(-1, 1, 1) + pad, 0, width + 1)
    else:
        # Pad by the largest shift with torch's reflect / replicate padding, then gather.
        pad_y = int(dy.abs().max()) if dy.numel() else 0
        pad_x = int(dx.abs().max()) if dx.numel() else 0
        x_pad = F.pad(x, [pad_x, pad_x, pad_y, pad_y], mode=padding)
        grid_y = grid_y - dy.view(-1, 1, 1) + pad_y
        grid_x = grid_x - dx.view(-1, 1, 1) + pad_x
    return x_pad.permute(0, 2, 3, 1).contiguous()[grid_b, grid_y, grid_x].permute(0, 3, 1, 2)


def keep_mask(boxes: torch.Tensor, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """[B·K, 1, H, W]: 0 inside each image's cutout box (top, left, height, width), 1 elsewhere."""
    box = boxes.reshape(-1, 4, 1, 1)
    rows = torch.arange(height, device=boxes.device).view(1, -1, 1)
    cols = torch.arange(width, device=boxes.device).view(1, 1, -1)
    inside = (rows >= box[:, 0]) & (rows < box[:, 0] + box[:, 2]) & (cols >= box[:, 1]) & (cols < box[:, 1] + box[:, 3])
    return (~inside).to(dtype).unsqueeze(1)


def same_layout(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``out`` channels_last when ``like`` is only channels_last, else contiguous: the layout rule of
    every backend's kernels (the stack/reshape/scatter below return contiguous tensors)."""
    if not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        return out.contiguous(memory_format=torch.channels_last)
    return out.contiguous()


def clamp_shifts(shifts: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Shifts clamped into [−size, size] per axis (as the kernels do, csrc/fastgp/augment.h): zeros and
    replicate padding give the same image for every |shift| >= size, so the padded copy never grows
    beyond twice the image (a shift of 2**31 would otherwise allocate gigabytes), and no index
    arithmetic overflows. Shifts valid for reflect padding (|shift| < size) are unchanged."""
    return torch.stack([shifts[..., 0].clamp(-height, height), shifts[..., 1].clamp(-width, width)], dim=-1)


def translate(x: torch.Tensor, shifts: torch.Tensor, boxes: torch.Tensor | None, padding: str) -> torch.Tensor:
    batch, copies = shifts.shape[:2]
    if x.numel() == 0:  # no pixel to translate (H == 0 or W == 0 included): any shift, any padding
        return x.new_zeros((batch * copies, *x.shape[1:]))
    shifts = clamp_shifts(shifts, x.shape[2], x.shape[3])
    outs = [translate_once(x, shifts[:, k, 0], shifts[:, k, 1], padding) for k in range(copies)]
    out = torch.stack(outs, dim=1).reshape(batch * copies, *x.shape[1:])
    if boxes is not None:
        out = out * keep_mask(boxes, x.shape[2], x.shape[3], x.dtype)
    return same_layout(out, x)


def translate_backward(grad: torch.Tensor, shifts: torch.Tensor, boxes: torch.Tensor | None, padding: str) -> torch.Tensor:
    batch, copies = shifts.shape[:2]
    _, channels, height, width = grad.shape
    if grad.numel() == 0:
        return grad.new_zeros((batch, channels, height, width))
    shifts = clamp_shifts(shifts, height, width)
    if boxes is not None:
        grad = grad * keep_mask(boxes, height, width, grad.dtype)
    acc = accumulation_dtype(grad.dtype)
    g = grad.to(acc).reshape(batch, copies, channels, height * width)
    out = torch.zeros(batch, channels, height * width, dtype=acc, device=grad.device)
    rows = torch.arange(height, device=grad.device)
    cols = torch.arange(width, device=grad.device)
    for k in range(copies):
        sy, valid_y = source_index(rows, shifts[:, k, 0:1], height, padding)  # [B, H]
        sx, valid_x = source_index(cols, shifts[:, k, 1:2], width, padding)  # [B, W]
        index = (sy[:, :, None] * width + sx[:, None, :]).reshape(batch, 1, -1).expand(-1, channels, -1)
        values = g[:, k]
        if valid_y is not None:
            mask = (valid_y[:, :, None] & valid_x[:, None, :]).reshape(batch, 1, -1)
            # Dropped, not multiplied by 0: a pixel read from the zero padding sends its gradient
            # to the padding (DiffAugment's F.pad backward discards it), so even a NaN/inf there
            # never reaches the image (index is clamped onto a real pixel for the scatter).
            values = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device))
        out = out.scatter_add(2, index, values)
    return same_layout(out.reshape(batch, channels, height, width).to(grad.dtype), grad)


# ------------------------------------------------------------------------------------------------
# DiffAugment's policy function (Zhao et al., 2020; mit-han-lab/data-efficient-gans,
# DiffAugment_pytorch.py) as its users write it, with an optional generator: the same draws in the
# same order and dtype, and its translation out[i, j] = x[i + tx, j + ty] (tx over the height, ty
# over the width). fastgp.augment.DiffAugment with the same generator state gives the same images.
# ------------------------------------------------------------------------------------------------


def _rand(x, generator):
    return torch.rand(x.size(0), 1, 1, 1, generator=generator, dtype=x.dtype, device=x.device)


def rand_brightness(x, generator=None):
    return x + (_rand(x, generator) - 0.5)


def rand_saturation(x, generator=None):
    x_mean = x.mean(dim=1, keepdim=True)
    return (x - x_mean) * (_rand(x, generator) * 2) + x_mean


def rand_contrast(x, generator=None):
    x_mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - x_mean) * (_rand(x, generator) + 0.5) + x_mean


def rand_translation(x, ratio=0.125, generator=None):
    shift_h, shift_w = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
    tx = torch.randint(-shift_h, shift_h + 1, size=[x.size(0)], generator=generator, device=x.device)
    ty = torch.randint(-shift_w, shift_w + 1, size=[x.size(0)], generator=generator, device=x.device)
    # x[i + tx, j + ty] is the translation by (dy, dx) = (−tx, −ty) in this module's convention.
    return translate_once(x, -tx, -ty, "zeros")


def rand_cutout(x, ratio=0.5, generator=None):
    cutout_size = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
    offset_x = torch.randint(0, x.size(2) + (1 - cutout_size[0] % 2), size=[x.size(0), 1, 1], generator=generator, device=x.device)
    offset_y = torch.randint(0, x.size(3) + (1 - cutout_size[1] % 2), size=[x.size(0), 1, 1], generator=generator, device=x.device)
    grid_batch, grid_x, grid_y = torch.meshgrid(
        torch.arange(x.size(0), dtype=torch.long, device=x.device),
        torch.arange(cutout_size[0], dtype=torch.long, device=x.device),
        torch.arange(cutout_size[1], dtype=torch.long, device=x.device),
        indexing="ij",
    )
    grid_x = torch.clamp(grid_x + offset_x - cutout_size[0] // 2, min=0, max=x.size(2) - 1)
    grid_y = torch.clamp(grid_y + offset_y - cutout_size[1] // 2, min=0, max=x.size(3) - 1)
    mask = torch.ones(x.size(0), x.size(2), x.size(3), dtype=x.dtype, device=x.device)
    mask[grid_batch, grid_x, grid_y] = 0
    return x * mask.unsqueeze(1)


AUGMENT_FNS = {
    "color": [rand_brightness, rand_saturation, rand_contrast],
    "translation": [rand_translation],
    "cutout": [rand_cutout],
}


def diff_augment(x, policy="color,translation,cutout", channels_first=True, generator=None):
    if policy:
        if not channels_first:
            x = x.permute(0, 3, 1, 2)
        for p in policy.split(","):
            for f in AUGMENT_FNS[p]:
                x = f(x, generator=generator)
        if not channels_first:
            x = x.permute(0, 2, 3, 1)
        x = x.contiguous()
    return x
