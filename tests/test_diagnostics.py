"""Jacobian and Lipschitz diagnostics against closed forms, independent oracles and each other."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastgp import diagnostics, losses
from helpers import make

F64 = dict(rtol=1e-10, atol=1e-12)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def linear_map(in_shape, out_shape, seed=0):
    """f(x) = W·vec(x) reshaped to out_shape: every sample's Jacobian is W."""
    n, m = math.prod(in_shape), math.prod(out_shape)
    W = make((m, n), torch.float64, seed=seed)

    def f(x):
        return (x.reshape(x.shape[0], -1) @ W.T).reshape(x.shape[0], *out_shape)

    return f, W


def per_sample_oracle(f, x):
    """‖J_i‖_F from torch.autograd.functional.jacobian, one sample at a time."""
    norms = []
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda s: f(s.unsqueeze(0)).squeeze(0), x[i])
        norms.append(jac.reshape(-1).norm())
    return torch.stack(norms)


# ------------------------------------------------------------------------------------------
# Exact Jacobian norms: closed forms (linear maps, quadratics) and an independent oracle
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "in_shape,out_shape",
    [((5,), (3,)), ((2,), (7,)), ((2, 3, 3), ()), ((2, 3, 3), (1,)), ((4,), (3, 4, 4))],
    ids=["wide", "tall(jacfwd)", "D-logit[B]", "D-logit[B,1]", "G-image"],
)
def test_exact_linear_map(in_shape, out_shape):
    f, W = linear_map(in_shape, out_shape)
    x = make((6, *in_shape), torch.float64, seed=1)
    norms = diagnostics.jacobian_norm(f, x)
    assert norms.shape == (6,) and norms.dtype == torch.float64 and not norms.requires_grad
    torch.testing.assert_close(norms, torch.linalg.norm(W).expand(6), **F64)


@pytest.mark.parametrize("m,n", [(3, 5), (6, 2)], ids=["jacrev", "jacfwd"])
def test_exact_quadratic_map(m, n):
    # f(x) = W (x ⊙ x): J_i = W diag(2 x_i), so ‖J_i‖²_F = Σ_jk W_jk² (2 x_ik)².
    W = make((m, n), torch.float64, seed=2)
    x = make((5, n), torch.float64, seed=3)
    norms = diagnostics.jacobian_norm(lambda v: (v * v) @ W.T, x)
    expected = ((W**2).unsqueeze(0) * (2 * x.unsqueeze(1)) ** 2).sum(dim=(1, 2)).sqrt()
    torch.testing.assert_close(norms, expected, **F64)


def test_exact_quadratic_discriminator():
    # D(x) = ½ xᵀQx + bᵀx: ∇D(x_i) = Q x_i + b.
    A = make((4, 4), torch.float64, seed=4)
    Q, b = A + A.T, make((4,), torch.float64, seed=5)
    x = make((7, 4), torch.float64, seed=6)
    D = lambda v: 0.5 * ((v @ Q) * v).sum(1) + v @ b  # noqa: E731
    expected = torch.linalg.norm(x @ Q + b, dim=1)
    torch.testing.assert_close(diagnostics.jacobian_norm(D, x), expected, **F64)
    hutch, stderr = diagnostics.jacobian_norm(D, x, "hutchinson", 4, gen(0), return_stderr=True)
    # Scalar output and Rademacher probes: u² = 1, so Hutchinson is exact with zero spread.
    torch.testing.assert_close(hutch, expected, **F64)
    assert torch.equal(stderr, torch.zeros(7, dtype=torch.float64))


class ConvD(nn.Module):
    def __init__(self, size=5):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Softplus(), nn.Flatten(), nn.Linear(4 * size * size, 1))

    def forward(self, x):
        return self.net(x).squeeze(1)


def small_generator():
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2 * 4 * 4), nn.Unflatten(1, (2, 4, 4)))


