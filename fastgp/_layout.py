"""The memory-layout rule every compiled kernel follows, mirrored for the fake (meta) kernels.

A kernel runs over raw memory when its same-shaped inputs are *sample-major dense* — one dense,
non-overlapping block in which sample b occupies its own contiguous block (contiguous and
channels_last tensors both qualify) — and share one layout; its output then keeps that layout.
Otherwise the kernel works on contiguous copies and returns a contiguous tensor. The fake
kernels must predict the same strides, or torch.compile and opcheck see a mismatch.
(The C++ side of this rule is csrc/fastgp/tensor_utils.h.)
"""

from __future__ import annotations

import torch


def is_sample_major_dense(t: torch.Tensor) -> bool:
    expected = 1
    # Dimensions of size > 1, innermost (smallest stride) first, must pack densely.
    for stride, size in sorted((t.stride(d), t.size(d)) for d in range(t.dim()) if t.size(d) != 1):
        if stride != expected:
            return False
        expected *= size
    return t.dim() == 0 or t.size(0) <= 1 or t.stride(0) * t.size(0) == t.numel()


def same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    return all(a.stride(d) == b.stride(d) for d in range(a.dim()) if a.size(d) > 1)


def empty_kernel_output(*inputs: torch.Tensor) -> torch.Tensor:
    """An empty tensor with the strides a kernel returns for these same-shaped inputs."""
    first = inputs[0]
    if is_sample_major_dense(first) and all(same_layout(first, other) for other in inputs[1:]):
        return torch.empty_like(first)
    return torch.empty(first.shape, dtype=first.dtype, device=first.device)
