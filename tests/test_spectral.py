"""fastgp.nn.spectral_norm against torch.nn.utils.parametrizations.spectral_norm: state, forward,
gradients (first and second order), checkpoints both ways, legacy checkpoints, bad inputs, whole
models, and the once-per-step grouped mode."""

import copy
import importlib

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations as P

import fastgp
from fastgp.reference import spectral as ref_spectral
from fastgp.nn import SpectralNormStep, apply_spectral_norm, remove_spectral_norm, spectral_norm
from helpers import make

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
    return torch.randn(*shapes[kind], generator=g, dtype=D64, device="cpu").to(torch.get_default_device(), dtype)


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
def test_matches_torch_training_and_eval(backend_name, on_device, kind, n_power_iterations):
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
def test_gradient_equals_torch_with_two_forwards_before_backward(backend_name, on_device, kind):
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


def test_gradient_penalty_through_sn_discriminator_equals_torch(backend_name, on_device):
    """Double backward: a WGAN-GP step through spectral-normalized layers, training mode."""
    real = make((8, 6), D64, seed=1, device=on_device)
    fake = make((8, 6), D64, seed=2, device=on_device)
    alpha = torch.rand(8, 1, dtype=D64, generator=torch.Generator().manual_seed(3), device="cpu").to(on_device)
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
def test_gradcheck_and_gradgradcheck(backend_name, on_device, kind):
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
def test_weight_gradient_in_every_layout_equals_torch(backend_name, on_device, layout):
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
def test_second_derivative_with_respect_to_weight_equals_torch(backend_name, on_device, kind):
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
def test_reduced_precision_weight_gradient(backend_name, on_device, dtype):
    base = nn.Linear(64, 48)
    torch.manual_seed(0)
    ref32 = P.spectral_norm(copy.deepcopy(base)).eval()
    m = spectral_norm(copy.deepcopy(base).to(dtype))
    m.load_state_dict({k: t.to(dtype) for k, t in ref32.state_dict().items()})
    m.eval()
    x = make((8, 64), seed=3, device=on_device)
    (g32,) = torch.autograd.grad(ref32(x).square().sum(), ref32.parametrizations.weight.original)
    (g16,) = torch.autograd.grad(m(x.to(dtype)).float().square().sum(), m.parametrizations.weight.original)
    assert g16.dtype == dtype
    torch.testing.assert_close(g16.float(), g32, rtol=5e-2, atol=5e-2 * g32.abs().max().item())


def test_sigma_gradient_is_u_v_outer(backend_name, on_device):
    w = torch.randn(5, 4, dtype=D64, requires_grad=True)
    u, v = torch.randn(5, dtype=D64), torch.randn(4, dtype=D64)
    out = fastgp.spectral.spectral_normalize(w, u, v, n_power_iterations=0)
    sigma = torch.vdot(u, w.detach() @ v)
    torch.testing.assert_close(out, w.detach() / sigma)
    (gw,) = torch.autograd.grad(out.sum(), w)
    expected = torch.ones(5, 4, dtype=D64) / sigma - (w.detach().sum() / sigma**2) * torch.outer(u, v)
    torch.testing.assert_close(gw, expected)


def test_one_dimensional_weight_is_normalized(backend_name, on_device):
    m = nn.Module()
    m.weight = nn.Parameter(torch.tensor([3.0, 4.0], dtype=D64))
    spectral_norm(m)
    torch.testing.assert_close(m.weight, torch.tensor([0.6, 0.8], dtype=D64))
    assert not hasattr(m.parametrizations.weight[0], "_u")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_reduced_precision_weights_iterate_in_float32(backend_name, on_device, dtype):
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
def test_state_dict_interchange_both_ways(backend_name, on_device, kind):
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


def test_loads_legacy_spectral_norm_checkpoint(backend_name, on_device):
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
        (twice_after_legacy, ValueError, "already has the legacy torch.nn.utils.spectral_norm"),
        (lambda: spectral_norm(nn.Linear(3, 4).to(torch.complex32)), TypeError, "complex64, complex128"),
        (lambda: remove_spectral_norm(nn.Linear(3, 4), name="weight"), ValueError, "spectral_norm of 'weight' not found"),
        (lambda: remove_spectral_norm(P.spectral_norm(nn.Linear(3, 4)), "weight"), ValueError, "not found"),
        (lambda: remove_spectral_norm(spectral_norm(nn.Linear(3, 4)), name=0), TypeError, "name must be a str"),
        (lambda: spectral_norm(int_weight_module()), TypeError, r"weight must have a floating \(float16, bfloat16, float32, float64\) or complex"),
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
def test_bad_input(backend_name, device, call, error, match):
    # Checked once, in the public layer: the same error with the same words on every backend.
    with torch.device(device), pytest.raises(error, match=match):
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


