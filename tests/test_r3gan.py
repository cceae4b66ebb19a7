"""The R3GAN recipe: RpGAN + R1 + R2 (fastgp.r1_r2_penalty, fastgp.losses.*_relativistic_pairing)
against R3GAN's own training step."""

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck, gradgradcheck

import fastgp
from fastgp import losses
from helpers import make

# ------------------------------------------------------------------------------------------
# R3GAN's training step, transcribed (the oracle).
#
# brownvc/R3GAN, R3GAN/Trainer.py, commit 19a7ddf463fbac2bd39b4c1c73d63f1c441c7403 (the file is
# unchanged since the code dump f35c078): AdversarialTraining.ZeroCenteredGradientPenalty,
# AccumulateDiscriminatorGradients, AccumulateGeneratorGradients, step for step (Preprocessor is
# the identity, as without augmentation; training/loss.py passes gamma and gain straight through).
# Laziness: R3GAN's code has no lazy regularization at any commit of that repository
# (training/training_loop.py calls AccumulateDiscriminatorGradients with R1 and R2 at every D
# step), so there is no lazy step of R3GAN to agree with.
# ------------------------------------------------------------------------------------------


def r3gan_zero_centered_penalty(samples, critics):
    (gradient,) = torch.autograd.grad(outputs=critics.sum(), inputs=samples, create_graph=True)
    return gradient.square().sum([1, 2, 3])


def r3gan_generator_step(G, D, noise, reals, conditions, scale=1.0):
    fakes = G(noise, conditions)
    reals = reals.detach()
    fake_logits = D(fakes, conditions)
    real_logits = D(reals, conditions)
    relativistic = fake_logits - real_logits
    adversarial = nn.functional.softplus(-relativistic)
    (scale * adversarial.mean()).backward()
    return [x.detach() for x in (adversarial, relativistic)]


def r3gan_discriminator_step(G, D, noise, reals, conditions, gamma, scale=1.0):
    reals = reals.detach().requires_grad_(True)
    fakes = G(noise, conditions).detach().requires_grad_(True)
    real_logits = D(reals, conditions)
    fake_logits = D(fakes, conditions)
    r1 = r3gan_zero_centered_penalty(reals, real_logits)
    r2 = r3gan_zero_centered_penalty(fakes, fake_logits)
    relativistic = real_logits - fake_logits
    adversarial = nn.functional.softplus(-relativistic)
    total = adversarial + (gamma / 2) * (r1 + r2)
    (scale * total.mean()).backward()
    return [x.detach() for x in (adversarial, relativistic, r1, r2)]


# ------------------------------------------------------------------------------------------
# fastgp's step
# ------------------------------------------------------------------------------------------


def fastgp_discriminator_step(G, D, noise, reals, conditions, gamma, scale=1.0, batching="auto"):
    with torch.no_grad():
        fakes = G(noise, conditions)
    out = fastgp.r1_r2_penalty(D, reals, fakes, gamma=gamma, d_args=(conditions,), batching=batching)
    loss = losses.d_relativistic_pairing(out.real_logits, out.fake_logits) + out.penalty
    (scale * loss).backward()
    return loss.detach(), out


def fastgp_generator_step(G, D, noise, reals, conditions, scale=1.0):
    fakes = G(noise, conditions)
    loss = losses.g_relativistic_pairing(D(fakes, conditions), D(reals.detach(), conditions))
    (scale * loss).backward()
    return loss.detach()


# ------------------------------------------------------------------------------------------
# Small networks of R3GAN's kind: conditional, no normalization (R3GAN's D has none)
# ------------------------------------------------------------------------------------------

CLASSES, Z, C, H = 3, 8, 3, 8


