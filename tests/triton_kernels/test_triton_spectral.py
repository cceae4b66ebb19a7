"""Triton kernels of the spectral family (fastgp.triton.spectral) against the reference and the
C++ op. Run in its own process (see conftest.py): ``TRITON_INTERPRET=1 python -m pytest tests/triton_kernels``.
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


class CountLaunches:
    """Wraps a @triton.jit kernel: counts ``kernel[grid](...)`` launches and their grids."""

    def __init__(self, kernel):
        self.kernel, self.grids = kernel, []

    def __getitem__(self, grid):
        self.grids.append(grid)
        return self.kernel[grid]


# Mixed shapes in one list: several row chunks with a masked tail, a single row, a single column,
# a wide matrix with several column tiles, a strided (non-contiguous) view, and empty matrices.
GROUP_SHAPES = [(7, 5), (130, 40), (1, 9), (9, 1), (5, 300), (0, 3), (4, 0)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64], ids=str)
@pytest.mark.parametrize("n", [0, 1, 3])
def test_grouped_is_one_launch_per_pass_and_matches_reference(monkeypatch, dtype, n):
    triples = [inputs(shape, dtype, seed=g, strided=(g == 1)) for g, shape in enumerate(GROUP_SHAPES)]
    assert not triples[1][0].is_contiguous()
    us, vs = [t[1].clone() for t in triples], [t[2].clone() for t in triples]
    passes, finishes = CountLaunches(ts._pass_kernel), CountLaunches(ts._finish_kernel)
    monkeypatch.setattr(ts, "_pass_kernel", passes)
    monkeypatch.setattr(ts, "_finish_kernel", finishes)
    sigmas = ts.spectral_power_iteration_grouped([t[0] for t in triples], us, vs, n, EPS)
    # One launch of each kernel per pass over the whole list (one σ-only pass for n = 0): the grid
    # of the pass is every (matrix, row chunk) item, that of the finish one program per matrix.
    rows, _ = ts._split(max(w for _, w in GROUP_SHAPES))
    assert len(passes.grids) == max(n, 1) and len(finishes.grids) == max(n, 1)
    assert passes.grids[0] == (sum(-(-h // rows) for h, _ in GROUP_SHAPES),)
    assert finishes.grids[0] == (len(GROUP_SHAPES),)
    assert sigmas.shape == (len(GROUP_SHAPES),)
    assert sigmas.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    for g, (W, u, v) in enumerate(triples):
        u2, v2 = u.clone(), v.clone()
        s = ref.spectral_power_iteration(W, u2, v2, n, EPS)
        check((sigmas[g], us[g], vs[g]), (s, u2, v2), dtype)
        if n == 0:  # σ only: the vectors are left alone
            assert torch.equal(us[g], u) and torch.equal(vs[g], v)


def test_grouped_matches_cpp_op_and_single_calls():
    triples = [inputs(shape, torch.float32, seed=10 + g) for g, shape in enumerate(GROUP_SHAPES)]
    results = []
    for run in ("grouped", "single", "cpp"):
        us, vs = [t[1].clone() for t in triples], [t[2].clone() for t in triples]
        Ws = [t[0] for t in triples]
        if run == "grouped":
            sigmas = ts.spectral_power_iteration_grouped(Ws, us, vs, 2, EPS)
        elif run == "single":
            sigmas = torch.stack([ts.spectral_power_iteration(W, u, v, 2, EPS) for W, u, v in zip(Ws, us, vs)])
        elif INTERPRETED:  # the C++ op runs on the same CPU tensors only under the interpreter
            sigmas = torch.ops.fastgp.spectral_power_iteration_grouped(Ws, us, vs, 2, EPS)
        else:
            continue
        results.append((sigmas, us, vs))
    for sigmas, us, vs in results[1:]:
        torch.testing.assert_close(sigmas, results[0][0], rtol=2e-5, atol=2e-6)
        for a, b in zip(us + vs, results[0][1] + results[0][2]):
            torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-6)


def test_grouped_tables_are_reused_and_follow_the_storage():
    """The metadata tables are cached by (pointer, shape, strides): a second call on the same
    matrices reuses them, a matrix in new storage gets new ones (and the right result)."""
    triples = [inputs(shape, torch.float32, seed=20 + g) for g, shape in enumerate(GROUP_SHAPES[:3])]
    Ws = [t[0] for t in triples]
    us, vs = [t[1].clone() for t in triples], [t[2].clone() for t in triples]
    ts._tables.cache_clear()
    ts.spectral_power_iteration_grouped(Ws, us, vs, 1, EPS)
    ts.spectral_power_iteration_grouped(Ws, us, vs, 1, EPS)
    assert ts._tables.cache_info().hits == 1 and ts._tables.cache_info().misses == 1
    moved = [W.clone() * 2 for W in Ws]  # new storage, new values
    u2, v2 = [u.clone() for u in us], [v.clone() for v in vs]
    sigmas = ts.spectral_power_iteration_grouped(moved, us, vs, 1, EPS)
    assert ts._tables.cache_info().misses == 2
    for g, W in enumerate(moved):
        u3, v3 = u2[g].clone(), v2[g].clone()
        s = ref.spectral_power_iteration(W, u3, v3, 1, EPS)
        check((sigmas[g], us[g], vs[g]), (s, u3, v3), torch.float32)


def test_grouped_rejects_mixed_dtypes():
    (W1, u1, v1), (W2, u2, v2) = inputs((3, 4), torch.float32), inputs((2, 2), torch.float64)
    with fastgp.use_backend("triton"):
        with pytest.raises(ValueError, match="all weights must share one dtype and device"):
            fastgp.spectral.power_iteration_grouped([W1, W2], [u1, u2], [v1, v2], 1, EPS)
        with pytest.raises(ValueError, match="n_iterations must be >= 0"):
            fastgp.spectral.power_iteration_grouped([W1], [u1], [v1], -1, EPS)
    for call in (lambda: ts.spectral_power_iteration_grouped([W1, W2], [u1, u2], [v1, v2], 1, EPS),
                 lambda: ts.spectral_power_iteration_grouped([W1], [u1], [v1], -1, EPS)):
        with pytest.raises(AssertionError, match="fastgp internal error"):
            call()


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
    """User input is validated once, in fastgp/spectral.py; the launcher asserts its invariants."""
    W, u, v = inputs((3, 4), torch.float32)
    with fastgp.use_backend("triton"):
        with pytest.raises(ValueError, match="n_iterations must be >= 0"):
            fastgp.spectral.power_iteration(W, u, v, -1, EPS)
        with pytest.raises(ValueError, match="eps must be > 0"):
            fastgp.spectral.power_iteration(W, u, v, 1, 0.0)
        with pytest.raises(ValueError, match="u must have shape"):
            fastgp.spectral.power_iteration(W, v, u, 1, EPS)
        with pytest.raises(TypeError, match="weight must have a floating dtype"):
            fastgp.spectral.power_iteration(W.int(), u, v, 1, EPS)
        with pytest.raises(ValueError, match="u must have shape"):
            fastgp.spectral.spectral_normalize(W, v, u)
    for call in (lambda: ts.spectral_power_iteration(W, u, v, -1, EPS),
                 lambda: ts.spectral_power_iteration(W, v, u, 1, EPS),
                 lambda: ts.spectral_power_iteration(W.int(), u, v, 1, EPS)):
        with pytest.raises(AssertionError, match="fastgp internal error"):
            call()
