"""The public gradient-penalty API: values, gradients of every order, bad input, lazy R1, AMP."""

import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck, gradgradcheck

import fastgp
from fastgp.reference.penalty import gradient_penalty_reference
from helpers import devices, make

KINDS = list(fastgp.KINDS)
INTERPOLATING = [k for k, spec in fastgp.KINDS.items() if spec.point == "interpolate"]


# ------------------------------------------------------------------------------------------
# Discriminators of every input rank (smooth activations: second derivatives are non-trivial)
# ------------------------------------------------------------------------------------------


class ConvD(nn.Module):
    def __init__(self, channels=3, out_shape=()):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 6, 3, padding=1), nn.Softplus(), nn.Conv2d(6, 4, 3, stride=2), nn.Tanh()
        )
        self.head = nn.LazyLinear(1)
        self.out_shape = out_shape

    def forward(self, x):
        out = self.head(self.body(x).flatten(1))
        return out if self.out_shape == (1,) else out.squeeze(1)


class MLPD(nn.Module):
    """A conditional discriminator: D(x, label, scale=...)."""

    def __init__(self, dim=7, classes=3):
        super().__init__()
        self.embed = nn.Embedding(classes, dim)
        self.net = nn.Sequential(nn.Linear(dim, 16), nn.Softplus(), nn.Linear(16, 1))

    def forward(self, x, label, scale=1.0):
        return scale * self.net(x * self.embed(label)).squeeze(1)


class SeqD(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(2, 4, 3), nn.Tanh(), nn.Flatten(), nn.LazyLinear(1))

    def forward(self, x):
        return self.net(x)


def make_problem(name, dtype=torch.float64, device="cpu"):
    torch.manual_seed(0)
    if name == "image":
        D, shape, args, kwargs = ConvD(), (5, 3, 8, 8), (), {}
    elif name == "image-b1":
        D, shape, args, kwargs = ConvD(out_shape=(1,)), (4, 3, 8, 8), (), {}
    elif name == "channels_last":
        D, shape, args, kwargs = ConvD(), (4, 3, 8, 8), (), {}
    elif name == "vector-conditional":
        D, shape = MLPD(), (6, 7)
        args, kwargs = (torch.tensor([0, 1, 2, 0, 1, 2], device=device),), {"scale": 0.7}
    elif name == "sequence":
        D, shape, args, kwargs = SeqD(), (4, 2, 9), (), {}
    else:
        raise AssertionError(name)
    layout = "channels_last" if name == "channels_last" else "contiguous"
    real = make(shape, dtype, layout, seed=1, device=device)
    fake = make(shape, dtype, layout, seed=2, device=device)
    D = D.to(device, dtype)
    D(real, *args, **kwargs)  # materialize lazy layers
    return D, real, fake, args, kwargs


def param_grads(D):
    # A bias right before the output gets no gradient from an input-gradient penalty.
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in D.parameters()]


PROBLEMS = ["image", "image-b1", "channels_last", "vector-conditional", "sequence"]


# ------------------------------------------------------------------------------------------
# Values and D-parameter gradients against the hand-written reference, float64, 1e-6
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("problem", PROBLEMS)
def test_gradient_penalty_matches_reference(backend_name, device, kind, problem):
    D, real, fake, args, kwargs = make_problem(problem, device=device)
    alpha = torch.rand(real.shape[0], dtype=torch.float64, device=device) if kind in INTERPOLATING else None
    common = dict(kind=kind, weight=3.0, alpha=alpha, d_args=args, d_kwargs=kwargs)

    value = fastgp.gradient_penalty(D, real, fake, generator=torch.Generator(device).manual_seed(9), **common)
    value.backward()
    got = param_grads(D)
    D.zero_grad()
    expected_value = gradient_penalty_reference(D, real, fake, generator=torch.Generator(device).manual_seed(9), **common)
    expected_value.backward()
    expected = param_grads(D)

    assert value.shape == () and value.dtype == torch.float64
    torch.testing.assert_close(value, expected_value, rtol=1e-6, atol=1e-9)
    for g, e in zip(got, expected):
        assert g.abs().sum() > 0 or e.abs().sum() == 0
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", ["wgan-gp", "r1", "lp"])
def test_gradient_penalty_float32_matches_reference(backend_name, device, kind):
    D, real, fake, args, kwargs = make_problem("image", torch.float32, device)
    alpha = torch.rand(real.shape[0], device=device) if kind in INTERPOLATING else None
    value = fastgp.gradient_penalty(D, real, fake, kind=kind, alpha=alpha)
    expected = gradient_penalty_reference(D, real, fake, kind=kind, alpha=alpha)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)


