"""Gradient penalties without double backward (method="jvp"): the value and every gradient equal
the double-backprop ones (float64), for every kind and the D's users write (conditional, batch /
layer / instance norm, spectral norm, augmentation and dropout inside D), and a whole D step
written with it runs under torch.compile."""

import pytest
import torch
from torch import nn

import fastgp
from fastgp.nn import Augment
from helpers import make
from test_penalty import INTERPOLATING, KINDS, PROBLEMS, ConvD, make_problem, param_grads

TOL = dict(rtol=1e-9, atol=1e-12)  # float64: equal up to rounding of differently ordered sums


def grads_of(D, method, real, fake, seed=9, **kwargs):
    """(value, per-sample, parameter gradients) of one penalty call; D's gradients are reset first."""
    D.zero_grad()
    generator = torch.Generator(real.device).manual_seed(seed)
    value, per_sample = fastgp.gradient_penalty(
        D, real, fake, method=method, generator=generator, return_per_sample=True, **kwargs
    )
    value.backward()
    return value.detach(), per_sample, param_grads(D)


def assert_same_penalty(D, real, fake, **kwargs):
    """method="jvp" against method="double-backward": value, per-sample values, gradients."""
    expected = grads_of(D, "double-backward", real, fake, **kwargs)
    got = grads_of(D, "jvp", real, fake, **kwargs)
    torch.testing.assert_close(got[0], expected[0], **TOL)
    torch.testing.assert_close(got[1], expected[1].detach(), **TOL)
    assert not got[1].requires_grad  # per-sample values of the jvp path carry no graph
    assert expected[0] == 0 or any(g.abs().sum() > 0 for g in expected[2])  # LP is 0 below norm 1
    for g, e in zip(got[2], expected[2]):
        torch.testing.assert_close(g, e, **TOL)
    return got


# ------------------------------------------------------------------------------------------
# Every kind, every input rank and layout, conditional D, both CPU backends
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("problem", PROBLEMS)
def test_jvp_equals_double_backward(backend_name, device, kind, problem):
    D, real, fake, args, kwargs = make_problem(problem, device=device)
    alpha = torch.rand(real.shape[0], dtype=torch.float64, device=device) if kind in INTERPOLATING else None
    assert_same_penalty(D, real, fake, kind=kind, weight=3.0, alpha=alpha, d_args=args, d_kwargs=kwargs)


@pytest.mark.parametrize("kind", ["wgan-gp", "max-gp", "dragan"])
def test_jvp_random_points_are_the_same_points(kind):
    """The points are drawn before D runs, from the same generator: both methods see the same x."""
    D, real, fake, _, _ = make_problem("image")
    assert_same_penalty(D, real, fake, kind=kind, weight=2.0)


def test_jvp_max_gp_with_a_tie_splits_the_gradient_like_max():
    # Two identical samples: max's backward splits the gradient between them on both paths.
    D, real, fake, _, _ = make_problem("image")
    real, fake = real.clone(), fake.clone()
    real[1], fake[1] = real[0], fake[0]
    alpha = torch.full((real.shape[0],), 0.3, dtype=torch.float64)
    assert_same_penalty(D, real, fake, kind="max-gp", alpha=alpha)


def test_jvp_float32_close_to_double_backward():
    D, real, fake, _, _ = make_problem("image", torch.float32)
    alpha = torch.rand(real.shape[0])
    expected = grads_of(D, "double-backward", real, fake, alpha=alpha)
    got = grads_of(D, "jvp", real, fake, alpha=alpha)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-6)
    for g, e in zip(got[2], expected[2]):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------
# D's with state and randomness: norms, spectral norm, augmentation and dropout inside D
# ------------------------------------------------------------------------------------------


def norm_d(norm: str) -> nn.Module:
    layers = {
        "batch": nn.BatchNorm2d(6),
        "layer": nn.LayerNorm([6, 8, 8]),
        "instance": nn.InstanceNorm2d(6, affine=True, track_running_stats=True),
        "group": nn.GroupNorm(2, 6),
    }
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), layers[norm], nn.LeakyReLU(0.2), nn.Conv2d(6, 4, 3, stride=2),
        nn.Softplus(), nn.Flatten(), nn.Linear(36, 1),
    )