@pytest.mark.parametrize("kind", ["discriminator", "generator"])
def test_exact_networks_match_autograd_oracle_and_leave_grads_alone(kind):
    torch.manual_seed(0)
    if kind == "discriminator":
        f, x = ConvD().double(), make((5, 2, 5, 5), torch.float64, seed=7)
    else:
        f, x = small_generator().double(), make((5, 3), torch.float64, seed=8)
    expected = per_sample_oracle(f, x)
    torch.testing.assert_close(diagnostics.jacobian_norm(f, x), expected, **F64)
    torch.testing.assert_close(diagnostics.jacobian_norm(f, x, chunk_size=2), expected, **F64)
    assert all(p.grad is None for p in f.parameters())
    # Hutchinson agrees within its standard error (auto side: output for D, input for G).
    est, stderr = diagnostics.jacobian_norm(f, x, "hutchinson", 32, gen(1), return_stderr=True)
    assert bool(((est - expected).abs() <= 5 * stderr + 1e-12).all())
    assert all(p.grad is None for p in f.parameters())


def test_exact_chunks_are_bounded_by_the_budget(monkeypatch):
    f, W = linear_map((5,), (3,))
    x = make((9, 5), torch.float64, seed=9)
    calls = []
    original = torch.func.vmap

    def counting_vmap(fn, *args, **kwargs):
        mapped = original(fn, *args, **kwargs)

        def run(chunk):
            calls.append(chunk.shape[0])
            return mapped(chunk)

        return run

    monkeypatch.setattr(diagnostics, "JACOBIAN_BUDGET", 2 * 15)  # two samples of a 3x5 Jacobian
    monkeypatch.setattr(torch.func, "vmap", counting_vmap)
    norms = diagnostics.jacobian_norm(f, x)
    assert calls == [2, 2, 2, 2, 1]
    torch.testing.assert_close(norms, torch.linalg.norm(W).expand(9), **F64)


# ------------------------------------------------------------------------------------------
# Hutchinson: agreement with exact, determinism, calibrated standard error
# ------------------------------------------------------------------------------------------

SIDES = ["output", "input", "auto"]
DISTRIBUTIONS = ["rademacher", "gaussian"]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_hutchinson_agrees_with_exact_within_stderr(side, distribution):
    f, W = linear_map((3, 3), (6,), seed=10)
    x = make((8, 3, 3), torch.float64, seed=11)
    exact = diagnostics.jacobian_norm(f, x, "exact")
    kwargs = dict(distribution=distribution, side=side, return_stderr=True)
    est, stderr = diagnostics.jacobian_norm(f, x, "hutchinson", 64, gen(3), **kwargs)
    assert est.shape == stderr.shape == (8,)
    assert bool((stderr > 0).all())
    # 5 standard errors: measured on this map, P(|est − exact| > 5·stderr) <= 1.5e-4 per sample
    # (the stderr is itself estimated, so the tails are heavier than Gaussian).
    assert bool(((est - exact).abs() <= 5 * stderr).all()), (est, exact, stderr)
    # Deterministic with a seed, different with another seed.
    again, _ = diagnostics.jacobian_norm(f, x, "hutchinson", 64, gen(3), **kwargs)
    other, _ = diagnostics.jacobian_norm(f, x, "hutchinson", 64, gen(4), **kwargs)
    assert torch.equal(est, again) and not torch.equal(est, other)
    torch.manual_seed(5)
    a = diagnostics.jacobian_norm(f, x, "hutchinson", 8, side=side, distribution=distribution)
    torch.manual_seed(5)
    assert torch.equal(a, diagnostics.jacobian_norm(f, x, "hutchinson", 8, side=side, distribution=distribution))


@pytest.mark.parametrize("side", ["output", "input"])
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_hutchinson_is_unbiased_and_its_stderr_is_calibrated(side, distribution):
    # Every sample has the same Jacobian W, so the B per-sample estimates are independent draws.
    f, W = linear_map((5,), (4,), seed=12)
    batch, k = 4000, 8
    x = torch.zeros(batch, 5, dtype=torch.float64)
    est, stderr = diagnostics.jacobian_norm(
        f, x, "hutchinson", k, gen(6), distribution=distribution, side=side, return_stderr=True
    )
    frob2 = torch.linalg.norm(W).item() ** 2
    squares = est**2
    # Unbiased for ‖J‖²_F: the mean of B independent estimates is within 4 standard errors.
    assert abs(squares.mean().item() - frob2) <= 4 * squares.std().item() / math.sqrt(batch)
    # The reported standard error matches the actual spread of the norm estimates.
    ratio = est.std().item() / stderr.mean().item()
    assert 0.8 < ratio < 1.25, ratio