def test_return_per_sample_and_reductions(backend_name, device):
    D, real, fake, _, _ = make_problem("image", device=device)
    alpha = torch.rand(real.shape[0], dtype=torch.float64, device=device)
    total, per_sample = fastgp.gradient_penalty(D, real, fake, alpha=alpha, weight=2.0, return_per_sample=True)
    expected = gradient_penalty_reference(D, real, fake, alpha=alpha, weight=2.0, reduction="none")
    assert per_sample.shape == (real.shape[0],)
    torch.testing.assert_close(per_sample, expected)
    torch.testing.assert_close(total, expected.mean())
    max_gp, per_sample = fastgp.gradient_penalty(D, real, fake, kind="max-gp", alpha=alpha, return_per_sample=True)
    torch.testing.assert_close(max_gp, per_sample.max())


def test_r1_shared_forward_equals_separate_forward(backend_name, device):
    D, real, _, _, _ = make_problem("image", device=device)
    x = real.detach().requires_grad_(True)
    logits = D(x)
    loss = torch.nn.functional.softplus(-logits).mean()
    total = loss + fastgp.r1_penalty(logits, x, weight=5.0)
    total.backward()
    shared = param_grads(D)
    D.zero_grad()
    loss2 = torch.nn.functional.softplus(-D(real)).mean()
    (loss2 + fastgp.gradient_penalty(D, real, kind="r1", weight=5.0)).backward()
    for g, e in zip(shared, param_grads(D)):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-12)


def test_r1_penalty_with_logits_b1(backend_name, device):
    D, real, _, _, _ = make_problem("image-b1", device=device)
    x = real.clone().requires_grad_(True)
    value = fastgp.r1_penalty(D(x), x, 2.0)
    torch.testing.assert_close(value, gradient_penalty_reference(D, real, kind="r1", weight=2.0))


def test_nonfinite_gradients_propagate(backend_name, device):
    D = lambda x: (x * torch.tensor([float("nan"), 1.0, 2.0], dtype=x.dtype, device=x.device)).sum(1)  # noqa: E731
    value = fastgp.gradient_penalty(D, torch.randn(4, 3, device=device), kind="r1")
    assert torch.isnan(value)


# ------------------------------------------------------------------------------------------
# interpolate and grad_norm_penalty: gradcheck and gradgradcheck in float64
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_interpolate_gradcheck(backend_name, device, layout):
    shape = (3, 2, 3, 4)
    real = make(shape, torch.float64, layout, seed=1, device=device).requires_grad_(True)
    fake = make(shape, torch.float64, layout, seed=2, device=device).requires_grad_(True)
    alpha = torch.rand(3, dtype=torch.float64, requires_grad=True, device=device)
    fn = lambda r, f, a: fastgp.interpolate(r, f, alpha=a)  # noqa: E731
    assert gradcheck(fn, (real, fake, alpha))
    assert gradgradcheck(fn, (real, fake, alpha))


def test_interpolate_random_gradcheck(backend_name, device):
    real = torch.randn(4, 5, dtype=torch.float64, requires_grad=True, device=device)
    fake = torch.randn(4, 5, dtype=torch.float64, requires_grad=True, device=device)
    fn = lambda r, f: fastgp.interpolate(r, f, generator=torch.Generator(device).manual_seed(3))  # noqa: E731
    assert gradcheck(fn, (real, fake))
    assert gradgradcheck(fn, (real, fake))


