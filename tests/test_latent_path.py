"""The latent-path penalty (Thanh-Tung et al., ICLR 2019, Appendix F, Algorithm 1): the points
X = G(α·E(x) + (1 − α)·z), the penalty at given points (gradient_penalty_at), its gradients and
its bad input."""

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

import fastgp
from fastgp.reference.penalty import gradient_penalty_reference

B, Z, X = 6, 3, 4


def nets(dtype=torch.float64):
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(Z, 8), nn.Tanh(), nn.Linear(8, X)).to(dtype)
    E = nn.Sequential(nn.Linear(X, 8), nn.Tanh(), nn.Linear(8, Z)).to(dtype)
    D = nn.Sequential(nn.Linear(X, 8), nn.Softplus(), nn.Linear(8, 1)).to(dtype)
    real = torch.randn(B, X, dtype=dtype)
    z = torch.randn(B, Z, dtype=dtype)
    return G, E, D, real, z


def by_hand(D, x, center=0.0, reduce=torch.mean):
    """The penalty as the authors' cal_gradpen writes it: grad of D at x, (‖g‖ − center)²."""
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return reduce((g.flatten(1).norm(dim=1) - center) ** 2)


def test_points_are_g_of_the_interpolated_codes_with_alpha_drawn_from_the_generator():
    G, E, _, real, z = nets()
    points = fastgp.latent_path_points(G, E, real, z, generator=torch.Generator().manual_seed(5))
    alpha = torch.rand(B, generator=torch.Generator().manual_seed(5)).to(z.dtype)[:, None]  # the draw of cal_gradpen
    with torch.no_grad():
        expected = G(alpha * E(real) + (1 - alpha) * z)
    torch.testing.assert_close(points, expected)
    assert not points.requires_grad and points.grad_fn is None  # a constant, as the authors' points


def test_given_alpha_and_its_ends():
    G, E, _, real, z = nets()
    with torch.no_grad():
        at_real, at_fake = G(E(real)), G(z)
    torch.testing.assert_close(fastgp.latent_path_points(G, E, real, z, alpha=torch.ones(B, dtype=z.dtype)), at_real)
    torch.testing.assert_close(fastgp.latent_path_points(G, E, real, z, alpha=torch.zeros(B, 1)), at_fake)
    alpha = torch.linspace(0, 1, B, dtype=z.dtype)
    with torch.no_grad():
        expected = G(alpha[:, None] * E(real) + (1 - alpha[:, None]) * z)
    torch.testing.assert_close(fastgp.latent_path_points(G, E, real, z, alpha=alpha), expected)


@pytest.mark.parametrize("kind", list(fastgp.KINDS))
def test_penalty_at_points_equals_the_penalty_by_hand(kind):
    G, E, D, real, z = nets()
    x = fastgp.latent_path_points(G, E, real, z, generator=torch.Generator().manual_seed(1))
    spec = fastgp.KINDS[kind]
    got = fastgp.gradient_penalty_at(D, x, kind=kind, weight=3.0)
    reduce = torch.amax if spec.reduction == "max" else torch.mean
    x_ = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x_).sum(), x_, create_graph=True)
    gap = g.flatten(1).norm(dim=1) - spec.center
    per = gap.clamp(min=0) ** 2 if spec.one_sided else gap**2
    torch.testing.assert_close(got, 3.0 * reduce(per))


def test_penalty_at_interpolates_equals_gradient_penalty():
    _, _, D, real, z = nets()
    fake = torch.randn_like(real)
    alpha = torch.rand(B, dtype=real.dtype)
    x = alpha[:, None] * real + (1 - alpha[:, None]) * fake
    torch.testing.assert_close(
        fastgp.gradient_penalty_at(D, x, kind="wgan-gp", weight=10.0),
        fastgp.gradient_penalty(D, real, fake, kind="wgan-gp", weight=10.0, alpha=alpha),
    )
    torch.testing.assert_close(
        fastgp.gradient_penalty_at(D, x, kind="wgan-gp", weight=10.0),
        gradient_penalty_reference(D, real, fake, kind="wgan-gp", weight=10.0, alpha=alpha),
    )


def test_latent_path_penalty_is_the_penalty_at_the_points_and_reaches_only_d():
    G, E, D, real, z = nets()
    got = fastgp.latent_path_penalty(D, G, E, real, z, kind="zero-gp", weight=2.0,
                                     generator=torch.Generator().manual_seed(3))
    x = fastgp.latent_path_points(G, E, real, z, generator=torch.Generator().manual_seed(3))
    expected = 2.0 * by_hand(D, x)
    torch.testing.assert_close(got, expected)
    got.backward()
    # ∇ₓD does not depend on D's output bias: every other parameter of D gets the penalty's gradient.
    shaping = list(D.parameters())[:-1]
    expected_grads = torch.autograd.grad(expected, shaping)
    for p, e in zip(shaping, expected_grads):
        assert p.grad is not None and p.grad.abs().sum() > 0
        torch.testing.assert_close(p.grad, e)
    # The points are constants: G and E get no gradient from the penalty (the authors' detached points).
    assert all(p.grad is None for p in (*G.parameters(), *E.parameters()))


