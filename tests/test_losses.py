"""GAN losses: values and gradients against direct formulas, stability, the Lipschitz-GAN family."""

import pytest
import torch
from torch import nn

import fastgp
from fastgp import losses
from helpers import make

STANDARD = ["non-saturating", "saturating", "wasserstein", "hinge", "least-squares"]
F64 = dict(rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------------------
# Direct formulas: the textbook expressions (log of sigmoid, clamp), and hand-derived gradients
# ------------------------------------------------------------------------------------------


def direct(name, r, f, a=-1.0, b=1.0, c=1.0, margin=1.0):
    """(d_loss, g_loss) written as in the papers, with 1 − σ(x) written σ(−x) (1 − σ(100) is 0 in
    float64); log(sigmoid(.)) is then exact in float64 for |logit| up to ~700."""
    if name in ("non-saturating", "saturating"):
        d = -torch.log(torch.sigmoid(r)).mean() - torch.log(torch.sigmoid(-f)).mean()
        g = -torch.log(torch.sigmoid(f)).mean() if name == "non-saturating" else torch.log(torch.sigmoid(-f)).mean()
    elif name == "wasserstein":
        d, g = f.mean() - r.mean(), -f.mean()
    elif name == "hinge":
        d = torch.clamp(margin - r, min=0).mean() + torch.clamp(margin + f, min=0).mean()
        g = -f.mean()
    else:
        d = 0.5 * ((r - b) ** 2).mean() + 0.5 * ((f - a) ** 2).mean()
        g = 0.5 * ((f - c) ** 2).mean()
    return d, g


def direct_grads(name, r, f, a=-1.0, b=1.0, c=1.0, margin=1.0):
    """(∂d/∂r, ∂d/∂f, ∂g/∂f) derived by hand."""
    nr, nf = r.numel(), f.numel()
    if name in ("non-saturating", "saturating"):
        dr, df = -torch.sigmoid(-r) / nr, torch.sigmoid(f) / nf
        gf = -torch.sigmoid(-f) / nf if name == "non-saturating" else -torch.sigmoid(f) / nf
    elif name == "wasserstein":
        dr, df, gf = -torch.ones_like(r) / nr, torch.ones_like(f) / nf, -torch.ones_like(f) / nf
    elif name == "hinge":
        dr, df = -(r < margin).to(r.dtype) / nr, (f > -margin).to(f.dtype) / nf
        gf = -torch.ones_like(f) / nf
    else:
        dr, df, gf = (r - b) / nr, (f - a) / nf, (f - c) / nf
    return dr, df, gf


def autograd_grads(d_loss, g_loss, r, f):
    r = r.clone().requires_grad_(True)
    f = f.clone().requires_grad_(True)
    dr, df = torch.autograd.grad(d_loss(r, f), (r, f))
    (gf,) = torch.autograd.grad(g_loss(f), f)
    return dr, df, gf


def logits(shape, seed, scale=3.0, dtype=torch.float64):
    return make(shape, dtype, seed=seed, scale=scale)


# ------------------------------------------------------------------------------------------
# Standard losses
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STANDARD)
@pytest.mark.parametrize("shapes", [((6,), (6,)), ((5,), (7, 1)), ((3, 1, 4, 4), (2, 1, 4, 4))], ids=["B", "B1", "patch"])
def test_standard_losses_match_direct_formulas(name, shapes):
    r, f = logits(shapes[0], 1), logits(shapes[1], 2)
    d_loss, g_loss = losses.get(name)
    expected_d, expected_g = direct(name, r, f)
    d, g = d_loss(r, f), g_loss(f)
    assert d.shape == () and g.shape == () and d.dtype == torch.float64
    torch.testing.assert_close(d, expected_d, **F64)
    torch.testing.assert_close(g, expected_g, **F64)
    for got, expected in zip(autograd_grads(d_loss, g_loss, r, f), direct_grads(name, r, f)):
        torch.testing.assert_close(got, expected, **F64)


