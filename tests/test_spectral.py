"""fastgp.nn.spectral_norm against torch.nn.utils.parametrizations.spectral_norm: state, forward,
gradients (first and second order), checkpoints both ways, legacy checkpoints, bad inputs, whole
models, and the once-per-step grouped mode."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations as P

import fastgp
from fastgp.reference import spectral as ref_spectral
from fastgp.nn import SpectralNormStep, apply_spectral_norm, remove_spectral_norm, spectral_norm

D64 = torch.float64


def make_layer(kind, dtype=D64):
    layers = {
        "linear": lambda: nn.Linear(12, 9),
        "conv1d": lambda: nn.Conv1d(3, 5, 3),
        "conv2d": lambda: nn.Conv2d(3, 6, 3),
        "conv3d": lambda: nn.Conv3d(2, 4, 2),
        "convt2d": lambda: nn.ConvTranspose2d(4, 3, 3),
        "embedding": lambda: nn.Embedding(10, 6),
    }
    return layers[kind]().to(dtype)


def layer_input(kind, dtype=D64):
    g = torch.Generator().manual_seed(7)
    shapes = {"linear": (4, 12), "conv1d": (2, 3, 8), "conv2d": (2, 3, 6, 6), "conv3d": (2, 2, 4, 4, 4), "convt2d": (2, 4, 5, 5)}
    if kind == "embedding":
        return torch.tensor([[1, 2, 9], [0, 5, 5]])
    return torch.randn(*shapes[kind], generator=g, dtype=D64).to(dtype)


def twins(kind, n_power_iterations=1, dtype=D64):
    """(torch's, fastgp's) spectral-normalized copies of one layer, registered with one seed."""
    base = make_layer(kind, dtype)
    torch.manual_seed(123)
    a = P.spectral_norm(copy.deepcopy(base), n_power_iterations=n_power_iterations)
    torch.manual_seed(123)
    b = spectral_norm(copy.deepcopy(base), n_power_iterations=n_power_iterations)
    return a, b


def sn_state(m):
    return m.parametrizations.weight[0]._u, m.parametrizations.weight[0]._v


KINDS = ["linear", "conv1d", "conv2d", "conv3d", "convt2d", "embedding"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_power_iterations", [1, 3])
def test_matches_torch_training_and_eval(backend_name, kind, n_power_iterations):
    a, b = twins(kind, n_power_iterations)
    assert set(a.state_dict()) == set(b.state_dict())
    if kind == "convt2d":
        assert b.parametrizations.weight[0].dim == 1
    for x, y in zip(sn_state(a), sn_state(b)):  # same draws and 15 warm-up iterations
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)
    x = layer_input(kind)
    for _ in range(3):  # every training forward advances u, v in place
        torch.testing.assert_close(a(x), b(x), rtol=1e-9, atol=1e-12)
    for s, t in zip(sn_state(a), sn_state(b)):
        torch.testing.assert_close(s, t, rtol=1e-9, atol=1e-12)
    a.eval(), b.eval()
    u_before = [t.clone() for t in sn_state(b)]
    torch.testing.assert_close(a(x), b(x), rtol=1e-9, atol=1e-12)
    for before, after in zip(u_before, sn_state(b)):
        assert torch.equal(before, after)  # eval: the stored vectors are used, not updated


@pytest.mark.parametrize("kind", ["linear", "conv2d", "convt2d"])
def test_gradient_equals_torch_with_two_forwards_before_backward(backend_name, kind):
    a, b = twins(kind)
    x1, x2 = layer_input(kind), layer_input(kind) * 0.5 + 1
    grads = []
    for m in (a, b):
        loss = m(x1).square().mean() - m(x2).sin().mean()  # D(real) and D(fake), one backward
        grads.append(torch.autograd.grad(loss, [m.parametrizations.weight.original, m.bias]))
    for ga, gb in zip(*grads):
        torch.testing.assert_close(ga, gb, rtol=1e-6, atol=1e-9)


def discriminator(sn, seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 16), nn.LeakyReLU(0.2), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    torch.manual_seed(seed + 1)
    for i in (0, 2, 4):
        sn(net[i])
    return net


def test_gradient_penalty_through_sn_discriminator_equals_torch(backend_name):
    """Double backward: a WGAN-GP step through spectral-normalized layers, training mode."""
    real = torch.randn(8, 6, dtype=D64, generator=torch.Generator().manual_seed(1))
    fake = torch.randn(8, 6, dtype=D64, generator=torch.Generator().manual_seed(2))
    alpha = torch.rand(8, 1, dtype=D64, generator=torch.Generator().manual_seed(3))
    results = []
    for sn in (P.spectral_norm, spectral_norm):
        D = discriminator(sn)
        x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        d_loss = D(fake).mean() - D(real).mean()
        (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
        gp = ((g.norm(dim=1) - 1) ** 2).mean()
        loss = d_loss + 10 * gp
        results.append([loss.detach()] + list(torch.autograd.grad(loss, list(D.parameters()))))
    for ra, rb in zip(*results):
        torch.testing.assert_close(ra, rb, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", ["linear", "convt2d"])
def test_gradcheck_and_gradgradcheck(backend_name, kind):
    _, m = twins(kind)
    m.eval()  # gradcheck evaluates many times: eval keeps u, v fixed, as torch's tests do
    x = layer_input(kind).requires_grad_(True)
    weight = m.parametrizations.weight.original

    def g(w, x):
        return torch.func.functional_call(m, {"parametrizations.weight.original": w}, (x,))

    w = weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(g, (w, x))
    assert torch.autograd.gradgradcheck(g, (w, x))


@pytest.mark.parametrize("layout", ["linear", "convt2d", "conv2d-channels-last"])
def test_weight_gradient_in_every_layout_equals_torch(backend_name, layout):
    """The fused W/σ backward: the rank-1 update in place on a contiguous dim-0 gradient, and added
    in W's layout for ConvTranspose (dim=1) and for a channels_last weight gradient."""
    kind = "conv2d" if layout.startswith("conv2d") else layout
    a, b = twins(kind)
    x = layer_input(kind)
    if layout == "conv2d-channels-last":
        a, b, x = (t.to(memory_format=torch.channels_last) for t in (a, b, x))
    results = []
    for m in (a, b):
        m.eval()
        weight = m.parametrizations.weight.original
        results.append(torch.autograd.grad(m(x).tanh().sum(), weight))
        if layout == "conv2d-channels-last":
            assert weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", ["linear", "convt2d"])
