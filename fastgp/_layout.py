"""The memory-layout rule and the accumulation dtype every kernel follows — their one home in Python.

The Triton launchers (fastgp/triton/) apply the rule through ``kernel_inputs`` and
``empty_kernel_output`` (``image_memory_format`` for the image and row-gathering ops); the fake
(meta) kernels of the compiled ops predict the same strides with them; every backend and the
public layer take the accumulation dtype from ``accumulation_dtype``. The C++ side of both is
csrc/fastgp/tensor_utils.h (and rows.h, augment.h for images).

Layout rule.

A kernel runs over raw memory when its same-shaped inputs are *sample-major dense* — one dense,
non-overlapping block in which sample b occupies its own contiguous block (contiguous and
channels_last tensors both qualify) — and share one layout; its output then keeps that layout.
Otherwise the kernel works on contiguous copies and returns a contiguous tensor. The fake
kernels must predict the same strides, or torch.compile and opcheck see a mismatch.

Accumulation dtype. Sums, norms and mixed arithmetic run in float32 for float16, bfloat16 and
float32 inputs and in float64 for float64 inputs (docs/design.md, "Conventions").
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


def read_in_place(*inputs: torch.Tensor) -> bool:
    """Whether a kernel reads these same-shaped inputs as they are (else: contiguous copies)."""
    first = inputs[0]
    return is_sample_major_dense(first) and all(same_layout(first, other) for other in inputs[1:])


def kernel_inputs(*inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors a kernel reads: these inputs when the rule lets it read them in place, else contiguous copies."""
    if read_in_place(*inputs):
        return inputs
    return tuple(t.contiguous() for t in inputs)


def empty_kernel_output(*inputs: torch.Tensor) -> torch.Tensor:
    """An empty tensor with the strides a kernel returns for these same-shaped inputs."""
    first = inputs[0]
    if read_in_place(*inputs):
        return torch.empty_like(first)
    return torch.empty(first.shape, dtype=first.dtype, device=first.device)


def image_memory_format(t: torch.Tensor) -> torch.memory_format:
    """The memory format of an image op's output ([B, C, H, W] in, rows of images out): channels_last
    when the input is channels_last and not also contiguous (the C++ side: csrc/fastgp/rows.h and
    csrc/fastgp/augment.h), else contiguous."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64 inputs, float32 for every other floating dtype (float16, bfloat16, float32)."""
    return torch.float64 if dtype == torch.float64 else torch.float32
