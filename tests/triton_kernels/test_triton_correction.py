"""Triton kernels of the correction family (fastgp.triton.correction) against the C++ op and the reference.

Run in its own process: ``TRITON_INTERPRET=1 python -m pytest tests/triton_kernels``. The squared
distances agree within float32 summation-order error (the norms and dot products are summed in tiles
here, by the BLAS in C++ and the reference); the index is checked against the op's contract (the row
at the returned distance, up to rounding), never against another backend's choice between two rows
within rounding of each other (helpers.assert_nearest).
"""

import os

import pytest
import torch

import fastgp
from fastgp.reference import correction as ref
from fastgp.triton import correction as tcor
from helpers import assert_nearest

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
    finite_bank = bank[[i for i in range(310) if i != 40]]
    d2, index = tcor.nearest_distance(samples, finite_bank, chunk)
    expected_d2, _ = ref.nearest_distance(samples, finite_bank, chunk)
    # Rows 199 and 249 are both samples[0]: either may be returned (their distances may round apart).
    assert int(index[0]) in (199, 249)
    tol = dict(rtol=1e-10, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=2e-3)
    torch.testing.assert_close(d2, expected_d2, **tol)
    assert_nearest(samples, finite_bank, d2, index, **tol)
    if INTERPRETED:
        got_d2, _ = torch.ops.fastgp.nearest_distance(samples, finite_bank, chunk)
        torch.testing.assert_close(got_d2, d2, **tol)
    # NaN in the bank propagates to every sample: the index of the first NaN row.
    d2, index = tcor.nearest_distance(samples_nan, bank, chunk)
    assert d2.isnan().all() and index.tolist() == [40] * 4


def test_public_api_on_triton_backend():
    samples, bank = torch.rand(3, 10).to(DEVICE), torch.rand(40, 10).to(DEVICE)
    with fastgp.use_backend("triton"):
        distance, index = fastgp.correction.nearest_distance(samples, bank, chunk=16)
    assert_nearest(samples, bank, distance.double() ** 2, index, rtol=2e-4, atol=1e-4)


@pytest.mark.parametrize("dtype,scale", [(torch.float32, 1e20), (torch.float32, 1e-30), (torch.bfloat16, 1e20)],
                         ids=str)
def test_public_api_on_triton_backend_extreme_magnitudes(dtype, scale):
    """The issue's example (1e20: the expansion overflows to NaN) and its tiny twin: the Triton
    backend's fast-path results are repaired by the public layer, as on every backend."""
    samples = (torch.tensor([[1.0, 0.0]]) * scale).to(dtype).to(DEVICE)
    bank = (torch.tensor([[0.0, 0.0], [1.0, 1e-2], [1.0, 3e-2]]) * scale).to(dtype).to(DEVICE)
    with fastgp.use_backend("triton"):
        distance, index = fastgp.correction.nearest_distance(samples, bank)
    expected = float((bank[1].double() - samples[0].double()).norm())
    assert index.tolist() == [1] and float(distance[0]) == pytest.approx(expected, rel=1e-6)


@pytest.mark.triton_compile_early
def test_registered_as_custom_op():
    if not hasattr(torch.library, "triton_op"):
        pytest.skip("torch.library.triton_op needs torch >= 2.6")
    gen = torch.Generator().manual_seed(3)
    samples, bank = torch.randn(3, 10, generator=gen).to(DEVICE), torch.randn(20, 10, generator=gen).to(DEVICE)
    distance, index = torch.ops.fastgp_triton.nearest_distance(samples, bank, 7)
    expected_distance, _ = ref.nearest_distance(samples, bank, 7)
    torch.testing.assert_close(distance, expected_distance)
    assert_nearest(samples, bank, distance, index, rtol=1e-4, atol=1e-4)


@pytest.mark.triton_compile_early
@pytest.mark.skipif(INTERPRETED, reason="fake tensors cannot run interpreted kernels; needs a GPU")
def test_opcheck_and_compile_on_gpu():
    samples, bank = torch.randn(4, 12, device=DEVICE), torch.randn(30, 12, device=DEVICE)
    torch.library.opcheck(torch.ops.fastgp_triton.nearest_distance.default, (samples, bank, 8))
    compiled = torch.compile(lambda a, b: torch.ops.fastgp_triton.nearest_distance(a, b, 8), fullgraph=True)
    distance, index = compiled(samples, bank)
    torch.testing.assert_close(distance, ref.nearest_distance(samples, bank, 8)[0], rtol=1e-4, atol=1e-4)
    assert_nearest(samples, bank, distance, index, rtol=1e-4, atol=1e-4)


def test_zero_features_and_argument_names_on_triton_backend():
    # Issue 16: zero features gave NaN on the extension and raised on the reference; every backend
    # now raises the same ValueError, and replace_realistic names its own arguments.
    with fastgp.use_backend("triton"):
        with pytest.raises(ValueError, match=r"^samples and bank have no features per row \(shapes \[3, 0\] and \[5, 0\]\)"):
            fastgp.correction.nearest_distance(torch.randn(3, 0, device=DEVICE), torch.randn(5, 0, device=DEVICE),
                                               normalized=True)
        with pytest.raises(TypeError, match="^fakes and bank must have the same dtype"):
            fastgp.correction.replace_realistic(torch.randn(3, 4, device=DEVICE),
                                                torch.randn(5, 4, device=DEVICE, dtype=torch.float64))