def test_second_derivative_with_respect_to_weight_equals_torch(backend_name, kind):
    """create_graph through the W/σ backward itself (the gradient of a weight-gradient norm)."""
    a, b = twins(kind)
    x = layer_input(kind)
    results = []
    for m in (a, b):
        m.eval()
        weight = m.parametrizations.weight.original
        (gw,) = torch.autograd.grad(m(x).sin().sum(), weight, create_graph=True)
        results.append(torch.autograd.grad(gw.square().sum() + (gw * weight).sum(), weight))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_reduced_precision_weight_gradient(backend_name, dtype):
    base = nn.Linear(64, 48)
    torch.manual_seed(0)
    ref32 = P.spectral_norm(copy.deepcopy(base)).eval()
    m = spectral_norm(copy.deepcopy(base).to(dtype))
    m.load_state_dict({k: t.to(dtype) for k, t in ref32.state_dict().items()})
    m.eval()
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(3))
    (g32,) = torch.autograd.grad(ref32(x).square().sum(), ref32.parametrizations.weight.original)
    (g16,) = torch.autograd.grad(m(x.to(dtype)).float().square().sum(), m.parametrizations.weight.original)
    assert g16.dtype == dtype
    torch.testing.assert_close(g16.float(), g32, rtol=5e-2, atol=5e-2 * g32.abs().max().item())


