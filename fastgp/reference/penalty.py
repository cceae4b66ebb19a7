"""Pure-PyTorch reference for the gradient-penalty family.

Two layers, both written the plain way:

* the raw ops (``interpolate``, ``interpolate_random``, ``grad_norm_penalty_forward``,
  ``grad_norm_penalty_backward``, ``grad_norm_penalty_sum``) with exactly the signatures and semantics of the C++/CUDA ops
  (``torch.ops.fastgp.*``) and the Triton launchers, so the backend layer can use this module as a
  drop-in fallback and the tests can use it as the oracle;
* ``gradient_penalty_reference``: the double-backprop penalty as GAN code writes it today
  (interpolate, ``autograd.grad(create_graph=True)``, ``norm``), the baseline of the benchmarks.
"""

from __future__ import annotations

import torch

from .._layout import accumulation_dtype

_MASK32 = 0xFFFFFFFF
# Philox4x32-10 constants (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"),
# the same as Triton's tl.rand, so every backend draws the same alphas from the same seed.
_PHILOX_ROUND_A = 0xD2511F53
_PHILOX_ROUND_B = 0xCD9E8D57
_PHILOX_KEY_A = 0x9E3779B9
_PHILOX_KEY_B = 0xBB67AE85
_PHILOX_ROUNDS = 10
_UNIFORM_SCALE = 4.6566127342e-10  # the largest scale with (2**31 - 1) * scale < 1 in float32


