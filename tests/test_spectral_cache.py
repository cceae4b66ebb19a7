"""The once-per-step cache of W/σ (SpectralNormStep(cache_weight=True), the default).

Every test runs the same training pattern twice — cached, and with W/σ recomputed in every
forward (cache_weight=False) — from one state, and requires the same gradients to 1e-6 in float64;
some also check against torch's own parametrization in eval mode (fixed u, v), an independent
oracle. Patterns: a 3-forward D step with a gradient penalty (double backward), two backward passes
in one step (StyleGAN2's main and regularization passes), the G step with D frozen, weight changes
outside the optimizer, no_grad / inference_mode forwards, train/eval and requires_grad toggles.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations as P

import fastgp
from fastgp.nn import SpectralNormStep, spectral_norm

D64 = torch.float64
TOL = dict(rtol=1e-6, atol=1e-9)


def mlp_d():
    return nn.Sequential(nn.Linear(6, 16), nn.LeakyReLU(0.2), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 1))


def conv_d():
    return nn.Sequential(nn.Conv2d(2, 4, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(4, 6, 3, 2, 1), nn.LeakyReLU(0.2),
                         nn.Flatten(), nn.Linear(6 * 2 * 2, 1))


SHAPES = {"linear": (5, 6), "conv": (5, 2, 8, 8)}
MAKERS = {"linear": mlp_d, "conv": conv_d}


def sn_layers(D):
    return [m for m in D.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def make_pair(kind, sn=spectral_norm):
    """Two identical spectral-normalized D (same weights, same u, v) with SGD optimizers."""
    torch.manual_seed(0)
    D = MAKERS[kind]().double()
    for m in sn_layers(D):
        sn(m)
    return D, copy.deepcopy(D)


def attach(D, cache_weight, lr=0.05):
    opt = torch.optim.SGD(D.parameters(), lr=lr)
    SpectralNormStep(D, optimizer=opt, cache_weight=cache_weight)
    return opt


def data(kind, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = SHAPES[kind]
    real = torch.randn(*shape, generator=g, dtype=D64, device="cpu")
    fake = torch.randn(*shape, generator=g, dtype=D64, device="cpu")
    alpha = torch.rand(shape[0], *([1] * (len(shape) - 1)), generator=g, dtype=D64, device="cpu")
    # On the test's device (torch's default device: the on_device fixture).
    return tuple(t.to(torch.get_default_device()) for t in (real, fake, alpha))


def gp_d_loss(D, real, fake, alpha):
    """Real, fake and interpolate forwards, a WGAN-GP penalty (double backward through SN)."""
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    gp = (g.flatten(1).norm(dim=1) - 1).square().mean()
    return F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean() + 10 * gp


def grads(D):
    return [p.grad.clone() for p in D.parameters()]


def assert_all_close(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        torch.testing.assert_close(x, y, **TOL)


class CountNormalizeBackward:
    """Counts the runs of the W/σ backward (with its u vᵀ term)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = fastgp.spectral._DivideBySigma.backward

        def counting(ctx, grad):
            self.calls += 1
            return original(ctx, grad)

        monkeypatch.setattr(fastgp.spectral._DivideBySigma, "backward", staticmethod(counting))


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_gp_d_step_cached_equals_uncached_and_torch(backend_name, on_device, kind, monkeypatch):
    cached, uncached = make_pair(kind)
    opt_c, opt_u = attach(cached, True), attach(uncached, False)
    counter = CountNormalizeBackward(monkeypatch)
    n_layers = len(sn_layers(cached))
    for step in range(3):
        real, fake, alpha = data(kind, seed=step)
        for D, opt in ((cached, opt_c), (uncached, opt_u)):
            opt.zero_grad()
            counter.calls = 0
            gp_d_loss(D, real, fake, alpha).backward()
            if D is cached:  # the W/σ backward ran once per layer, not once per forward
                assert counter.calls == n_layers
            else:
                assert counter.calls == 3 * n_layers
        assert_all_close(grads(cached), grads(uncached))
        # An independent oracle: torch's parametrization in eval mode with this step's u, v.
        _, oracle = make_pair(kind, sn=P.spectral_norm)
        oracle.load_state_dict(cached.state_dict())
        oracle.eval()
        gp_d_loss(oracle, real, fake, alpha).backward()
        assert_all_close(grads(cached), [p.grad for p in oracle.parameters()])
        opt_c.step(), opt_u.step()  # the hook advances σ; the next step's forwards must see it
        assert_all_close(list(cached.parameters()), list(uncached.parameters()))