def test_jvp_method_gives_the_same_value_and_gradients():
    G, E, D, real, z = nets()
    x = fastgp.latent_path_points(G, E, real, z, generator=torch.Generator().manual_seed(3))
    a = fastgp.gradient_penalty_at(D, x, kind="zero-gp", weight=2.0)
    shaping = list(D.parameters())[:-1]  # the output bias does not enter ∇ₓD
    grads_a = torch.autograd.grad(a, shaping)
    b = fastgp.gradient_penalty_at(D, x, kind="zero-gp", weight=2.0, method="jvp")
    grads_b = torch.autograd.grad(b, shaping)
    torch.testing.assert_close(a, b)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb)


def test_gradcheck_of_the_penalty_in_d_parameters():
    G, E, D, real, z = nets()
    x = fastgp.latent_path_points(G, E, real, z, alpha=torch.full((B,), 0.3, dtype=z.dtype))
    w1, b1, w2 = (p.detach().clone().requires_grad_(True) for p in list(D.parameters())[:-1])

    def penalty(w1, b1, w2):
        def D_(inp):
            return torch.nn.functional.softplus(inp @ w1.T + b1) @ w2.T
        return fastgp.gradient_penalty_at(D_, x, kind="zero-gp", weight=1.0)

    assert gradcheck(penalty, (w1, b1, w2))


def test_return_per_sample_and_images():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(Z, 2 * 4 * 4), nn.Unflatten(1, (2, 4, 4)))
    E = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, Z))
    D = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Softplus(), nn.Flatten(), nn.Linear(3 * 2 * 2, 1))
    real, z = torch.randn(B, 2, 4, 4), torch.randn(B, Z)
    value, per = fastgp.latent_path_penalty(D, G, E, real, z, weight=1.0, return_per_sample=True,
                                            generator=torch.Generator().manual_seed(0))
    assert per.shape == (B,) and torch.allclose(per.mean(), value)


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------


def test_bad_shapes_are_named():
    G, E, D, real, z = nets()
    with pytest.raises(ValueError, match="z must have one latent code per real sample"):
        fastgp.latent_path_points(G, E, real, z[:-1])
    with pytest.raises(ValueError, match=r"E\(real\) must have the shape of z"):
        fastgp.latent_path_points(G, E, real, torch.randn(B, Z + 1, dtype=z.dtype))
    with pytest.raises(ValueError, match="G's output must have the shape of real"):
        fastgp.latent_path_points(lambda w: G(w)[:, :2], E, real, z)
    with pytest.raises(TypeError, match=r"E\(real\) must return a tensor"):
        fastgp.latent_path_points(G, lambda x: (E(x),), real, z)
    with pytest.raises(TypeError, match=r"G\(latent\) must return a tensor"):
        fastgp.latent_path_points(lambda w: [G(w)], E, real, z)
    with pytest.raises(ValueError, match="z must have a batch dimension"):
        fastgp.latent_path_points(G, E, real, z[0])
    with pytest.raises(TypeError, match="z must have a floating dtype"):
        fastgp.latent_path_points(G, E, real, z.long())
    with pytest.raises(ValueError, match="points must have a batch dimension"):
        fastgp.gradient_penalty_at(D, real[0])


def test_bad_arguments_are_named():
    G, E, D, real, z = nets()
    with pytest.raises(TypeError, match="G must be callable"):
        fastgp.latent_path_points(None, E, real, z)
    with pytest.raises(TypeError, match="E must be callable"):
        fastgp.latent_path_points(G, 3, real, z)
    with pytest.raises(ValueError, match="pass alpha or generator, not both"):
        fastgp.latent_path_points(G, E, real, z, alpha=torch.rand(B), generator=torch.Generator())
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        fastgp.latent_path_points(G, E, real, z, alpha=torch.full((B,), 1.5))
    with pytest.raises(ValueError, match="alpha must have shape"):
        fastgp.latent_path_points(G, E, real, z, alpha=torch.rand(B + 1))
    with pytest.raises(TypeError, match="generator must be"):
        fastgp.latent_path_points(G, E, real, z, generator=5)
    with pytest.raises(ValueError, match="takes points between real and fake"):
        fastgp.latent_path_penalty(D, G, E, real, z, kind="r1")
    with pytest.raises(ValueError, match="kind must be one of"):
        fastgp.gradient_penalty_at(D, real, kind="nope")
    with pytest.raises(TypeError, match="D must be callable"):
        fastgp.gradient_penalty_at(None, real)
    with pytest.raises(ValueError, match="weight"):
        fastgp.gradient_penalty_at(D, real, weight=-1.0)
    with pytest.raises(ValueError, match="method"):
        fastgp.latent_path_penalty(D, G, E, real, z, method="nope")