def test_sigma_gradient_is_u_v_outer(backend_name):
    w = torch.randn(5, 4, dtype=D64, requires_grad=True)
    u, v = torch.randn(5, dtype=D64), torch.randn(4, dtype=D64)
    out = fastgp.spectral.spectral_normalize(w, u, v, n_power_iterations=0)
    sigma = torch.vdot(u, w.detach() @ v)
    torch.testing.assert_close(out, w.detach() / sigma)
    (gw,) = torch.autograd.grad(out.sum(), w)
    expected = torch.ones(5, 4, dtype=D64) / sigma - (w.detach().sum() / sigma**2) * torch.outer(u, v)
    torch.testing.assert_close(gw, expected)


def test_one_dimensional_weight_is_normalized(backend_name):
    m = nn.Module()
    m.weight = nn.Parameter(torch.tensor([3.0, 4.0], dtype=D64))
    spectral_norm(m)
    torch.testing.assert_close(m.weight, torch.tensor([0.6, 0.8], dtype=D64))
    assert not hasattr(m.parametrizations.weight[0], "_u")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_reduced_precision_weights_iterate_in_float32(backend_name, dtype):
    base = nn.Linear(64, 48)
    torch.manual_seed(0)
    ref32 = P.spectral_norm(copy.deepcopy(base))
    m = copy.deepcopy(base).to(dtype)
    spectral_norm(m)
    u, v = sn_state(m)
    assert u.dtype == dtype and v.dtype == dtype
    m.load_state_dict({k: t.to(dtype) for k, t in ref32.state_dict().items()})
    w16 = m.weight
    w32 = ref32.weight
    assert w16.dtype == dtype
    torch.testing.assert_close(w16.float(), w32, rtol=2e-2, atol=2e-3)
    sigma = torch.linalg.matrix_norm(base.weight.detach(), 2)
    assert abs(torch.linalg.matrix_norm(w16.float(), 2) - 1) < 0.05 * sigma


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "convt2d"])
def test_state_dict_interchange_both_ways(backend_name, kind):
    x = layer_input(kind)
    a, _ = twins(kind)
    a(x)  # advance torch's state
    _, b = twins(kind)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    torch.testing.assert_close(a(x), b(x), rtol=1e-12, atol=1e-12)
    b.train()
    b(x), b(x)
    a2, _ = twins(kind)
    a2.load_state_dict(b.state_dict())
    a2.eval(), b.eval()
    torch.testing.assert_close(a2(x), b(x), rtol=1e-12, atol=1e-12)