@pytest.mark.parametrize("center,one_sided", [(1.0, False), (0.0, False), (1.0, True), (0.7, False)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "max"])
def test_grad_norm_penalty_gradcheck(backend_name, device, center, one_sided, reduction):
    # Norms spread around the centre, so the one-sided penalty has active and inactive rows.
    spread = torch.tensor([0.1, 0.3, 0.5, 0.9, 1.3], dtype=torch.float64, device=device).view(5, 1, 1)
    grad = (make((5, 3, 4), torch.float64, seed=8, device=device) * spread).requires_grad_(True)
    fn = lambda g: fastgp.grad_norm_penalty(g, center=center, one_sided=one_sided, reduction=reduction)  # noqa: E731
    assert gradcheck(fn, (grad,))
    assert gradgradcheck(fn, (grad,))


def test_grad_norm_penalty_second_derivative_nonzero(backend_name, device):
    # A raw kernel in backward would give a silently ZERO second derivative: check it is not.
    grad = torch.randn(3, 4, dtype=torch.float64, requires_grad=True, device=device)
    (first,) = torch.autograd.grad(fastgp.grad_norm_penalty(grad), grad, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), grad)
    ref_grad = grad.detach().clone().requires_grad_(True)
    ref_value = ((ref_grad.norm(dim=1) - 1) ** 2).mean()
    (ref_first,) = torch.autograd.grad(ref_value, ref_grad, create_graph=True)
    (ref_second,) = torch.autograd.grad(ref_first.sum(), ref_grad)
    assert second.abs().sum() > 0
    torch.testing.assert_close(second, ref_second)


def test_python_head_backward_kernel_first_order_torch_ops_under_create_graph(monkeypatch):
    """The Python backends' head (docs/design.md, "Autograd"): a plain backward launches the
    backend's fused backward kernel; create_graph differentiates the torch-op formula instead."""
    from fastgp.reference import penalty as ref

    calls = []
    kernel = ref.grad_norm_penalty_backward

    def counting(*args):
        calls.append(1)
        return kernel(*args)

    monkeypatch.setattr(ref, "grad_norm_penalty_backward", counting)
    grad = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    with fastgp.use_backend("reference"):
        for reduction in ("mean", "none"):
            calls.clear()
            (first,) = torch.autograd.grad(fastgp.grad_norm_penalty(grad, reduction=reduction).sum(), grad)
            assert len(calls) == 1
            calls.clear()
            (again,) = torch.autograd.grad(fastgp.grad_norm_penalty(grad, reduction=reduction).sum(), grad,
                                           create_graph=True)
            assert len(calls) == 0 and again.requires_grad
            torch.testing.assert_close(again, first)


def test_penalty_head_gradgradchecks_without_the_extension():
    """With fastgp._C missing entirely the backend falls back to the reference, whose head is the
    Python Function: gradcheck and gradgradcheck hold there too."""
    code = (
        "import sys, warnings\n"
        "sys.modules['fastgp._C'] = None\n"
        "warnings.simplefilter('ignore')\n"
        "import torch, fastgp\n"
        "from torch.autograd import gradcheck, gradgradcheck\n"
        "assert fastgp.backend.resolve('cpu') == 'reference'\n"
        "scales = torch.tensor([0.2, 0.6, 1.1, 1.7], dtype=torch.float64).view(4, 1)\n"
        "g = (torch.randn(4, 6, dtype=torch.float64) * scales).requires_grad_(True)\n"
        "for center, one_sided in ((1.0, False), (0.0, False), (1.0, True)):\n"
        "    for reduction in ('mean', 'none'):\n"
        "        fn = lambda x: fastgp.grad_norm_penalty(x, center=center, one_sided=one_sided, reduction=reduction)\n"
        "        assert gradcheck(fn, (g,)) and gradgradcheck(fn, (g,))\n"
        "print('checked')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "checked" in result.stdout


@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "max"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_grad_norm_penalty_values(backend_name, device, reduction, dtype):
    grad = make((6, 3, 4, 4), dtype, seed=3, scale=0.3, device=device).requires_grad_(True)
    value = fastgp.grad_norm_penalty(grad, reduction=reduction)
    per_sample = (grad.detach().double().flatten(1).norm(dim=1) - 1) ** 2
    expected = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample, "max": per_sample.max()}[reduction]
    assert value.dtype == torch.float32
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6)
    value.sum().backward()
    assert grad.grad.dtype == dtype and grad.grad.shape == grad.shape


