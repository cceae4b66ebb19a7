"""GAN losses from discriminator logits, including the Lipschitz-GAN family of Zhou et al.

Sign conventions (every function in this module):

* ``logits`` are the raw, unbounded outputs of the discriminator D; D is trained to give REAL
  samples LARGE logits (σ(logit) is its probability that a sample is real).
* ``d_loss(real_logits, fake_logits)`` is MINIMIZED by D; ``g_loss(fake_logits)`` is MINIMIZED by
  the generator G. Nothing is negated for you: call ``loss.backward()`` on either.
* Reduction: the mean over the batch, taken separately for the real and the fake terms, so the two
  batches may differ in size. Logits may be [B], [B, 1] or any [B, ...] (a PatchGAN's logit map);
  the mean is then over every element.
* float16/bfloat16 logits are computed in float32 and the loss is float32 (as for the penalties);
  float32 and float64 logits give a loss of their own dtype.

With r the real logits and f the fake logits, E the mean, softplus(x) = log(1 + eˣ) = −log σ(−x):

==============  ===============================  ==============  ==========================
name            d_loss                           g_loss          reference
==============  ===============================  ==============  ==========================
non-saturating  E softplus(−r) + E softplus(f)   E softplus(−f)  Goodfellow et al. 2014
saturating      E softplus(−r) + E softplus(f)   −E softplus(f)  Goodfellow et al. 2014
wasserstein     E f − E r                        −E f            Arjovsky et al. 2017
hinge           E relu(m − r) + E relu(m + f)    −E f            Lim & Ye 2017, Miyato 2018
least-squares   ½E (r − b)² + ½E (f − a)²        ½E (f − c)²     Mao et al. 2017
==============  ===============================  ==============  ==========================

Relativistic losses compare real and fake logits, so their generator loss needs the real logits
too: ``g_loss(fake_logits, real_logits)`` (fake first, so that a call with the fake logits alone
fails with a missing-argument TypeError rather than silently computing something else). The names
with such a G loss are listed in ``RELATIVISTIC``.

======================  ==================================  ==================================  =======================
name                    d_loss                              g_loss                              reference
======================  ==================================  ==================================  =======================
relativistic-pairing    E softplus(−(r − f))                E softplus(−(f − r))                Jolicoeur-Martineau
                                                                                                2018; R3GAN (Huang et
                                                                                                al. 2024)
relativistic-average    E softplus(−(r − E f))              E softplus(−(f − E r))              Jolicoeur-Martineau
                        + E softplus(f − E r)               + E softplus(r − E f)               2018 (RaSGAN)
======================  ==================================  ==================================  =======================

The pairing loss (RpGAN) pairs real sample i with fake sample i: real and fake logits must have the
same shape. It is the loss of R3GAN (brownvc/R3GAN, ``R3GAN/Trainer.py``), whose
``AccumulateDiscriminatorGradients`` / ``AccumulateGeneratorGradients`` take
``softplus(−(RealLogits − FakeLogits)).mean()`` and ``softplus(−(FakeLogits − RealLogits)).mean()``;
R3GAN uses ``F.softplus`` (x itself above 20), so the two agree to e⁻²⁰ ≈ 2e-9 per element. The
average loss (RaGAN) compares each logit with the mean logit of the other batch, so the batches may
differ in size. Use RpGAN with ``fastgp.r1_r2_penalty`` for the R3GAN recipe (docs/losses.md, "The R3GAN recipe").

The cross-entropy terms are softplus computed as ``−logsigmoid(−x)`` — never ``log(sigmoid(x))``,
which is −inf in float32 once σ(x) underflows (x ≈ −104), and not ``F.softplus``, which returns x
itself above x = 20 (off by e⁻²⁰ ≈ 2e-9) — so they are exact, finite and have finite gradients for
any finite logit.

Lipschitz GANs (Zhou et al., "Lipschitz Generative Adversarial Nets", ICML 2019): D minimizes
E φ(f) + E ϕ(r) under a Lipschitz constraint on D, for any φ, ϕ with

    φ' > 0,  φ'' ≥ 0,  ϕ' < 0,  ϕ'' ≥ 0,  and φ'(a) + ϕ'(a) = 0 for some a.

The paper enforces the constraint with the max gradient penalty, ``kind="max-gp"`` of
:func:`fastgp.gradient_penalty`; use it (or another Lipschitz constraint) with these losses::

    d_loss, g_loss = fastgp.losses.get("lgan-combined")
    fake_d = fake.detach()
    loss_d = d_loss(D(real), D(fake_d)) + fastgp.gradient_penalty(D, real, fake_d, kind="max-gp", weight=0.1)
    loss_g = g_loss(D(fake))

Shipped pairs (φ acts on fake logits, ϕ on real logits):

==================  ==========================  ==========================  ==========
name                φ(x)                        ϕ(x)                        checked on
==================  ==========================  ==========================  ==========
lgan-wasserstein    x                           −x                          (−10, 10)
lgan-vanilla        −log σ(−x) = softplus(x)    −log σ(x) = softplus(−x)    (−10, 10)
lgan-least-squares  (x + α)²                    (x − α)²                    (−α, α)
lgan-exponential    eˣ                          e⁻ˣ                         (−10, 10)
lgan-combined       x − (α/β)·log σ(−βx)        −x − (α/β)·log σ(βx)        (−10, 10)
==================  ==========================  ==========================  ==========

These are the objectives of the authors' reference code (ZhimingZhou/LGANs-for-reproduce: ``x``,
``log_sigmoid``, ``lsgan``, ``exp``). The least-squares pair meets the conditions only for logits
in (−α, α) — φ' = 2(x + α) is negative below −α — the range of its pointwise optimum
α(p_r − p_g)/(p_r + p_g); its conditions are checked on that interval. The exponential pair grows
as e^|x| and overflows float32 beyond |logit| ≈ 88: keep D Lipschitz (that is the point) or use
float64. For ``lgan-combined`` (ϕ(x) = φ(−x)), α ≥ 0 weights the log-sigmoid term (α = 0 is
Wasserstein) and β > 0 its sharpness; both default to 1.

The generator's loss is E ψ(f), with ``psi="linear"`` (default, ψ(x) = −x, the default of the
authors' code) or ``psi="real"`` (ψ = ϕ: G makes its samples score like real ones; for
lgan-vanilla this is the non-saturating loss).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from . import _checks

__all__ = [
    "LGAN_PAIRS",
    "NAMES",
    "GANLoss",
    "LipschitzLoss",
    "RELATIVISTIC",
    "check_lipschitz_pair",
    "d_hinge",
    "d_least_squares",
    "d_nonsaturating",
    "d_relativistic_average",
    "d_relativistic_pairing",
    "d_saturating",
    "d_wasserstein",
    "g_hinge",
    "g_least_squares",
    "g_nonsaturating",
    "g_relativistic_average",
    "g_relativistic_pairing",
    "g_saturating",
    "g_wasserstein",
    "get",
    "lipschitz_loss",
]


class GANLoss(NamedTuple):
    """``(d_loss, g_loss)``: ``d_loss(real_logits, fake_logits)``, ``g_loss(fake_logits)`` —
    ``g_loss(fake_logits, real_logits)`` for the relativistic losses (``RELATIVISTIC``)."""

    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]


def _softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + eˣ) = −log σ(−x), exact for every x: ``F.logsigmoid`` is computed stably, while
    ``F.softplus`` returns x itself above its threshold of 20 (an error of e⁻²⁰ ≈ 2e-9)."""
    return -F.logsigmoid(-x)