class TinyG(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(CLASSES, Z, bias=False)
        self.fc = nn.Linear(Z, C * H * H)

    def forward(self, z, c):
        return torch.tanh(self.fc(z + self.embed(c))).view(-1, C, H, H)


class TinyD(nn.Module):
    def __init__(self, norm: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(C, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8) if norm else nn.Identity()
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.embed = nn.Linear(CLASSES, 8 * (H // 2) ** 2, bias=False)
        self.fc = nn.Linear(8 * (H // 2) ** 2, 1)

    def forward(self, x, c):
        h = nn.functional.leaky_relu(self.norm(self.conv1(x)), 0.2)
        h = nn.functional.leaky_relu(self.conv2(h), 0.2).flatten(1)
        return self.fc(h * (1 + self.embed(c))).squeeze(1)  # [B], as R3GAN's D returns


def networks(dtype, device, norm=False, seed=0):
    torch.manual_seed(seed)
    return TinyG().to(device, dtype), TinyD(norm).to(device, dtype)


def inputs(B, dtype, device, seed=1):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(B, Z, generator=g, dtype=dtype).to(device)
    reals = (torch.rand(B, C, H, H, generator=g, dtype=dtype) * 2 - 1).to(device)
    labels = torch.randint(0, CLASSES, (B,), generator=g)
    conditions = nn.functional.one_hot(labels, CLASSES).to(device, dtype)
    return noise, reals, conditions


def grads(module):
    return [p.grad.clone() for p in module.parameters()]


TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=2e-4, atol=2e-6)}


# ------------------------------------------------------------------------------------------
# Agreement with R3GAN's step
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("batching", ["auto", "concat", "separate"])
def test_d_step_matches_r3gan(backend_name, device, dtype, batching, scale=0.25):
    """R3GAN's Scale (the gain of gradient accumulation, training/loss.py) is not 1 here."""
    G, D = networks(dtype, device)
    noise, reals, conditions = inputs(6, dtype, device)
    gamma = 2.0  # R3GAN's FFHQ-64 base γ (train.py gamma_scheduler; 0.05 for CIFAR-10)
    adversarial, relativistic, r1, r2 = r3gan_discriminator_step(G, D, noise, reals, conditions, gamma, scale)
    expected_loss = (adversarial + (gamma / 2) * (r1 + r2)).mean()
    expected_grads = grads(D)
    assert all(p.grad is None for p in G.parameters())  # the fakes are detached in both steps
    D.zero_grad(set_to_none=True)
    loss, out = fastgp_discriminator_step(G, D, noise, reals, conditions, gamma, scale, batching)
    tol = TOL[dtype]
    torch.testing.assert_close(loss, expected_loss, **tol)
    torch.testing.assert_close(out.r1.detach(), r1, **tol)
    torch.testing.assert_close(out.r2.detach(), r2, **tol)
    torch.testing.assert_close((out.real_logits - out.fake_logits).detach(), relativistic, **tol)
    for got, expected in zip(grads(D), expected_grads):
        torch.testing.assert_close(got, expected, **tol)
    assert all(p.grad is None for p in G.parameters())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_g_step_matches_r3gan(device, dtype, scale):
    G, D = networks(dtype, device)
    noise, reals, conditions = inputs(6, dtype, device)
    adversarial, _ = r3gan_generator_step(G, D, noise, reals, conditions, scale)
    expected_g, expected_d = grads(G), grads(D)
    G.zero_grad(set_to_none=True)
    D.zero_grad(set_to_none=True)
    loss = fastgp_generator_step(G, D, noise, reals, conditions, scale)
    tol = TOL[dtype]
    torch.testing.assert_close(loss, adversarial.mean(), **tol)
    for got, expected in zip(grads(G) + grads(D), expected_g + expected_d):
        torch.testing.assert_close(got, expected, **tol)


def test_several_steps_with_an_optimizer_match_r3gan():
    """Five alternating D/G steps with Adam (R3GAN's betas (0, 0.99)): the same parameters."""
    nets = [networks(torch.float64, "cpu") for _ in range(2)]
    opts = [(torch.optim.Adam(G.parameters(), 1e-3, betas=(0.0, 0.99)), torch.optim.Adam(D.parameters(), 1e-3, betas=(0.0, 0.99)))
            for G, D in nets]
    for step in range(5):
        noise, reals, conditions = inputs(4, torch.float64, "cpu", seed=10 + step)
        for (G, D), (opt_g, opt_d), ours in zip(nets, opts, (False, True)):
            opt_d.zero_grad(set_to_none=True)
            if ours:
                fastgp_discriminator_step(G, D, noise, reals, conditions, 1.0)
            else:
                r3gan_discriminator_step(G, D, noise, reals, conditions, 1.0)
            opt_d.step()
            opt_g.zero_grad(set_to_none=True)
            D.requires_grad_(False)
            (fastgp_generator_step if ours else r3gan_generator_step)(G, D, noise, reals, conditions)
            D.requires_grad_(True)
            opt_g.step()
    for a, b in zip(list(nets[0][0].parameters()) + list(nets[0][1].parameters()),
                    list(nets[1][0].parameters()) + list(nets[1][1].parameters())):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


# ------------------------------------------------------------------------------------------
# One forward and one differentiated backward
# ------------------------------------------------------------------------------------------


def _count_forwards(D):
    calls = []
    D.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    return calls


@pytest.mark.parametrize("batching,forwards", [("auto", [8]), ("concat", [8]), ("separate", [4, 4])])
def test_forwards_and_one_autograd_grad(batching, forwards, monkeypatch):
    G, D = networks(torch.float32, "cpu")
    noise, reals, conditions = inputs(4, torch.float32, "cpu")
    calls = _count_forwards(D)
    grad_calls = []
    real_grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        grad_calls.append(kwargs.get("create_graph", False))
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    fastgp_discriminator_step(G, D, noise, reals, conditions, 1.0, batching=batching)
    assert calls == forwards
    assert grad_calls == [True]  # ONE differentiated autograd.grad for R1 and R2


def test_plain_function_d_runs_two_forwards_under_auto():
    _, D = networks(torch.float64, "cpu")
    calls = _count_forwards(D)
    noise, reals, conditions = inputs(4, torch.float64, "cpu")
    out = fastgp.r1_r2_penalty(lambda x, c: D(x, c), reals, reals.flip(0), gamma=1.0, d_args=(conditions,))
    assert calls == [4, 4]  # a function cannot be inspected for batch-mixing layers
    expected = fastgp.r1_r2_penalty(D, reals, reals.flip(0), gamma=1.0, d_args=(conditions,))
    assert calls == [4, 4, 8]
    torch.testing.assert_close(out.penalty, expected.penalty, rtol=1e-12, atol=0)


def test_different_batch_sizes_run_two_forwards():
    _, D = networks(torch.float64, "cpu")
    calls = _count_forwards(D)
    real, fake = make((5, C, H, H), torch.float64, seed=1), make((3, C, H, H), torch.float64, seed=2)
    out = fastgp.r1_r2_penalty(D, real, fake, gamma=4.0, d_kwargs={"c": torch.ones(1, CLASSES, dtype=torch.float64)})
    assert calls == [5, 3] and out.r1.shape == (5,) and out.r2.shape == (3,)
    torch.testing.assert_close(out.penalty, 2.0 * (out.r1.mean() + out.r2.mean()))


def test_penalties_match_gradient_penalty_r1_and_r2(backend_name, device):
    """γ/2 · (R1 + R2) equals gradient_penalty's r1 and r2 kinds with weight γ/2."""
    _, D = networks(torch.float64, device)
    c = torch.zeros(4, CLASSES, dtype=torch.float64, device=device)
    real = make((4, C, H, H), torch.float64, seed=3, device=device)
    fake = make((4, C, H, H), torch.float64, seed=4, device=device)
    out = fastgp.r1_r2_penalty(D, real, fake, gamma=3.0, d_args=(c,))
    r1 = fastgp.gradient_penalty(D, real, kind="r1", weight=1.5, d_args=(c,))
    r2 = fastgp.gradient_penalty(D, real, fake, kind="r2", weight=1.5, d_args=(c,))
    torch.testing.assert_close(out.penalty, r1 + r2, rtol=1e-12, atol=1e-14)


def test_grad_scaler_gives_the_unscaled_penalty():
    class Scaler:  # the two methods the penalty uses, as torch.amp.GradScaler has them
        def scale(self, t):
            return t * 1024.0

        def get_scale(self):
            return 1024.0

    _, D = networks(torch.float64, "cpu")
    noise, reals, conditions = inputs(4, torch.float64, "cpu")
    for batching in ("concat", "separate"):
        plain = fastgp.r1_r2_penalty(D, reals, reals.flip(0), gamma=1.0, d_args=(conditions,), batching=batching)
        scaled = fastgp.r1_r2_penalty(D, reals, reals.flip(0), gamma=1.0, d_args=(conditions,), batching=batching,
                                      grad_scaler=Scaler())
        torch.testing.assert_close(scaled.penalty, plain.penalty, rtol=1e-12, atol=0)


# ------------------------------------------------------------------------------------------
# Batch norm: batching real and fake through D changes results
# ------------------------------------------------------------------------------------------


def test_batch_norm_in_training_mode_falls_back_to_two_forwards_and_matches_r3gan():
    G, D = networks(torch.float64, "cpu", norm=True)
    G2, D2 = networks(torch.float64, "cpu", norm=True)
    noise, reals, conditions = inputs(6, torch.float64, "cpu")
    assert fastgp.penalty.batch_mixing_modules(D) == ["norm"]
    calls = _count_forwards(D2)
    adversarial, _, r1, r2 = r3gan_discriminator_step(G, D, noise, reals, conditions, 1.0)
    loss, out = fastgp_discriminator_step(G2, D2, noise, reals, conditions, 1.0)
    assert calls == [6, 6]
    torch.testing.assert_close(loss, (adversarial + 0.5 * (r1 + r2)).mean(), rtol=1e-10, atol=1e-12)
    for got, expected in zip(grads(D2), grads(D)):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # The running statistics advanced as R3GAN's two forwards advance them (reals, then fakes).
    torch.testing.assert_close(D2.norm.running_mean, D.norm.running_mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(D2.norm.running_var, D.norm.running_var, rtol=1e-12, atol=1e-14)


def test_batch_norm_in_training_mode_would_change_the_concatenated_result():
    """Why the fallback exists: one forward of the 2B batch normalizes with other statistics."""
    _, D = networks(torch.float64, "cpu", norm=True)
    noise, reals, conditions = inputs(6, torch.float64, "cpu")
    fakes = reals.flip(0) * 0.5
    separate = torch.cat([D(reals, conditions), D(fakes, conditions)])
    joint = D(torch.cat([reals, fakes]), torch.cat([conditions, conditions]))
    assert (separate - joint).abs().max() > 1e-3


def test_concat_refuses_batch_norm_in_training_mode():
    _, D = networks(torch.float32, "cpu", norm=True)
    noise, reals, conditions = inputs(4, torch.float32, "cpu")
    with pytest.raises(ValueError, match=r"batching='concat' would change D's results: norm normalize with batch"):
        fastgp.r1_r2_penalty(D, reals, reals, gamma=1.0, d_args=(conditions,), batching="concat")


def test_batch_norm_in_eval_mode_is_batched():
    G, D = networks(torch.float64, "cpu", norm=True)
    G2, D2 = networks(torch.float64, "cpu", norm=True)
    D.eval(), D2.eval()
    noise, reals, conditions = inputs(4, torch.float64, "cpu")
    assert fastgp.penalty.batch_mixing_modules(D2) == []
    calls = _count_forwards(D2)
    r3gan_discriminator_step(G, D, noise, reals, conditions, 1.0)
    fastgp_discriminator_step(G2, D2, noise, reals, conditions, 1.0)
    assert calls == [8]
    for got, expected in zip(grads(D2), grads(D)):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------
# Derivatives in float64
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batching", ["concat", "separate"])
def test_gradcheck_and_gradgradcheck(backend_name, device, batching):
    """The penalty (and per-sample r1, r2) as a function of D's parameters."""
    real = make((3, 2, 3, 3), torch.float64, seed=5, device=device)
    fake = make((3, 2, 3, 3), torch.float64, seed=6, device=device)
    w0 = make((4, 18), torch.float64, seed=7, device=device, scale=0.5).requires_grad_(True)
    w1 = make((4,), torch.float64, seed=8, device=device).requires_grad_(True)

    def fn(w0, w1):
        D = nn.Module()  # a Module, so that 'auto' would batch; here batching is explicit
        D.forward = lambda x: torch.tanh(x.flatten(1) @ w0.t()) @ w1
        out = fastgp.r1_r2_penalty(D, real, fake, gamma=1.5, batching=batching)
        return out.penalty, out.r1, out.r2

    assert gradcheck(fn, (w0, w1))
    assert gradgradcheck(fn, (w0, w1))


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------

_, _D = networks(torch.float32, "cpu")
_X = torch.randn(4, C, H, H)
_COND = torch.zeros(4, CLASSES)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: fastgp.r1_r2_penalty("D", _X, _X, gamma=1.0), TypeError, "D must be callable"),
        (lambda: fastgp.r1_r2_penalty(_D, _X, _X, gamma=-1.0, d_args=(_COND,)), ValueError, "gamma must be >= 0"),
        (lambda: fastgp.r1_r2_penalty(_D, _X, _X, gamma="1", d_args=(_COND,)), TypeError, "gamma must be a real number"),
        (lambda: fastgp.r1_r2_penalty(_D, _X, _X, d_args=(_COND,)), TypeError, "gamma"),
        (lambda: fastgp.r1_r2_penalty(_D, [1.0], _X, gamma=1.0), TypeError, "real must be a torch.Tensor"),
        (lambda: fastgp.r1_r2_penalty(_D, _X, _X[:, :2], gamma=1.0), ValueError,
         "real and fake must have the same per-sample shape"),
        (lambda: fastgp.r1_r2_penalty(_D, _X, _X.double(), gamma=1.0), TypeError, "real and fake must have the same dtype"),
        (lambda: fastgp.r1_r2_penalty(_D, _X, _X[:0], gamma=1.0), ValueError, "fake has an empty batch"),
        (lambda: fastgp.r1_r2_penalty(_D, _X, _X, gamma=1.0, batching="joint"), ValueError,
         "batching must be one of 'auto', 'concat', 'separate'"),
        (lambda: fastgp.r1_r2_penalty(_D, _X, _X, gamma=1.0, method="jvp"), ValueError,
         "r1_r2_penalty supports method='double-backward' only"),
        (lambda: fastgp.r1_r2_penalty(_D, _X, _X, gamma=1.0, method="forward"), ValueError, "method must be one of"),
        (lambda: fastgp.r1_r2_penalty(_D, _X, _X, gamma=1.0, d_args=_COND), TypeError, "d_args must be a tuple"),
        (lambda: fastgp.r1_r2_penalty(_D, _X, _X, gamma=1.0, d_kwargs=[_COND]), TypeError, "d_kwargs must be a dict"),
        (lambda: fastgp.r1_r2_penalty(_D, _X, _X, gamma=1.0, d_args=(_COND[:2],)), ValueError,
         r"d_args\[0\] must have one row per sample \(leading dimension 4\)"),
        (lambda: fastgp.r1_r2_penalty(_D, _X, _X[:3], gamma=1.0, d_args=(_COND,), batching="concat"), ValueError,
         "batching='concat' needs real and fake of the same batch size"),
        (lambda: fastgp.r1_r2_penalty(lambda x: x.sum(), _X, _X, gamma=1.0), ValueError,
         r"D\(real\) must be logits of shape \[B\] or \[B, 1\]"),
        (lambda: fastgp.r1_r2_penalty(lambda x: x.detach().flatten(1).sum(1), _X, _X, gamma=1.0), ValueError,
         "the logits do not depend on the inputs"),
        (lambda: fastgp.r1_r2_penalty(_D, _X, _X, gamma=1.0, d_args=(_COND,), grad_scaler=3), TypeError,
         "grad_scaler must be a torch.amp.GradScaler or None"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_inference_mode_is_refused():
    with torch.inference_mode(), pytest.raises(RuntimeError, match="r1_r2_penalty needs gradients"):
        fastgp.r1_r2_penalty(_D, _X, _X, gamma=1.0, d_args=(_COND,))


def test_pcr_loss_refuses_the_relativistic_losses():
    r, f, c = torch.randn(4), torch.randn(4), torch.randn(6)
    for name in losses.RELATIVISTIC:
        with pytest.raises(ValueError, match="loss must be separable"):
            fastgp.combine.d_loss(r, f, c, loss=name)
        with pytest.raises(ValueError, match="loss must be separable"):
            fastgp.combine.d_loss(r, f, c, loss=losses.get(name))