def test_grad_norm_penalty_issue_example_huge_gradient(backend_name, device):
    """g = [1e20, 0] in float32: ‖g‖² = 1e40 overflows, the norm 1e20 does not. The penalty
    (1e20 − 1)² = 1e40 is itself out of range (inf, honestly), its gradient 2(‖g‖ − 1)·g/‖g‖ = 2e20
    is not (it was NaN: inf/inf)."""
    g = torch.tensor([[1e20, 0.0]], device=device, requires_grad=True)
    value = fastgp.grad_norm_penalty(g, reduction="sum")
    assert value.item() == float("inf")
    value.backward()
    torch.testing.assert_close(g.grad.cpu(), torch.tensor([[2e20, 0.0]]), rtol=1e-6, atol=0)


# Magnitudes whose plain sum of squares over- or underflows in the accumulation dtype (float32 for
# bfloat16), each exercising the scaled norm; 1.0 is the ordinary fast path.
EXTREME_SCALES = [
    (torch.float32, 1e20), (torch.float32, 1e-20), (torch.float32, 1e-30), (torch.float32, 1.0),
    (torch.float64, 1e200), (torch.float64, 1e-200), (torch.bfloat16, 1e20), (torch.bfloat16, 1e-30),
    (torch.float16, 1e3), (torch.float16, 1e-6),
]


@pytest.mark.parametrize("dtype,scale", EXTREME_SCALES, ids=str)
@pytest.mark.parametrize("center", [0.0, 1.0])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_grad_norm_penalty_extreme_magnitudes_against_float64(backend_name, device, dtype, scale, center, reduction):
    """Norm, penalty and gradient against float64 closed forms computed on x / scale (so that the
    oracle itself neither over- nor underflows): ‖g‖ = scale·‖g/scale‖, penalty (‖g‖ − c)² or ‖g‖²
    (inf or 0 where that value is out of the accumulation dtype's range), d/dg = 2(1 − c/‖g‖)·g."""
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    rows = [(3, 5), (2, 3, 40, 40)]  # short rows and long ones (chunked reductions)
    for shape in rows:
        unit = make(shape, torch.float64, seed=7, device=device)
        unit[0] = 0.0  # a zero row: norm 0, gradient 0 (centre 1) as torch's norm
        g = (unit * scale).to(dtype).requires_grad_(True)
        u = g.detach().double() / scale  # exactly the stored values, rescaled (powers aside)
        norm = u.flatten(1).norm(dim=1)  # of g / scale
        true_norm = norm * scale
        value = fastgp.grad_norm_penalty(g, center=center, reduction=reduction)
        per_sample = (true_norm - center) ** 2 if center else norm**2 * scale * scale
        expected = per_sample.to(acc) if reduction == "none" else per_sample.sum().to(acc)
        torch.testing.assert_close(value, expected, rtol=2e-5, atol=0)
        value.sum().backward()
        # d/dg: 2(1 − c/‖g‖)·g, written on u so that 1/‖g‖ stays finite; 0 for the zero row.
        coef = torch.where(norm > 0, 2 * (scale - center / norm.clamp_min(1e-300)), torch.zeros_like(norm))
        expected_grad = (coef.view(-1, *[1] * (u.dim() - 1)) * u).to(dtype)
        torch.testing.assert_close(g.grad, expected_grad, rtol=2e-2 if dtype != acc else 2e-5, atol=0)
        assert torch.equal(g.grad.isfinite(), expected_grad.isfinite())  # inf only where out of range