def test_loads_legacy_spectral_norm_checkpoint(backend_name):
    torch.manual_seed(0)
    legacy = torch.nn.utils.spectral_norm(nn.Conv2d(3, 6, 3).double())
    x = layer_input("conv2d")
    legacy(x)
    legacy_state = legacy.state_dict()
    assert {"weight_orig", "weight_u", "weight_v"} <= set(legacy_state)
    model = spectral_norm(nn.Conv2d(3, 6, 3).double())
    model.load_state_dict(legacy_state)
    legacy.eval(), model.eval()
    torch.testing.assert_close(model(x), legacy(x), rtol=1e-12, atol=1e-12)
    # Inside a bigger model too (the key prefix).
    seq_legacy = nn.Sequential(nn.Identity(), legacy)
    seq = nn.Sequential(nn.Identity(), spectral_norm(nn.Conv2d(3, 6, 3).double())).eval()
    seq.load_state_dict(seq_legacy.state_dict())
    torch.testing.assert_close(seq(x), legacy(x), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------


def int_weight_module():
    m = nn.Module()
    m.register_buffer("weight", torch.ones(3, 4, dtype=torch.int64))
    return m


def twice():
    m = spectral_norm(nn.Linear(3, 4))
    spectral_norm(m)


def twice_after_torch():
    spectral_norm(P.spectral_norm(nn.Linear(3, 4)))


def twice_after_legacy():
    spectral_norm(torch.nn.utils.spectral_norm(nn.Linear(3, 4)))


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: spectral_norm(nn.Linear(3, 4), n_power_iterations=-1), ValueError, "n_power_iterations must be >= 0"),
        (lambda: spectral_norm(nn.Linear(3, 4), n_power_iterations=1.5), TypeError, "n_power_iterations must be an int"),
        (lambda: spectral_norm(nn.Linear(3, 4), eps=0.0), ValueError, "eps must be > 0"),
        (lambda: spectral_norm(nn.Linear(3, 4), eps=-1e-3), ValueError, "eps must be > 0"),
        (lambda: spectral_norm(nn.Linear(3, 4), eps="x"), TypeError, "eps must be a real number"),
        (lambda: spectral_norm(nn.Linear(3, 4), name="kernel"), ValueError, "no parameter or buffer named 'kernel'"),
        (twice, ValueError, "already has spectral normalization on 'weight'"),
        (twice_after_torch, ValueError, "already has spectral normalization"),
        (twice_after_legacy, ValueError, "already has spectral normalization"),
        (lambda: spectral_norm(int_weight_module()), TypeError, "weight must have a floating dtype"),
        (lambda: spectral_norm(nn.Linear(3, 4), dim=2), ValueError, "dim must be in \\[-2, 1\\]"),
        (lambda: spectral_norm(nn.Conv2d(3, 4, 3), dim=-5), ValueError, "dim must be in \\[-4, 3\\]"),
        (lambda: spectral_norm(nn.Linear(3, 4), dim=0.5), TypeError, "dim must be an int"),
        (lambda: spectral_norm("linear"), TypeError, "module must be a torch.nn.Module"),
        (lambda: apply_spectral_norm(nn.Linear(3, 4), exclude=["nope"]), ValueError, "exclude names modules"),
        (lambda: apply_spectral_norm(nn.Linear(3, 4), layer_types=[int]), TypeError, "layer_types"),
        (lambda: SpectralNormStep(nn.Linear(3, 4)), ValueError, "no fastgp spectral-normalized layer"),
        (lambda: fastgp.spectral.power_iteration(torch.zeros(3, 4), torch.zeros(4), torch.zeros(4)), ValueError, "u must have shape \\[3\\]"),
        (lambda: fastgp.spectral.power_iteration(torch.zeros(3, 4, dtype=torch.int32), torch.zeros(3), torch.zeros(4)), TypeError, "weight must have a floating dtype"),
        (lambda: fastgp.spectral.power_iteration(torch.zeros(3, 4), torch.zeros(3), torch.zeros(4), n_iterations=-2), ValueError, "n_iterations must be >= 0"),
        (lambda: fastgp.spectral.power_iteration_grouped([torch.zeros(3, 4), torch.zeros(2, 2, dtype=D64)], [torch.zeros(3), torch.zeros(2, dtype=D64)], [torch.zeros(4), torch.zeros(2, dtype=D64)]), ValueError, "share one dtype and device"),
        (lambda: fastgp.spectral.spectral_normalize(torch.zeros(3, 4), torch.zeros(4), torch.zeros(4)), ValueError, "u must have shape \\[3\\]"),
        (lambda: fastgp.spectral.spectral_normalize(torch.zeros(3, 4), torch.zeros(3), torch.zeros(4, dtype=D64)), TypeError, "v must have the dtype of weight"),
        (lambda: fastgp.spectral.spectral_normalize(torch.zeros(3, 4), torch.zeros(3), torch.zeros(4), n_power_iterations=-1), ValueError, "n_power_iterations must be >= 0"),
        (lambda: fastgp.spectral.spectral_normalize(torch.zeros(3, 4), torch.zeros(3), torch.zeros(4), eps=0.0), ValueError, "eps must be > 0"),
        (lambda: fastgp.spectral.spectral_normalize(torch.zeros(3, 4), torch.zeros(3), torch.zeros(4), dim=2), ValueError, "dim must be in \\[-2, 1\\]"),
        (lambda: fastgp.spectral.spectral_normalize(torch.zeros(3, 4, dtype=torch.int32), torch.zeros(3), torch.zeros(4)), TypeError, "weight must have a floating dtype"),
        (lambda: fastgp.spectral.spectral_normalize(torch.zeros(3, 4, 2), torch.zeros(4), torch.zeros(6), dim=1, sigma=torch.ones(2)), ValueError, "sigma must hold one value"),
    ],
)
def test_bad_input(backend_name, call, error, match):
    # Checked once, in the public layer: the same error with the same words on every backend.
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------------------------------------------
# Whole models
# ------------------------------------------------------------------------------------------------


