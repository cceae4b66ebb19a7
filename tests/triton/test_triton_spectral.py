"""Triton kernels of the spectral family (fastgp.triton.spectral) against the reference and the
C++ op. Run in its own process (see conftest.py): ``TRITON_INTERPRET=1 python -m pytest tests/triton``.
Shapes are small (the interpreter is slow) but cover several programs per matrix (the ordered
partial sums), masked row and column tails, several column tiles per row, and wide rows."""

import os

import pytest
import torch

import fastgp
from fastgp.reference import spectral as ref
from fastgp.triton import spectral as ts

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRETED else "cuda"
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
# (130, 40): 3 programs of 64 rows with a masked last one; (5, 1100): ROWS=8 > h, columns in 2 tiles.
SHAPES = [(1, 1), (7, 5), (9, 1), (1, 9), (130, 40), (5, 1100), (0, 3)]
EPS = 1e-12


def tol(dtype):
    return {
        torch.float64: dict(rtol=1e-10, atol=1e-12),
        torch.float32: dict(rtol=2e-5, atol=2e-6),
        torch.float16: dict(rtol=2e-3, atol=2e-3),
        torch.bfloat16: dict(rtol=1.6e-2, atol=8e-3),
    }[dtype]


def inputs(shape, dtype, seed=0, strided=False):
    gen = torch.Generator().manual_seed(seed)
    h, w = shape
    cols = 2 * w if strided else w
    W = torch.randn(h, cols, generator=gen, dtype=torch.float64).to(dtype)
    if strided:
        W = W[:, ::2]
    u = torch.randn(h, generator=gen, dtype=torch.float64).to(dtype)
    v = torch.randn(w, generator=gen, dtype=torch.float64).to(dtype)
    return W.to(DEVICE), u.to(DEVICE), v.to(DEVICE)


def check(got, expected, dtype):
    (s1, u1, v1), (s2, u2, v2) = got, expected
    scale = max(1.0, abs(s2.item()))
    assert s1.shape == () and s1.dtype == s2.dtype
    torch.testing.assert_close(s1 / scale, s2 / scale, **tol(dtype))
    torch.testing.assert_close(u1, u2, **tol(dtype))
    torch.testing.assert_close(v1, v2, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("n", [0, 2])
def test_power_iteration_matches_reference(dtype, shape, n):
    W, u, v = inputs(shape, dtype)
    u1, v1, u2, v2 = u.clone(), v.clone(), u.clone(), v.clone()
    got = (ts.spectral_power_iteration(W, u1, v1, n, EPS), u1, v1)
    expected = (ref.spectral_power_iteration(W, u2, v2, n, EPS), u2, v2)
    check(got, expected, dtype)


def test_strided_weight():
    W, u, v = inputs((33, 17), torch.float32, strided=True)
    u1, v1, u2, v2 = u.clone(), v.clone(), u.clone(), v.clone()
    check((ts.spectral_power_iteration(W, u1, v1, 1, EPS), u1, v1), (ref.spectral_power_iteration(W, u2, v2, 1, EPS), u2, v2), torch.float32)


@pytest.mark.skipif(not INTERPRETED, reason="the C++ op runs on the same CPU tensors only under the interpreter")
def test_matches_cpp_op():
    W, u, v = inputs((130, 40), torch.float32, seed=4)
    u1, v1, u2, v2 = u.clone(), v.clone(), u.clone(), v.clone()
    got = (ts.spectral_power_iteration(W, u1, v1, 3, EPS), u1, v1)
    expected = (torch.ops.fastgp.spectral_power_iteration(W, u2, v2, 3, EPS), u2, v2)
    check(got, expected, torch.float32)


def test_grouped():
    shapes = [(7, 5), (130, 40), (1, 9)]
    triples = [inputs(s, torch.float32, seed=i) for i, s in enumerate(shapes)]
    us = [t[1].clone() for t in triples]
    vs = [t[2].clone() for t in triples]
    sig = ts.spectral_power_iteration_grouped([t[0] for t in triples], us, vs, 1, EPS)
    for g, (W, u, v) in enumerate(triples):
        u2, v2 = u.clone(), v.clone()
        s = ref.spectral_power_iteration(W, u2, v2, 1, EPS)
        check((sig[g], us[g], vs[g]), (s, u2, v2), torch.float32)


def test_spectral_norm_module_with_triton_backend():
    """The nn drop-in running the Triton kernels: gradient penalty through it vs torch's SN."""
    from torch import nn
    from torch.nn.utils.parametrizations import spectral_norm as torch_sn

    x = torch.randn(4, 6, dtype=torch.float64, device=DEVICE, requires_grad=True)
    results = []
    for sn in (torch_sn, fastgp.nn.spectral_norm):
        torch.manual_seed(0)
        layer = nn.Linear(6, 5).double().to(DEVICE)
        torch.manual_seed(1)
        with fastgp.use_backend("triton"):
            m = sn(layer)
            (g,) = torch.autograd.grad(m(x).tanh().sum(), x, create_graph=True)
            loss = g.square().sum()
            results.append(torch.autograd.grad(loss, [m.parametrizations.weight.original]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=1e-9)


def test_rejects_bad_arguments():
    W, u, v = inputs((3, 4), torch.float32)
    with pytest.raises(ValueError, match="n_iterations must be >= 0"):
        ts.spectral_power_iteration(W, u, v, -1, EPS)
    with pytest.raises(ValueError, match="eps must be > 0"):
        ts.spectral_power_iteration(W, u, v, 1, 0.0)
    with pytest.raises(ValueError, match="u and v must have shapes"):
        ts.spectral_power_iteration(W, v, u, 1, EPS)
    with pytest.raises(TypeError, match="weight must be float16"):
        ts.spectral_power_iteration(W.int(), u, v, 1, EPS)