def test_grad_norm_penalty_ordinary_rows_skip_the_scaled_norm(monkeypatch):
    """Ordinary gradients take the plain sum of squares: the rescaling pass is never run."""
    from fastgp.reference import penalty as ref

    def refuse(rows):
        raise AssertionError("the scaled norm ran on ordinary rows")

    monkeypatch.setattr(ref, "scaled_norm", refuse)
    g = make((4, 3, 8, 8), torch.float32, seed=1)
    ref.grad_norm_penalty_forward(g, 1.0, False)
    ref.grad_norm_penalty_forward(g * 1e-15, 1.0, False)
    ref.grad_norm_penalty_forward(g * 1e15, 0.0, False)


@pytest.mark.parametrize("generator_on", ["cpu", "device"])
def test_interpolate_generator_reproducible_and_uniform(backend_name, device, generator_on):
    real, fake = torch.ones(4096, 2, device=device), torch.zeros(4096, 2, device=device)

    def generator(seed):
        return torch.Generator(device if generator_on == "device" else "cpu").manual_seed(seed)

    a = fastgp.interpolate(real, fake, generator=generator(5))
    b = fastgp.interpolate(real, fake, generator=generator(5))
    c = fastgp.interpolate(real, fake, generator=generator(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    alpha = a[:, 0]
    assert torch.equal(a[:, 0], a[:, 1])  # one alpha per sample, broadcast over the row
    assert bool((alpha >= 0).all()) and bool((alpha < 1).all())
    assert abs(alpha.mean().item() - 0.5) < 0.02
    torch.manual_seed(1)  # seeds the default generators of every device
    d = fastgp.interpolate(real, fake)
    torch.manual_seed(1)
    assert torch.equal(d, fastgp.interpolate(real, fake))


@pytest.mark.parametrize("device", devices())
def test_interpolation_alpha_identical_across_backends(device):
    """α is drawn in the kernels (Philox from one seed taken from the generator): the same on every
    backend of the device, in every dtype. With real = 1 and fake = 0 the output is α itself, exactly."""
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        real, fake = torch.ones(64, 3, dtype=dtype, device=device), torch.zeros(64, 3, dtype=dtype, device=device)
        results = {}
        for name in ("extension", "triton", "reference") if device == "cuda" else ("extension", "reference"):
            with fastgp.use_backend(name):
                results[name] = fastgp.interpolate(real, fake, generator=torch.Generator(device).manual_seed(4))
        assert len(results["reference"][:, 0].unique()) > 32  # 64 different draws (up to half's rounding)
        for name, out in results.items():
            assert torch.equal(out, results["reference"]), (name, dtype)


def test_interpolate_alpha_broadcastable_shape(backend_name, device):
    real, fake = torch.randn(3, 2, 4, device=device), torch.randn(3, 2, 4, device=device)
    alpha = torch.tensor([0.0, 0.5, 1.0], device=device)
    out = fastgp.interpolate(real, fake, alpha=alpha.view(3, 1, 1))
    torch.testing.assert_close(out, alpha.view(3, 1, 1) * real + (1 - alpha.view(3, 1, 1)) * fake)
    assert torch.equal(out[0], fake[0]) and torch.equal(out[2], real[2])


# ------------------------------------------------------------------------------------------
# Bad input: each a clear ValueError/TypeError naming the argument
# ------------------------------------------------------------------------------------------

D_IMAGE = lambda x: x.flatten(1).sum(1)  # noqa: E731


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4, 3), torch.randn(5, 3)), ValueError, "same shape"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4, 3), torch.randn(4, 3).double()), TypeError, "same dtype"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4, 3), torch.randn(4, 3, device="meta")), ValueError, "same device"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(0, 3), torch.randn(0, 3)), ValueError, "empty batch"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.ones(4, 3, dtype=torch.int64), kind="r1"), TypeError, "floating dtype"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4), kind="r1"), ValueError, "at least 2 dimensions"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4, 3), torch.randn(4, 3), kind="wgan"), ValueError, "'wgan-gp', 'zero-gp', 'r1'"),
        (lambda: fastgp.gradient_penalty(lambda x: x, torch.randn(4, 3), kind="r1"), ValueError, r"\[B\] or \[B, 1\].*got \[4, 3\]"),
        (lambda: fastgp.gradient_penalty(lambda x: x.sum(), torch.randn(4, 3), kind="r1"), ValueError, r"shape \[B\] or \[B, 1\]"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4, 3), torch.randn(4, 3), alpha=torch.rand(3)), ValueError, "alpha must have shape"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4, 3), torch.randn(4, 3), alpha=torch.rand(4, 3)), ValueError, "alpha must have shape"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4, 3), torch.randn(4, 3), alpha=torch.tensor([0.1, 0.2, 1.5, 0.3])), ValueError, r"alpha must lie in \[0, 1\]"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4, 3), torch.randn(4, 3), alpha=torch.tensor([0.1, -0.2, 0.5, 0.3])), ValueError, r"alpha must lie in \[0, 1\]"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4, 3), torch.randn(4, 3), alpha=torch.tensor([0.1, float("nan"), 0.5, 0.3])), ValueError, r"alpha must lie in \[0, 1\]"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4, 3), kind="r1", alpha=torch.rand(4)), ValueError, "alpha applies only"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4, 3), torch.randn(4, 3), weight=-1.0), ValueError, "weight must be >= 0"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4, 3), torch.randn(4, 3), weight="10"), TypeError, "weight must be a real number"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4, 3)), ValueError, "fake is required"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4, 3), kind="r2"), TypeError, "fake must be a torch.Tensor"),
        (lambda: fastgp.gradient_penalty("D", torch.randn(4, 3), kind="r1"), TypeError, "D must be callable"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, [[1.0]], kind="r1"), TypeError, "real must be a torch.Tensor"),
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4, 3), kind="r1", generator=0), TypeError, "generator"),
        (lambda: fastgp.gradient_penalty(lambda x: torch.zeros(4), torch.randn(4, 3), kind="r1"), ValueError, "do not depend on the inputs"),
        (lambda: fastgp.r1_penalty(torch.randn(4), torch.randn(4, 3), 1.0), ValueError, "inputs must require grad"),
        (lambda: fastgp.r1_penalty(torch.randn(5), torch.randn(4, 3, requires_grad=True), 1.0), ValueError, r"logits must be logits of shape \[B\] or \[B, 1\] with B = 4"),
        (lambda: fastgp.r1_penalty(torch.randn(4), torch.randn(4, 3, requires_grad=True), -2.0), ValueError, "weight must be >= 0"),
        (lambda: fastgp.interpolate(torch.randn(4, 3), torch.randn(4, 2)), ValueError, "same shape"),
        (lambda: fastgp.interpolate(torch.randn(4, 3), torch.randn(4, 3), alpha=torch.rand(4), generator=torch.Generator()), ValueError, "not both"),
        (lambda: fastgp.interpolate(torch.randn(4, 3), torch.randn(4, 3), alpha=torch.ones(4, dtype=torch.int64)), TypeError, "alpha must have a floating dtype"),
        (lambda: fastgp.grad_norm_penalty(torch.randn(4, 3), reduction="avg"), ValueError, "reduction must be one of"),
        (lambda: fastgp.grad_norm_penalty(torch.randn(4, 3), center=-1.0), ValueError, "center must be >= 0"),
        (lambda: fastgp.grad_norm_penalty(torch.randn(4, 3), one_sided=1), TypeError, "one_sided must be a bool"),
        (lambda: fastgp.grad_norm_penalty(torch.randn(0, 3)), ValueError, "grad has an empty batch"),
        (lambda: fastgp.grad_norm_penalty(torch.ones(4, 3, dtype=torch.int32)), TypeError, "grad must have a floating dtype"),
        # Issue 16: an AttributeError, and an autograd RuntimeError, before.
        (lambda: fastgp.gradient_penalty(D_IMAGE, torch.randn(4, 3), torch.randn(4, 3), grad_scaler="x"), TypeError,
         "^grad_scaler must be a torch.amp.GradScaler or None, got str$"),
        (lambda: fastgp.r1_penalty(torch.randn(4), torch.randn(4, 3, requires_grad=True), grad_scaler=2.0), TypeError,
         "^grad_scaler must be a torch.amp.GradScaler or None, got float$"),
        (lambda: fastgp.gradient_penalty(lambda x: torch.complex(x.sum(1), x.sum(1)), torch.randn(4, 3), kind="r1"),
         TypeError, "^D's output must be real floating-point logits, got dtype torch.complex64$"),
        (lambda: fastgp.r1_penalty(torch.randn(4, 3, requires_grad=True).sum(1).to(torch.complex64),
                                   torch.randn(4, 3, requires_grad=True)), TypeError, "^logits must be real floating-point"),
    ],
)
def test_bad_input(backend_name, device, call, error, match):
    with torch.device(device), pytest.raises(error, match=match):
        call()


