"""Consistency regularization (fastgp.consistency): CR, bCR, zCR against hand-written float64
formulas of the originals (PyTorch-StudioGAN's worker.py / cr.py / sample.py), seed-for-seed
augmentation, gradients where the original lets them flow, and bad inputs."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastgp
from fastgp import consistency

B, C, H, W, NZ = 5, 3, 16, 16, 6


def _studiogan_apply_cr_aug(x):
    """StudioGAN's src/utils/cr.py apply_cr_aug, written out from its formula (global RNG): flip
    with p ½ from B CPU uniforms, then a reflect-padded translation by t ~ U{−int(size/8)..}."""
    n, c, h, w = x.shape
    flip = torch.empty(n, 1).uniform_(0.0, 1.0) < 0.5
    out = x.clone()
    out[flip.view(-1)] = x[flip.view(-1)].flip(3)
    max_x, max_y = int(h / 8), int(w / 8)
    t_x = torch.randint(-max_x, max_x + 1, size=[n, 1, 1])
    t_y = torch.randint(-max_y, max_y + 1, size=[n, 1, 1])
    padded = F.pad(out, [max_y, max_y, max_x, max_x], mode="reflect")
    rows = torch.arange(h).view(1, h, 1) + t_x + max_x
    cols = torch.arange(w).view(1, 1, w) + t_y + max_y
    batch = torch.arange(n).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


@pytest.mark.parametrize("size", [(16, 16), (32, 24), (7, 9)])
def test_cr_augment_is_studiogans_seed_for_seed(size):
    x = torch.randn(6, 2, *size, dtype=torch.float64)
    torch.manual_seed(3)
    expected = _studiogan_apply_cr_aug(x)
    ours = consistency.cr_augment(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(ours, expected)
    torch.manual_seed(3)  # without a generator: the default generators, as the original
    assert torch.equal(consistency.cr_augment(x), expected)


def test_cr_augment_flips_and_shifts_but_keeps_the_image_content():
    x = torch.randn(64, 1, 16, 16, dtype=torch.float64)
    out = consistency.cr_augment(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
    # Reflect padding moves pixels, never invents values: every output value comes from its image.
    for b in range(4):
        assert set(out[b].flatten().tolist()) <= set(x[b].flatten().tolist())


def test_cr_augment_is_differentiable_to_second_order():
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    seed = 5
    fn = lambda t: consistency.cr_augment(t, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def _d():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, 8), nn.Tanh(), nn.Linear(8, 1)).double()


def _batch(seed):
    return torch.rand(B, C, H, W, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


def test_cr_matches_the_original_formula():
    D, real = _d(), _batch(1)
    ours = fastgp.consistency_penalty(D, real, weight=10.0, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(7)
    augmented = _studiogan_apply_cr_aug(real)
    expected = 10.0 * ((D(real) - D(augmented)) ** 2).mean()  # cr_lambda · MSELoss(D(x), D(T(x)))
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=0)


def test_bcr_matches_the_original_formula_reals_drawn_first():
    D, real, fake = _d(), _batch(1), _batch(2)
    ours = fastgp.consistency_penalty(D, real, fake, weight=10.0, fake_weight=3.0,
                                      generator=torch.Generator().manual_seed(7))
    torch.manual_seed(7)
    real_aug = _studiogan_apply_cr_aug(real)
    fake_aug = _studiogan_apply_cr_aug(fake)
    expected = 10.0 * ((D(real) - D(real_aug)) ** 2).mean() + 3.0 * ((D(fake) - D(fake_aug)) ** 2).mean()
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=0)


def test_given_logits_are_reused_and_diffaugment_policy():
    D, real, fake = _d(), _batch(1), _batch(2)
    real_logits, fake_logits = D(real) + 1.0, D(fake) - 2.0  # distinguishable from a recomputation
    ours = fastgp.consistency_penalty(D, real, fake, real_logits=real_logits, fake_logits=fake_logits,
                                      augment="color,translation", generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    real_aug = fastgp.augment.DiffAugment(real, "color,translation", generator=g)
    fake_aug = fastgp.augment.DiffAugment(fake, "color,translation", generator=g)
    expected = 10.0 * (((real_logits - D(real_aug)) ** 2).mean() + ((fake_logits - D(fake_aug)) ** 2).mean())
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=0)


def test_callable_augment_on_vectors():
    D = nn.Linear(4, 1).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    ours = fastgp.consistency_penalty(D, x, augment=lambda t: -t, weight=2.0)
    torch.testing.assert_close(ours, 2.0 * ((D(x) - D(-x)) ** 2).mean(), rtol=1e-12, atol=0)


def test_cr_gradients_flow_through_both_branches_to_d():
    """No stop-gradient (as StudioGAN): d/dθ of mean((D(x) − D(T(x)))²) sums both branches."""
    D, real = _d(), _batch(1)
    penalty = fastgp.consistency_penalty(D, real, weight=1.0, generator=torch.Generator().manual_seed(7))
    grads = torch.autograd.grad(penalty, list(D.parameters()))
    torch.manual_seed(7)
    augmented = _studiogan_apply_cr_aug(real)
    # By hand: 2/N Σ (D(x) − D(T(x))) (∂D(x) − ∂D(T(x))).
    diff = (D(real) - D(augmented)).detach()
    surrogate = (2 * diff * (D(real) - D(augmented))).mean()
    expected = torch.autograd.grad(surrogate, list(D.parameters()))
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
    # ... and into the reals and the given logits (a G behind the fakes would get them too).
    x = real.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda t: fastgp.consistency_penalty(D, t, generator=torch.Generator().manual_seed(1)), (x,))


def test_perturb_latent_is_studiogans_draw():
    z = torch.randn(B, NZ, dtype=torch.float32)
    torch.manual_seed(11)
    expected = z + 0.05 * torch.randn(B, NZ)  # zs + radius · sample_normal(B, dim)
    torch.testing.assert_close(fastgp.perturb_latent(z, 0.05, generator=torch.Generator().manual_seed(11)),
                               expected, rtol=0, atol=0)
    assert torch.equal(fastgp.perturb_latent(z, 0.0), z)


def test_zcr_terms_match_the_original_formulas_and_gradients():
    D = _d()
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(NZ, C * H * W), nn.Tanh(), nn.Unflatten(1, (C, H, W))).double()
    z = torch.randn(B, NZ, dtype=torch.float64)
    z_eps = fastgp.perturb_latent(z, 0.03, generator=torch.Generator().manual_seed(2))
    fake, fake_eps = G(z), G(z_eps)
    d_term = fastgp.latent_consistency(D, fake.detach(), fake_eps.detach(), weight=5.0)
    torch.testing.assert_close(d_term, 5.0 * ((D(fake) - D(fake_eps)) ** 2).mean(), rtol=1e-12, atol=0)
    g_term = fastgp.latent_diversity(fake, fake_eps, weight=0.5)
    torch.testing.assert_close(g_term, -0.5 * ((fake - fake_eps) ** 2).mean(), rtol=1e-12, atol=0)
    # G's term pushes G(z + Δz) away from G(z): its gradient reaches G through both images.
    grads = torch.autograd.grad(g_term, list(G.parameters()))
    assert all(g.abs().sum() > 0 for g in grads)
    assert torch.autograd.gradcheck(lambda a, b: fastgp.latent_diversity(a, b, weight=0.5),
                                    (fake.detach().requires_grad_(True), fake_eps.detach().requires_grad_(True)))
    logits = D(fake)
    reused = fastgp.latent_consistency(D, fake, fake_eps, fake_logits=logits + 1.0, weight=5.0)
    torch.testing.assert_close(reused, 5.0 * ((logits + 1.0 - D(fake_eps)) ** 2).mean(), rtol=1e-12, atol=0)


def test_defaults_are_the_papers():
    import inspect

    cp = inspect.signature(fastgp.consistency_penalty).parameters
    assert cp["weight"].default == 10.0 and cp["augment"].default == "cr"
    assert inspect.signature(fastgp.perturb_latent).parameters["sigma"].default == 0.03
    assert inspect.signature(fastgp.latent_consistency).parameters["weight"].default == 5.0
    assert inspect.signature(fastgp.latent_diversity).parameters["weight"].default == 0.5


BAD = [
    (lambda D, r: fastgp.consistency_penalty("D", r), TypeError, "D must be callable"),
    (lambda D, r: fastgp.consistency_penalty(D, r.numpy()), TypeError, "real must be a torch.Tensor"),
    (lambda D, r: fastgp.consistency_penalty(D, r.long()), TypeError, "real must have a floating dtype"),
    (lambda D, r: fastgp.consistency_penalty(D, r[:, 0, 0]), ValueError, r"real must have shape \[B, C, H, W\]"),
    (lambda D, r: fastgp.consistency_penalty(D, r, weight=-1.0), ValueError, "weight must be >= 0.0"),
    (lambda D, r: fastgp.consistency_penalty(D, r, weight=True), TypeError, "weight must be a real number"),
    (lambda D, r: fastgp.consistency_penalty(D, r, r, fake_weight=float("nan")), ValueError, "fake_weight must be finite"),
    (lambda D, r: fastgp.consistency_penalty(D, r, fake_weight=1.0), ValueError, "apply to bCR: pass fake"),
    (lambda D, r: fastgp.consistency_penalty(D, r, fake_logits=D(r)), ValueError, "apply to bCR: pass fake"),
    (lambda D, r: fastgp.consistency_penalty(D, r, augment="flip"), ValueError, "augment has an unknown word 'flip'"),
    (lambda D, r: fastgp.consistency_penalty(D, r, augment=""), ValueError, "augment must not be empty"),
    (lambda D, r: fastgp.consistency_penalty(D, r, augment=3), TypeError, "augment must be 'cr'"),
    (lambda D, r: fastgp.consistency_penalty(D, r, generator=1), TypeError, "generator must be a torch.Generator"),
    (lambda D, r: fastgp.consistency_penalty(D, r, real_logits=D(r)[:2]), ValueError, "real_logits must hold one row"),
    (lambda D, r: fastgp.consistency_penalty(D, r, real_logits=D(r)[:, 0]), ValueError, "must match"),
    (lambda D, r: fastgp.consistency_penalty(D, r, augment=lambda t: t[:2]), ValueError,
     "augment must return one augmented sample per sample of real"),
    (lambda D, r: fastgp.consistency_penalty(D, r, augment=lambda t: fastgp.augment.translate(t, copies=2)), ValueError,
     "augment must return one augmented sample per sample of real"),
    (lambda D, r: fastgp.perturb_latent(torch.randn(2, 3), -0.1), ValueError, "sigma must be >= 0.0"),
    (lambda D, r: fastgp.perturb_latent(torch.zeros(0, 3)), ValueError, "z has an empty batch"),
    (lambda D, r: fastgp.latent_consistency(D, r, r[:2]), ValueError, "fake_perturbed and fake must have the same shape"),
    (lambda D, r: fastgp.latent_consistency(D, r, r.float()), TypeError, "same dtype"),
    (lambda D, r: fastgp.latent_consistency(D, r, r, weight=-2), ValueError, "weight must be >= 0.0"),
    (lambda D, r: fastgp.latent_consistency(None, r, r), TypeError, "D must be callable"),
    (lambda D, r: fastgp.latent_diversity(r, r[:, :1]), ValueError, "must have the same shape"),
    (lambda D, r: fastgp.latent_diversity(r, r, weight="1"), TypeError, "weight must be a real number"),
]


@pytest.mark.parametrize("call, error, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call(_d(), _batch(1))
