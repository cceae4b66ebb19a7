"""fastgp.nn.utils.spectral_norm (the legacy hook-based API) against torch.nn.utils.spectral_norm.

Two parts:
- PyTorch's own tests of the legacy function (test/test_nn.py, TestNN.test_spectral_norm,
  test_spectral_norm_load_state_dict, test_spectral_norm_dim, test_spectral_norm_forward,
  test_spectral_norm_pickle; read at pytorch/pytorch 74f2fa66), rewritten in our style. Each runs
  against fastgp's implementation AND, as a control that the port still tests what torch's test
  tests, against torch's (the ``legacy`` fixture), on every backend of the device.
- Seed for seed with torch: the same generator state gives the same u, v, then the same vectors,
  weights, outputs and gradients (first and second order) to rounding; checkpoints both ways;
  the interplay of both implementations' hooks; what is refused.
"""

import copy
import pickle
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck
from torch.nn.utils.spectral_norm import SpectralNorm as TorchSpectralNorm

import fastgp
import fastgp.nn
from fastgp.nn import utils as fastgp_utils
from helpers import tolerances

D64 = torch.float64
TIGHT = dict(rtol=1e-10, atol=1e-12)  # float64, two orders of summation

IMPLEMENTATIONS = {
    "torch": SimpleNamespace(spectral_norm=torch.nn.utils.spectral_norm, remove=torch.nn.utils.remove_spectral_norm),
    "fastgp": SimpleNamespace(spectral_norm=fastgp_utils.spectral_norm, remove=fastgp_utils.remove_spectral_norm),
}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def legacy(request):
    """The implementation under test: fastgp's, or torch's as the control of the ported tests."""
    return IMPLEMENTATIONS[request.param]


def randn(*shape, seed=0, dtype=D64):
    """Drawn on the CPU from its own generator (the same values on every device), then moved."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).to(torch.get_default_device())


# ------------------------------------------------------------------------------------------------
# PyTorch's tests of the legacy function, ported
# ------------------------------------------------------------------------------------------------


def test_structure_removal_and_double_registration(legacy):
    """test_spectral_norm, first part: what apply registers, and what removing leaves."""
    m = legacy.spectral_norm(nn.Linear(5, 7).double())
    assert m.weight_u.shape == (m.weight.shape[0],)
    assert "weight_orig" in m._parameters  # trainable
    assert "weight_u" in m._buffers and "weight_v" in m._buffers
    assert "weight" not in m._buffers and "weight" not in m._parameters  # a plain attribute
    # ... sharing storage with weight_orig until the first forward
    assert m.weight.untyped_storage().data_ptr() == m.weight_orig.untyped_storage().data_ptr()
    assert m.weight.shape == m.weight_orig.shape and m.weight.stride() == m.weight_orig.stride()
    m = legacy.remove(m)
    assert not hasattr(m, "weight_orig") and not hasattr(m, "weight_u") and not hasattr(m, "weight_v")
    assert "weight" in m._parameters
    legacy.spectral_norm(m)
    with pytest.raises(RuntimeError, match="register two spectral_norm hooks"):
        legacy.spectral_norm(m)


@pytest.mark.parametrize("requires_grad", [True, False])
def test_training_eval_and_removal(legacy, backend_name, on_device, requires_grad):
    """test_spectral_norm, the CPU loop (the DataParallel half is test_data_parallel_on_gpus)."""
    m = nn.Linear(3, 4).double()
    m.weight.requires_grad_(requires_grad)
    m = legacy.spectral_norm(m)
    u0, v0 = m.weight_u.clone(), m.weight_v.clone()

    # Training: u and v are updated, and the gradient reaches weight_orig.
    x = randn(2, 3)
    out = m(x)
    assert not torch.equal(u0, m.weight_u) and not torch.equal(v0, m.weight_v)
    if requires_grad:
        torch.autograd.grad(out.sum(), m.weight_orig)

    # Backward through two training forwards (u, v reset so that every evaluation is one function).
    saved_u, saved_v = m.weight_u.clone(), m.weight_v.clone()

    def two_forwards(inp):
        m.weight_u.data.copy_(saved_u)
        m.weight_v.data.copy_(saved_v)
        return m(inp) + m(inp)

    assert gradcheck(two_forwards, (x.clone().requires_grad_(),), check_batched_grad=False)

    # Removing keeps the last output (no further iteration), also after several forwards.
    before = m(x)
    m = legacy.remove(m)
    torch.testing.assert_close(m(x), before, **TIGHT)
    m = legacy.spectral_norm(m)
    for _ in range(3):
        before = m(x)
    m = legacy.remove(m)
    torch.testing.assert_close(m(x), before, **TIGHT)

    # Eval: the output of the last training forward, and no update of u, v.
    m = legacy.spectral_norm(m)
    m(x)
    last_train = m(x)
    last_u, last_v = m.weight_u.clone(), m.weight_v.clone()
    m.zero_grad()
    m.eval()
    eval_out = m(x)
    torch.testing.assert_close(eval_out, last_train, **TIGHT)
    torch.testing.assert_close(m(x), eval_out, rtol=0, atol=0)
    assert torch.equal(m.weight_u, last_u) and torch.equal(m.weight_v, last_v)

    # Backward through forwards mixing training and eval modes.
    saved_u, saved_v = m.weight_u.clone(), m.weight_v.clone()

    def mixed_modes(inp):
        m.weight_u.data.copy_(saved_u)
        m.weight_v.data.copy_(saved_v)
        return sum(m.train(mode)(inp) for mode in (True, False, True, False))

    assert gradcheck(mixed_modes, (x.clone().requires_grad_(),))

    if requires_grad:  # the gradient reaches weight_orig in eval mode
        assert gradcheck(lambda weight: m(x), (m.weight_orig,))


def outputs_in_modes(m, x):
    """eval, train, train, eval (no_grad): torch's sequence in test_spectral_norm_load_state_dict."""
    with torch.no_grad():
        return [m.train(mode)(x) for mode in (False, True, True, False)]