def test_inference_mode_is_named(backend_name, device):
    # Issue 16: inside torch.inference_mode() the message said the logits do not depend on the inputs.
    real, fake = make((4, 3), seed=1, device=device), make((4, 3), seed=2, device=device)
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match=r"^gradient_penalty needs gradients, which torch.inference_mode\(\) "
                                               "disables: call it outside inference mode$"):
            fastgp.gradient_penalty(D_IMAGE, real, fake)
        with pytest.raises(RuntimeError, match=r"^r1_penalty needs gradients, which torch.inference_mode\(\) disables"):
            fastgp.r1_penalty(make((4,), seed=3, device=device), real)
    with torch.no_grad():  # no_grad, unlike inference mode, is overridden inside the penalty
        assert fastgp.gradient_penalty(D_IMAGE, real, fake).isfinite()


# ------------------------------------------------------------------------------------------
# Lazy regularization
# ------------------------------------------------------------------------------------------


def test_lazy_regularizer_schedule_and_adam():
    lazy = fastgp.LazyRegularizer(16)
    assert [s for s in range(40) if lazy.due(s)] == [0, 16, 32]
    assert lazy.gain == 16 and lazy.mb_ratio == pytest.approx(16 / 17)
    params = [nn.Parameter(torch.zeros(2))]
    opt = torch.optim.Adam(params, lr=0.002, betas=(0.0, 0.99))
    lazy.adjust_optimizer(opt)
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(0.002 * 16 / 17)
    assert group["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))
    with pytest.raises(ValueError, match="already adjusted"):
        lazy.adjust_optimizer(opt)


def test_lazy_regularizer_rmsprop_and_errors():
    lazy = fastgp.LazyRegularizer(4)
    opt = torch.optim.RMSprop([nn.Parameter(torch.zeros(2))], lr=1e-3, alpha=0.9, momentum=0.5)
    lazy.adjust_optimizer(opt)
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(1e-3 * 0.8)
    assert group["alpha"] == pytest.approx(0.9**0.8) and group["momentum"] == pytest.approx(0.5**0.8)
    with pytest.raises(TypeError, match="supports optimizers with betas"):
        lazy.adjust_optimizer(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1))
    with pytest.raises(ValueError, match="interval must be >= 1"):
        fastgp.LazyRegularizer(0)
    with pytest.raises(TypeError, match="interval must be an int"):
        fastgp.LazyRegularizer(2.5)
    with pytest.raises(TypeError, match="optimizer must be"):
        lazy.adjust_optimizer("adam")


