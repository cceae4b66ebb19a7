"""The raw power-iteration kernels of the spectral family on every device: each fused backend against
the reference (the torch ops that torch.nn.utils.parametrizations.spectral_norm runs), and the
reference against a float64 power iteration written out here."""

import pytest
import torch

import fastgp
from fastgp import backend
from fastgp.reference import spectral as ref
from helpers import DTYPES, devices

# Shapes: tiny, a single row / column, more rows than one work item (the item split and the
# ordered partial sums), wide rows, and empty matrices.
SHAPES = [(7, 5), (1, 9), (9, 1), (300, 70), (3, 20000), (64, 257), (0, 4), (4, 0)]
EPS = 1e-12


def kernels(device):
    return backend.kernels("spectral", device)


def tol(dtype):
    # float16/bfloat16 iterate in float32 on both sides; the stored vectors are rounded once.
    return {
        torch.float64: dict(rtol=1e-10, atol=1e-12),
        torch.float32: dict(rtol=2e-5, atol=2e-6),
        torch.float16: dict(rtol=2e-3, atol=2e-3),
        torch.bfloat16: dict(rtol=1.6e-2, atol=8e-3),
    }[dtype]


def inputs(shape, dtype, seed=0, strided=False, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    h, w = shape
    if strided:  # a non-contiguous view of W (every other column of a wider matrix)
        W = torch.randn(h, 2 * w, generator=gen, dtype=torch.float64).to(device, dtype)[:, ::2]
    else:
        W = torch.randn(h, w, generator=gen, dtype=torch.float64).to(device, dtype)
    u = torch.randn(h, generator=gen, dtype=torch.float64).to(device, dtype)
    v = torch.randn(w, generator=gen, dtype=torch.float64).to(device, dtype)
    return W, u, v


def run_both(fn_name, W, u, v, n, eps=EPS):
    u1, v1, u2, v2 = u.clone(), v.clone(), u.clone(), v.clone()
    s1 = getattr(kernels(W.device), fn_name)(W, u1, v1, n, eps)
    s2 = getattr(ref, fn_name)(W, u2, v2, n, eps)
    return (s1, u1, v1), (s2, u2, v2)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("n", [0, 1, 3])
def test_power_iteration_matches_reference(kernel_backend, device, dtype, shape, n):
    W, u, v = inputs(shape, dtype, device=device)
    (s1, u1, v1), (s2, u2, v2) = run_both("spectral_power_iteration", W, u, v, n)
    assert s1.shape == () and s1.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert u1.dtype == dtype and v1.dtype == dtype
    scale = max(1.0, abs(s2.item()))
    torch.testing.assert_close(s1 / scale, s2 / scale, **tol(dtype))
    torch.testing.assert_close(u1, u2, **tol(dtype))
    torch.testing.assert_close(v1, v2, **tol(dtype))
    if n == 0:  # eval mode: the vectors are not touched
        assert torch.equal(u1, u) and torch.equal(v1, v)


def _power_iteration_oracle(W, u, v, n, eps=EPS):
    """n rounds of u = normalize(W v), v = normalize(Wᵀ u) in float64, then σ = uᵀ W v."""
    W, u, v = W.double().cpu(), u.double().cpu(), v.double().cpu()
    for _ in range(n):
        u = W @ v
        u = u / max(u.norm().item(), eps)
        v = W.t() @ u
        v = v / max(v.norm().item(), eps)
    return u @ (W @ v), u, v


@pytest.mark.parametrize("dtype", (torch.float64, torch.float32), ids=str)
@pytest.mark.parametrize("shape", [(7, 5), (9, 1), (300, 70), (64, 257), (0, 4)], ids=str)
@pytest.mark.parametrize("n", [0, 3])
def test_power_iteration_matches_float64_loop(backend_name, device, dtype, shape, n):
    W, u, v = inputs(shape, dtype, device=device)
    expected_sigma, expected_u, expected_v = _power_iteration_oracle(W, u, v, n)
    sigma = kernels(device).spectral_power_iteration(W, u, v, n, EPS)
    scale = max(1.0, abs(expected_sigma.item()))
    torch.testing.assert_close(sigma.double().cpu() / scale, expected_sigma / scale, **tol(dtype))
    torch.testing.assert_close(u.double().cpu(), expected_u, **tol(dtype))
    torch.testing.assert_close(v.double().cpu(), expected_v, **tol(dtype))


def test_power_iteration_strided_weight(kernel_backend, device):
    W, u, v = inputs((33, 17), torch.float32, strided=True, device=device)
    (s1, u1, v1), (s2, u2, v2) = run_both("spectral_power_iteration", W, u, v, 2)
    torch.testing.assert_close(s1, s2, **tol(torch.float32))
    torch.testing.assert_close(u1, u2, **tol(torch.float32))
    torch.testing.assert_close(v1, v2, **tol(torch.float32))


def test_power_iteration_converges_to_top_singular_value(backend_name, device):
    W, u, v = inputs((40, 30), torch.float64, seed=3, device=device)
    sigma = kernels(device).spectral_power_iteration(W, u, v, 500, EPS)
    top = torch.linalg.matrix_norm(W, 2)
    torch.testing.assert_close(sigma, top, rtol=1e-8, atol=0)
    torch.testing.assert_close(torch.vdot(u, W @ v), top, rtol=1e-8, atol=0)


def test_power_iteration_zero_matrix_uses_eps(backend_name, device):
    W = torch.zeros(5, 4, device=device)
    u, v = torch.ones(5, device=device), torch.ones(4, device=device)
    sigma = kernels(device).spectral_power_iteration(W, u, v, 1, EPS)
    assert sigma.item() == 0.0
    assert torch.equal(u, torch.zeros(5, device=device)) and torch.equal(v, torch.zeros(4, device=device))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", [0, 2])
def test_grouped_matches_single(kernel_backend, device, dtype, n):
    shapes = [(64, 3 * 9), (128, 64 * 16), (1, 128 * 16), (300, 70), (7, 5), (0, 3)]
    triples = [inputs(s, dtype, seed=i, device=device) for i, s in enumerate(shapes)]
    Ws = [t[0] for t in triples]
    us1 = [t[1].clone() for t in triples]
    vs1 = [t[2].clone() for t in triples]
    us2 = [t[1].clone() for t in triples]
    vs2 = [t[2].clone() for t in triples]
    sig = kernels(device).spectral_power_iteration_grouped(Ws, us1, vs1, n, EPS)
    assert sig.shape == (len(shapes),)
    for g in range(len(shapes)):
        s = ref.spectral_power_iteration(Ws[g], us2[g], vs2[g], n, EPS)
        scale = max(1.0, abs(s.item()))
        torch.testing.assert_close(sig[g] / scale, s / scale, **tol(dtype))
        torch.testing.assert_close(us1[g], us2[g], **tol(dtype))
        torch.testing.assert_close(vs1[g], vs2[g], **tol(dtype))


@pytest.mark.parametrize("n", [0, 2])
def test_reference_grouped_matches_float64_loop(n):
    shapes = [(64, 27), (1, 33), (7, 5), (0, 3)]
    triples = [inputs(s, torch.float64, seed=i) for i, s in enumerate(shapes)]
    us, vs = [t[1].clone() for t in triples], [t[2].clone() for t in triples]
    sigmas = ref.spectral_power_iteration_grouped([t[0] for t in triples], us, vs, n, EPS)
    for g, (W, u, v) in enumerate(triples):
        expected_sigma, expected_u, expected_v = _power_iteration_oracle(W, u, v, n)
        torch.testing.assert_close(sigmas[g], expected_sigma, **tol(torch.float64))
        torch.testing.assert_close(us[g], expected_u, **tol(torch.float64))
        torch.testing.assert_close(vs[g], expected_v, **tol(torch.float64))


def test_grouped_empty_list(backend_name, on_device):
    # No weight names a device: the empty σ is made like any factory call, on the default device.
    out = fastgp.spectral.power_iteration_grouped([], [], [], 1)
    assert out.shape == (0,) and out.device.type == on_device


def test_results_do_not_depend_on_thread_count():
    W, u, v = inputs((700, 300), torch.float32, seed=5)
    threads = torch.get_num_threads()
    results = []
    for t in (1, max(2, threads)):
        torch.set_num_threads(t)
        uu, vv = u.clone(), v.clone()
        s = torch.ops.fastgp.spectral_power_iteration(W, uu, vv, 2, EPS)
        results.append((s, uu, vv))
    torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "args,error,match",
    [
        ((torch.zeros(3, 4, dtype=torch.int64), torch.zeros(3, dtype=torch.int64), torch.zeros(4, dtype=torch.int64), 1, EPS), RuntimeError, "must be float16, bfloat16, float32 or float64"),
        ((torch.zeros(3, 4, 2), torch.zeros(3), torch.zeros(4), 1, EPS), RuntimeError, "must be a matrix"),
        ((torch.zeros(3, 4), torch.zeros(4), torch.zeros(4), 1, EPS), RuntimeError, "u 0 must have shape \\[3\\]"),
        ((torch.zeros(3, 4), torch.zeros(3), torch.zeros(3), 1, EPS), RuntimeError, "v 0 must have shape \\[4\\]"),
        ((torch.zeros(3, 4), torch.zeros(3, dtype=torch.float64), torch.zeros(4), 1, EPS), RuntimeError, "dtype of their weight"),
        ((torch.zeros(3, 4), torch.zeros(6)[::2], torch.zeros(4), 1, EPS), RuntimeError, "must be contiguous"),
        ((torch.zeros(3, 4), torch.zeros(3), torch.zeros(4), -1, EPS), RuntimeError, "n_iterations must be >= 0"),
        ((torch.zeros(3, 4), torch.zeros(3), torch.zeros(4), 1, 0.0), RuntimeError, "eps must be a positive"),
    ],
)
def test_extension_op_rejects_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        torch.ops.fastgp.spectral_power_iteration(*args)