@pytest.mark.parametrize("activate_times", [0, 3])
def test_load_state_dict_versions(legacy, backend_name, on_device, activate_times):
    """test_spectral_norm_load_state_dict: non-strict loading, the oldest (version None) format
    and the latest one with and without its metadata, re-wrapping between loads."""
    x = randn(2, 3, dtype=torch.float32)
    snm = legacy.spectral_norm(nn.Linear(3, 5)).train()
    for _ in range(activate_times):  # training forwards: u, v advance
        snm(x)
    latest_ref = copy.deepcopy(snm.state_dict())
    assert sorted(latest_ref) == ["bias", "weight_orig", "weight_u", "weight_v"]
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "nonsense"'):
        snm.load_state_dict({**latest_ref, "nonsense": "nonsense"}, strict=True)
    partial = copy.deepcopy(latest_ref)
    partial["nonsense"] = "nonsense"
    # Non-strict loading accepts the dict after each of torch's edits, applied one after another:
    # keys removed, W stored as a buffer (as the oldest format did), the version metadata removed.
    edits = [
        lambda d: None,
        lambda d: d.pop("weight_orig"),
        lambda d: d.pop("weight_u"),
        lambda d: d.pop("weight_v"),
        lambda d: d.__setitem__("weight", snm.weight.detach().clone()),
        lambda d: d._metadata[""].pop("spectral_norm"),
        lambda d: d.pop("weight"),
        lambda d: d.pop("bias"),
    ]
    for edit in edits:
        edit(partial)
        snm.load_state_dict(partial, strict=False)

    version_none = copy.deepcopy(latest_ref)  # crafted as the oldest format
    assert "spectral_norm" in version_none._metadata[""]
    del version_none._metadata[""]["spectral_norm"]
    del version_none["weight_v"]
    version_none["weight"] = snm.weight.detach().clone()

    for with_metadata in (True, False):
        latest = copy.deepcopy(latest_ref)
        if not with_metadata:  # a user-crafted dict without the metadata still loads as the latest
            del latest._metadata[""]["spectral_norm"]
        snm = legacy.spectral_norm(legacy.remove(snm))
        snm.load_state_dict(latest_ref)
        expected = outputs_in_modes(snm, x)

        snm = legacy.spectral_norm(legacy.remove(snm))
        snm.load_state_dict(version_none)
        if activate_times > 0:  # the oldest format is assumed to have gone through a forward
            for got, want in zip(outputs_in_modes(snm, x), expected):
                torch.testing.assert_close(got, want)

        snm = legacy.spectral_norm(legacy.remove(snm))
        snm.load_state_dict(latest)
        for got, want in zip(outputs_in_modes(snm, x), expected):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_dim_of_conv_transpose(legacy, backend_name, on_device):
    """test_spectral_norm_dim: ConvTranspose normalizes along dim 1 (its output channels)."""
    m = legacy.spectral_norm(nn.ConvTranspose2d(3, 4, (5, 6)))
    m(randn(2, 3, 10, 12, dtype=torch.float32))  # no incompatible shapes
    assert m.weight_u.shape == m.weight_orig[0, :, 0, 0].shape


