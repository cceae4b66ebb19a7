"""Shared test helpers: input layouts and backend parametrization."""

from __future__ import annotations

import pytest
import torch

# Backends that run on CPU tensors in the main pytest process. Triton runs in its own process
# under TRITON_INTERPRET=1 (tests/triton_kernels/).
CPU_BACKENDS = ("extension", "reference")
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
LAYOUTS = ("contiguous", "channels_last", "strided")


def make(shape, dtype=torch.float32, layout="contiguous", seed=0, scale=1.0) -> torch.Tensor:
    """A random tensor of ``shape`` in the given memory layout.

    ``strided`` is a non-contiguous view (every other element of a wider last dimension);
    ``channels_last`` needs rank 4.
    """
    gen = torch.Generator().manual_seed(seed)
    if layout == "strided":
        wide = torch.randn(*shape[:-1], 2 * shape[-1], generator=gen, dtype=torch.float64) * scale
        out = wide.to(dtype)[..., ::2]
        assert out.numel() <= 1 or not out.is_contiguous()
        return out
    out = (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)
    if layout == "channels_last":
        out = out.to(memory_format=torch.channels_last)
    return out


def shapes_for(layout):
    """Shapes covering rank 2, 3 and 4, a single sample and single-element rows."""
    if layout == "channels_last":
        return [(4, 3, 5, 7), (1, 2, 3, 3), (3, 5, 1, 1)]
    return [(5, 37), (3, 4, 9), (4, 3, 5, 7), (1, 1), (2, 1)]


def tolerances(dtype):
    if dtype == torch.float64:
        return dict(rtol=1e-10, atol=1e-12)
    if dtype == torch.float32:
        return dict(rtol=1e-5, atol=1e-6)
    if dtype == torch.float16:
        return dict(rtol=2e-3, atol=1e-3)
    return dict(rtol=1.6e-2, atol=1e-2)


@pytest.fixture(params=CPU_BACKENDS)
def backend_name(request):
    """Run the test once per CPU backend, forcing it (a missing backend fails loudly)."""
    import fastgp

    with fastgp.use_backend(request.param):
        yield request.param