def test_apply_and_remove_spectral_norm(backend_name, on_device):
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


def test_once_per_step_mode(backend_name, on_device):
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


def test_once_per_step_recomputes_sigma_when_weight_changes(backend_name, on_device):
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


def test_parametrize_cached_matches_torch(backend_name, on_device):
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


# ------------------------------------------------------------------------------------------------
# The behaviours PyTorch's own spectral-norm tests check (test/nn/test_parametrization.py for the
# parametrization, test/test_nn.py for the legacy hook), ported as our own tests
# ------------------------------------------------------------------------------------------------


def test_structure_of_the_parametrization():
    m = spectral_norm(nn.Linear(5, 7).double())
    sn = m.parametrizations.weight[0]
    assert sn._u.shape == (7,) and sn._v.shape == (5,)
    assert "original" in m.parametrizations.weight._parameters  # trainable
    assert "_u" in sn._buffers and "_v" in sn._buffers
    assert "weight" not in m._buffers and "weight" not in m._parameters  # a plain attribute
    original = m.parametrizations.weight.original
    assert original.shape == m.weight.shape and original.stride() == m.weight.stride()
    m = torch.nn.utils.parametrize.remove_parametrizations(m, "weight")
    assert not hasattr(m, "parametrizations") and "weight" in m._parameters


def test_registering_twice_stacks_like_torch(backend_name, device):
    """Two spectral norms on one weight stack (torch: "We can register spectral_norm multiple times
    on the same parameter"), seed for seed with torch's stack; one on the 1-D bias too."""
    base = nn.Linear(6, 5).double().to(device)
    stacks = []
    for sn in (P.spectral_norm, spectral_norm):
        torch.manual_seed(4)
        m = sn(sn(copy.deepcopy(base)))
        sn(m, "bias")
        stacks.append(m)
    a, b = stacks
    assert len(b.parametrizations.weight) == 2 and len(b.parametrizations.bias) == 1
    for pa, pb in zip(a.parametrizations.weight, b.parametrizations.weight):
        torch.testing.assert_close(pb._u, pa._u, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(pb._v, pa._v, rtol=1e-9, atol=1e-12)
    x = layer_input("linear")[:, :6].to(device)
    for _ in range(2):
        torch.testing.assert_close(b(x), a(x), rtol=1e-9, atol=1e-12)
    # Removing the bias's leaves the weight parametrized; removing the weight's leaves nothing.
    remove_spectral_norm(b, "bias")
    assert "bias" in b._parameters and torch.nn.utils.parametrize.is_parametrized(b, "weight")
    remove_spectral_norm(b, name="weight")
    assert not torch.nn.utils.parametrize.is_parametrized(b) and "weight" in b._parameters


def test_complex_weights_like_torch(backend_name, device):
    # A diagonal weight is divided by its largest |entry| (torch's test_new_spectral_norm_value;
    # fixed seeds whose two |entries| differ enough for 15 warm-up iterations to converge). The
    # layer is registered on the CPU, where the seeds were chosen (its u, v drawn from the CPU
    # generator), then moved: the check itself runs a training forward on the device.
    for seed, dtype in ((0, torch.complex64), (3, torch.complex128)):
        torch.manual_seed(seed)
        m = nn.Linear(2, 2, dtype=dtype)
        with torch.no_grad():
            diagonal = torch.diagonal(m.weight).clone()
            m.weight = nn.Parameter(torch.diag(diagonal))
            spectral_norm(m).to(device)
            torch.testing.assert_close(m.weight.cpu(), torch.diag(diagonal / diagonal.abs().max()))
    # Seed for seed with torch on a random complex layer, both registered on the device (u, v from
    # its generator): vectors, training and eval forwards, gradient.
    base = nn.Linear(5, 4, dtype=torch.complex128).to(device)
    torch.manual_seed(8)
    a = P.spectral_norm(copy.deepcopy(base))
    torch.manual_seed(8)
    b = spectral_norm(copy.deepcopy(base))
    x = torch.randn(3, 5, dtype=torch.complex128, generator=torch.Generator().manual_seed(1)).to(device)
    for _ in range(2):
        torch.testing.assert_close(b(x), a(x), rtol=1e-9, atol=1e-12)
    for name in ("_u", "_v"):
        torch.testing.assert_close(getattr(b.parametrizations.weight[0], name), getattr(a.parametrizations.weight[0], name))
    grads = [torch.autograd.grad(m(x).abs().sum(), m.parametrizations.weight.original)[0] for m in (a, b)]
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-9)
    a.eval(), b.eval()
    torch.testing.assert_close(b(x), a(x), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="stacked or complex"):
        SpectralNormStep(b)