def test_forward_is_the_naive_one(legacy, backend_name, on_device):
    """test_spectral_norm_forward: one training forward is v = normalize(Wᵀu), u = normalize(W v),
    then linear(x, W / (uᵀ W v)), from the layer's weight and u before that forward."""
    m = legacy.spectral_norm(nn.Linear(5, 7).double())
    weight, bias, u = m.weight_orig.detach().clone(), m.bias.detach(), m.weight_u.clone()
    v = F.normalize(torch.mv(weight.t(), u), dim=0, eps=1e-12)
    u = F.normalize(torch.mv(weight, v), dim=0, eps=1e-12)
    x = randn(3, 5)
    expected = F.linear(x, weight / torch.dot(u, torch.mv(weight, v)), bias)
    torch.testing.assert_close(m(x), expected, **TIGHT)


def test_pickle(legacy):
    """test_spectral_norm_pickle, and the pickled layer still normalizes as before."""
    m = legacy.spectral_norm(nn.Linear(5, 7).double())
    x = randn(3, 5)
    m(x)
    clone = pickle.loads(pickle.dumps(m))
    assert isinstance(clone, nn.Linear)
    torch.testing.assert_close(clone(x), m(x), rtol=0, atol=0)  # same state, same computation


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DataParallel needs two CUDA devices")
def test_data_parallel_on_gpus(legacy):
    """test_spectral_norm with apply_dp: the replica on device 0 updates the module's own u, v."""
    m = legacy.spectral_norm(nn.Linear(3, 4).to("cuda:0"))
    wrapped = nn.DataParallel(m, [0, 1])
    u0 = m.weight_u.clone()
    x = torch.randn(2, 3, device="cuda:0")
    wrapped(x)
    assert not torch.equal(u0, m.weight_u)
    wrapped(x)
    last_train = wrapped(x)
    wrapped.eval()
    torch.testing.assert_close(wrapped(x), last_train, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Seed for seed with torch's legacy implementation
# ------------------------------------------------------------------------------------------------


def make_layer(kind, dtype=D64):
    layers = {
        "linear": lambda: nn.Linear(12, 9),
        "conv1d": lambda: nn.Conv1d(3, 5, 3),
        "conv2d": lambda: nn.Conv2d(3, 6, 3),
        "conv2d-wide": lambda: nn.Conv2d(16, 4, 3),  # more columns than rows
        "conv2d-channels-last": lambda: nn.Conv2d(3, 6, 3).to(memory_format=torch.channels_last),
        "conv3d": lambda: nn.Conv3d(2, 4, 2),
        "convt2d": lambda: nn.ConvTranspose2d(4, 3, 3),
        "convt3d": lambda: nn.ConvTranspose3d(2, 3, 2),
    }
    return layers[kind]().to(dtype)


def layer_input(kind, dtype=D64):
    shapes = {"linear": (4, 12), "conv1d": (2, 3, 8), "conv2d": (2, 3, 6, 6), "conv2d-channels-last": (2, 3, 6, 6),
              "conv2d-wide": (2, 16, 5, 5),
              "conv3d": (2, 2, 4, 4, 4), "convt2d": (2, 4, 5, 5), "convt3d": (2, 2, 3, 3, 3)}
    return randn(*shapes[kind], seed=7, dtype=dtype)


def twins(kind, dtype=D64, **kwargs):
    """(torch's, fastgp's) legacy spectral norm on copies of one layer, registered with one seed."""
    base = make_layer(kind, dtype)
    torch.manual_seed(123)
    a = torch.nn.utils.spectral_norm(copy.deepcopy(base), **kwargs)
    torch.manual_seed(123)
    b = fastgp_utils.spectral_norm(copy.deepcopy(base), **kwargs)
    return a, b


def assert_same_state(a, b, name="weight", **tol):
    for suffix in ("_u", "_v"):
        torch.testing.assert_close(getattr(b, name + suffix), getattr(a, name + suffix), **tol)


KINDS = ["linear", "conv1d", "conv2d", "conv2d-channels-last", "conv2d-wide", "conv3d", "convt2d", "convt3d"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_power_iterations", [1, 3])
def test_matches_torch_training_and_eval(backend_name, on_device, kind, n_power_iterations):
    a, b = twins(kind, n_power_iterations=n_power_iterations)
    hook = next(h for h in b._forward_pre_hooks.values() if isinstance(h, fastgp_utils.SpectralNorm))
    assert hook.dim == (1 if kind.startswith("convt") else 0)
    if kind == "conv2d-channels-last":  # the matrix view of such a weight is a copy
        assert b.weight_orig.is_contiguous(memory_format=torch.channels_last) and not b.weight_orig.is_contiguous()
    assert set(a.state_dict()) == set(b.state_dict())
    # The same draws by the same torch ops (no iteration at registration): equal, not just close.
    assert torch.equal(a.weight_u, b.weight_u) and torch.equal(a.weight_v, b.weight_v)
    x = layer_input(kind)
    for _ in range(3):  # every training forward advances u, v in place
        torch.testing.assert_close(b(x), a(x), **TIGHT)
        torch.testing.assert_close(b.weight, a.weight, **TIGHT)
        assert_same_state(a, b, **TIGHT)
    a.eval(), b.eval()
    u, v = b.weight_u.clone(), b.weight_v.clone()
    torch.testing.assert_close(b(x), a(x), **TIGHT)
    assert torch.equal(b.weight_u, u) and torch.equal(b.weight_v, v)  # eval: stored vectors, no update


@pytest.mark.parametrize("kind", ["linear", "conv2d", "conv2d-channels-last", "convt2d"])
def test_gradients_match_torch(backend_name, on_device, kind):
    """D(real) and D(fake) before one backward (the vectors of each forward are its own), and a
    gradient penalty through the layer (second order: the gradient of a gradient)."""
    a, b = twins(kind)
    real, fake = layer_input(kind), randn(*layer_input(kind).shape, seed=3)
    grads = []
    for m in (a, b):
        loss = F.softplus(-m(real)).mean() + F.softplus(m(fake)).mean()
        grads.append(torch.autograd.grad(loss, [m.weight_orig, m.bias]))
    for ga, gb in zip(*grads):
        torch.testing.assert_close(gb, ga, **TIGHT)
    assert_same_state(a, b, **TIGHT)
    grads = []
    for m in (a, b):
        x = fake.clone().requires_grad_()
        (g,) = torch.autograd.grad(m(x).sum(), x, create_graph=True)
        grads.append(torch.autograd.grad(g.square().sum(), m.weight_orig))  # the bias is not on that path
    for ga, gb in zip(*grads):
        torch.testing.assert_close(gb, ga, **TIGHT)
    # A gradient of the gradient with respect to the weight itself (create_graph through W/σ).
    grads = []
    for m in (a, b):
        (g,) = torch.autograd.grad(m(real).square().sum(), m.weight_orig, create_graph=True)
        grads.append(torch.autograd.grad(g.square().sum(), m.weight_orig))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n_power_iterations", [1, 3])
def test_matches_torch_in_lower_precision(backend_name, on_device, dtype, n_power_iterations):
    """With more than one iteration, float16/bfloat16 iterate in float32 in the fused kernel
    (torch rounds every step to the weight's dtype): the two agree to the dtype's rounding."""
    a, b = twins("conv2d-wide", dtype=dtype, n_power_iterations=n_power_iterations)
    x = layer_input("conv2d-wide", dtype)
    tol = tolerances(dtype)
    for _ in range(3):
        torch.testing.assert_close(b(x), a(x), **tol)
        assert_same_state(a, b, **tol)
    grads = [torch.autograd.grad(m(x).float().square().mean(), m.weight_orig)[0] for m in (a, b)]
    torch.testing.assert_close(grads[1], grads[0], **tol)


def test_vector_weight_and_negative_dim_match_torch(backend_name, on_device):
    """A 1-D parameter (torch's matrix view is a column [h, 1]); dim counted from the end."""
    base = nn.Linear(5, 6).double()
    torch.manual_seed(5)
    a = torch.nn.utils.spectral_norm(copy.deepcopy(base), name="bias")
    torch.manual_seed(5)
    b = fastgp_utils.spectral_norm(copy.deepcopy(base), name="bias")
    x = randn(3, 5)
    for _ in range(2):
        torch.testing.assert_close(b(x), a(x), **TIGHT)
    assert_same_state(a, b, name="bias", **TIGHT)
    grads = [torch.autograd.grad(m(x).square().sum(), m.bias_orig, create_graph=True)[0] for m in (a, b)]
    torch.testing.assert_close(grads[1], grads[0], **TIGHT)
    second = [torch.autograd.grad(g.square().sum(), m.bias_orig)[0] for g, m in zip(grads, (a, b))]
    torch.testing.assert_close(second[1], second[0], **TIGHT)

    a, b = twins("convt2d", dim=1)
    torch.manual_seed(123)  # torch's legacy function does not take a negative dim: fastgp's alone
    c = fastgp_utils.spectral_norm(make_layer("convt2d"), dim=-3)
    c.load_state_dict(b.state_dict())
    x = layer_input("convt2d")
    for _ in range(2):
        torch.testing.assert_close(c(x), a(x), **TIGHT)


# ------------------------------------------------------------------------------------------------
# Checkpoints both ways, and both implementations on one model
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["torch->fastgp", "fastgp->torch"])
def test_checkpoints_load_both_ways(backend_name, on_device, direction):
    source_impl, target_impl = direction.split("->")
    source = IMPLEMENTATIONS[source_impl].spectral_norm(nn.Conv2d(3, 6, 3).double())
    x = layer_input("conv2d")
    for _ in range(3):
        source(x)
    state = source.state_dict()
    assert state._metadata[""]["spectral_norm"] == {"weight.version": 1}
    target = IMPLEMENTATIONS[target_impl].spectral_norm(nn.Conv2d(3, 6, 3).double())
    result = target.load_state_dict(state)  # strict
    assert not result.missing_keys and not result.unexpected_keys
    source.eval(), target.eval()
    torch.testing.assert_close(target(x), source(x), **TIGHT)
    source.train(), target.train()
    torch.testing.assert_close(target(x), source(x), **TIGHT)
    torch.testing.assert_close(target.weight_u, source.weight_u, **TIGHT)


def test_hooks_of_both_implementations_know_each_other():
    # torch's remove_spectral_norm removes fastgp's hook (a subclass of torch's) and its state-dict
    # hook, and leaves the load_state_dict pre-hook exactly as it leaves its own (registered
    # wrapped, it escapes the isinstance test of torch's removal; it then only sees dicts without
    # the keys it converts).
    hooks_left = []
    for impl in IMPLEMENTATIONS.values():
        m = impl.spectral_norm(nn.Linear(4, 3))
        torch.nn.utils.remove_spectral_norm(m)
        assert not m._forward_pre_hooks and "weight" in m._parameters and "weight_orig" not in m._parameters
        hooks_left.append((len(m._state_dict_hooks), len(m._load_state_dict_pre_hooks)))
    assert hooks_left[0] == hooks_left[1]
    # fastgp's removes torch's; neither registers a second hook on a weight that has the other's.
    m = torch.nn.utils.spectral_norm(nn.Linear(4, 3))
    with pytest.raises(RuntimeError, match="register two spectral_norm hooks"):
        fastgp_utils.spectral_norm(m)
    fastgp_utils.remove_spectral_norm(m)
    assert not m._forward_pre_hooks and "weight" in m._parameters
    fastgp_utils.spectral_norm(m)
    with pytest.raises(RuntimeError, match="register two spectral_norm hooks"):
        torch.nn.utils.spectral_norm(m)
    # ... nor does the parametrization drop-in on a weight that has the legacy hook.
    with pytest.raises(ValueError, match="already has the legacy"):
        fastgp.nn.spectral_norm(m)
    # Two weights of one module: each has its own hook, removed by name.
    fastgp_utils.spectral_norm(m, "bias")
    fastgp_utils.remove_spectral_norm(m, "bias")
    assert "bias" in m._parameters and "weight_orig" in m._parameters
    with pytest.raises(ValueError, match="spectral_norm of 'bias' not found"):
        fastgp_utils.remove_spectral_norm(m, "bias")


# ------------------------------------------------------------------------------------------------
# DataParallel replicas, deepcopy
# ------------------------------------------------------------------------------------------------


def test_replica_updates_the_module_vectors_like_torch(backend_name, on_device):
    """DataParallel's replica on device 0 shares the module's buffers (torch's comment in
    compute_weight): the in-place update must reach the module. Replicated on the CPU as
    DataParallel does it (``_replicate_for_data_parallel``: a new module object, the same tensors)."""
    a, b = twins("conv2d")
    x = layer_input("conv2d")
    for m in (a, b):
        buffers = (m.weight_u, m.weight_v)
        before = [t.clone() for t in buffers]
        replica = m._replicate_for_data_parallel()
        for key, param in m._parameters.items():  # device 0's broadcast: an alias, not a leaf
            setattr(replica, key, param.view_as(param))
        replica(x)
        assert m.weight_u is buffers[0] and m.weight_v is buffers[1]
        assert not torch.equal(m.weight_u, before[0]) and not torch.equal(m.weight_v, before[1])
    assert_same_state(a, b, **TIGHT)


def test_deepcopy_like_torch(backend_name, on_device):
    """A copy (an EMA of D) can be made before the first forward or after a no_grad one, and then
    iterates on its own vectors; after a forward with autograd, module.weight is a non-leaf tensor
    that deepcopy refuses, for torch's and for fastgp's alike."""
    a, b = twins("linear")
    x = layer_input("linear")
    copies = [copy.deepcopy(m) for m in (a, b)]
    with torch.no_grad():
        a(x), b(x)
    copies += [copy.deepcopy(m) for m in (a, b)]
    u = b.weight_u.clone()
    for copied in copies:
        copied(x)
    assert torch.equal(b.weight_u, u)  # the copies iterate on their own vectors
    torch.testing.assert_close(copies[1](x), copies[0](x), **TIGHT)
    torch.testing.assert_close(copies[3](x), copies[2](x), **TIGHT)
    for m in (a, b):
        m(x)
        with pytest.raises(RuntimeError, match="Only Tensors created explicitly by the user"):
            copy.deepcopy(m)


# ------------------------------------------------------------------------------------------------
# Refused inputs
# ------------------------------------------------------------------------------------------------


def scalar_parameter_module():
    m = nn.Linear(3, 4)
    m.scale = nn.Parameter(torch.tensor(2.0))
    return m


@pytest.mark.parametrize("make, kwargs, error, message", [
    (lambda: nn.Linear(3, 4, dtype=torch.complex64), {}, TypeError, "transposes without conjugating"),
    (lambda: nn.Embedding(4, 3).requires_grad_(False).to(torch.float64), {"name": "nonexistent"}, ValueError,
     "has no parameter named 'nonexistent'"),
    (lambda: nn.Linear(3, 4, bias=False), {"name": "bias"}, ValueError, "parameter `bias` is None"),
    (lambda: nn.LazyLinear(4), {}, ValueError, "uninitialized parameters"),
    (lambda: nn.Linear(3, 4), {"n_power_iterations": 0}, ValueError, "Expected n_power_iterations to be positive"),
    (lambda: nn.Linear(3, 4), {"n_power_iterations": 1.0}, TypeError, "n_power_iterations must be an int"),
    (lambda: nn.Linear(3, 4), {"eps": 0.0}, ValueError, "eps must be > 0"),
    (lambda: nn.Linear(3, 4), {"dim": 2}, ValueError, r"dim must be in \[-2, 1\]"),
    (lambda: nn.Linear(3, 4), {"dim": "0"}, TypeError, "dim must be an int"),
    (lambda: nn.Linear(3, 4), {"name": 0}, TypeError, "name must be a str"),
    (lambda: fastgp.nn.spectral_norm(nn.Linear(3, 4)), {}, ValueError, "it is parametrized"),
    (lambda: scalar_parameter_module(), {"name": "scale"}, ValueError, "at least one dimension"),
])
def test_refuses_bad_inputs(make, kwargs, error, message):
    module = make()
    with pytest.raises(error, match=message):
        fastgp_utils.spectral_norm(module, **kwargs)
    assert not any(isinstance(h, TorchSpectralNorm)
                   for h in module._forward_pre_hooks.values())  # nothing registered
    assert not hasattr(module, "weight_orig")


def test_refuses_integer_weights_and_non_modules():
    m = nn.Linear(3, 4)
    m.weight = nn.Parameter(torch.zeros(4, 3, dtype=torch.int64), requires_grad=False)
    with pytest.raises(TypeError, match="weight must be float16, bfloat16, float32 or float64"):
        fastgp_utils.spectral_norm(m)
    for fn in (fastgp_utils.spectral_norm, fastgp_utils.remove_spectral_norm):
        with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
            fn(torch.zeros(3, 3))


@pytest.mark.parametrize("n_power_iterations", [1, 2, 5])
def test_kernel_runs_the_full_iterations_and_the_eval_sigma(monkeypatch, n_power_iterations):
    """A training forward gives the kernel the n − 1 full iterations between the two half steps
    (none when n = 1); an eval forward takes σ = uᵀ W v from it (0 iterations)."""
    from fastgp.reference import spectral as reference

    calls = []
    original = reference.spectral_power_iteration

    def counting(weight, u, v, n_iterations, eps):
        calls.append((tuple(weight.shape), n_iterations))
        return original(weight, u, v, n_iterations, eps)

    monkeypatch.setattr(reference, "spectral_power_iteration", counting)
    with fastgp.use_backend("reference"):
        m = fastgp_utils.spectral_norm(nn.Conv2d(3, 6, 3).double(), n_power_iterations=n_power_iterations)
        x = layer_input("conv2d")
        m(x)
        assert calls == ([((6, 27), n_power_iterations - 1)] if n_power_iterations > 1 else [])
        calls.clear()
        m.eval()(x)
        assert calls == [((6, 27), 0)]


@pytest.mark.parametrize("n_power_iterations", [1, 3])
def test_torch_compile_matches_torch_eager(n_power_iterations):
    """A model with fastgp's legacy hooks under torch.compile (aot_eager: Dynamo traces the hook,
    the kernel dispatch and the in-place updates of the buffers) follows torch's eager layers."""
    torch._dynamo.reset()
    a, b = twins("conv2d", n_power_iterations=n_power_iterations)
    compiled = torch.compile(b, backend="aot_eager")
    x = layer_input("conv2d")
    for _ in range(2):
        torch.testing.assert_close(compiled(x), a(x), **TIGHT)
        assert_same_state(a, b, **TIGHT)
    a.eval(), b.eval()
    torch.testing.assert_close(compiled(x), a(x), **TIGHT)