def test_every_forward_of_a_step_gets_the_same_tensor(backend_name, on_device):
    D, _ = make_pair("linear")
    attach(D, True)
    first = D[0].weight
    assert D[0].weight is first
    torch.testing.assert_close(first, normalized_from_scratch(D[0]))
    assert first.grad_fn is not None


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_two_backward_passes_in_one_step(backend_name, on_device, kind):
    """StyleGAN2's pattern: the main loss backward, then the R1 regularization forward and backward,
    both accumulating into .grad before one optimizer step. The first backward frees the graph of the
    cached W/σ, so the second pass must rebuild it."""
    cached, uncached = make_pair(kind)
    opt_c, opt_u = attach(cached, True), attach(uncached, False)
    for step in range(2):
        real, fake, _ = data(kind, seed=10 + step)
        for D, opt in ((cached, opt_c), (uncached, opt_u)):
            opt.zero_grad()
            (F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()).backward()
            x = real.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
            (5 * g.flatten(1).square().sum(1).mean()).backward()
        assert_all_close(grads(cached), grads(uncached))
        opt_c.step(), opt_u.step()


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_generator_step_with_frozen_discriminator(backend_name, on_device, kind):
    """D step, D's optimizer step, then the G step through D with D.requires_grad_(False), then
    the next D step with D trainable again: G's and D's gradients equal the uncached ones."""
    cached, uncached = make_pair(kind)
    shape = SHAPES[kind]
    torch.manual_seed(5)
    G = nn.Sequential(nn.Linear(3, int(torch.tensor(shape[1:]).prod())), nn.Unflatten(1, shape[1:])).double()
    z = torch.randn(shape[0], 3, generator=torch.Generator().manual_seed(4), dtype=D64, device="cpu").to(on_device)
    results = {}
    for name, D, cache in (("cached", cached, True), ("uncached", uncached, False)):
        g = copy.deepcopy(G)
        opt_d = attach(D, cache)
        real, fake, alpha = data(kind, seed=3)
        opt_d.zero_grad()
        gp_d_loss(D, real, g(z).detach(), alpha).backward()
        d_grads = grads(D)
        opt_d.step()
        D.requires_grad_(False)
        g_loss = F.softplus(-D(g(z))).mean() + F.softplus(-D(g(0.5 * z))).mean()
        g_loss.backward()
        assert_all_close(grads(D), d_grads)  # frozen D: its gradients are left alone
        g_grads = grads(g)
        D.requires_grad_(True)
        opt_d.zero_grad()
        gp_d_loss(D, real, g(z).detach(), alpha).backward()
        results[name] = (d_grads, g_grads, grads(D))
    for a, b in zip(results["cached"], results["uncached"]):
        assert_all_close(a, b)


def normalized_from_scratch(layer):
    """W/σ for the layer's current W, u, v, computed with plain torch ops."""
    param = layer.parametrizations.weight
    weight = param.original.detach()
    return weight / torch.vdot(param[0]._u, weight.flatten(1) @ param[0]._v)


def test_forward_after_optimizer_step_or_load_state_dict_uses_the_new_weight(backend_name, on_device):
    D, _ = make_pair("linear")
    opt = attach(D, True)
    real, fake, alpha = data("linear")
    layer, param = D[0], D[0].parametrizations.weight

    def expected():
        return normalized_from_scratch(layer)

    before = layer.weight
    gp_d_loss(D, real, fake, alpha).backward()
    opt.step()
    after_step = layer.weight
    assert after_step is not before
    torch.testing.assert_close(after_step, expected())
    assert not torch.equal(after_step, before)

    # load_state_dict writes W, u, v in place (no step(), no optimizer).
    other, _ = make_pair("linear")
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5).add_(0.1)
    D.load_state_dict(other.state_dict())
    torch.testing.assert_close(layer.weight, normalized_from_scratch(other[0]))

    # A manual in-place edit of the weight between two forwards of one step.
    w1 = layer.weight
    with torch.no_grad():
        param.original.mul_(3)
    w2 = layer.weight
    torch.testing.assert_close(w2, expected())
    torch.testing.assert_close(w2, w1)  # W/σ is scale-invariant: σ was recomputed, not reused

    # Explicit step() with no optimizer in sight: u, v advance and W/σ is rebuilt.
    SpectralNormStep(D, cache_weight=True).step()
    assert layer.weight is not w2
    torch.testing.assert_close(layer.weight, expected())


def test_no_grad_forward_is_not_reused_by_a_grad_forward(backend_name, on_device):
    cached, uncached = make_pair("linear")
    attach(cached, True), attach(uncached, False)
    real, fake, alpha = data("linear")
    with torch.no_grad():
        w_no_grad = cached[0].weight
        cached(real)
    assert w_no_grad.grad_fn is None and not w_no_grad.requires_grad
    w = cached[0].weight
    assert w.requires_grad and w.grad_fn is not None
    with torch.inference_mode():
        cached(real)
    for D in (cached, uncached):  # a forward needing a graph after the no-grad ones
        gp_d_loss(D, real, fake, alpha).backward()
    assert_all_close(grads(cached), grads(uncached))
    # And the other way round: a no_grad forward after a graph one gets no graph.
    cached[0].weight
    with torch.no_grad():
        assert cached[0].weight.grad_fn is None