def test_hutchinson_single_probe_has_nan_stderr():
    f, _ = linear_map((5,), (3,))
    est, stderr = diagnostics.jacobian_norm(f, torch.ones(2, 5, dtype=torch.float64), "hutchinson", 1, gen(0), return_stderr=True)
    assert bool(torch.isfinite(est).all()) and bool(torch.isnan(stderr).all())


def test_exact_ignores_n_samples_and_generator():
    f, W = linear_map((5,), (3,))
    x = make((3, 5), torch.float64, seed=13)
    norms, stderr = diagnostics.jacobian_norm(f, x, "exact", 5, gen(0), return_stderr=True)
    torch.testing.assert_close(norms, torch.linalg.norm(W).expand(3), **F64)
    assert torch.equal(stderr, torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_reduced_precision_gives_float32(dtype):
    W = make((3, 5), dtype, seed=14)
    f = lambda x: x @ W.T  # noqa: E731
    x = make((4, 5), dtype, seed=15)
    norms = diagnostics.jacobian_norm(f, x)
    assert norms.dtype == torch.float32
    torch.testing.assert_close(norms, torch.linalg.norm(W.float()).expand(4), rtol=1e-3, atol=1e-3)
    assert diagnostics.jacobian_norm(f, x, "hutchinson", 4, gen(0)).dtype == torch.float32


def test_batchnorm_eval_mode_is_accepted():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 1)).double()
    x = make((5, 4), torch.float64, seed=16)
    net(x)  # update the running statistics once
    net.eval()
    torch.testing.assert_close(diagnostics.jacobian_norm(net, x), per_sample_oracle(net, x), **F64)


# ------------------------------------------------------------------------------------------
# loss_lipschitz: closed forms for linear G and D, and against jacobian_norm
# ------------------------------------------------------------------------------------------


def linear_gan(seed=20):
    A = make((6, 3), torch.float64, seed=seed)  # G(z) = A z
    w = make((6,), torch.float64, seed=seed + 1)  # D(x) = wᵀx
    return (lambda z: z @ A.T), (lambda x: x @ w), A.T @ w


@pytest.mark.parametrize("name", ["wasserstein", "hinge", "non-saturating", "saturating", "least-squares", "lgan-combined"])
def test_loss_lipschitz_closed_forms(name):
    G, D, v = linear_gan()
    z = make((11, 3), torch.float64, seed=22)
    s = z @ v  # D(G(z)) per sample; ∂V_g/∂z = ψ'(s)·v
    psi_prime = {
        "wasserstein": -torch.ones_like(s),
        "hinge": -torch.ones_like(s),
        "non-saturating": -torch.sigmoid(-s),
        "saturating": -torch.sigmoid(s),
        "least-squares": s - 1.0,
        "lgan-combined": -torch.ones_like(s),  # psi="linear"
    }[name]
    expected = psi_prime.abs() * torch.linalg.norm(v)
    L, norms = diagnostics.loss_lipschitz(name, G, D, z)
    assert L.shape == () and norms.shape == (11,) and not L.requires_grad
    torch.testing.assert_close(norms, expected, **F64)
    torch.testing.assert_close(L, expected.max(), **F64)
    L2, norms2 = diagnostics.loss_lipschitz(losses.get(name).g_loss, G, D, z, chunk_size=4)
    torch.testing.assert_close(norms2, expected, **F64)
    assert L2 == L


