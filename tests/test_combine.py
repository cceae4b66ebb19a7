"""Pixel-wise combinations (fastgp.combine): raw op vs the reference, autograd, loss, bad input."""

import pytest
import torch

import fastgp
from fastgp import backend
from fastgp.reference import combine as ref
from helpers import DTYPES, devices, make

MODES = list(enumerate(ref.MODES))
LAYOUTS = [("contiguous", (6, 3, 4, 5)), ("channels_last", (6, 3, 4, 5)), ("strided", (5, 7)), ("contiguous", (4,))]


def kernels(device):
    return backend.kernels("combine", device)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout,shape", LAYOUTS)
@pytest.mark.parametrize("mode,name", MODES)
def test_pixelwise_matches_reference(kernel_backend, device, dtype, layout, shape, mode, name):
    x = make(shape, dtype, layout, seed=1, device=device)
    pairs = fastgp.combine.random_pairs(shape[0], 9, torch.Generator().manual_seed(2)).to(device)
    out = kernels(device).pixelwise_combine(x, pairs, mode, 0.1)
    expected = ref.pixelwise_combine(x, pairs, mode, 0.1)
    assert out.dtype == dtype and out.shape == (9, *shape[1:]) and out.device == x.device
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    if layout == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)
    if name in ("and", "or"):
        assert set(out.unique().tolist()) <= {0.0, 1.0}