@pytest.mark.parametrize("name", STANDARD)
def test_functions_and_get_agree(name):
    functions = {
        "non-saturating": (losses.d_nonsaturating, losses.g_nonsaturating),
        "saturating": (losses.d_saturating, losses.g_saturating),
        "wasserstein": (losses.d_wasserstein, losses.g_wasserstein),
        "hinge": (losses.d_hinge, losses.g_hinge),
        "least-squares": (losses.d_least_squares, losses.g_least_squares),
    }[name]
    r, f = logits((5,), 3), logits((4,), 4)
    d_loss, g_loss = losses.get(name)
    assert torch.equal(d_loss(r, f), functions[0](r, f)) and torch.equal(g_loss(f), functions[1](f))


@pytest.mark.parametrize("name", STANDARD)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_large_logits_are_finite_and_exact(name, dtype):
    # |logit| = 100 and 200: the cross-entropy terms must come from softplus, never log(sigmoid).
    r = torch.tensor([100.0, -100.0, 200.0, -200.0, 0.5], dtype=dtype)
    f = torch.tensor([-100.0, 100.0, -200.0, 200.0], dtype=dtype)
    d_loss, g_loss = losses.get(name)
    d, g = d_loss(r, f), g_loss(f)
    grads = autograd_grads(d_loss, g_loss, r, f)
    assert torch.isfinite(d) and torch.isfinite(g)
    assert all(bool(torch.isfinite(x).all()) for x in grads)
    # The float64 direct formulas are still exact here (σ(−200) ≈ 1e-87 is representable).
    expected_d, expected_g = direct(name, r.double(), f.double())
    tol = F64 if dtype == torch.float64 else dict(rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(d.double(), expected_d, **tol)
    torch.testing.assert_close(g.double(), expected_g, **tol)
    for got, expected in zip(grads, direct_grads(name, r.double(), f.double())):
        torch.testing.assert_close(got.double(), expected, **tol)


def test_naive_log_sigmoid_would_fail_the_large_logit_test():
    # Guards the test above: log(sigmoid(x)) is -inf in float32 at x = -200; softplus is not.
    x = torch.tensor([-200.0])
    assert torch.isinf(torch.log(torch.sigmoid(x))).all()
    assert torch.isfinite(losses.g_nonsaturating(x)) and losses.g_nonsaturating(x).item() == 200.0


def test_least_squares_targets_and_hinge_margin():
    r, f = logits((6,), 5), logits((3, 1), 6)
    d_loss, g_loss = losses.get("least-squares", a=0.0, b=1.0, c=0.5)
    expected_d, expected_g = direct("least-squares", r, f, a=0.0, b=1.0, c=0.5)
    torch.testing.assert_close(d_loss(r, f), expected_d, **F64)
    torch.testing.assert_close(g_loss(f), expected_g, **F64)
    for got, expected in zip(autograd_grads(d_loss, g_loss, r, f), direct_grads("least-squares", r, f, 0.0, 1.0, 0.5)):
        torch.testing.assert_close(got, expected, **F64)
    d_loss, _ = losses.get("hinge", margin=2.0)
    torch.testing.assert_close(d_loss(r, f), direct("hinge", r, f, margin=2.0)[0], **F64)
    # Defaults are a = -1, b = 1, c = 1.
    torch.testing.assert_close(losses.d_least_squares(r, f), 0.5 * ((r - 1) ** 2).mean() + 0.5 * ((f + 1) ** 2).mean(), **F64)
    torch.testing.assert_close(losses.g_least_squares(f), 0.5 * ((f - 1) ** 2).mean(), **F64)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_reduced_precision_logits_give_float32(dtype):
    r, f = logits((8,), 7, dtype=dtype), logits((8,), 8, dtype=dtype)
    for name in STANDARD:
        d_loss, g_loss = losses.get(name)
        assert d_loss(r, f).dtype == torch.float32
        torch.testing.assert_close(d_loss(r, f), d_loss(r.float(), f.float()))
        torch.testing.assert_close(g_loss(f), g_loss(f.float()))


# ------------------------------------------------------------------------------------------
# Relativistic losses (RpGAN, RaGAN)
# ------------------------------------------------------------------------------------------


def direct_relativistic(name, r, f):
    """(d_loss, g_loss) as Jolicoeur-Martineau writes them: −log σ(·) of the relativistic logits,
    with 1 − σ(x) written σ(−x)."""
    if name == "relativistic-pairing":
        d = -torch.log(torch.sigmoid(r - f)).mean()
        g = -torch.log(torch.sigmoid(f - r)).mean()
    else:
        d = -torch.log(torch.sigmoid(r - f.mean())).mean() - torch.log(torch.sigmoid(-(f - r.mean()))).mean()
        g = -torch.log(torch.sigmoid(f - r.mean())).mean() - torch.log(torch.sigmoid(-(r - f.mean()))).mean()
    return d, g


def relativistic_grads(d_loss, g_loss, r, f):
    r = r.clone().requires_grad_(True)
    f = f.clone().requires_grad_(True)
    return torch.autograd.grad(d_loss(r, f), (r, f)) + torch.autograd.grad(g_loss(f, r), (r, f))


RELATIVISTIC_SHAPES = {
    "relativistic-pairing": [((6,), (6,)), ((6, 1), (6, 1)), ((2, 1, 4, 4), (2, 1, 4, 4))],
    "relativistic-average": [((6,), (6,)), ((5,), (7, 1)), ((3, 1, 4, 4), (2, 1, 4, 4))],
}


@pytest.mark.parametrize("name", losses.RELATIVISTIC)
@pytest.mark.parametrize("case", [0, 1, 2], ids=["B", "B1", "patch"])
def test_relativistic_losses_match_direct_formulas(name, case):
    shape_r, shape_f = RELATIVISTIC_SHAPES[name][case]
    r, f = logits(shape_r, 11), logits(shape_f, 12)
    d_loss, g_loss = losses.get(name)
    expected_d, expected_g = direct_relativistic(name, r, f)
    d, g = d_loss(r, f), g_loss(f, r)
    assert d.shape == () and g.shape == () and d.dtype == torch.float64
    torch.testing.assert_close(d, expected_d, **F64)
    torch.testing.assert_close(g, expected_g, **F64)
    direct_fns = (lambda a, b: direct_relativistic(name, a, b)[0], lambda b, a: direct_relativistic(name, a, b)[1])
    for got, expected in zip(relativistic_grads(d_loss, g_loss, r, f), relativistic_grads(*direct_fns, r, f)):
        torch.testing.assert_close(got, expected, **F64)


def test_relativistic_functions_and_get_agree():
    r, f = logits((5,), 13), logits((5,), 14)
    pairs = {"relativistic-pairing": (losses.d_relativistic_pairing, losses.g_relativistic_pairing),
             "relativistic-average": (losses.d_relativistic_average, losses.g_relativistic_average)}
    for name, (d_fn, g_fn) in pairs.items():
        d_loss, g_loss = losses.get(name)
        assert torch.equal(d_loss(r, f), d_fn(r, f)) and torch.equal(g_loss(f, r), g_fn(f, r))
    assert set(losses.RELATIVISTIC) == set(pairs) and set(pairs) <= set(losses.NAMES)


def test_relativistic_pairing_is_r3gans_formula():
    # R3GAN (R3GAN/Trainer.py): softplus(−(RealLogits − FakeLogits)).mean() for D, the mirror for G.
    r, f = logits((8,), 15), logits((8,), 16)
    torch.testing.assert_close(losses.d_relativistic_pairing(r, f), torch.nn.functional.softplus(-(r - f)).mean(), **F64)
    torch.testing.assert_close(losses.g_relativistic_pairing(f, r), torch.nn.functional.softplus(-(f - r)).mean(), **F64)
    # Pairs, not batches: permuting the fakes changes the pairing loss, not the average loss.
    perm = torch.tensor([1, 0, 3, 2, 5, 4, 7, 6])
    assert not torch.allclose(losses.d_relativistic_pairing(r, f), losses.d_relativistic_pairing(r, f[perm]))
    torch.testing.assert_close(losses.d_relativistic_average(r, f), losses.d_relativistic_average(r, f[perm]), **F64)


@pytest.mark.parametrize("name", losses.RELATIVISTIC)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_relativistic_large_logits_are_finite_and_exact(name, dtype):
    r = torch.tensor([100.0, -100.0, 200.0, -200.0], dtype=dtype)
    f = torch.tensor([-100.0, 100.0, -200.0, 200.0], dtype=dtype)
    d_loss, g_loss = losses.get(name)
    d, g = d_loss(r, f), g_loss(f, r)
    assert torch.isfinite(d) and torch.isfinite(g)
    assert all(bool(torch.isfinite(x).all()) for x in relativistic_grads(d_loss, g_loss, r, f))
    expected_d, expected_g = direct_relativistic(name, r.double(), f.double())
    tol = F64 if dtype == torch.float64 else dict(rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(d.double(), expected_d, **tol)
    torch.testing.assert_close(g.double(), expected_g, **tol)


@pytest.mark.parametrize("name", losses.RELATIVISTIC)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_relativistic_reduced_precision_logits_give_float32(name, dtype):
    r, f = logits((8,), 7, dtype=dtype), logits((8,), 8, dtype=dtype)
    d_loss, g_loss = losses.get(name)
    assert d_loss(r, f).dtype == torch.float32 and g_loss(f, r).dtype == torch.float32
    torch.testing.assert_close(d_loss(r, f), d_loss(r.float(), f.float()))


def test_relativistic_g_loss_needs_the_real_logits():
    _, g_loss = losses.get("relativistic-pairing")
    with pytest.raises(TypeError, match="real_logits"):
        g_loss(torch.randn(4))


# ------------------------------------------------------------------------------------------
# Lipschitz GANs: the shipped pairs, checked analytically and by the grid check
# ------------------------------------------------------------------------------------------

sig = torch.sigmoid
# name, params -> (φ, ϕ, φ', φ'', ϕ', ϕ'', a) written by hand from the formulas in the docs.
ANALYTIC = {
    "wasserstein": lambda: (
        lambda x: x, lambda x: -x,
        lambda x: torch.ones_like(x), lambda x: torch.zeros_like(x),
        lambda x: -torch.ones_like(x), lambda x: torch.zeros_like(x), None,
    ),
    "vanilla": lambda: (
        lambda x: -torch.log(sig(-x)), lambda x: -torch.log(sig(x)),
        lambda x: sig(x), lambda x: sig(x) * sig(-x),
        lambda x: -sig(-x), lambda x: sig(x) * sig(-x), 0.0,
    ),
    "least-squares": lambda alpha=1.0: (
        lambda x: (x + alpha) ** 2, lambda x: (x - alpha) ** 2,
        lambda x: 2 * (x + alpha), lambda x: 2 + 0 * x,
        lambda x: 2 * (x - alpha), lambda x: 2 + 0 * x, 0.0,
    ),
    "exponential": lambda: (
        torch.exp, lambda x: torch.exp(-x),
        torch.exp, torch.exp,
        lambda x: -torch.exp(-x), lambda x: torch.exp(-x), 0.0,
    ),
    "combined": lambda alpha=1.0, beta=1.0: (
        lambda x: -(alpha / beta) * torch.log(sig(-beta * x)) + x,
        lambda x: -(alpha / beta) * torch.log(sig(beta * x)) - x,
        lambda x: alpha * sig(beta * x) + 1, lambda x: alpha * beta * sig(beta * x) * sig(-beta * x),
        lambda x: -alpha * sig(-beta * x) - 1, lambda x: alpha * beta * sig(beta * x) * sig(-beta * x),
        0.0 if alpha > 0 else None,  # alpha = 0 is Wasserstein: every a solves it
    ),
}
PAIRS = [
    ("wasserstein", {}),
    ("vanilla", {}),
    ("least-squares", {}),
    ("least-squares", {"alpha": 2.5}),
    ("exponential", {}),
    ("combined", {}),
    ("combined", {"alpha": 0.0}),
    ("combined", {"alpha": 3.0, "beta": 0.2}),
    ("combined", {"alpha": 0.5, "beta": 4.0}),
]
PAIR_IDS = [f"{n}{p}" for n, p in PAIRS]


def autograd_derivatives(fn, x):
    x = x.clone().requires_grad_(True)
    (d1,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), x, allow_unused=True) if d1.requires_grad else (None,)
    return d1.detach(), torch.zeros_like(x) if d2 is None else d2


@pytest.mark.parametrize("name,params", PAIRS, ids=PAIR_IDS)
def test_shipped_pair_matches_its_formula_and_satisfies_the_conditions(name, params):
    loss = losses.lipschitz_loss(name, **params)
    phi, varphi, d1p, d2p, d1v, d2v, root = ANALYTIC[name](**params)
    low, high = loss.domain
    x = torch.linspace(low, high, 403, dtype=torch.float64)[1:-1]
    torch.testing.assert_close(loss.phi(x), phi(x), **F64)
    torch.testing.assert_close(loss.varphi(x), varphi(x), **F64)
    # The conditions, from the hand-derived derivatives (independent of the grid check) ...
    assert bool((d1p(x) > 0).all()) and bool((d2p(x) >= 0).all())
    assert bool((d1v(x) < 0).all()) and bool((d2v(x) >= 0).all())
    # ... which autograd reproduces, and the grid check's root a solves φ'(a) + ϕ'(a) = 0.
    for fn, d1, d2 in ((loss.phi, d1p, d2p), (loss.varphi, d1v, d2v)):
        got1, got2 = autograd_derivatives(fn, x)
        torch.testing.assert_close(got1, d1(x), **F64)
        torch.testing.assert_close(got2, d2(x), **F64)
    a = torch.tensor([loss.a], dtype=torch.float64)
    assert low < loss.a < high
    assert abs((d1p(a) + d1v(a)).item()) < 1e-9
    if root is not None:
        assert loss.a == pytest.approx(root, abs=1e-9)
    assert losses.check_lipschitz_pair(loss.phi, loss.varphi, loss.domain) == loss.a


@pytest.mark.parametrize("name,params", PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("psi", ["linear", "real"])
def test_lgan_losses_values_and_gradients(name, params, psi):
    phi, varphi, d1p, _, d1v, _, _ = ANALYTIC[name](**params)
    r, f = logits((6,), 9, scale=0.5), logits((4, 1), 10, scale=0.5)
    d_loss, g_loss = losses.get(f"lgan-{name}", psi=psi, **params)
    torch.testing.assert_close(d_loss(r, f), phi(f).mean() + varphi(r).mean(), **F64)
    expected_g = -f.mean() if psi == "linear" else varphi(f).mean()
    torch.testing.assert_close(g_loss(f), expected_g, **F64)
    dr, df, gf = autograd_grads(d_loss, g_loss, r, f)
    torch.testing.assert_close(dr, d1v(r) / r.numel(), **F64)
    torch.testing.assert_close(df, d1p(f) / f.numel(), **F64)
    expected_gf = -torch.ones_like(f) / f.numel() if psi == "linear" else d1v(f) / f.numel()
    torch.testing.assert_close(gf, expected_gf, **F64)


@pytest.mark.parametrize("name", list(losses.LGAN_PAIRS))
def test_lgan_large_logits_are_finite(name):
    r = torch.tensor([100.0, -100.0, 3.0], dtype=torch.float64)
    f = torch.tensor([-100.0, 100.0], dtype=torch.float64)
    for psi in losses.PSI:
        d_loss, g_loss = losses.get(f"lgan-{name}", psi=psi)
        values = (d_loss(r, f), g_loss(f), *autograd_grads(d_loss, g_loss, r, f))
        assert all(bool(torch.isfinite(v).all()) for v in values)
    if name != "exponential":  # e^100 overflows float32: documented
        d_loss, g_loss = losses.get(f"lgan-{name}", psi="real")
        values = (d_loss(r.float(), f.float()), g_loss(f.float()), *autograd_grads(d_loss, g_loss, r.float(), f.float()))
        assert all(bool(torch.isfinite(v).all()) for v in values)


def test_lgan_members_reduce_to_the_standard_losses():
    r, f = logits((7,), 11), logits((5,), 12)
    torch.testing.assert_close(losses.get("lgan-vanilla")[0](r, f), losses.d_nonsaturating(r, f), **F64)
    torch.testing.assert_close(losses.get("lgan-vanilla", psi="real")[1](f), losses.g_nonsaturating(f), **F64)
    torch.testing.assert_close(losses.get("lgan-wasserstein")[0](r, f), losses.d_wasserstein(r, f), **F64)
    torch.testing.assert_close(losses.get("lgan-combined", alpha=0.0)[0](r, f), losses.d_wasserstein(r, f), **F64)
    torch.testing.assert_close(
        losses.get("lgan-least-squares", alpha=2.0)[0](r, f), 2 * losses.d_least_squares(r, f, a=-2.0, b=2.0), **F64
    )


def test_custom_pair_through_get():
    phi = lambda x: torch.sqrt(x * x + 1) + x  # noqa: E731  (the reference code's "sqrt" objective)
    varphi = lambda x: torch.sqrt(x * x + 1) - x  # noqa: E731
    d_loss, g_loss = losses.get("lgan", phi=phi, varphi=varphi, psi="real")
    r, f = logits((6,), 13), logits((6,), 14)
    torch.testing.assert_close(d_loss(r, f), phi(f).mean() + varphi(r).mean(), **F64)
    torch.testing.assert_close(g_loss(f), varphi(f).mean(), **F64)
    assert losses.lipschitz_loss(phi=phi, varphi=varphi).a == pytest.approx(0.0, abs=1e-9)


# Each pair violates exactly one condition on its domain.
VIOLATIONS = [
    # φ = (x + 1)², ϕ = e^{-x}: φ' = 2(x + 1) < 0 below -1, everything else holds.
    (lambda x: (x + 1) ** 2, lambda x: torch.exp(-x), None, "φ' > 0"),
    # The least-squares pair outside its interval (-1, 1).
    (lambda x: (x + 1) ** 2, lambda x: (x - 1) ** 2, (-2.0, 2.0), "φ' > 0"),
    (lambda x: x + 0.5 * torch.sin(x), lambda x: -x, None, "φ'' ≥ 0"),
    (torch.exp, lambda x: x * x / 2 - 2 * x, None, "ϕ' < 0"),
    (lambda x: x, lambda x: -x - 0.5 * torch.sin(x), None, "ϕ'' ≥ 0"),
    (lambda x: 2 * x, lambda x: -x, None, r"φ'\(a\) \+ ϕ'\(a\) = 0 fails: no a in \(-10, 10\)"),
    (lambda x: torch.exp(x), lambda x: torch.exp(-x) + 0 * x, (5.0, 9.0), r"φ'\(a\) \+ ϕ'\(a\) = 0"),
]


@pytest.mark.parametrize("phi,varphi,domain,match", VIOLATIONS)
def test_violating_pairs_fail_naming_the_condition(phi, varphi, domain, match):
    kwargs = {} if domain is None else {"domain": domain}
    with pytest.raises(ValueError, match=match):
        losses.lipschitz_loss(phi=phi, varphi=varphi, **kwargs)
    with pytest.raises(ValueError, match=match):
        losses.get("lgan", phi=phi, varphi=varphi, **kwargs)
    with pytest.raises(ValueError, match=match):
        losses.check_lipschitz_pair(phi, varphi, **kwargs)


# ------------------------------------------------------------------------------------------
# The documented pairing: a Lipschitz-GAN loss with the max-GP penalty
# ------------------------------------------------------------------------------------------


def test_lgan_with_max_gp_training_step():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(2, 16), nn.Softplus(), nn.Linear(16, 1))
    G = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))
    d_opt = torch.optim.Adam(D.parameters(), lr=1e-2)
    d_loss, g_loss = losses.get("lgan-combined")
    real, z = torch.randn(32, 2) + 2.0, torch.randn(32, 3)
    before = [p.detach().clone() for p in D.parameters()]
    with fastgp.use_backend("reference"):
        fake = G(z).detach()
        loss = d_loss(D(real), D(fake)) + fastgp.gradient_penalty(D, real, fake, kind="max-gp", weight=0.1)
    d_opt.zero_grad()
    loss.backward()
    d_opt.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(b, p) for b, p in zip(before, D.parameters()))
    g = g_loss(D(G(z)))
    g.backward()
    assert torch.isfinite(g) and all(p.grad is not None for p in G.parameters())


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------