def test_loss_lipschitz_matches_jacobian_norm_of_the_per_sample_loss():
    torch.manual_seed(1)
    G = small_generator().double().eval()
    D = ConvD(size=4).double()
    z = make((9, 3), torch.float64, seed=23)
    L, norms = diagnostics.loss_lipschitz("non-saturating", G, D, z, chunk_size=4)
    expected = diagnostics.jacobian_norm(lambda v: F.softplus(-D(G(v))), z)
    torch.testing.assert_close(norms, expected, **F64)
    assert L == norms.max()
    # A sum-reduced loss defines the same per-sample V_g as the mean-reduced one.
    _, summed = diagnostics.loss_lipschitz(lambda logits: F.softplus(-logits).sum(), G, D, z)
    torch.testing.assert_close(summed, norms, **F64)
    # So does an unreduced one: on a batch of one it is that sample's loss.
    _, unreduced = diagnostics.loss_lipschitz(lambda logits: F.softplus(-logits), G, D, z)
    torch.testing.assert_close(unreduced, norms, **F64)
    assert all(p.grad is None for p in list(G.parameters()) + list(D.parameters()))


def test_loss_lipschitz_dcgan_noise_and_b1_logits():
    G, D, v = linear_gan()
    z = make((5, 3, 1, 1), torch.float64, seed=24)
    L, norms = diagnostics.loss_lipschitz("wasserstein", lambda n: G(n.flatten(1)), lambda x: D(x).unsqueeze(1), z)
    torch.testing.assert_close(norms, torch.linalg.norm(v).expand(5), **F64)


# ------------------------------------------------------------------------------------------
# gradient_direction
# ------------------------------------------------------------------------------------------


def brute_force_nearest(fake, real):
    index, distance = [], []
    for i in range(fake.shape[0]):
        d = torch.stack([torch.linalg.norm((real[j] - fake[i]).reshape(-1)) for j in range(real.shape[0])])
        index.append(int(torch.argmin(d)))
        distance.append(d.min())
    return torch.tensor(index), torch.stack(distance)


def test_gradient_direction_points_at_the_attractor():
    # D(x) = −½‖x − c‖²: ∇D = c − x points exactly at c, the nearest real sample of every fake.
    c = make((1, 2, 3, 3), torch.float64, seed=30)
    real = torch.cat([c + 10 * make((4, 2, 3, 3), torch.float64, seed=31), c, c + 10])
    fake = c + 0.3 * make((6, 2, 3, 3), torch.float64, seed=32)
    D = lambda x: -0.5 * ((x - c) ** 2).flatten(1).sum(1)  # noqa: E731
    cosine, index, distance = diagnostics.gradient_direction(D, fake, real, return_nearest=True)
    torch.testing.assert_close(cosine, torch.ones(6, dtype=torch.float64), **F64)
    assert torch.equal(index, torch.full((6,), 4))
    torch.testing.assert_close(distance, (fake - c).flatten(1).norm(dim=1), **F64)
    # Reversed gradient: cosine −1.
    torch.testing.assert_close(diagnostics.gradient_direction(lambda x: -D(x), fake, real), -torch.ones(6, dtype=torch.float64), **F64)


@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_gradient_direction_linear_discriminator_against_brute_force(chunk_size):
    w = make((2, 3, 3), torch.float64, seed=33)
    D = lambda x: (x * w).flatten(1).sum(1, keepdim=True)  # noqa: E731  logits [B, 1]
    fake, real = make((5, 2, 3, 3), torch.float64, seed=34), make((9, 2, 3, 3), torch.float64, seed=35)
    cosine, index, distance = diagnostics.gradient_direction(D, fake, real, chunk_size=chunk_size, return_nearest=True)
    expected_index, expected_distance = brute_force_nearest(fake, real)
    assert torch.equal(index, expected_index)
    torch.testing.assert_close(distance, expected_distance, **F64)
    direction = (real[expected_index] - fake).flatten(1)
    expected = (direction @ w.reshape(-1)) / (direction.norm(dim=1) * w.norm())
    torch.testing.assert_close(cosine, expected, **F64)