def _combine_oracle(x, pairs, mode, threshold):
    """The definition in float64 (exact for mean: (a + b) / 2 of two values of x's dtype rounds once),
    the threshold rounded to the accumulation dtype as the kernels compare in it."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    t = torch.tensor(threshold, dtype=acc).item()
    a, b = x.double()[pairs[:, 0]], x.double()[pairs[:, 1]]
    nan = a.isnan() | b.isnan()
    out = {
        0: (a + b) / 2,
        1: torch.where(nan, torch.nan, torch.where(a <= b, a, b)),
        2: torch.where(nan, torch.nan, torch.where(a >= b, a, b)),
        3: ((a > t) & (b > t)).double(),
        4: ((a > t) | (b > t)).double(),
    }[mode]
    return out.to(x.dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout,shape", LAYOUTS[:3])
@pytest.mark.parametrize("mode,name", MODES)
def test_pixelwise_matches_definition(backend_name, device, dtype, layout, shape, mode, name):
    x = make(shape, dtype, layout, seed=3, device=device)
    pairs = fastgp.combine.random_pairs(shape[0], 9, torch.Generator().manual_seed(4)).to(device)
    out = kernels(device).pixelwise_combine(x, pairs, mode, 0.1)
    torch.testing.assert_close(out, _combine_oracle(x, pairs, mode, 0.1), rtol=0, atol=0)


def test_pixelwise_nan_semantics(backend_name, device):
    x = torch.tensor([[float("nan"), 1.0, 0.7], [2.0, float("nan"), 0.2]], device=device)
    pairs = torch.tensor([[0, 1]], device=device)
    mean, mn, mx, a, o = (kernels(device).pixelwise_combine(x, pairs, m, 0.5)[0] for m in range(5))
    assert mean.isnan()[:2].all() and mn.isnan()[:2].all() and mx.isnan()[:2].all()
    assert mn[2] == 0.2 and mx[2] == 0.7
    assert a.tolist() == [0.0, 0.0, 0.0] and o.tolist() == [1.0, 1.0, 1.0]  # NaN > t is false


def test_random_pairs_distinct_and_reproducible():
    pairs = fastgp.combine.random_pairs(3, 2000, torch.Generator().manual_seed(0))
    assert pairs.dtype == torch.int64 and pairs.shape == (2000, 2)
    assert bool((pairs[:, 0] != pairs[:, 1]).all()) and int(pairs.min()) == 0 and int(pairs.max()) == 2
    # Uniform over the 6 ordered pairs (each ~333).
    counts = torch.bincount(pairs[:, 0] * 3 + pairs[:, 1], minlength=9)
    assert counts[[0, 4, 8]].sum() == 0 and int(counts.max()) < 420 and int(counts[counts > 0].min()) > 250
    again = fastgp.combine.random_pairs(3, 2000, torch.Generator().manual_seed(0))
    assert torch.equal(pairs, again)


@pytest.mark.parametrize("generator_on", ["cpu", "device"])
def test_pixelwise_api_random_pairs_use_generator(backend_name, device, generator_on):
    x = make((5, 3, 4, 4), seed=5, device=device)

    def generator():
        return torch.Generator(device=device if generator_on == "device" else "cpu").manual_seed(3)

    a = fastgp.combine.pixelwise(x, "max", generator=generator())
    b = fastgp.combine.pixelwise(x, "max", generator=generator())
    assert a.shape == x.shape and torch.equal(a, b)
    pairs = fastgp.combine.random_pairs(5, 5, generator()).to(device)
    assert torch.equal(a, torch.maximum(x[pairs[:, 0]], x[pairs[:, 1]]))


@pytest.mark.parametrize("device", devices())
def test_random_pairs_identical_across_backends(device):
    """The pairs drawn from a seeded generator of the device are the same whichever backend runs."""
    x = make((6, 2, 3, 3), seed=6, device=device)
    results = {}
    for name in ("extension", "triton", "reference") if device == "cuda" else ("extension", "reference"):
        with fastgp.use_backend(name):
            results[name] = fastgp.combine.pixelwise(x, "min", generator=torch.Generator(device=device).manual_seed(8))
    pairs = fastgp.combine.random_pairs(6, 6, torch.Generator(device=device).manual_seed(8))
    for name, out in results.items():
        assert torch.equal(out, torch.minimum(x[pairs[:, 0]], x[pairs[:, 1]])), name


@pytest.mark.parametrize("mode", ["mean", "min", "max"])
def test_pixelwise_gradcheck_and_gradgradcheck(backend_name, device, mode):
    x = make((4, 2, 3), torch.float64, seed=7, device=device).requires_grad_(True)
    pairs = torch.tensor([[0, 1], [2, 0], [1, 3], [0, 1]], device=device)

    def fn(v):
        return fastgp.combine.pixelwise(v, mode, pairs=pairs) ** 2

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_pixelwise_min_max_tie_gradient_goes_to_first(backend_name, device):
    x = torch.ones(2, 3, requires_grad=True, device=device)
    fastgp.combine.pixelwise(x, "min", pairs=torch.tensor([[1, 0]], device=device)).sum().backward()
    assert x.grad.tolist() == [[0.0] * 3, [1.0] * 3]


def test_pixelwise_binary_modes_not_differentiable(backend_name, device):
    x = torch.rand(3, 4, requires_grad=True, device=device)
    out = fastgp.combine.pixelwise(x, "and", pairs=torch.tensor([[0, 1]], device=device))
    assert not out.requires_grad


def test_d_loss_formula():
    r, f, c = torch.randn(5), torch.randn(5), torch.randn(7)
    sp = torch.nn.functional.softplus
    expected = sp(-r).mean() + 0.5 * (sp(f).mean() + sp(c).mean())
    torch.testing.assert_close(fastgp.combine.d_loss(r, f, c), expected)
    hinge = fastgp.combine.d_loss(r, f, c, loss="hinge")
    relu = torch.relu
    torch.testing.assert_close(hinge, relu(1 - r).mean() + 0.5 * (relu(1 + f).mean() + relu(1 + c).mean()))
    # A loss built with parameters: the pair from fastgp.losses.get.
    margin2 = fastgp.combine.d_loss(r, f, c, loss=fastgp.losses.get("hinge", margin=2.0))
    torch.testing.assert_close(margin2, relu(2 - r).mean() + 0.5 * (relu(2 + f).mean() + relu(2 + c).mean()))


@pytest.mark.parametrize("device", devices())
def test_opcheck(device):
    pairs = torch.tensor([[0, 1], [4, 2]], device=device)
    for x in (make((5, 3, 4, 5), seed=1, device=device), make((5, 3, 4, 5), layout="channels_last", seed=1, device=device),
              make((5, 7), layout="strided", device=device)):
        for mode in range(5):
            torch.library.opcheck(torch.ops.fastgp.pixelwise_combine.default, (x, pairs, mode, 0.2))


X = torch.randn(4, 3)
P = torch.tensor([[0, 1], [2, 3]])
pixelwise = fastgp.combine.pixelwise

BAD = [
    (lambda X, P: pixelwise(torch.randn(1, 3)), ValueError, "x must hold at least 2 samples to combine, got 1"),
    (lambda X, P: pixelwise(X, pairs=torch.tensor([[0, 0]])), ValueError, r"different samples \(i != j\), got pair 0"),
    (lambda X, P: pixelwise(X, pairs=torch.tensor([[0, 4]])), ValueError, r"indices in \[0, 4\), got 4"),
    (lambda X, P: pixelwise(X, pairs=torch.tensor([[-1, 2]])), ValueError, r"indices in \[0, 4\), got -1"),
    (lambda X, P: pixelwise(X, pairs=P.int()), TypeError, "pairs must be an int64 tensor"),
    (lambda X, P: pixelwise(X, pairs=torch.tensor([0, 1])), ValueError, r"pairs must have shape \[P, 2\]"),
    (lambda X, P: pixelwise(X, pairs=P.tolist()), TypeError, "pairs must be a torch.Tensor"),
    (lambda X, P: pixelwise(X, "xor"), ValueError, "mode must be one of 'mean', 'min', 'max', 'and', 'or'; got 'xor'"),
    (lambda X, P: pixelwise(X, "and", threshold=float("nan")), ValueError, "threshold must be finite"),
    (lambda X, P: pixelwise(X, pairs=P, generator=torch.Generator()), ValueError, "generator and num_pairs apply only"),
    (lambda X, P: pixelwise(X.long()), TypeError, "x must have a floating dtype"),
    (lambda X, P: fastgp.combine.random_pairs(1, 3), ValueError, "need at least 2 samples to combine"),
    (lambda X, P: fastgp.combine.d_loss(X[:, 0], X[:, 0], X[:, 0], loss="nope"), ValueError, "unknown loss 'nope'"),
    (lambda X, P: fastgp.combine.d_loss(X[:, 0], X[:, 0], X[:, 0], loss=torch.sub), TypeError,
     "loss must be a loss name or a fastgp.losses.GANLoss pair, got builtin_function_or_method"),
]


@pytest.mark.parametrize("call,error,match", BAD)
def test_bad_input(backend_name, device, call, error, match):
    with torch.device(device), pytest.raises(error, match=match):
        call(X.to(device), P.to(device))


def test_raw_op_checks():
    with pytest.raises(RuntimeError, match=r"pairs must hold indices in \[0, 4\)"):
        torch.ops.fastgp.pixelwise_combine(X, torch.tensor([[0, 9]]), 0, 0.5)
    with pytest.raises(RuntimeError, match="mode must be 0"):
        torch.ops.fastgp.pixelwise_combine(X, P, 7, 0.5)
