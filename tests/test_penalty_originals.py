"""Each gradient-penalty kind against its authors' code, seed for seed.

Every ``original_*`` function below is our own minimal re-implementation of what the authors'
public code computes (repository and file named in each docstring): the same random draws in the
same order from the same generator, the same points and the same formula. With the same
generator state, ``fastgp.gradient_penalty`` must evaluate D at the same points and return the
same penalty and the same parameter gradients. The tests run on their case's device: D and the
batches are made on the CPU and moved, and the draws come from that device's generator, so on CUDA
the oracle is the authors' code run on the same device from an equal (CUDA) generator.
"""

import pytest
import torch
from torch import nn

import fastgp
from helpers import rng_states

B = 6


class RecordingD(nn.Module):
    """A smooth D on [B, 2, 3, 3] images that remembers the inputs it was called with."""

    def __init__(self, device="cpu"):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(18, 16), nn.Softplus(), nn.Linear(16, 1))
        self.net.double().to(device)  # initialized on the CPU: the same weights on every device
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.net(x).squeeze(1)


def batches(seed=1, device="cpu"):
    """Drawn on the CPU and moved: the same batches on every device."""
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(B, 2, 3, 3, generator=g, dtype=torch.float64)
    fake = torch.randn(B, 2, 3, 3, generator=g, dtype=torch.float64) * 2 + 0.5
    return real.to(device), fake.to(device)


def input_gradient(D, x):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return g.flatten(1)


def original_interpolates(real, fake):
    """htt210/GeneralizationAndStabilityInGANs, GradientPenaltiesGAN.py ``cal_gradpen``:
    ``alpha = torch.rand(B, 1)``, interpolates ``alpha * real + (1 - alpha) * fake``. (Zhou et al.'s
    and the WGAN-GP / LP toy codes write the same with ``tf.random_uniform([B, 1])``.)"""
    alpha = torch.rand(real.shape[0], 1, device=real.device).view(-1, 1, 1, 1)
    return alpha * real + (1 - alpha) * fake


def original_centred(D, real, fake, weight, center):
    """``cal_gradpen(center=c, LAMBDA=λ)``: λ·mean((‖g‖ − c)²); c = 1 is WGAN-GP, c = 0 the 0-GP."""
    g = input_gradient(D, original_interpolates(real, fake))
    return weight * ((g.norm(2, dim=1) - center) ** 2).mean()


def original_lp(D, real, fake, weight):
    """lukovnikov/improved_wgan_training (Petzka et al.), gan_toy.py with ``one_sided=True``:
    λ·mean(clip(‖g‖ − 1, 0, ∞)²) at the interpolates."""
    g = input_gradient(D, original_interpolates(real, fake))
    return weight * ((g.norm(2, dim=1) - 1).clamp_min(0) ** 2).mean()


def original_max_gp(D, real, fake, weight):
    """ZhimingZhou/LGANs-for-reproduce, code/sobolev_cifar10.py (defaults bMaxGP=True,
    sGP_type='cp'): fWeightLip·(max_i ‖g_i‖)² at the interpolates."""
    g = input_gradient(D, original_interpolates(real, fake))
    return weight * g.norm(2, dim=1).max() ** 2


def original_r1(D, x, weight):
    """LMescheder/GAN_stability, gan_training/train.py: ``reg_param * compute_grad2(d_out, x).mean()``
    (sum of squares per sample, no ½; StyleGAN2-ADA's training/loss.py writes (γ/2)·Σ g², i.e.
    reg_param = γ/2)."""
    g = input_gradient(D, x)
    return weight * g.pow(2).sum(dim=1).mean()


def original_dragan(D, real, weight):
    """kodalinaveen3/DRAGAN, DRAGAN.ipynb: ``X_p = X + 0.5 * X.std() * np.random.random(X.shape)``
    (numpy's std: no Bessel correction) drawn first, then ``alpha ~ U(0, 1)`` [B, 1] and
    interpolates ``X + alpha * (X_p - X)``; λ·mean((‖g‖ − 1)²). (numpy draws on the host; the
    torch form draws on the batch's device, as the other originals do.)"""
    noise = torch.rand(real.shape, dtype=real.dtype, device=real.device)
    perturbed = real + 0.5 * real.std(correction=0) * noise
    alpha = torch.rand(real.shape[0], 1, device=real.device).view(-1, 1, 1, 1)
    g = input_gradient(D, real + alpha * (perturbed - real))
    return weight * ((g.norm(2, dim=1) - 1) ** 2).mean()


ORIGINALS = {
    "wgan-gp": lambda D, real, fake, w: original_centred(D, real, fake, w, 1.0),
    "zero-gp": lambda D, real, fake, w: original_centred(D, real, fake, w, 0.0),
    "lp": original_lp,
    "max-gp": original_max_gp,
    "r1": lambda D, real, fake, w: original_r1(D, real, w),
    "r2": lambda D, real, fake, w: original_r1(D, fake, w),
    "dragan": lambda D, real, fake, w: original_dragan(D, real, w),
}


def test_every_kind_has_an_original():
    assert set(ORIGINALS) == set(fastgp.KINDS)


def run_and_grads(D, fn):
    D.inputs.clear()
    value = fn()
    grads = torch.autograd.grad(value, list(D.parameters()), allow_unused=True, materialize_grads=True)
    return value.detach(), grads, list(D.inputs)


@pytest.mark.parametrize("kind", list(ORIGINALS))
def test_same_points_value_and_gradients_as_the_authors_code(backend_name, device, kind):
    D = RecordingD(device)
    real, fake = batches(device=device)
    torch.manual_seed(123)
    expected, expected_grads, expected_points = run_and_grads(D, lambda: ORIGINALS[kind](D, real, fake, 3.0))
    after_original = rng_states(device)  # the generators must end in the same state
    torch.manual_seed(123)
    got, got_grads, got_points = run_and_grads(D, lambda: fastgp.gradient_penalty(D, real, fake, kind=kind, weight=3.0))
    assert torch.equal(rng_states(device), after_original)
    assert len(got_points) == len(expected_points) == 1
    torch.testing.assert_close(got_points[0], expected_points[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["wgan-gp", "dragan"])
def test_an_explicit_generator_draws_what_the_default_generator_would(backend_name, device, kind):
    D = RecordingD(device)
    real, fake = batches(2, device)
    torch.manual_seed(5)
    fastgp.gradient_penalty(D, real, fake, kind=kind)
    fastgp.gradient_penalty(D, real, fake, kind=kind, generator=torch.Generator(device).manual_seed(5))
    assert torch.equal(D.inputs[0], D.inputs[1])


def test_dragan_points_lie_between_the_batch_and_its_perturbation():
    """x̂ − x = α·0.5·std(x)·u with u, α in [0, 1): every offset is in [0, 0.5·std) and shares the
    sign of 0.5·std (positive), and the per-sample α makes the offsets of one sample scale together."""
    real = torch.randn(64, 3, 4, 4, dtype=torch.float64)
    from fastgp.reference.penalty import dragan_points

    offset = dragan_points(real, torch.Generator().manual_seed(0)) - real
    spread = 0.5 * real.std(correction=0)
    assert bool((offset >= 0).all()) and bool((offset < spread).all())
    # Without α the mean offset would be spread/2 for every sample; α ~ U(0,1) spreads it out.
    per_sample = offset.flatten(1).mean(dim=1) / spread
    assert per_sample.min() < 0.15 and per_sample.max() > 0.35
