"""Triton kernel of the combine family (fastgp.triton.combine) against the C++ op and the reference.

Run in its own process: ``TRITON_INTERPRET=1 python -m pytest tests/triton_kernels``. min/max/and/or are
exact; the mean is one addition and one exact halving in the accumulation dtype rounded once
(bfloat16 rounding emulated under the interpreter), so it is exact too.
"""

import os

import pytest
import torch

import fastgp
from fastgp.reference import combine as ref
from fastgp.triton import _common
from fastgp.triton import combine as tc

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRETED else "cuda"
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", range(5))
@pytest.mark.parametrize("shape", [(4, 3), (5, 3, 4, 5), (3, 1500)])  # 1500 > _BLOCK: masked tail
def test_pixelwise_exact(dtype, mode, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dtype).to(DEVICE)
    x.view(-1)[3] = float("nan")
    pairs = fastgp.combine.random_pairs(shape[0], 7, torch.Generator().manual_seed(2)).to(DEVICE)
    out = tc.pixelwise_combine(x, pairs, mode, 0.25)
    expected = ref.pixelwise_combine(x, pairs, mode, 0.25)
    torch.testing.assert_close(out, expected, rtol=0, atol=0, equal_nan=True)
    if INTERPRETED:
        torch.testing.assert_close(out, torch.ops.fastgp.pixelwise_combine(x, pairs, mode, 0.25), rtol=0, atol=0,
                                   equal_nan=True)


def test_channels_last_and_many_pairs(monkeypatch):
    monkeypatch.setattr(_common, "MAX_GRID_Y", 3)  # several pairs per program
    x = torch.randn(6, 3, 4, 5).to(DEVICE).to(memory_format=torch.channels_last)
    pairs = fastgp.combine.random_pairs(6, 10, torch.Generator().manual_seed(0)).to(DEVICE)
    out = tc.pixelwise_combine(x, pairs, 0, 0.5)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, ref.pixelwise_combine(x, pairs, 0, 0.5))


def test_public_api_on_triton_backend_gradients():
    x = torch.randn(4, 5, dtype=torch.float64, device=DEVICE, requires_grad=True)
    pairs = torch.tensor([[0, 1], [2, 3], [1, 0]], device=DEVICE)
    with fastgp.use_backend("triton"):
        fn = lambda v: fastgp.combine.pixelwise(v, "max", pairs=pairs) ** 2  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


@pytest.mark.triton_compile_early
def test_registered_as_custom_op():
    if not hasattr(torch.library, "triton_op"):
        pytest.skip("torch.library.triton_op needs torch >= 2.6")
    x = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    pairs = torch.tensor([[0, 1], [4, 2], [3, 0]], device=DEVICE)
    for mode in range(5):
        got = torch.ops.fastgp_triton.pixelwise_combine(x, pairs, mode, 0.1)
        assert torch.equal(got, ref.pixelwise_combine(x, pairs, mode, 0.1))


def test_threshold_is_rounded_like_a_float32_cast():
    # Values between 0.1 in float64 and its float32 rounding decide and/or differently.
    x = torch.tensor([[0.1], [0.1]], dtype=torch.float32, device=DEVICE)
    pairs = torch.tensor([[0, 1]], device=DEVICE)
    for threshold in (0.1, 1e39, -1e39):
        assert torch.equal(tc.pixelwise_combine(x, pairs, 4, threshold), ref.pixelwise_combine(x, pairs, 4, threshold))


@pytest.mark.triton_compile_early
@pytest.mark.skipif(INTERPRETED, reason="fake tensors cannot run interpreted kernels; needs a GPU")
def test_opcheck_and_compile_on_gpu():
    x = torch.randn(6, 3, 8, 8, device=DEVICE)
    pairs = torch.tensor([[0, 1], [5, 2]], device=DEVICE)
    torch.library.opcheck(torch.ops.fastgp_triton.pixelwise_combine.default, (x, pairs, 0, 0.5))
    compiled = torch.compile(lambda a, p: torch.ops.fastgp_triton.pixelwise_combine(a, p, 2, 0.5), fullgraph=True)
    assert torch.equal(compiled(x, pairs), ref.pixelwise_combine(x, pairs, 2, 0.5))