def test_lazy_r1_amortizes_the_same_gradient():
    # With gain = interval, the penalty's gradient summed over a period equals R1 every step.
    D, real, _, _, _ = make_problem("image")
    lazy = fastgp.LazyRegularizer(4)
    total = [torch.zeros_like(p) for p in D.parameters()]
    for step in range(4):
        D.zero_grad()
        if lazy.due(step):
            (lazy.gain * fastgp.gradient_penalty(D, real, kind="r1", weight=1.0)).backward()
            total = [t + g for t, g in zip(total, param_grads(D))]
    D.zero_grad()
    for _ in range(4):
        fastgp.gradient_penalty(D, real, kind="r1", weight=1.0).backward()
    for t, p in zip(total, param_grads(D)):
        torch.testing.assert_close(t, p)


# ------------------------------------------------------------------------------------------
# Mixed precision: autocast + GradScaler, the penalty on unscaled input gradients
# ------------------------------------------------------------------------------------------


def test_grad_scaler_penalty_is_unscaled(backend_name, device):
    D, real, fake, _, _ = make_problem("image", torch.float32, device)
    alpha = torch.rand(real.shape[0], device=device)
    scaler = torch.amp.GradScaler(device, init_scale=2.0**12)
    scaled = fastgp.gradient_penalty(D, real, fake, alpha=alpha, grad_scaler=scaler)
    plain = fastgp.gradient_penalty(D, real, fake, alpha=alpha)
    torch.testing.assert_close(scaled, plain, rtol=1e-5, atol=1e-6)