def _per_sample(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """View a [B] tensor as [B, 1, ..., 1] so it broadcasts over a rank-``ndim`` batch."""
    return values.view(values.shape[0], *([1] * (ndim - 1)))


# --------------------------------------------------------------------------------------------
# Counter-based random numbers (Philox4x32-10) in int64 tensor arithmetic
# --------------------------------------------------------------------------------------------


def _mulhilo32(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32 bits of the 64-bit product of a constant and uint32 values held in int64.

    The product does not fit in int64, so it is split into 16-bit halves of ``b``:
    a*b = a*b_hi*2**16 + a*b_lo, each partial below 2**48.
    """
    b_hi, b_lo = b >> 16, b & 0xFFFF
    p_hi, p_lo = b_hi * a, b_lo * a
    hi = (p_hi + (p_lo >> 16)) >> 16
    lo = ((p_hi & 0xFFFF) << 16) + p_lo
    return hi & _MASK32, lo & _MASK32


def philox4x32(counter: torch.Tensor, seed: int, rounds: int = _PHILOX_ROUNDS) -> torch.Tensor:
    """First output word of Philox4x32 for counters (counter, 0, 0, 0) and a 64-bit key ``seed``.

    ``counter`` is an int64 tensor of uint32 values; the result is int64 holding uint32 values.
    """
    c0 = counter.to(torch.int64) & _MASK32
    c1 = torch.zeros_like(c0)
    c2 = torch.zeros_like(c0)
    c3 = torch.zeros_like(c0)
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    for _ in range(rounds):
        hi_b, lo_b = _mulhilo32(_PHILOX_ROUND_B, c2)
        hi_a, lo_a = _mulhilo32(_PHILOX_ROUND_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0, k1 = (k0 + _PHILOX_KEY_A) & _MASK32, (k1 + _PHILOX_KEY_B) & _MASK32
    return c0


def uniform_from_uint32(x: torch.Tensor) -> torch.Tensor:
    """Triton's ``uint_to_uniform_float``: uint32 (held in int64) to float32 in [0, 1)."""
    signed = torch.where(x >= 2**31, x - 2**32, x)  # reinterpret as int32
    folded = torch.where(signed < 0, -signed - 1, signed)
    return folded.to(torch.float32) * torch.tensor(_UNIFORM_SCALE, dtype=torch.float32)


def philox_uniform(n: int, seed: int, device=None) -> torch.Tensor:
    """``n`` float32 uniforms in [0, 1): element b is Philox of counter b under key ``seed``."""
    counter = torch.arange(n, dtype=torch.int64, device=device)
    return uniform_from_uint32(philox4x32(counter, int(seed)))


# --------------------------------------------------------------------------------------------
# Raw ops: same names, signatures and results as torch.ops.fastgp.* and fastgp.triton.penalty
# --------------------------------------------------------------------------------------------


def interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """out[b] = alpha[b]·real[b] + (1 − alpha[b])·fake[b], computed in the accumulation dtype."""
    acc = accumulation_dtype(real.dtype)
    a = _per_sample(alpha.to(acc), real.dim())
    return (a * real.to(acc) + (1 - a) * fake.to(acc)).to(real.dtype)


def interpolate_random(
    real: torch.Tensor, fake: torch.Tensor, seed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolate with alpha[b] = Philox-uniform(seed, b) rounded to ``real.dtype``."""
    alpha = philox_uniform(real.shape[0], int(seed.item()), device=real.device).to(real.dtype)
    return interpolate(real, fake, alpha), alpha


# Below this a sum of squares may have lost precision to underflow (csrc/fastgp/penalty.h).
LOWEST_TRUSTED_SUM_SQUARES = {torch.float32: 2.0**-100, torch.float64: 2.0**-969}


def needs_rescaling(sum_sq: torch.Tensor) -> torch.Tensor:
    """[B] bool: the plain sum of squares overflowed (inf, not NaN) or fell below the trusted range."""
    return (sum_sq < LOWEST_TRUSTED_SUM_SQUARES[sum_sq.dtype]) | (sum_sq == float("inf"))


def scaled_norm(rows: torch.Tensor) -> torch.Tensor:
    """Overflow/underflow-safe L2 norm of each row of a NaN-free [R, D]: m·sqrt(Σ (x/m)²) with
    m = max |x| (LAPACK's nrm2 scaling); 0 and inf rows come back as m."""
    m = rows.abs().amax(dim=1)
    usable = (m > 0) & m.isfinite()
    safe = torch.where(usable, m, torch.ones_like(m))
    norm = m * (rows / safe[:, None]).square().sum(dim=1).sqrt()
    return torch.where(usable, norm, m)


def _penalty_coefficient(norm: torch.Tensor, center: float, one_sided: bool) -> torch.Tensor:
    """d penalty_b / d grad_b = coef_b · grad_b; coef is 0 where the norm is 0 (as torch's norm).

    Only a zero norm is masked (``norm != 0``, not ``norm > 0``): a NaN norm gives a NaN
    coefficient, so a NaN row's gradient is NaN in every element, as on the other backends."""
    if center == 0:
        return torch.full_like(norm, 2.0)
    distance = norm - center
    if one_sided:
        distance = distance.clamp_min(0)
    nonzero = norm != 0
    safe_norm = torch.where(nonzero, norm, torch.ones_like(norm))
    return torch.where(nonzero, 2 * distance / safe_norm, torch.zeros_like(norm))


def grad_norm_penalty_forward(
    grad: torch.Tensor, center: float, one_sided: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (penalty, norm) in the accumulation dtype.

    A centre of 0 returns the sum of squares itself: taking the square root and squaring again
    would give a NaN gradient at g = 0.
    """
    rows = grad.reshape(grad.shape[0], -1).to(accumulation_dtype(grad.dtype))
    sum_sq = (rows * rows).sum(dim=1)
    norm = sum_sq.sqrt()
    rescale = needs_rescaling(sum_sq)
    # Over/underflowed rows (rare) get the scaled norm and s = norm², as the kernels. Traced by
    # torch.compile: no data-dependent branch, every row's scaled norm computed and selected.
    if torch.compiler.is_compiling():
        scaled = scaled_norm(rows)
        norm = torch.where(rescale, scaled, norm)
        sum_sq = torch.where(rescale, scaled * scaled, sum_sq)
    elif rescale.any():
        scaled = scaled_norm(rows[rescale])
        norm = norm.index_put((rescale,), scaled)
        sum_sq = sum_sq.index_put((rescale,), scaled * scaled)
    if center == 0:
        return sum_sq, norm
    distance = norm - center
    if one_sided:
        distance = distance.clamp_min(0)
    return distance * distance, norm


def grad_norm_penalty_backward(
    grad_penalty: torch.Tensor,
    grad: torch.Tensor,
    norm: torch.Tensor,
    center: float,
    one_sided: bool,
) -> torch.Tensor:
    """grad_in[b] = grad[b] · grad_penalty[b] · coef_b, with the shape and dtype of ``grad``."""
    scale = grad_penalty * _penalty_coefficient(norm, center, one_sided)
    acc = accumulation_dtype(grad.dtype)
    return (grad.to(acc) * _per_sample(scale.to(acc), grad.dim())).to(grad.dtype)


def grad_norm_penalty_sum(grad: torch.Tensor, center: float, one_sided: bool, scale: float) -> torch.Tensor:
    """scale · Σ_b penalty[b] (0-d, accumulation dtype): the head reduced to a scalar."""
    return grad_norm_penalty_forward(grad, center, one_sided)[0].sum() * scale


# --------------------------------------------------------------------------------------------
# The penalty as GAN code writes it today (baseline of the benchmarks, oracle of the API tests)
# --------------------------------------------------------------------------------------------

INTERPOLATING_KINDS = ("wgan-gp", "zero-gp", "lp", "max-gp")


def draw_alpha(real: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One α ~ U(0, 1) per sample, float32 [B], drawn as the authors' code draws it: one
    ``torch.rand(B, 1)`` from the device's generator (Thanh-Tung et al.'s ``cal_gradpen``); the
    TensorFlow codes of WGAN-GP, LP, max-GP and DRAGAN draw the same shape with ``tf.random_uniform``.
    """
    source = generator.device if generator is not None else real.device
    return torch.rand(real.shape[0], generator=generator, device=source).to(real.device)


def dragan_points(real: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """DRAGAN's points as Kodali et al.'s code draws them (kodalinaveen3/DRAGAN, DRAGAN.ipynb):
    first a perturbed batch x_p = x + 0.5·std(x)·U(0, 1) elementwise (std over the whole batch,
    without Bessel's correction, as numpy's ``minibatch.std()``), then one α ~ U(0, 1) per sample
    and x̂ = x + α·(x_p − x). Computed in float32 for float16/bfloat16 input, returned in its dtype.
    """
    source = generator.device if generator is not None else real.device
    noise = torch.rand(real.shape, generator=generator, dtype=real.dtype, device=source).to(real.device)
    alpha = draw_alpha(real, generator)
    x = real.to(accumulation_dtype(real.dtype))
    perturbed = x + 0.5 * x.std(correction=0) * noise.to(x.dtype)
    a = _per_sample(alpha.to(x.dtype), x.dim())
    return (x + a * (perturbed - x)).to(real.dtype)


def gradient_penalty_reference(
    D,
    real: torch.Tensor,
    fake: torch.Tensor | None = None,
    *,
    kind: str = "wgan-gp",
    weight: float = 10.0,
    alpha: torch.Tensor | None = None,
    d_args=(),
    d_kwargs=None,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Double-backprop gradient penalty, written the way GAN code does it by hand."""
    if kind in INTERPOLATING_KINDS:
        if alpha is None:
            alpha = draw_alpha(real, generator)
        alpha = alpha.to(real.dtype).reshape(real.shape[0], *([1] * (real.dim() - 1)))
        x = alpha * real + (1 - alpha) * fake
    elif kind == "dragan":
        x = dragan_points(real, generator)
    elif kind == "r1":
        x = real
    elif kind == "r2":
        x = fake
    else:
        raise ValueError(f"unknown kind {kind!r}")
    x = x.detach().requires_grad_(True)
    out = D(x, *d_args, **(d_kwargs or {}))
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    grad = grad.reshape(grad.shape[0], -1)
    if kind in ("wgan-gp", "dragan"):
        per_sample = (grad.norm(2, dim=1) - 1) ** 2
    elif kind == "lp":
        per_sample = torch.relu(grad.norm(2, dim=1) - 1) ** 2
    else:  # zero-gp, r1, r2, max-gp: squared norm without a square root
        per_sample = grad.pow(2).sum(dim=1)
    if kind == "max-gp":
        return weight * per_sample.max()
    if reduction == "none":
        return weight * per_sample
    if reduction == "sum":
        return weight * per_sample.sum()
    return weight * per_sample.mean()