def generator_like():
    return nn.Sequential(
        nn.Embedding(10, 8),
        nn.Flatten(),
        nn.Linear(16, 32),
        nn.Unflatten(1, (2, 4, 4)),
        nn.ConvTranspose2d(2, 4, 3),
        nn.Conv2d(4, 3, 3),
        nn.BatchNorm2d(3),
        nn.Conv1d(3, 3, 1),
        nn.Conv3d(1, 1, 1),
    ).double()


def test_apply_and_remove_spectral_norm(backend_name):
    model = generator_like()
    apply_spectral_norm(model, exclude=["7", model[8]])
    normalized = [i for i, m in enumerate(model) if torch.nn.utils.parametrize.is_parametrized(m)]
    assert normalized == [0, 2, 4, 5]  # BatchNorm is not a layer type; 7, 8 excluded
    assert model[4].parametrizations.weight[0].dim == 1  # ConvTranspose
    apply_spectral_norm(model)  # already normalized layers are skipped, the rest added
    assert all(torch.nn.utils.parametrize.is_parametrized(model[i]) for i in (0, 2, 4, 5, 7, 8))
    only_linear = apply_spectral_norm(generator_like(), layer_types=[nn.Linear])
    assert [i for i, m in enumerate(only_linear) if torch.nn.utils.parametrize.is_parametrized(m)] == [2]

    model.eval()
    expected = {i: model[i].weight.detach().clone() for i in (0, 2, 4, 5)}
    remove_spectral_norm(model)
    for i, w in expected.items():
        assert not torch.nn.utils.parametrize.is_parametrized(model[i])
        assert isinstance(model[i].weight, nn.Parameter)
        torch.testing.assert_close(model[i].weight.detach(), w)


# ------------------------------------------------------------------------------------------------
# Once-per-step mode
# ------------------------------------------------------------------------------------------------


def test_once_per_step_mode(backend_name):
    D = discriminator(spectral_norm)
    ref = copy.deepcopy(D)  # advanced by hand with the reference grouped iteration
    opt = torch.optim.SGD(D.parameters(), lr=0.05)
    stepper = SpectralNormStep(D, optimizer=opt)
    layers = [D[i].parametrizations.weight[0] for i in (0, 2, 4)]
    ref_layers = [ref[i].parametrizations.weight[0] for i in (0, 2, 4)]

    def ref_step():
        with torch.no_grad():
            for i, p in zip((0, 2, 4), ref_layers):
                ref_spectral.spectral_power_iteration(ref[i].parametrizations.weight.original, p._u, p._v, 1, p.eps)

    ref_step()  # attaching runs one step
    real, fake = torch.randn(4, 6, dtype=D64), torch.randn(4, 6, dtype=D64)
    for _ in range(2):
        before = [p._u.clone() for p in layers]
        w1 = D[0].weight
        loss = D(fake).mean() - D(real).mean() + D(0.5 * (real + fake)).square().mean()
        w2 = D[0].weight
        assert torch.equal(w1, w2)  # every forward of the step uses the same σ
        assert all(torch.equal(b, p._u) for b, p in zip(before, layers))  # forwards do not iterate
        # Gradient: torch's formula with the step's fixed u, v (eval mode of torch's own SN).
        tD = discriminator(P.spectral_norm)
        tD.load_state_dict(D.state_dict())  # the same keys: the step's weights and u, v
        tD.eval()
        exp_loss = tD(fake).mean() - tD(real).mean() + tD(0.5 * (real + fake)).square().mean()
        torch.testing.assert_close(loss, exp_loss)
        opt.zero_grad()
        loss.backward()
        exp_grads = torch.autograd.grad(exp_loss, list(tD.parameters()))
        for p, g in zip(D.parameters(), exp_grads):
            torch.testing.assert_close(p.grad, g)
        opt.step()  # the hook advances u, v, σ of all layers once
        with torch.no_grad():
            for i in (0, 2, 4):
                ref[i].parametrizations.weight.original.copy_(D[i].parametrizations.weight.original)
        ref_step()
        for p, q in zip(layers, ref_layers):
            torch.testing.assert_close(p._u, q._u)
            torch.testing.assert_close(p._v, q._v)
    stepper.detach()
    before = layers[0]._u.clone()
    D(real)
    assert not torch.equal(before, layers[0]._u)  # back to torch's per-forward iteration