def test_inference_mode_weight_never_reaches_autograd(backend_name, on_device):
    """W/σ built under inference_mode is an inference tensor: a later forward that saves the weight
    for backward (D frozen, input requiring grad) must get a normal tensor."""
    D, _ = make_pair("linear")
    attach(D, True)
    D.requires_grad_(False)
    x = torch.randn(3, 6, dtype=D64)
    with torch.inference_mode():
        D(x)
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(D(x).sum(), x)
    assert torch.isfinite(g).all()


def test_requires_grad_and_train_eval_toggles(backend_name, on_device):
    D, _ = make_pair("linear")
    attach(D, True)
    layer = D[0]
    assert layer.weight.requires_grad
    D.requires_grad_(False)
    assert not layer.weight.requires_grad
    D.requires_grad_(True)
    w_train = layer.weight
    assert w_train.requires_grad and w_train.grad_fn is not None
    D.eval()
    w_eval = layer.weight
    assert w_eval.requires_grad and w_eval is not w_train
    torch.testing.assert_close(w_eval, w_train)  # once-per-step: the step's σ in both modes
    D.train()
    assert layer.weight.requires_grad


def test_cached_weight_edited_in_place_is_rebuilt(backend_name, on_device):
    D, _ = make_pair("linear")
    attach(D, True)
    with torch.no_grad():
        w = D[0].weight
        w.zero_()  # someone writes into the returned tensor
        assert torch.count_nonzero(D[0].weight) > 0


def test_module_cast_after_caching(backend_name, on_device):
    D, _ = make_pair("linear")
    attach(D, True)
    D[0].weight
    D.float()
    w = D[0].weight
    assert w.dtype == torch.float32
    x = torch.randn(2, 6)
    assert D(x).dtype == torch.float32


def test_retain_graph_and_backward_twice_through_one_forward(backend_name, on_device):
    cached, uncached = make_pair("linear")
    attach(cached, True), attach(uncached, False)
    real, fake, alpha = data("linear")
    for D in (cached, uncached):
        loss = gp_d_loss(D, real, fake, alpha)
        loss.backward(retain_graph=True)
        loss.backward()  # gradients accumulate twice
    assert_all_close(grads(cached), grads(uncached))


def test_default_mode_is_not_cached(backend_name, on_device):
    a, b = make_pair("linear", sn=P.spectral_norm)[0], make_pair("linear")[0]
    x = data("linear")[0]
    for _ in range(3):
        torch.testing.assert_close(a(x), b(x), rtol=1e-9, atol=1e-12)
    assert b[0].weight is not b[0].weight  # every forward iterates and builds its own W/σ
    stepper = SpectralNormStep(b)
    b[0].weight  # fills the cache
    stepper.detach()
    b.load_state_dict(a.state_dict())
    for _ in range(2):
        torch.testing.assert_close(a(x), b(x), rtol=1e-9, atol=1e-12)
    assert b[0].weight is not b[0].weight


def test_cache_weight_must_be_bool():
    D, _ = make_pair("linear")
    with pytest.raises(TypeError, match="cache_weight must be a bool, got int"):
        SpectralNormStep(D, cache_weight=1)


def test_vectors_written_in_place_recompute_sigma(backend_name, on_device):
    """u, v overwritten outside step() (DDP's buffer broadcast, loading only the vectors): σ and
    W/σ follow the new vectors."""
    D, _ = make_pair("linear")
    attach(D, True)
    u = D[0].parametrizations.weight[0]._u
    w_before = D[0].weight
    with torch.no_grad():
        u.copy_(F.normalize(torch.ones_like(u), dim=0))
    w_after = D[0].weight
    assert w_after is not w_before
    torch.testing.assert_close(w_after, normalized_from_scratch(D[0]))


def test_deepcopy_of_a_model_with_a_cached_weight(backend_name, on_device):
    """copy.deepcopy(D) mid-step (an EMA copy, a snapshot) works and the copy computes its own W/σ."""
    D, _ = make_pair("linear")
    attach(D, True)
    x = data("linear")[0]
    out = D(x)  # the step's W/σ, with its graph, now sits in the cache
    E = copy.deepcopy(D)
    torch.testing.assert_close(E(x), out)
    assert E[0].weight is not D[0].weight
    with torch.no_grad():
        E[0].parametrizations.weight.original.mul_(2)
    torch.testing.assert_close(E[0].weight, normalized_from_scratch(E[0]))
    torch.testing.assert_close(D(x), out)  # the original is untouched