@pytest.mark.parametrize("device", devices())
def test_opcheck(device):
    W, u, v = inputs((30, 20), torch.float32, device=device)
    torch.library.opcheck(torch.ops.fastgp.spectral_power_iteration.default, (W, u, v, 1, EPS))
    torch.library.opcheck(torch.ops.fastgp.spectral_power_iteration.default, (W.t(), v.clone(), u.clone(), 0, EPS))
    W2, u2, v2 = inputs((5, 9), torch.float32, seed=1, device=device)
    torch.library.opcheck(
        torch.ops.fastgp.spectral_power_iteration_grouped.default,
        ([W, W2], [u.clone(), u2], [v.clone(), v2], 2, EPS),
    )


@pytest.mark.parametrize("device", devices())
def test_torch_compile_fullgraph(device):
    W, u, v = inputs((30, 20), torch.float32, device=device)

    def f(W, u, v):
        sigma = torch.ops.fastgp.spectral_power_iteration(W, u, v, 1, EPS)
        return W / sigma

    u1, v1, u2, v2 = u.clone(), v.clone(), u.clone(), v.clone()
    out = torch.compile(f, fullgraph=True, backend="aot_eager")(W, u1, v1)
    expected = f(W, u2, v2)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(u1, u2)
    torch.testing.assert_close(v1, v2)