def test_once_per_step_recomputes_sigma_when_weight_changes(backend_name):
    D = discriminator(spectral_norm)
    SpectralNormStep(D)
    p = D[0].parametrizations.weight[0]
    with torch.no_grad():
        D[0].parametrizations.weight.original.mul_(2)
    u_before = p._u.clone()
    w = D[0].weight
    sigma = torch.vdot(p._u, D[0].parametrizations.weight.original @ p._v)
    torch.testing.assert_close(w, D[0].parametrizations.weight.original / sigma)
    assert torch.equal(u_before, p._u)


def test_once_per_step_state_dict_restores_the_exact_sigma():
    """A model restored from a checkpoint with the step's σ divides by exactly that σ (recomputing
    uᵀWv from the loaded u, v in another kernel may differ in the last bits)."""
    D = discriminator(spectral_norm)
    opt = torch.optim.SGD(D.parameters(), lr=0.05)
    stepper = SpectralNormStep(D, optimizer=opt)
    D(torch.randn(4, 6, dtype=D64)).sum().backward()
    opt.step()
    saved_model, saved_sigmas = copy.deepcopy(D.state_dict()), stepper.state_dict()
    x = torch.randn(3, 6, dtype=D64)
    expected = D(x)

    other = discriminator(spectral_norm)
    other_stepper = SpectralNormStep(other)
    other.load_state_dict(saved_model)
    other_stepper.load_state_dict(saved_sigmas)
    assert torch.equal(other(x), expected)
    assert [float(s) for s in saved_sigmas["sigmas"]] == [
        float(other[i].parametrizations.weight[0]._cache.sigma) for i in (0, 2, 4)
    ]


@pytest.mark.parametrize("state, message", [
    ([], "state must be a dict with a list 'sigmas'"),
    ({"sigmas": [torch.ones(())]}, "state holds 1 sigmas for 3 spectral-normalized layers"),
    ({"sigmas": [torch.ones(2)] * 3}, "each sigma must be a one-element tensor"),
])
def test_once_per_step_load_state_dict_rejects_bad_state(state, message):
    stepper = SpectralNormStep(discriminator(spectral_norm))
    with pytest.raises(ValueError, match=message):
        stepper.load_state_dict(state)


def test_parametrize_cached_matches_torch(backend_name):
    """Under torch's parametrize.cached() (one W/σ per D step) the gradients are torch's too."""
    real, fake = torch.randn(4, 6, dtype=D64), torch.randn(4, 6, dtype=D64)
    grads = []
    for sn in (P.spectral_norm, spectral_norm):
        D = discriminator(sn)
        with torch.nn.utils.parametrize.cached():
            loss = D(fake).mean() - D(real).mean() + D(0.5 * (real + fake)).square().mean()
            grads.append(torch.autograd.grad(loss, list(D.parameters())))
    for ga, gb in zip(*grads):
        torch.testing.assert_close(ga, gb, rtol=1e-6, atol=1e-9)