def run_twice(build, real, fake, **kwargs):
    """Both methods from the same D state and the same random state; returns both Ds afterwards."""
    results = []
    for method in ("double-backward", "jvp"):
        torch.manual_seed(0)
        D = build().double()
        torch.manual_seed(5)
        D.zero_grad()
        value = fastgp.gradient_penalty(D, real, fake, method=method, **kwargs)
        value.backward()
        results.append((D, value.detach(), param_grads(D), torch.get_rng_state()))
    (D0, v0, g0, rng0), (D1, v1, g1, rng1) = results
    torch.testing.assert_close(v1, v0, **TOL)
    assert any(g.abs().sum() > 0 for g in g0)
    for g, e in zip(g1, g0):
        torch.testing.assert_close(g, e, **TOL)
    assert torch.equal(rng1, rng0)  # the replay leaves the default generator where D left it
    return D0, D1


def images(seed):
    return make((4, 3, 8, 8), torch.float64, seed=seed)


@pytest.mark.parametrize("norm", ["batch", "layer", "instance", "group"])
def test_jvp_normalization_layers_in_training_mode(norm):
    # PyTorch's forward-mode formulas of batch/layer/instance norm are not differentiable in
    # reverse mode (wrong parameter gradients): method="jvp" must not rely on them.
    D0, D1 = run_twice(lambda: norm_d(norm).train(), images(1), images(2), kind="wgan-gp")
    # Running statistics advance once per call, as with double backward.
    for (name, b0), (_, b1) in zip(D0.named_buffers(), D1.named_buffers()):
        torch.testing.assert_close(b1, b0, **TOL, msg=name)