R, FK = torch.randn(4), torch.randn(4)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: losses.get("vanilla"), ValueError, r"unknown loss 'vanilla'; valid names: 'non-saturating', 'saturating', 'wasserstein', 'hinge', 'least-squares', 'lgan-wasserstein'"),
        (lambda: losses.get(3), TypeError, "loss name must be a str"),
        (lambda: losses.get("hinge", a=1.0), TypeError, "unexpected parameter 'a' for loss 'hinge'; it takes: margin"),
        (lambda: losses.get("wasserstein", margin=1.0), TypeError, "it takes: no parameters"),
        (lambda: losses.get("hinge", margin=-1.0), ValueError, "margin must be >= 0"),
        (lambda: losses.get("least-squares", c="1"), TypeError, "c must be a real number"),
        (lambda: losses.get("least-squares", a=float("nan")), ValueError, "a must be finite"),
        (lambda: losses.d_hinge(R, FK, margin=-0.5), ValueError, "margin must be >= 0"),
        (lambda: losses.get("lgan-combined", beta=0.0), ValueError, "beta must be > 0"),
        (lambda: losses.get("lgan-combined", alpha=-1.0), ValueError, "alpha must be >= 0"),
        (lambda: losses.get("lgan-least-squares", alpha=0.0), ValueError, "alpha must be > 0"),
        (lambda: losses.get("lgan-vanilla", alpha=1.0), TypeError, "unexpected parameter 'alpha' for loss 'lgan-vanilla'"),
        (lambda: losses.get("lgan-vanilla", psi="fake"), ValueError, "psi must be one of 'linear', 'real'"),
        (lambda: losses.get("lgan"), ValueError, "both phi and varphi"),
        (lambda: losses.get("lgan", phi=torch.exp, varphi=torch.exp, alpha=1.0), TypeError, "unexpected parameter 'alpha'"),
        (lambda: losses.lipschitz_loss("vanilla", phi=torch.exp), ValueError, "without a name"),
        (lambda: losses.lipschitz_loss("logistic"), ValueError, "Lipschitz-GAN pair must be one of 'wasserstein', 'vanilla'"),
        (lambda: losses.lipschitz_loss(phi="exp", varphi=torch.exp), TypeError, "phi must be callable"),
        (lambda: losses.lipschitz_loss(phi=lambda x: x.sum(), varphi=torch.exp), ValueError, "phi must act elementwise"),
        (lambda: losses.lipschitz_loss(phi=lambda x: x.detach().numpy(), varphi=torch.exp), TypeError, "phi must map a tensor to a tensor"),
        (lambda: losses.lipschitz_loss(phi=torch.sqrt, varphi=lambda x: -x), ValueError, "phi' is not finite"),
        (lambda: losses.lipschitz_loss(phi=lambda x: x, varphi=lambda x: -x, domain=(1.0, -1.0)), ValueError, "low < high"),
        (lambda: losses.lipschitz_loss(phi=lambda x: x, varphi=lambda x: -x, domain="ab"), TypeError, r"domain must be a \(low, high\) pair"),
        (lambda: losses.check_lipschitz_pair(lambda x: x, lambda x: -x, points=2), ValueError, "points must be >= 3"),
        (lambda: losses.d_nonsaturating([1.0], FK), TypeError, "real_logits must be a torch.Tensor"),
        (lambda: losses.d_wasserstein(R, torch.ones(4, dtype=torch.int64)), TypeError, "fake_logits must have a floating dtype"),
        (lambda: losses.g_hinge(torch.empty(0)), ValueError, "fake_logits has an empty batch"),
        (lambda: losses.g_nonsaturating(torch.tensor(1.0)), ValueError, r"fake_logits must have a batch dimension"),
        (lambda: losses.get("lgan-vanilla")[0](R, torch.empty(0, 1)), ValueError, "fake_logits has an empty batch"),
        (lambda: losses.d_relativistic_pairing(R, torch.randn(5)), ValueError,
         r"real_logits and fake_logits must have the same shape for the relativistic pairing loss"),
        (lambda: losses.g_relativistic_pairing(torch.randn(4, 1), R), ValueError, r"got \[4\] and \[4, 1\]"),
        (lambda: losses.d_relativistic_pairing(R, FK.double()), TypeError, "real_logits and fake_logits must have the same dtype"),
        (lambda: losses.d_relativistic_average(R, [1.0]), TypeError, "fake_logits must be a torch.Tensor"),
        (lambda: losses.g_relativistic_average(FK, torch.empty(0)), ValueError, "real_logits has an empty batch"),
        (lambda: losses.get("relativistic-pairing", margin=1.0), TypeError, "unexpected parameter 'margin' for loss 'relativistic-pairing'"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