def test_autocast_bf16_step_with_grad_scaler(backend_name, device):
    D, real, fake, _, _ = make_problem("image", torch.float32, device)
    alpha = torch.rand(real.shape[0], device=device)
    exact = fastgp.gradient_penalty(D, real, fake, alpha=alpha)
    scaler = torch.amp.GradScaler(device, init_scale=2.0**10)
    opt = torch.optim.Adam(D.parameters(), lr=1e-3)
    with torch.autocast(device, dtype=torch.bfloat16):
        penalty = fastgp.gradient_penalty(D, real, fake, alpha=alpha, grad_scaler=scaler)
        loss = D(fake).mean() - D(real).mean() + penalty
    assert penalty.dtype == torch.float32
    torch.testing.assert_close(penalty, exact, rtol=5e-2, atol=1e-3)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    assert all(torch.isfinite(p).all() for p in D.parameters())


def test_lazy_regularizers_staggered_by_offset_alternate_r1_and_r2():
    """R1 and R2 on alternating steps half an interval apart (the schedule issue 25 describes):
    each penalty is due once per interval, never on the same step, and with gain = interval the
    summed gradients over an interval equal R1 + R2 at every step."""
    D, real, fake, _, _ = make_problem("image")
    lazy_r1, lazy_r2 = fastgp.LazyRegularizer(4), fastgp.LazyRegularizer(4, offset=2)
    assert [s for s in range(8) if lazy_r1.due(s)] == [0, 4] and [s for s in range(8) if lazy_r2.due(s)] == [2, 6]
    lazy_total = [torch.zeros_like(p) for p in D.parameters()]
    eager_total = [torch.zeros_like(p) for p in D.parameters()]
    for step in range(4):
        D.zero_grad()
        loss = 0
        if lazy_r1.due(step):
            loss = loss + lazy_r1.gain * fastgp.gradient_penalty(D, real, kind="r1", weight=1.0)
        if lazy_r2.due(step):
            loss = loss + lazy_r2.gain * fastgp.gradient_penalty(D, real, fake, kind="r2", weight=1.0)
        if torch.is_tensor(loss):
            loss.backward()
            lazy_total = [t + g for t, g in zip(lazy_total, param_grads(D))]
        D.zero_grad()
        (fastgp.gradient_penalty(D, real, kind="r1", weight=1.0)
         + fastgp.gradient_penalty(D, real, fake, kind="r2", weight=1.0)).backward()
        eager_total = [t + g for t, g in zip(eager_total, param_grads(D))]
    for a, b in zip(lazy_total, eager_total):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"offset must be in \[0, interval\)"):
        fastgp.LazyRegularizer(4, offset=4)
    with pytest.raises(ValueError, match="offset must be >= 0"):
        fastgp.LazyRegularizer(4, offset=-1)
    with pytest.raises(TypeError, match="offset must be an int"):
        fastgp.LazyRegularizer(4, offset=1.5)