def test_training_updates_vectors_and_gradients_reach_the_original(backend_name, device):
    for requires_grad in (True, False):
        m = nn.Linear(3, 4).double().to(device)
        m.weight.requires_grad_(requires_grad)
        m = spectral_norm(m)
        sn = m.parametrizations.weight[0]
        u0, v0 = sn._u.clone(), sn._v.clone()
        x = torch.randn(2, 3, dtype=D64).to(device)
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        m(x).sum().backward()
        opt.step()
        out = m(x)
        if requires_grad:
            assert not torch.equal(u0, sn._u) and not torch.equal(v0, sn._v)
            torch.autograd.grad(out.sum(), m.parametrizations.weight.original)
        saved_u, saved_v = sn._u.clone(), sn._v.clone()

        def two_forwards(inp):  # u, v reset so that every evaluation sees the same function
            sn._u.data.copy_(saved_u)
            sn._v.data.copy_(saved_v)
            return m(inp) + m(inp)

        assert torch.autograd.gradcheck(two_forwards, (x.clone().requires_grad_(),))

        def mixed_modes(inp):
            sn._u.data.copy_(saved_u)
            sn._v.data.copy_(saved_v)
            outs = []
            for train in (True, False, True, False):
                m.train(train)
                outs.append(m(inp))
            return sum(outs)

        assert torch.autograd.gradcheck(mixed_modes, (x.clone().requires_grad_(),))


def test_eval_reuses_the_last_training_state_and_removal_keeps_the_output(backend_name, device):
    m = spectral_norm(nn.Linear(3, 4).double().to(device))
    sn = m.parametrizations.weight[0]
    x = torch.randn(2, 3, dtype=D64).to(device)
    m(x)
    last_train = m(x)
    u, v = sn._u.clone(), sn._v.clone()
    m.eval()
    for _ in range(2):  # the same σ from the same vectors (by another kernel pass: not to the last bit)
        torch.testing.assert_close(m(x), last_train, rtol=1e-12, atol=1e-12)
    assert torch.equal(sn._u, u) and torch.equal(sn._v, v)
    for cycles in range(2):  # register, run, remove (eval: no extra iteration) — twice
        before = m(x).detach()
        remove_spectral_norm(m, "weight")
        torch.testing.assert_close(m(x), before, rtol=1e-12, atol=1e-12)
        spectral_norm(m)
        m.train()
        for _ in range(3):
            m(x)
        m.eval()


def test_load_state_dict_non_strict_and_rewrapping(backend_name, device):
    """torch's test_new_spectral_norm_load_state_dict: non-strict loading of partial dicts, and the
    same outputs after remove + re-register + load, in eval/train/train/eval order."""
    x = torch.randn(2, 3).to(device)
    for activate_times in (0, 3):
        snm = spectral_norm(nn.Linear(3, 5).to(device))
        for _ in range(activate_times):
            snm(x)
        state = copy.deepcopy(snm.state_dict())
        assert set(state) == {"parametrizations.weight.original", "bias", "parametrizations.weight.0._u", "parametrizations.weight.0._v"}
        partial = copy.deepcopy(state)
        partial["nonsense"] = "nonsense"
        with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "nonsense"'):
            snm.load_state_dict(partial, strict=True)
        for key in ("parametrizations.weight.original", "parametrizations.weight.0._u", "parametrizations.weight.0._v", "bias"):
            snm.load_state_dict(partial, strict=False)
            del partial[key]
        snm.load_state_dict(partial, strict=False)

        def outputs(m):
            with torch.no_grad():
                results = []
                for train in (False, True, True, False):
                    m.train(train)
                    results.append(m(x))
                return results

        snm = spectral_norm(remove_spectral_norm(snm, "weight"))
        snm.load_state_dict(state)
        expected = outputs(snm)
        snm = spectral_norm(remove_spectral_norm(snm, "weight"))
        snm.load_state_dict(state)
        for got, want in zip(outputs(snm), expected):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def legacy_checkpoint(activate_times, device="cpu"):
    """A legacy torch.nn.utils.spectral_norm Linear on ``device`` after ``activate_times`` training
    forwards: the module, its input, its current state_dict, and the oldest format of it (no version
    metadata, no weight_v, the normalized weight stored), crafted as torch's
    test_spectral_norm_load_state_dict does."""
    torch.manual_seed(2)
    legacy = torch.nn.utils.spectral_norm(nn.Linear(3, 5).double().to(device))
    x = torch.randn(4, 3, dtype=D64).to(device)
    for _ in range(activate_times):
        legacy(x)
    latest = copy.deepcopy(legacy.state_dict())
    oldest = copy.deepcopy(latest)
    del oldest._metadata[""]["spectral_norm"]
    del oldest["weight_v"]
    oldest["weight"] = legacy.weight.detach().clone()
    return legacy, x, latest, oldest