def test_gradient_direction_undefined_angles_are_nan():
    real = make((3, 4), torch.float64, seed=36)
    fake = torch.cat([real[1:2], make((2, 4), torch.float64, seed=37)])
    w = make((4,), torch.float64, seed=38)
    cosine = diagnostics.gradient_direction(lambda x: x @ w, fake, real)
    assert torch.isnan(cosine[0]) and bool(torch.isfinite(cosine[1:]).all())
    flat = diagnostics.gradient_direction(lambda x: 0 * (x @ w), fake, real)
    assert bool(torch.isnan(flat).all())


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------

X = torch.randn(4, 3)
LIN = lambda x: x @ torch.ones(3, 2)  # noqa: E731
SCALAR_D = lambda x: x.sum(1)  # noqa: E731
G_ID = lambda z: z  # noqa: E731


def batchnorm_train():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: diagnostics.jacobian_norm(LIN, X, "hutchinson", 0), ValueError, "n_samples must be >= 1, got 0"),
        (lambda: diagnostics.jacobian_norm(LIN, X, "hutchinson", -3), ValueError, "n_samples must be >= 1"),
        (lambda: diagnostics.jacobian_norm(LIN, X, "exact", 0), ValueError, "n_samples must be >= 1"),
        (lambda: diagnostics.jacobian_norm(LIN, X, "hutchinson", 2.5), TypeError, "n_samples must be an int"),
        (lambda: diagnostics.jacobian_norm(LIN, X, "svd"), ValueError, "method must be one of 'exact', 'hutchinson'"),
        (lambda: diagnostics.jacobian_norm(LIN, X, "hutchinson", distribution="uniform"), ValueError, "distribution must be one of 'rademacher', 'gaussian'"),
        (lambda: diagnostics.jacobian_norm(LIN, X, "hutchinson", side="both"), ValueError, "side must be one of 'auto', 'output', 'input'"),
        (lambda: diagnostics.jacobian_norm(LIN, X, "hutchinson", generator=1), TypeError, "generator must be a torch.Generator"),
        (lambda: diagnostics.jacobian_norm(LIN, X, chunk_size=0), ValueError, "chunk_size must be >= 1"),
        (lambda: diagnostics.jacobian_norm(LIN, X, return_stderr=1), TypeError, "return_stderr must be a bool"),
        (lambda: diagnostics.jacobian_norm("f", X), TypeError, "f must be callable"),
        (lambda: diagnostics.jacobian_norm(LIN, [[1.0]]), TypeError, "x must be a torch.Tensor"),
        (lambda: diagnostics.jacobian_norm(LIN, torch.ones(4, 3, dtype=torch.int64)), TypeError, "x must have a floating dtype"),
        (lambda: diagnostics.jacobian_norm(LIN, torch.randn(0, 3)), ValueError, "x has an empty batch"),
        (lambda: diagnostics.jacobian_norm(LIN, torch.randn(3)), ValueError, "x must have a batch dimension"),
        # Outputs that are not per-sample.
        (lambda: diagnostics.jacobian_norm(lambda x: (x**2).sum(), X), ValueError, r"f must return a per-sample output of shape \[B, \.\.\.\] with B = 4, got a scalar"),
        (lambda: diagnostics.jacobian_norm(lambda x: x - x.mean(0), X), ValueError, "the output of f is not per-sample: its row 0 depends on other samples"),
        (lambda: diagnostics.jacobian_norm(batchnorm_train(), X, "hutchinson"), ValueError, r"not per-sample.*BatchNorm"),
        (lambda: diagnostics.jacobian_norm(lambda x: x.detach() * 2, X), ValueError, "does not depend on its input"),
        (lambda: diagnostics.jacobian_norm(lambda x: x.argmax(1), X), TypeError, "f must return a floating tensor"),
        (lambda: diagnostics.jacobian_norm(lambda x: [x], X), TypeError, "f must return a torch.Tensor"),
        # Mismatched batch sizes.
        (lambda: diagnostics.jacobian_norm(lambda x: x[:-1], X), ValueError, r"batch sizes do not match: f returned 3 rows \(shape \[3, 3\]\) for 4 input samples"),
        (lambda: diagnostics.loss_lipschitz("wasserstein", lambda z: z[:2], SCALAR_D, X), ValueError, r"batch sizes do not match: G returned shape \[2, 3\] for 4 noise vectors"),
        (lambda: diagnostics.loss_lipschitz("wasserstein", G_ID, lambda x: x.sum(1)[:3], X), ValueError, r"batch sizes do not match: D\(G\(z\)\) returned 3 rows"),
        (lambda: diagnostics.gradient_direction(lambda x: torch.cat([x.sum(1), x.sum(1)]), X, X), ValueError, "batch sizes do not match: D returned 8 rows"),
        # loss_lipschitz
        (lambda: diagnostics.loss_lipschitz("lsgan", G_ID, SCALAR_D, X), ValueError, "unknown loss 'lsgan'; valid names:"),
        (lambda: diagnostics.loss_lipschitz(lambda l: torch.cat([l, l]), G_ID, SCALAR_D, X), ValueError, r"g_loss must reduce a batch of logits to a scalar loss, got shape \[2\]"),
        (lambda: diagnostics.loss_lipschitz(lambda l: 1.0, G_ID, SCALAR_D, X), TypeError, "g_loss must return a torch.Tensor, got float"),
        (lambda: diagnostics.loss_lipschitz(3, G_ID, SCALAR_D, X), TypeError, "g_loss must be callable"),
        (lambda: diagnostics.loss_lipschitz("hinge", "G", SCALAR_D, X), TypeError, "G must be callable"),
        (lambda: diagnostics.loss_lipschitz("hinge", G_ID, None, X), TypeError, "D must be callable"),
        (lambda: diagnostics.loss_lipschitz("hinge", G_ID, LIN, X), ValueError, r"D must return one logit per sample, shape \[B\] or \[B, 1\] with B = 4, got \[4, 2\]"),
        (lambda: diagnostics.loss_lipschitz("hinge", G_ID, lambda x: x.sum(), X), ValueError, "got a scalar"),
        (lambda: diagnostics.loss_lipschitz("hinge", G_ID, lambda x: (x - x.mean(0)).sum(1), X), ValueError, "not per-sample"),
        (lambda: diagnostics.loss_lipschitz("hinge", lambda z: 1.0, SCALAR_D, X), TypeError, "G must return a torch.Tensor"),
        (lambda: diagnostics.loss_lipschitz("hinge", G_ID, SCALAR_D, torch.ones(4, 3, dtype=torch.int32)), TypeError, "z must have a floating dtype"),
        (lambda: diagnostics.loss_lipschitz("hinge", G_ID, SCALAR_D, X, chunk_size=0), ValueError, "chunk_size must be >= 1"),
        # gradient_direction
        (lambda: diagnostics.gradient_direction(SCALAR_D, X, torch.randn(5, 4)), ValueError, r"same per-sample shape, got \[4, 3\] and \[5, 4\]"),
        (lambda: diagnostics.gradient_direction(SCALAR_D, X, torch.randn(5, 3).double()), TypeError, "same dtype"),
        (lambda: diagnostics.gradient_direction(SCALAR_D, X, torch.randn(5, 3, device="meta")), ValueError, "same device"),
        (lambda: diagnostics.gradient_direction(SCALAR_D, X, torch.randn(0, 3)), ValueError, "real has an empty batch"),
        (lambda: diagnostics.gradient_direction(LIN, X, X), ValueError, r"D must return one logit per sample"),
        (lambda: diagnostics.gradient_direction(lambda x: x.sum(), X, X), ValueError, "got a scalar"),
        (lambda: diagnostics.gradient_direction(batchnorm_train(), X, X), ValueError, "not per-sample"),
        (lambda: diagnostics.gradient_direction(SCALAR_D, X, X, chunk_size=-1), ValueError, "chunk_size must be >= 1"),
        (lambda: diagnostics.gradient_direction(SCALAR_D, X, X, return_nearest="yes"), TypeError, "return_nearest must be a bool"),
        (lambda: diagnostics.gradient_direction(1, X, X), TypeError, "D must be callable"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
