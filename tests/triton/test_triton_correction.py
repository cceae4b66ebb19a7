"""Triton kernels of the correction family (fastgp.triton.correction) against the C++ op and the reference.

Run in its own process: ``TRITON_INTERPRET=1 python -m pytest tests/triton``. The indices must be
identical; the squared distances agree within float32 summation-order error (the norms are summed
in tiles here, sequentially in C++).
"""

import os

import pytest
import torch

import fastgp
from fastgp.reference import correction as ref
from fastgp.triton import correction as tcor

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRETED else "cuda"
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("chunk", [5, 300])  # 300 > _BLOCK_J: several tiles per chunk
def test_nearest_distance(dtype, chunk):
    gen = torch.Generator().manual_seed(0)
    samples = torch.randn(4, 3, 7, 7, generator=gen).to(dtype).to(DEVICE)  # 147 features
    bank = torch.randn(310, 3, 7, 7, generator=gen).to(dtype).to(DEVICE)
    bank[200] = samples[0]
    bank[250] = samples[0]
    bank[40, 0, 0, 0] = float("nan")
    samples_nan = samples.clone()
    d2, index = tcor.nearest_distance(samples, bank[[i for i in range(310) if i != 40]], chunk)
    expected_d2, expected_index = ref.nearest_distance(samples, bank[[i for i in range(310) if i != 40]], chunk)
    assert torch.equal(index, expected_index) and int(index[0]) == 199
    tol = dict(rtol=1e-10, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(d2, expected_d2, **tol)
    if INTERPRETED:
        got_d2, got_index = torch.ops.fastgp.nearest_distance(samples, bank[[i for i in range(310) if i != 40]], chunk)
        assert torch.equal(got_index, index)
        torch.testing.assert_close(got_d2, d2, **tol)
    # NaN in the bank propagates to every sample: the index of the first NaN row.
    d2, index = tcor.nearest_distance(samples_nan, bank, chunk)
    assert d2.isnan().all() and index.tolist() == [40] * 4


def test_public_api_on_triton_backend():
    samples, bank = torch.rand(3, 10).to(DEVICE), torch.rand(40, 10).to(DEVICE)
    with fastgp.use_backend("triton"):
        distance, index = fastgp.correction.nearest_distance(samples, bank, chunk=16)
    exact = torch.cdist(samples.double(), bank.double()).min(1)
    torch.testing.assert_close(distance.double(), exact.values, rtol=1e-4, atol=1e-4)
    assert torch.equal(index, exact.indices)