@pytest.mark.parametrize("prefixed", [False, True])
def test_loads_the_oldest_legacy_checkpoint_format(backend_name, device, prefixed):
    legacy, x, latest, oldest = legacy_checkpoint(activate_times=3, device=device)
    legacy.eval()
    expected = legacy(x)
    # torch itself loads it into a legacy layer:
    reloaded = torch.nn.utils.spectral_norm(nn.Linear(3, 5).double().to(device))
    reloaded.load_state_dict(oldest)
    torch.testing.assert_close(reloaded.eval()(x), expected)
    for state in (oldest, latest):
        layer = spectral_norm(nn.Linear(3, 5).double().to(device))
        model = nn.Sequential(nn.Identity(), layer) if prefixed else layer
        if prefixed:
            state = {"1." + k: v for k, v in state.items()}
        result = model.load_state_dict(state)  # strict: nothing missing, nothing unexpected
        assert not result.missing_keys and not result.unexpected_keys
        torch.testing.assert_close(layer.eval()(x), expected, rtol=1e-9, atol=1e-12)


def test_oldest_format_without_the_normalized_weight_reports_missing_keys():
    _, _, _, oldest = legacy_checkpoint(activate_times=1)
    del oldest["weight"]
    layer = spectral_norm(nn.Linear(3, 5).double())
    with pytest.raises(RuntimeError, match="Missing key.*parametrizations.weight.0._v"):
        layer.load_state_dict(oldest)


def fastgp_hooks(module):
    sn_module = importlib.import_module("fastgp.nn.spectral_norm")  # the module, not the function
    return [h for h in module._load_state_dict_pre_hooks.values() if isinstance(getattr(h, "hook", h), sn_module._LegacyLoadHook)]


def test_remove_spectral_norm_removes_the_load_hook():
    m = nn.Linear(3, 4)
    hooks_before = len(m._load_state_dict_pre_hooks)
    for _ in range(3):
        spectral_norm(spectral_norm(m))  # stacked: still one hook per weight
        assert len(fastgp_hooks(m)) == 1
        remove_spectral_norm(m, "weight")
    assert len(m._load_state_dict_pre_hooks) == hooks_before and not fastgp_hooks(m)
    spectral_norm(m)
    remove_spectral_norm(m)  # the whole-model form removes it too
    assert not fastgp_hooks(m)


def test_mixed_model_removes_only_fastgp_spectral_norms():
    model = nn.Sequential(P.spectral_norm(nn.Linear(3, 4)), nn.ReLU(), spectral_norm(nn.Linear(4, 2)))
    torch_hooks = len(model[0]._load_state_dict_pre_hooks)
    remove_spectral_norm(model)
    assert torch.nn.utils.parametrize.is_parametrized(model[0], "weight")  # torch's stays
    assert len(model[0]._load_state_dict_pre_hooks) == torch_hooks
    assert not torch.nn.utils.parametrize.is_parametrized(model[2]) and not fastgp_hooks(model[2])
    # A weight whose parametrizations mix both: refused, and nothing is removed.
    mixed = nn.Sequential(spectral_norm(nn.Linear(3, 3)), P.spectral_norm(spectral_norm(nn.Linear(3, 3))))
    with pytest.raises(ValueError, match="also has other parametrizations"):
        remove_spectral_norm(mixed)
    assert all(torch.nn.utils.parametrize.is_parametrized(layer, "weight") for layer in mixed)


def test_conv_transpose_vectors_refer_to_dim_1_and_naive_forward(backend_name, device):
    m = spectral_norm(nn.ConvTranspose2d(3, 4, (5, 6)).to(device))
    m(torch.randn(2, 3, 10, 12).to(device))
    assert m.parametrizations.weight[0]._u.shape == m.parametrizations.weight.original[0, :, 0, 0].shape
    # One training forward is u = normalize(W v), v = normalize(Wᵀ u), then W / (uᵀ W v): the
    # oracle on the CPU, in float64, from the layer's weight and v before that forward.
    lin = spectral_norm(nn.Linear(5, 7).double().to(device))
    weight = lin.parametrizations.weight.original.detach().cpu()
    v = lin.parametrizations.weight[0]._v.clone().cpu()
    u = torch.nn.functional.normalize(weight @ v, dim=0, eps=1e-12)
    v = torch.nn.functional.normalize(weight.t() @ u, dim=0, eps=1e-12)
    x = torch.randn(3, 5, dtype=D64)
    expected = torch.nn.functional.linear(x, weight / torch.dot(u, weight @ v), lin.bias.detach().cpu())
    torch.testing.assert_close(lin(x.to(device)).cpu(), expected, rtol=1e-9, atol=1e-12)
