"""Pure-PyTorch reference for the ``combine`` family (pixel-wise combinations of sample pairs).

``pixelwise_combine(x, pairs, mode, threshold)`` has the signature and semantics of
``torch.ops.fastgp.pixelwise_combine`` (csrc/ops.cpp): out[p] = f(x[i], x[j]) with (i, j) =
pairs[p]; mode 0 mean (in the accumulation dtype), 1 min, 2 max (NaN propagates), 3 and, 4 or
(binary images: v > threshold, compared in the accumulation dtype; 1 or 0 in x's dtype).
"""

from __future__ import annotations

import torch

from .._layout import accumulation_dtype, image_memory_format

MODES = ("mean", "min", "max", "and", "or")


def pixelwise_combine(x: torch.Tensor, pairs: torch.Tensor, mode: int, threshold: float) -> torch.Tensor:
    a = x[pairs[:, 0]].to(accumulation_dtype(x.dtype))
    b = x[pairs[:, 1]].to(accumulation_dtype(x.dtype))
    if mode == 0:
        out = (a + b) * 0.5
    elif mode == 1:
        out = torch.minimum(a, b)
    elif mode == 2:
        out = torch.maximum(a, b)
    elif mode == 3:
        out = ((a > threshold) & (b > threshold)).to(a.dtype)
    elif mode == 4:
        out = ((a > threshold) | (b > threshold)).to(a.dtype)
    else:
        raise ValueError(f"mode must be 0 (mean), 1 (min), 2 (max), 3 (and) or 4 (or), got {mode}")
    return out.to(x.dtype).contiguous(memory_format=image_memory_format(x))


def pixelwise_mean_reference(x: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Pixel-wise mean as GAN code writes it (the benchmark baseline)."""
    return (x[pairs[:, 0]] + x[pairs[:, 1]]) / 2