class AttentionD(nn.Module):
    """Softmax and log-softmax in every spelling (PyTorch's forward-mode softmax formula makes
    reverse mode raise)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(64, 1)

    def forward(self, x):
        h = self.conv(x).flatten(2)  # [B, 4, 64]
        attn = torch.softmax(h @ h.transpose(1, 2), -1) + h.softmax(dim=1).mean(-1, keepdim=True)
        h = attn @ h + nn.functional.log_softmax(h, dim=-1) + h.log_softmax(1, torch.float64)
        return self.head(nn.functional.softmax(h, dim=2) * h).sum(dim=(1, 2))


def test_jvp_softmax_and_log_softmax():
    run_twice(AttentionD, images(1), images(2), kind="wgan-gp")


def test_jvp_batch_norm_in_eval_mode():
    run_twice(lambda: norm_d("batch").eval(), images(1), images(2), kind="r1")


def sn_d(which: str) -> nn.Module:
    wrap = {
        "fastgp": fastgp.nn.spectral_norm,
        "torch": nn.utils.parametrizations.spectral_norm,
        "torch-legacy": nn.utils.spectral_norm,
    }[which]
    return nn.Sequential(
        wrap(nn.Conv2d(3, 6, 3, padding=1)), nn.LeakyReLU(0.2), wrap(nn.Conv2d(6, 4, 3, stride=2)), nn.Softplus(),
        nn.Flatten(), wrap(nn.Linear(36, 1)),
    )


@pytest.mark.parametrize("which", ["fastgp", "torch", "torch-legacy"])
@pytest.mark.parametrize("training", [True, False])
def test_jvp_spectral_norm(which, training):
    # In training mode every forward advances the power iteration: the jvp pass must see the
    # state the first pass saw, and the buffers must advance once per call.
    D0, D1 = run_twice(lambda: sn_d(which).train(training), images(1), images(2), kind="wgan-gp")
    for (name, b0), (_, b1) in zip(D0.named_buffers(), D1.named_buffers()):
        torch.testing.assert_close(b1, b0, **TOL, msg=name)


def test_jvp_spectral_norm_once_per_step():
    # SpectralNormStep: σ is cached per step and W/σ reused by every forward (the jvp pass's
    # copied buffers recompute σ from the same u, v).
    torch.manual_seed(0)
    D = ConvD().double()
    D(images(0))  # materialize the lazy head
    D = fastgp.nn.apply_spectral_norm(D, n_power_iterations=1)
    fastgp.nn.SpectralNormStep(D)
    expected = grads_of(D, "double-backward", images(1), images(2))
    got = grads_of(D, "jvp", images(1), images(2))
    torch.testing.assert_close(got[0], expected[0], **TOL)
    for g, e in zip(got[2], expected[2]):
        torch.testing.assert_close(g, e, **TOL)
    again = grads_of(D, "double-backward", images(1), images(2))  # the step's cache is intact
    for g, e in zip(again[2], expected[2]):
        torch.testing.assert_close(g, e, **TOL)


def augmented_d(augment: nn.Module, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    D = ConvD()
    D(images(0).float())
    return nn.Sequential(augment, nn.Dropout(dropout), D)


@pytest.mark.parametrize(
    "augment",
    [
        lambda: Augment(ratio=0.25),
        lambda: Augment(copies=2, ratio=0.25, padding="reflect"),
        lambda: Augment(policy="color,translation,cutout"),
        lambda: Augment(ratio=0.25, generator=torch.Generator().manual_seed(3)),  # D's own generator
    ],
    ids=["translate", "translate-2-copies-reflect", "diffaugment", "own-generator"],
)
def test_jvp_augmentation_inside_d(augment):
    # K copies of each sample: D's logits have B·K rows, so D averages them back to B.
    def build():
        inner = augmented_d(augment())
        copies = inner[0].copies if inner[0].policy is None else 1
        return _AverageCopies(inner, copies)

    run_twice(build, images(1), images(2), kind="wgan-gp")
    run_twice(build, images(1), images(2), kind="r1")


def test_jvp_dropout_inside_d():
    run_twice(lambda: augmented_d(nn.Identity(), dropout=0.3), images(1), images(2), kind="zero-gp")


def test_jvp_d_as_a_plain_function():
    # A function, not a module: the random generators are replayed (no buffers to copy).
    torch.manual_seed(0)
    inner = augmented_d(Augment(policy="translation,cutout")).double()
    run_twice(lambda: _Function(inner), images(1), images(2), kind="wgan-gp")


class _AverageCopies(nn.Module):
    def __init__(self, inner, copies):
        super().__init__()
        self.inner, self.copies = inner, copies

    def forward(self, x):
        return self.inner(x).reshape(x.shape[0], self.copies).mean(dim=1)


class _Function:
    """A callable that is not an nn.Module (double() returns itself, parameters via the module)."""

    def __init__(self, module):
        self.module = module

    def __call__(self, x):
        return self.module(x)

    def double(self):
        return self

    def zero_grad(self):
        self.module.zero_grad()

    def parameters(self):
        return self.module.parameters()


# ------------------------------------------------------------------------------------------
# Inputs that require grad, r1_penalty's shared forward, GradScaler
# ------------------------------------------------------------------------------------------


def test_jvp_real_and_fake_stay_constants_like_double_backward():
    D, real, fake, _, _ = make_problem("image")
    for method in ("double-backward", "jvp"):
        r, f = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
        fastgp.gradient_penalty(D, r, f, method=method).backward()
        assert r.grad is None and f.grad is None


@pytest.mark.parametrize("problem", ["image", "vector-conditional", "channels_last"])
def test_r1_penalty_jvp_shared_forward(backend_name, device, problem):
    """Main loss and R1 from one D forward on inputs computed from a leaf: the parameter gradients
    and the leaf's gradient (through R1: the Hessian-vector product H·u) equal double backprop's."""
    D, real, _, args, kwargs = make_problem(problem, device=device)
    source = (real * 1.0).detach().requires_grad_(True)
    results = []
    for method in ("double-backward", "jvp"):
        D.zero_grad()
        source.grad = None
        inputs = source * 1.5  # not a leaf: the penalty's input gradient flows on to source
        logits = D(inputs, *args, **kwargs)
        extra = dict(D=D, d_args=args, d_kwargs=kwargs) if method == "jvp" else {}
        r1, per_sample = fastgp.r1_penalty(logits, inputs, 5.0, method=method, return_per_sample=True, **extra)
        (nn.functional.softplus(-logits).mean() + r1).backward()
        results.append((r1.detach(), per_sample.detach(), param_grads(D), source.grad.clone()))
    (v0, p0, g0, s0), (v1, p1, g1, s1) = results
    torch.testing.assert_close(v1, v0, **TOL)
    torch.testing.assert_close(p1, p0, **TOL)
    torch.testing.assert_close(s1, s0, **TOL)
    for g, e in zip(g1, g0):
        torch.testing.assert_close(g, e, **TOL)


def test_r1_penalty_jvp_input_gradient_is_the_hessian_vector_product():
    # The penalty alone: its gradient w.r.t. the inputs is nonzero and equals double backprop's.
    D, real, _, _, _ = make_problem("image")
    grads = []
    for method in ("double-backward", "jvp"):
        inputs = real.clone().requires_grad_(True)
        extra = dict(D=D) if method == "jvp" else {}
        fastgp.r1_penalty(D(inputs), inputs, 2.0, method=method, **extra).backward()
        grads.append(inputs.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], **TOL)


def test_r1_penalty_jvp_rejects_a_d_that_does_not_reproduce_logits():
    D = augmented_d(Augment(ratio=0.25)).double()
    inputs = images(1).requires_grad_(True)
    logits = D(inputs)  # the jvp pass draws other shifts
    with pytest.raises(ValueError, match="did not reproduce logits"):
        fastgp.r1_penalty(logits, inputs, method="jvp", D=D)


@pytest.mark.parametrize("kind", ["wgan-gp", "r1"])
def test_jvp_with_grad_scaler(kind):
    D, real, fake, _, _ = make_problem("image")
    results = []
    for method in ("double-backward", "jvp"):
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
        D.zero_grad()
        alpha = torch.full((real.shape[0],), 0.4, dtype=torch.float64) if kind == "wgan-gp" else None
        value = fastgp.gradient_penalty(D, real, fake, kind=kind, alpha=alpha, grad_scaler=scaler, method=method)
        scaler.scale(value).backward()
        results.append((value.detach(), param_grads(D)))
    torch.testing.assert_close(results[1][0], results[0][0], **TOL)
    for g, e in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(g, e, **TOL)


# ------------------------------------------------------------------------------------------
# A whole WGAN-GP D step under torch.compile
# ------------------------------------------------------------------------------------------


def test_compiled_wgan_gp_d_step_with_jvp_matches_eager():
    torch.manual_seed(0)
    D = nn.Sequential(
        nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 16, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 1),
    )
    opt = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.0, 0.9))
    real, fake = make((6, 3, 16, 16), seed=1), make((6, 3, 16, 16), seed=2)
    alpha = torch.rand(6)

    def d_step(real, fake, alpha):
        opt.zero_grad(set_to_none=True)
        gp = fastgp.gradient_penalty(D, real, fake, kind="wgan-gp", weight=10.0, alpha=alpha, method="jvp")
        loss = D(fake).mean() - D(real).mean() + gp
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in D.parameters()]

    start = {k: v.clone() for k, v in D.state_dict().items()}
    eager_loss, eager_grads = d_step(real, fake, alpha)
    D.load_state_dict(start)
    compiled_loss, compiled_grads = torch.compile(d_step, backend="aot_eager")(real, fake, alpha)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-5)
    for g, e in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


def test_compiled_r1_shared_forward_step_with_jvp_matches_eager():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(8 * 4 * 4, 1))
    real = make((4, 3, 8, 8), seed=1)

    def step(real):
        D.zero_grad()
        x = real.detach().requires_grad_(True)
        logits = D(x)
        loss = nn.functional.softplus(-logits).mean() + fastgp.r1_penalty(logits, x, 5.0, method="jvp", D=D)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in D.parameters()]

    eager_loss, eager_grads = step(real)
    compiled_loss, compiled_grads = torch.compile(step, backend="aot_eager")(real)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-5)
    for g, e in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------


def test_unknown_method_is_a_value_error():
    D, real, fake, _, _ = make_problem("image")
    with pytest.raises(ValueError, match="method must be one of 'double-backward', 'jvp'; got 'forward'"):
        fastgp.gradient_penalty(D, real, fake, method="forward")
    inputs = real.clone().requires_grad_(True)
    with pytest.raises(ValueError, match="method must be one of"):
        fastgp.r1_penalty(D(inputs), inputs, method="hvp", D=D)


def test_r1_penalty_jvp_needs_d():
    D, real, _, _, _ = make_problem("image")
    inputs = real.clone().requires_grad_(True)
    logits = D(inputs)
    with pytest.raises(ValueError, match="needs the discriminator as D="):
        fastgp.r1_penalty(logits, inputs, method="jvp")
    with pytest.raises(ValueError, match="not callable"):
        fastgp.r1_penalty(logits, inputs, method="jvp", D=3)
    with pytest.raises(ValueError, match="apply only to r1_penalty\\(method='jvp'\\)"):
        fastgp.r1_penalty(logits, inputs, D=D)
    with pytest.raises(TypeError, match="d_args must be a tuple"):
        fastgp.r1_penalty(logits, inputs, method="jvp", D=D, d_args=inputs)


def test_jvp_d_output_not_connected_to_inputs():
    D, real, fake, _, _ = make_problem("image")
    with pytest.raises(ValueError, match="do not depend on the inputs"):
        fastgp.gradient_penalty(lambda x: D(real), real, fake, method="jvp")


# ------------------------------------------------------------------------------------------
# Forward-mode AD of the augmentation ops (needed when augmentation runs inside D)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", ["zeros", "reflect", "replicate"])
def test_translate_forward_ad_gradcheck(backend_name, device, padding):
    x = make((2, 2, 5, 4), torch.float64, seed=3, device=device).requires_grad_(True)
    shifts = torch.tensor([[[1, -2], [0, 3]], [[-4, 1], [2, 0]]], device=device)
    boxes = torch.tensor([[[1, 0, 3, 2]], [[0, 2, 2, 4]]], device=device)

    def translate(x):
        return fastgp.augment.translate(x, shifts=shifts, padding=padding)

    def translate_cutout(x):  # the translate + cutout pass of DiffAugment, and its adjoint
        out = fastgp.augment._Translate.apply(x, shifts[:, :1], boxes, "zeros")
        return fastgp.augment._TranslateBackward.apply(out.square(), shifts[:, :1], boxes, "zeros")

    for fn in (translate, translate_cutout):
        assert torch.autograd.gradcheck(fn, (x,), check_forward_ad=True, check_batched_forward_grad=False)
        assert torch.autograd.gradgradcheck(fn, (x,), check_fwd_over_rev=True, check_rev_over_rev=True)


def test_translate_tangent_is_differentiable_in_reverse_mode():
    # Reverse-over-forward through translate: the tangent out = translate(u·w) depends on w.
    x = make((2, 3, 6, 5), torch.float64, seed=3)
    u = make((2, 3, 6, 5), torch.float64, seed=4)
    w = torch.full((3, 1, 1), 0.7, dtype=torch.float64, requires_grad=True)
    shifts = torch.tensor([[[1, -2]], [[-4, 1]]])
    with torch.autograd.forward_ad.dual_level():
        out = fastgp.augment.translate(torch.autograd.forward_ad.make_dual(x, u) * w, shifts=shifts)
        tangent = torch.autograd.forward_ad.unpack_dual(out).tangent
    (got,) = torch.autograd.grad(tangent.square().sum(), w)
    (expected,) = torch.autograd.grad(fastgp.augment.translate(u * w, shifts=shifts).square().sum(), w)
    torch.testing.assert_close(got, expected, **TOL)