def _logits(value, name: str) -> torch.Tensor:
    """A floating [B, ...] logits tensor, upcast to float32 when it is float16/bfloat16."""
    _checks.batch(value, name, min_rank=1)
    if value.dtype in (torch.float16, torch.bfloat16):
        value = value.float()
    return value


# --------------------------------------------------------------------------------------------
# Standard losses
# --------------------------------------------------------------------------------------------


def d_nonsaturating(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """−E log σ(r) − E log(1 − σ(f)) = E softplus(−r) + E softplus(f): D's cross-entropy."""
    r, f = _logits(real_logits, "real_logits"), _logits(fake_logits, "fake_logits")
    return _softplus(-r).mean() + _softplus(f).mean()


def g_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """−E log σ(f) = E softplus(−f): the non-saturating generator loss."""
    return _softplus(-_logits(fake_logits, "fake_logits")).mean()


def d_saturating(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's loss of the minimax game: the same cross-entropy as :func:`d_nonsaturating`."""
    return d_nonsaturating(real_logits, fake_logits)


def g_saturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """E log(1 − σ(f)) = −E softplus(f): the minimax (saturating) generator loss."""
    return -_softplus(_logits(fake_logits, "fake_logits")).mean()


def d_wasserstein(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """E f − E r: the critic loss of WGAN (needs a Lipschitz constraint, e.g. ``wgan-gp``)."""
    r, f = _logits(real_logits, "real_logits"), _logits(fake_logits, "fake_logits")
    return f.mean() - r.mean()


def g_wasserstein(fake_logits: torch.Tensor) -> torch.Tensor:
    """−E f."""
    return -_logits(fake_logits, "fake_logits").mean()


def d_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """E relu(margin − r) + E relu(margin + f): the hinge loss of SNGAN/BigGAN."""
    margin = _checks.real_number(margin, "margin", minimum=0.0)
    r, f = _logits(real_logits, "real_logits"), _logits(fake_logits, "fake_logits")
    return F.relu(margin - r).mean() + F.relu(margin + f).mean()


def g_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    """−E f (the generator side of the hinge loss is linear)."""
    return -_logits(fake_logits, "fake_logits").mean()


def d_least_squares(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, a: float = -1.0, b: float = 1.0
) -> torch.Tensor:
    """½E (r − b)² + ½E (f − a)²: LSGAN's D pulls fake logits to ``a`` and real ones to ``b``.

    The ½ follows Mao et al.; the defaults a = −1, b = 1 (with c = 1 for G) are the symmetric
    targets (Mao et al. also use a = 0, b = c = 1, or c = 0 for their Pearson-χ² variant).
    """
    a = _checks.real_number(a, "a")
    b = _checks.real_number(b, "b")
    r, f = _logits(real_logits, "real_logits"), _logits(fake_logits, "fake_logits")
    return 0.5 * (r - b).square().mean() + 0.5 * (f - a).square().mean()


def g_least_squares(fake_logits: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """½E (f − c)²: G pulls its logits to ``c``."""
    c = _checks.real_number(c, "c")
    return 0.5 * (_logits(fake_logits, "fake_logits") - c).square().mean()


# --------------------------------------------------------------------------------------------
# Relativistic losses
# --------------------------------------------------------------------------------------------


def _paired(real_logits, fake_logits) -> tuple[torch.Tensor, torch.Tensor]:
    r, f = _logits(real_logits, "real_logits"), _logits(fake_logits, "fake_logits")
    if r.shape != f.shape:
        raise ValueError(
            "real_logits and fake_logits must have the same shape for the relativistic pairing loss (real "
            f"sample i is paired with fake sample i), got {list(r.shape)} and {list(f.shape)}"
        )
    if r.dtype != f.dtype:
        raise TypeError(f"real_logits and fake_logits must have the same dtype, got {r.dtype} and {f.dtype}")
    return r, f


def d_relativistic_pairing(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """E softplus(−(r − f)) over pairs (r_i, f_i): D's relativistic pairing loss (RpGAN, R3GAN)."""
    r, f = _paired(real_logits, fake_logits)
    return _softplus(f - r).mean()


def g_relativistic_pairing(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """E softplus(−(f − r)) over pairs: G's mirror of :func:`d_relativistic_pairing`."""
    r, f = _paired(real_logits, fake_logits)
    return _softplus(r - f).mean()


def _average_pair(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """E softplus(−(a − E b)) + E softplus(b − E a): a is the side that should score higher."""
    return _softplus(b.mean() - a).mean() + _softplus(b - a.mean()).mean()


def d_relativistic_average(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """E softplus(−(r − E f)) + E softplus(f − E r): D's relativistic average loss (RaSGAN)."""
    r, f = _logits(real_logits, "real_logits"), _logits(fake_logits, "fake_logits")
    return _average_pair(r, f)


def g_relativistic_average(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """E softplus(−(f − E r)) + E softplus(r − E f): G's mirror of :func:`d_relativistic_average`."""
    r, f = _logits(real_logits, "real_logits"), _logits(fake_logits, "fake_logits")
    return _average_pair(f, r)


# --------------------------------------------------------------------------------------------
# Lipschitz GANs
# --------------------------------------------------------------------------------------------

DEFAULT_DOMAIN = (-10.0, 10.0)
GRID_POINTS = 2001
PSI = ("linear", "real")


def _derivatives(fn, x: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """First and second derivatives of an elementwise ``fn`` at the points ``x`` (float64)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = fn(x)
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"{name} must map a tensor to a tensor with torch ops, got {type(y).__name__}")
        if y.shape != x.shape:
            raise ValueError(
                f"{name} must act elementwise (output shape = input shape): for an input of shape "
                f"{list(x.shape)} it returned shape {list(y.shape)}"
            )
        if not y.requires_grad:
            zeros = torch.zeros_like(x)
            return zeros, zeros.clone()
        (d1,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        if d1.requires_grad:
            (d2,) = torch.autograd.grad(d1.sum(), x, allow_unused=True)
        else:
            d2 = None
    return d1.detach(), (torch.zeros_like(x) if d2 is None else d2.detach())


def _check_domain(domain) -> tuple[float, float]:
    if not isinstance(domain, (tuple, list)) or len(domain) != 2:
        raise TypeError(f"domain must be a (low, high) pair of numbers, got {domain!r}")
    low = _checks.real_number(domain[0], "domain[0]")
    high = _checks.real_number(domain[1], "domain[1]")
    if not low < high:
        raise ValueError(f"domain must satisfy low < high, got ({low}, {high})")
    return low, high


def _fail(condition: str, what: str, values: torch.Tensor, grid: torch.Tensor, bad: torch.Tensor, label: str):
    i = int(torch.nonzero(bad)[0])
    raise ValueError(
        f"the Lipschitz-GAN condition {condition} fails: {what} ({label}({grid[i].item():.6g}) = "
        f"{values[i].item():.6g}); φ acts on fake logits, ϕ (varphi) on real logits"
    )


def check_lipschitz_pair(
    phi: Callable[[torch.Tensor], torch.Tensor],
    varphi: Callable[[torch.Tensor], torch.Tensor],
    domain: tuple[float, float] = DEFAULT_DOMAIN,
    points: int = GRID_POINTS,
) -> float:
    """Check φ' > 0, φ'' ≥ 0, ϕ' < 0, ϕ'' ≥ 0 and ∃a: φ'(a) + ϕ'(a) = 0 on a grid.

    The derivatives are taken by autograd in float64 at ``points`` equally spaced points strictly
    inside the open interval ``domain``. The second-derivative checks allow a rounding tolerance
    of 1e-8 · max(1, max |first derivative|). Raises ValueError naming the first failed condition
    and a point where it fails; returns ``a`` (the root of φ' + ϕ', located by linear
    interpolation on the grid; φ' + ϕ' is nondecreasing once both functions are convex).
    """
    for fn, name in ((phi, "phi"), (varphi, "varphi")):
        if not callable(fn):
            raise TypeError(f"{name} must be callable (an elementwise function of a tensor), got {type(fn).__name__}")
    low, high = _check_domain(domain)
    points = _checks.integer(points, "points", minimum=3)
    grid = torch.linspace(low, high, points + 2, dtype=torch.float64)[1:-1]
    d1_phi, d2_phi = _derivatives(phi, grid, "phi")
    d1_var, d2_var = _derivatives(varphi, grid, "varphi")
    for values, label in ((d1_phi, "phi'"), (d2_phi, "phi''"), (d1_var, "varphi'"), (d2_var, "varphi''")):
        bad = ~torch.isfinite(values)
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0])
            raise ValueError(
                f"{label} is not finite at x = {grid[i].item():.6g} (got {values[i].item()}): the Lipschitz-GAN "
                f"conditions need phi and varphi twice differentiable on the domain ({low:g}, {high:g})"
            )
    bad = ~(d1_phi > 0)
    if bool(bad.any()):
        _fail("φ' > 0", "phi must be strictly increasing", d1_phi, grid, bad, "phi'")
    tol_phi = 1e-8 * max(1.0, d1_phi.abs().max().item())
    bad = d2_phi < -tol_phi
    if bool(bad.any()):
        _fail("φ'' ≥ 0", "phi must be convex", d2_phi, grid, bad, "phi''")
    bad = ~(d1_var < 0)
    if bool(bad.any()):
        _fail("ϕ' < 0", "varphi must be strictly decreasing", d1_var, grid, bad, "varphi'")
    tol_var = 1e-8 * max(1.0, d1_var.abs().max().item())
    bad = d2_var < -tol_var
    if bool(bad.any()):
        _fail("ϕ'' ≥ 0", "varphi must be convex", d2_var, grid, bad, "varphi''")
    total = d1_phi + d1_var
    tol = 1e-12 * max(1.0, d1_phi.abs().max().item(), d1_var.abs().max().item())
    if not (total.min().item() <= tol and total.max().item() >= -tol):
        raise ValueError(
            f"the Lipschitz-GAN condition φ'(a) + ϕ'(a) = 0 fails: no a in ({low:g}, {high:g}) solves it; "
            f"phi' + varphi' ranges over [{total.min().item():.6g}, {total.max().item():.6g}] there"
        )
    # First grid point where phi' + varphi' reaches 0; interpolate between it and its predecessor.
    i = int(torch.nonzero(total >= -tol)[0])
    if i == 0 or total[i].item() == total[i - 1].item():
        return grid[i].item()
    x0, x1, s0, s1 = grid[i - 1].item(), grid[i].item(), total[i - 1].item(), total[i].item()
    return x0 - s0 * (x1 - x0) / (s1 - s0)


@dataclass(frozen=True)
class LipschitzLoss:
    """A checked Lipschitz-GAN objective: D minimizes E φ(f) + E ϕ(r), G minimizes E ψ(f).

    Build one with :func:`lipschitz_loss` or :func:`get`; the pair was checked on ``domain``
    when it was built and ``a`` is the root of φ' + ϕ' found there.
    """

    name: str
    phi: Callable[[torch.Tensor], torch.Tensor]
    varphi: Callable[[torch.Tensor], torch.Tensor]
    psi: str
    domain: tuple[float, float]
    a: float

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """E φ(fake_logits) + E ϕ(real_logits), minimized by D."""
        r, f = _logits(real_logits, "real_logits"), _logits(fake_logits, "fake_logits")
        return self.phi(f).mean() + self.varphi(r).mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """E ψ(fake_logits), minimized by G: ψ(x) = −x (``psi="linear"``) or ψ = ϕ (``"real"``)."""
        f = _logits(fake_logits, "fake_logits")
        return -f.mean() if self.psi == "linear" else self.varphi(f).mean()

    def losses(self) -> GANLoss:
        return GANLoss(self.d_loss, self.g_loss)


def _wasserstein_pair():
    return (lambda x: x), (lambda x: -x), DEFAULT_DOMAIN


def _vanilla_pair():
    # −log σ(−x) = softplus(x) and −log σ(x) = softplus(−x), stable for any x.
    return _softplus, (lambda x: _softplus(-x)), DEFAULT_DOMAIN


def _least_squares_pair(alpha: float = 1.0):
    alpha = _checks.real_number(alpha, "alpha")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0 for lgan-least-squares, got {alpha}")
    return (lambda x: (x + alpha).square()), (lambda x: (x - alpha).square()), (-alpha, alpha)


def _exponential_pair():
    return torch.exp, (lambda x: torch.exp(-x)), DEFAULT_DOMAIN


def _combined_pair(alpha: float = 1.0, beta: float = 1.0):
    alpha = _checks.real_number(alpha, "alpha", minimum=0.0)
    beta = _checks.real_number(beta, "beta")
    if beta <= 0:
        raise ValueError(f"beta must be > 0 for lgan-combined, got {beta}")
    scale = alpha / beta
    # x − (α/β)·log σ(−βx) = x + (α/β)·softplus(βx); ϕ(x) = φ(−x).
    return (lambda x: x + scale * _softplus(beta * x)), (lambda x: -x + scale * _softplus(-beta * x)), DEFAULT_DOMAIN


LGAN_PAIRS = {
    "wasserstein": _wasserstein_pair,
    "vanilla": _vanilla_pair,
    "least-squares": _least_squares_pair,
    "exponential": _exponential_pair,
    "combined": _combined_pair,
}
_LGAN_PARAMS = {
    "wasserstein": (),
    "vanilla": (),
    "least-squares": ("alpha",),
    "exponential": (),
    "combined": ("alpha", "beta"),
}


def _check_params(label: str, params: dict, allowed) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "no parameters"
        raise TypeError(f"unexpected parameter {unknown[0]!r} for loss {label!r}; it takes: {takes}")


def lipschitz_loss(
    name: str | None = None,
    *,
    phi: Callable[[torch.Tensor], torch.Tensor] | None = None,
    varphi: Callable[[torch.Tensor], torch.Tensor] | None = None,
    psi: str = "linear",
    domain: tuple[float, float] | None = None,
    **params,
) -> LipschitzLoss:
    """A Lipschitz-GAN objective: a shipped pair by ``name``, or your own ``phi`` and ``varphi``.

    Args:
        name: ``"wasserstein"``, ``"vanilla"``, ``"least-squares"`` (parameter ``alpha`` > 0,
            default 1), ``"exponential"`` or ``"combined"`` (``alpha`` ≥ 0 and ``beta`` > 0,
            default 1 and 1); None with ``phi`` and ``varphi`` for your own pair.
        phi: an elementwise function of a tensor written in torch ops, φ on fake logits.
        varphi: the same for ϕ on real logits. The pair is checked with
            :func:`check_lipschitz_pair` on ``domain`` (default (−10, 10)); a violated condition
            raises ValueError naming it.
        psi: the generator's loss, ``"linear"`` (ψ(x) = −x) or ``"real"`` (ψ = ϕ).
        domain: the interval of logits on which the conditions are checked (a named pair has
            its own: (−α, α) for least-squares, (−10, 10) otherwise).

    Use it with the ``max-gp`` penalty of :func:`fastgp.gradient_penalty`, as the paper does.
    """
    _checks.choice(psi, "psi", PSI)
    if name is None:
        if phi is None or varphi is None:
            raise ValueError("pass the name of a shipped Lipschitz-GAN pair or both phi and varphi")
        _check_params("lgan", params, ())
        label = "custom"
        if domain is None:
            domain = DEFAULT_DOMAIN
    else:
        if phi is not None or varphi is not None:
            raise ValueError(f"phi and varphi define a custom pair: pass them without a name (got name={name!r})")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        _checks.choice(name, "Lipschitz-GAN pair", tuple(LGAN_PAIRS))
        _check_params(f"lgan-{name}", params, _LGAN_PARAMS[name])
        phi, varphi, own_domain = LGAN_PAIRS[name](**params)
        label = name
        if domain is None:
            domain = own_domain
    domain = _check_domain(domain)
    a = check_lipschitz_pair(phi, varphi, domain)
    return LipschitzLoss(label, phi, varphi, psi, domain, a)


# --------------------------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------------------------

_STANDARD = {
    "non-saturating": (d_nonsaturating, g_nonsaturating, (), ()),
    "saturating": (d_saturating, g_saturating, (), ()),
    "wasserstein": (d_wasserstein, g_wasserstein, (), ()),
    "hinge": (d_hinge, g_hinge, ("margin",), ()),
    "least-squares": (d_least_squares, g_least_squares, ("a", "b"), ("c",)),
}
# The relativistic losses: their g_loss takes (fake_logits, real_logits).
_RELATIVISTIC = {
    "relativistic-pairing": (d_relativistic_pairing, g_relativistic_pairing, (), ()),
    "relativistic-average": (d_relativistic_average, g_relativistic_average, (), ()),
}
RELATIVISTIC = tuple(_RELATIVISTIC)

NAMES = tuple(_STANDARD) + tuple(f"lgan-{n}" for n in LGAN_PAIRS) + ("lgan",) + RELATIVISTIC


def get(name: str, **params) -> GANLoss:
    """``(d_loss, g_loss)`` for a loss name; parameters are bound by keyword.

    Names: ``"non-saturating"``, ``"saturating"``, ``"wasserstein"``, ``"hinge"`` (``margin``,
    default 1), ``"least-squares"`` (``a``, ``b``, ``c``, defaults −1, 1, 1),
    ``"relativistic-pairing"`` and ``"relativistic-average"`` (whose ``g_loss`` is
    ``g_loss(fake_logits, real_logits)``: see ``RELATIVISTIC``), the Lipschitz-GAN
    pairs ``"lgan-wasserstein"``, ``"lgan-vanilla"``, ``"lgan-least-squares"`` (``alpha``),
    ``"lgan-exponential"``, ``"lgan-combined"`` (``alpha``, ``beta``), and ``"lgan"`` with your
    own ``phi`` and ``varphi`` (and ``domain``); every Lipschitz-GAN name also takes ``psi``.

    ``d_loss(real_logits, fake_logits)`` is minimized by D, ``g_loss(fake_logits)`` by G (see
    the module docstring for the formulas and sign conventions)::

        d_loss, g_loss = fastgp.losses.get("hinge")
        d_loss(D(real), D(fake.detach())).backward()
    """
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a str, got {type(name).__name__}")
    if name not in NAMES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(repr(n) for n in NAMES)}")
    if name == "lgan":
        return lipschitz_loss(None, **params).losses()
    if name.startswith("lgan-"):
        return lipschitz_loss(name[len("lgan-"):], **params).losses()
    d_fn, g_fn, d_params, g_params = _STANDARD[name] if name in _STANDARD else _RELATIVISTIC[name]
    _check_params(name, params, d_params + g_params)
    d_kwargs = {k: v for k, v in params.items() if k in d_params}
    g_kwargs = {k: v for k, v in params.items() if k in g_params}
    # Validate the values now rather than at the first call.
    for key, value in params.items():
        if key == "margin":
            _checks.real_number(value, key, minimum=0.0)
        else:
            _checks.real_number(value, key)
    d_loss = functools.partial(d_fn, **d_kwargs) if d_kwargs else d_fn
    g_loss = functools.partial(g_fn, **g_kwargs) if g_kwargs else g_fn
    return GANLoss(d_loss, g_loss)

