"""Gradient penalties: fused interpolation, the fused gradient-norm penalty head, and the
double-backprop penalties built from them (WGAN-GP, 0-GP, R1, R2, LP, max-GP, DRAGAN).

Conventions (see docs/design.md): with g_i = ∂ sum(D(x)) / ∂x_i and ‖·‖ the L2 norm over all non-batch
dimensions of sample i,

=========  ===========================================  ==========================================
kind       penalty (before ``weight``)                   evaluated at
=========  ===========================================  ==========================================
wgan-gp    mean_i (‖g_i‖ − 1)²                           α·real + (1−α)·fake, α ~ U(0,1) per sample
zero-gp    mean_i ‖g_i‖²                                 the same interpolates
r1         mean_i ‖g_i‖²                                 real
r2         mean_i ‖g_i‖²                                 fake
lp         mean_i max(0, ‖g_i‖ − 1)²                     interpolates
max-gp     max_i ‖g_i‖²                                  interpolates
dragan     mean_i (‖g_i‖ − 1)²                           x + α·(x_p − x), x_p = x + 0.5·std(x)·U(0,1)
=========  ===========================================  ==========================================

The random points are drawn as the authors' code draws them, so that with the same generator
state ``gradient_penalty`` evaluates D where the hand-written code does: α is one
``torch.rand(B)`` (float32) from ``generator`` or the device's default generator; DRAGAN first
draws the elementwise U(0,1) of its perturbed batch, then α (``reference.penalty.dragan_points``;
the std is that of the whole batch, without Bessel's correction). Sources per kind: the
penalty-kinds table of docs/penalties.md (repository and file of each original).

``gradient_penalty_at`` takes any kind's formula at points the caller gives; ``latent_path_points``
builds the points of Thanh-Tung et al.'s latent path, G(α·E(real) + (1−α)·z), and
``latent_path_penalty`` takes an interpolating kind there.

A centre of 0 uses the sum of squares directly, never a square root (whose gradient is NaN at
g = 0). Reduced-precision gradients are accumulated in float32 and the penalty is float32.

Gradient orders: ``interpolate`` and ``grad_norm_penalty`` support first and second derivatives
(gradcheck and gradgradcheck are tested); their backward passes are themselves differentiable ops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import nn as _nn

from . import _checks, backend, forward_mode
from ._layout import accumulation_dtype, empty_kernel_output
from .reference.penalty import _penalty_coefficient, _per_sample, dragan_points, draw_alpha

FAMILY = "penalty"
REDUCTIONS = ("mean", "sum", "none", "max")


@dataclass(frozen=True)
class PenaltyKind:
    """Where a penalty is evaluated and which head it applies."""

    point: str  # "interpolate", "real", "fake" or "perturb"
    center: float
    one_sided: bool
    reduction: str


KINDS = {
    "wgan-gp": PenaltyKind("interpolate", 1.0, False, "mean"),
    "zero-gp": PenaltyKind("interpolate", 0.0, False, "mean"),
    "r1": PenaltyKind("real", 0.0, False, "mean"),
    "r2": PenaltyKind("fake", 0.0, False, "mean"),
    "lp": PenaltyKind("interpolate", 1.0, True, "mean"),
    "max-gp": PenaltyKind("interpolate", 0.0, False, "max"),
    "dragan": PenaltyKind("perturb", 1.0, False, "mean"),
}


# --------------------------------------------------------------------------------------------
# Fake (meta) implementations of the compiled ops, so torch.compile can trace code calling them
# --------------------------------------------------------------------------------------------


def _register_fake_kernels() -> None:
    if not backend._load_extension():
        return

    def acc_empty(like: torch.Tensor) -> torch.Tensor:
        return like.new_empty((like.shape[0],), dtype=accumulation_dtype(like.dtype))

    @torch.library.register_fake("fastgp::interpolate")
    def _(real, fake, alpha):
        return empty_kernel_output(real, fake)

    @torch.library.register_fake("fastgp::interpolate_random")
    def _(real, fake, seed):
        return empty_kernel_output(real, fake), real.new_empty((real.shape[0],))

    @torch.library.register_fake("fastgp::grad_norm_penalty_forward")
    def _(grad, center, one_sided):
        return acc_empty(grad), acc_empty(grad)

    @torch.library.register_fake("fastgp::grad_norm_penalty_backward")
    def _(grad_penalty, grad, norm, center, one_sided):
        return empty_kernel_output(grad)

    @torch.library.register_fake("fastgp::grad_norm_penalty_sum")
    def _(grad, center, one_sided, scale):
        return acc_empty(grad)[0]


_register_fake_kernels()


# --------------------------------------------------------------------------------------------
# Autograd
# --------------------------------------------------------------------------------------------


def _interpolate_grads(ctx, grad_out: torch.Tensor, need_alpha: bool):
    """Gradients of alpha·real + (1 − alpha)·fake, in differentiable torch ops (any order)."""
    real, fake, alpha = ctx.saved_tensors
    a = _per_sample(alpha.to(grad_out.dtype), grad_out.dim())
    grad_real = grad_out * a if ctx.needs_input_grad[0] else None
    grad_fake = grad_out * (1 - a) if ctx.needs_input_grad[1] else None
    grad_alpha = None
    if need_alpha:
        grad_alpha = (grad_out * (real - fake)).reshape(grad_out.shape[0], -1).sum(dim=1).to(alpha.dtype)
    return grad_real, grad_fake, grad_alpha


class _Interpolate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, real, fake, alpha):
        out = backend.kernels(FAMILY, real.device).interpolate(real, fake, alpha)
        # real and fake are needed only for alpha's gradient.
        if ctx.needs_input_grad[2]:
            ctx.save_for_backward(real, fake, alpha)
        else:
            ctx.save_for_backward(None, None, alpha)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        return _interpolate_grads(ctx, grad_out, ctx.needs_input_grad[2])


class _InterpolateRandom(torch.autograd.Function):
    @staticmethod
    def forward(ctx, real, fake, seed):
        out, alpha = backend.kernels(FAMILY, real.device).interpolate_random(real, fake, seed)
        ctx.mark_non_differentiable(alpha)
        ctx.save_for_backward(None, None, alpha)
        return out, alpha

    @staticmethod
    def backward(ctx, grad_out, _grad_alpha):
        grad_real, grad_fake, _ = _interpolate_grads(ctx, grad_out, need_alpha=False)
        return grad_real, grad_fake, None


# The penalty head has ONE hand-derived second derivative: the C++ autograd of the extension's
# ops (csrc/autograd/penalty.cpp), which keeps a penalty's forward + backward out of Python (at
# GAN shapes that call overhead is as large as the fused kernels themselves). The Python backends
# (Triton, reference) have no second copy of that formula. They share the Function below, whose
# backward
#   * in a plain backward (grad mode off: the first-order backward of every gradient penalty)
#     launches the backend's fused ``grad_norm_penalty_backward`` kernel;
#   * under create_graph (grad mode on: a second derivative is wanted) is the reference's
#     first-derivative formula grad · grad_penalty · coef(‖grad‖) in differentiable torch ops, the
#     norm recomputed from grad, and autograd derives every higher order from it.
# Why not register the Triton kernels as the CUDA kernels of the same ``fastgp::`` ops so that the
# C++ autograd serves them? It would cover one configuration only (an extension built without CUDA
# kernels): Triton forced beside a CUDA-built extension, Triton under the interpreter (CPU tensors,
# whose key the extension's CPU kernels hold) and a missing extension (no ``fastgp::`` schemas at
# all) would still need this Function. See docs/design.md, "Autograd".


def _head_per_sample(grad: torch.Tensor, center: float, one_sided: bool) -> torch.Tensor:
    """The differentiable per-sample penalty [B] of ``grad`` on the selected backend."""
    kernels = backend.kernels(FAMILY, grad.device)
    if kernels is torch.ops.fastgp:  # the registered op, with its autograd in C++
        return kernels.grad_norm_penalty_forward(grad, center, one_sided)[0]
    return _GradNormPenalty.apply(grad, center, one_sided, None, kernels)


def _head_backward_in_torch_ops(grad_penalty, grad, center: float, one_sided: bool) -> torch.Tensor:
    """grad_in = grad · grad_penalty · coef(‖grad‖) in differentiable torch ops of grad_penalty and grad.

    The norm is recomputed from grad (not the saved, non-differentiable one), so that
    differentiating this expression again is exact: autograd derives the second derivative (and
    every higher one) from it.
    """
    acc = accumulation_dtype(grad.dtype)
    g = grad.to(acc)
    norm = torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1)
    scale = grad_penalty.to(acc) * _penalty_coefficient(norm, center, one_sided)
    return (g * _per_sample(scale, g.dim())).to(grad.dtype)


class _GradNormPenalty(torch.autograd.Function):
    """The penalty head on a Python backend's kernels: per-sample penalties [B] (``scale`` None), or
    ``scale`` · their sum in ONE autograd node (1/B for the mean, 1 for the sum: the twin of the op
    ``grad_norm_penalty_sum``; a separate ``mean`` node would add an expand and a division before
    the fused backward, as costly as the kernels at small shapes)."""

    @staticmethod
    def forward(ctx, grad, center, one_sided, scale, kernels):
        penalty, norm = kernels.grad_norm_penalty_forward(grad, center, one_sided)
        ctx.save_for_backward(grad, norm)
        ctx.center, ctx.one_sided, ctx.scale, ctx.kernels = center, one_sided, scale, kernels
        return penalty if scale is None else penalty.sum() * scale

    @staticmethod
    def backward(ctx, grad_out):
        grad, norm = ctx.saved_tensors
        if ctx.scale is None:
            grad_penalty = grad_out
        else:
            # d(scale · Σ_b p_b)/d p_b = scale for every sample: a stride-0 [B] view, no copy. The
            # backward kernel reads grad_penalty through its strides.
            grad_penalty = (grad_out * ctx.scale).expand(grad.shape[0])
        if torch.is_grad_enabled():  # create_graph: a graph autograd can differentiate again
            grad_in = _head_backward_in_torch_ops(grad_penalty, grad, ctx.center, ctx.one_sided)
        else:
            grad_in = ctx.kernels.grad_norm_penalty_backward(grad_penalty, grad, norm, ctx.center, ctx.one_sided)
        return grad_in, None, None, None, None


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _check_alpha(alpha, real: torch.Tensor) -> torch.Tensor:
    """alpha of shape [B] or broadcastable [B, 1, ..., 1], values in [0, 1]; returned as [B]."""
    _checks.floating(alpha, "alpha")
    batch = real.shape[0]
    per_sample = alpha.dim() >= 1 and alpha.shape[0] == batch and all(s == 1 for s in alpha.shape[1:])
    if not per_sample or alpha.dim() > real.dim():
        raise ValueError(
            f"alpha must have shape [B] or [B, 1, ..., 1] with B = {batch} and at most {real.dim()} "
            f"dimensions, got {list(alpha.shape)}"
        )
    if alpha.device != real.device:
        raise ValueError(f"alpha must be on the device of real ({real.device}), got {alpha.device}")
    outside = ~((alpha >= 0) & (alpha <= 1))
    if bool(outside.any()):
        raise ValueError(f"alpha must lie in [0, 1]; got values such as {alpha[outside].flatten()[0].item()}")
    return alpha.reshape(batch).to(real.dtype)


def _draw_seed(generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """A 62-bit Philox key drawn from ``generator`` (or the device's default generator)."""
    source = generator.device if generator is not None else device
    seed = torch.randint(0, 2**62, (1,), generator=generator, device=source, dtype=torch.int64)
    return seed.to(device, non_blocking=True)


def interpolate(
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """α·real + (1 − α)·fake with one α per sample, in one fused kernel.

    Args:
        real: a tensor [B, ...] (any layout; channels_last is preserved).
        fake: a tensor of real's shape, dtype and device.
        alpha: optional per-sample weights of shape [B] (or [B, 1, ..., 1]) in [0, 1]; when
            omitted, α ~ U(0, 1) is drawn inside the kernel from a Philox stream keyed by a seed
            taken from ``generator`` (or the default generator of the device), so a seeded
            generator reproduces the same interpolates on every backend.
        generator: a ``torch.Generator`` for the random α.

    Differentiable in real, fake and a given alpha, to any order.
    """
    _checks.batch(real, "real")
    _checks.batch(fake, "fake")
    _checks.same_as(fake, "fake", real, "real")
    _checks.generator(generator)
    if alpha is None:
        seed = _draw_seed(generator, real.device)
        if not (torch.is_grad_enabled() and (real.requires_grad or fake.requires_grad)):
            # Nothing to differentiate (the usual GP case: real and fake are constants): the
            # kernel alone, without an autograd node.
            return backend.kernels(FAMILY, real.device).interpolate_random(real, fake, seed)[0]
        out, _ = _InterpolateRandom.apply(real, fake, seed)
        return out
    if generator is not None:
        raise ValueError("generator only applies when alpha is drawn at random; pass alpha or generator, not both")
    return _Interpolate.apply(real, fake, _check_alpha(alpha, real))


def _check_grad_norm_args(center, one_sided, reduction) -> tuple[float, bool]:
    center = _checks.real_number(center, "center", minimum=0.0)
    _checks.boolean(one_sided, "one_sided")
    _checks.choice(reduction, "reduction", REDUCTIONS)
    return center, one_sided


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "max":
        return per_sample.max()
    return per_sample


def grad_norm_penalty(
    grad: torch.Tensor, center: float = 1.0, one_sided: bool = False, reduction: str = "mean"
) -> torch.Tensor:
    """The fused penalty head: (‖g_i‖ − center)² per sample, reduced over the batch.

    Args:
        grad: a gradient [B, ...]; the norm is taken over all non-batch dimensions.
        center: 1 for WGAN-GP, 0 for zero-centred penalties (computed as the sum of squares).
        one_sided: penalize only norms above ``center`` (the Lipschitz penalty, LP).
        reduction: ``"mean"``, ``"sum"``, ``"none"`` (per-sample [B]) or ``"max"`` (max-GP).

    Returns a float32 result for float16/bfloat16/float32 gradients, float64 for float64.
    Non-finite gradients give non-finite penalties (nothing is masked). Finite gradients of any
    magnitude get the right norm: rows whose sum of squares over- or underflows (elements beyond
    ~1e±19 in float32) are recomputed with max-abs scaling, so the gradient 2(‖g‖ − c)·g/‖g‖ is right
    wherever it is representable; a penalty value beyond the dtype's range (e.g. (1e20 − 1)² in
    float32) is inf.
    """
    _checks.batch(grad, "grad")
    center, one_sided = _check_grad_norm_args(center, one_sided, reduction)
    if reduction in ("mean", "sum"):
        # scale · Σ_b penalty_b in one autograd node (inline: this is the hot path of every GP step).
        scale = 1.0 / grad.shape[0] if reduction == "mean" else 1.0
        kernels = backend.kernels(FAMILY, grad.device)
        if kernels is torch.ops.fastgp:  # the registered op, with its autograd in C++
            return kernels.grad_norm_penalty_sum(grad, center, one_sided, scale)
        return _GradNormPenalty.apply(grad, center, one_sided, scale, kernels)
    return _reduce(_head_per_sample(grad, center, one_sided), reduction)


def _check_logits(logits, batch: int, name: str = "D's output") -> None:
    _checks.tensor(logits, name)
    if not logits.is_floating_point():  # complex logits have no real-valued gradient sum
        raise TypeError(f"{name} must be real floating-point logits, got dtype {logits.dtype}")
    if tuple(logits.shape) not in ((batch,), (batch, 1)):
        raise ValueError(
            f"{name} must be logits of shape [B] or [B, 1] with B = {batch}, got {list(logits.shape)}"
        )


_NOT_CONNECTED = "the logits do not depend on the inputs: compute them from the inputs that require grad"


def _check_grad_context(fn: str, grad_scaler) -> None:
    """Before D runs: gradients can be taken, and ``grad_scaler`` is a GradScaler (or None)."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            f"{fn} needs gradients, which torch.inference_mode() disables: call it outside inference mode"
        )
    if grad_scaler is not None and not (callable(getattr(grad_scaler, "scale", None))
                                        and callable(getattr(grad_scaler, "get_scale", None))):
        raise TypeError(f"grad_scaler must be a torch.amp.GradScaler or None, got {type(grad_scaler).__name__}")


def _per_sample_input_penalty(
    logits: torch.Tensor, inputs: torch.Tensor, kind: PenaltyKind, grad_scaler
) -> torch.Tensor:
    """Per-sample penalty of g = ∂ sum(logits) / ∂inputs, keeping the graph for double backprop.

    With a GradScaler the input gradient is taken of the scaled sum (so reduced-precision
    intermediate gradients do not underflow) and unscaled before the penalty.
    """
    grad = _input_gradient(logits, inputs, grad_scaler, create_graph=True, retain_graph=True)
    return _head_per_sample(grad, kind.center, kind.one_sided)


def _input_gradient(logits, inputs, grad_scaler, create_graph: bool, retain_graph: bool) -> torch.Tensor:
    """g = ∂ sum(logits) / ∂inputs (unscaled)."""
    _check_logits(logits, inputs.shape[0])
    if not logits.requires_grad:
        raise ValueError(_NOT_CONNECTED)
    total = logits.sum()
    if grad_scaler is not None:
        total = grad_scaler.scale(total)
    (grad,) = torch.autograd.grad(total, inputs, create_graph=create_graph, retain_graph=retain_graph, allow_unused=True)
    if grad is None:
        raise ValueError(_NOT_CONNECTED)
    if grad_scaler is not None:
        grad = grad * (1.0 / grad_scaler.get_scale())
    return grad


def _finish(per_sample: torch.Tensor, weight: float, reduction: str, return_per_sample: bool):
    weighted = weight * per_sample
    penalty = _reduce(weighted, reduction)
    return (penalty, weighted) if return_per_sample else penalty


def gradient_penalty(
    D: Callable[..., torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor | None = None,
    *,
    kind: str = "wgan-gp",
    weight: float = 10.0,
    alpha: torch.Tensor | None = None,
    d_args: tuple = (),
    d_kwargs: dict | None = None,
    return_per_sample: bool = False,
    generator: torch.Generator | None = None,
    grad_scaler: torch.amp.GradScaler | None = None,
    method: str = "double-backward",
):
    """weight · penalty of D's input gradient, by double backprop, for one of ``KINDS``.

    Args:
        D: the discriminator; called as ``D(x, *d_args, **d_kwargs)`` and must return logits of
            shape [B] or [B, 1].
        real: a [B, ...] batch (any rank >= 2, any layout), treated as a constant (detached).
            ``r1`` and ``dragan`` use ``real`` (``fake`` may be None), ``r2`` uses ``fake``, the
            other kinds interpolate between them.
        fake: a batch of real's shape, dtype and device, treated as a constant (detached).
        kind: ``"wgan-gp"``, ``"zero-gp"``, ``"r1"``, ``"r2"``, ``"lp"``, ``"max-gp"``, ``"dragan"``.
        weight: the penalty weight λ (>= 0). There is no hidden ½: for StyleGAN's γ pass γ/2.
        alpha: per-sample interpolation weights [B] (or [B, 1, ...]) for the interpolating kinds.
        return_per_sample: also return the weighted per-sample penalties [B].
        generator: a ``torch.Generator`` for α or DRAGAN's noise.
        grad_scaler: a ``torch.amp.GradScaler`` when D runs under autocast with loss scaling: the
            input gradient is taken of the scaled output and unscaled before the penalty.
        method: ``"double-backward"`` (default: the penalty's graph is differentiated), or
            ``"jvp"``: the same value and exactly the same gradients from a forward-mode pass of D
            instead of a double backward, which ``torch.compile`` can compile (see the section
            "Exact penalties without double backward" below; D runs twice, with its random state
            and buffers replayed, and ``per_sample`` is returned without graph). Exact or refused:
            an operator in D outside ``fastgp.forward_mode.ALLOWED`` raises
            ``fastgp.forward_mode.UnsupportedOperator`` naming it.

    Returns the penalty (a scalar; the max over samples for ``max-gp``), and with
    ``return_per_sample`` a tuple ``(penalty, per_sample)``.
    """
    spec, weight = _check_penalty_args(D, kind, weight, method, d_args, d_kwargs, grad_scaler, "gradient_penalty")
    _checks.generator(generator)
    if spec.point == "fake":
        _checks.batch(fake, "fake")
    else:
        _checks.batch(real, "real")
    if spec.point == "interpolate":
        if fake is None:
            raise ValueError(f"kind={kind!r} interpolates between real and fake: fake is required")
        _checks.batch(fake, "fake")
        _checks.same_as(fake, "fake", real, "real")
    elif alpha is not None:
        raise ValueError(f"alpha applies only to the interpolating kinds, not to kind={kind!r}")
    for tensor, name in ((real, "real"), (fake, "fake")):
        _check_values(tensor, name)

    with torch.no_grad():
        if spec.point == "interpolate" and alpha is None:
            # The authors' draw (torch.rand(B), float32), then the fused interpolation kernel.
            drawn = draw_alpha(real, generator).to(real.dtype)
            x = backend.kernels(FAMILY, real.device).interpolate(real, fake, drawn)
        elif spec.point == "interpolate":
            x = interpolate(real, fake, alpha=alpha)
        elif spec.point == "perturb":
            x = dragan_points(real, generator)
        else:
            x = real if spec.point == "real" else fake
    return _penalty_at(D, x, spec, weight, d_args, d_kwargs, grad_scaler, method, return_per_sample)


def _penalty_at(D, x, spec: PenaltyKind, weight, d_args, d_kwargs, grad_scaler, method, return_per_sample):
    """The penalty of ``spec`` at the points ``x`` (a constant: detached, then a fresh leaf)."""
    x = x.detach().requires_grad_(True)
    if method == "jvp":
        return _gradient_penalty_jvp(D, x, d_args, d_kwargs or {}, spec, weight, grad_scaler, return_per_sample)
    with torch.enable_grad():
        logits = D(x, *d_args, **(d_kwargs or {}))
        per_sample = _per_sample_input_penalty(logits, x, spec, grad_scaler)
    return _finish(per_sample, weight, spec.reduction, return_per_sample)


def _check_values(t: torch.Tensor, name: str) -> None:
    """A penalty needs D's input gradient at actual values: a meta tensor (shape only) is refused."""
    if t is not None and t.device.type == "meta":
        raise ValueError(f"{name} is on the meta device, which holds no values: a gradient penalty differentiates D "
                         f"at actual values; pass {name} on a real device (cpu, cuda)")


def _check_penalty_args(D, kind, weight, method, d_args, d_kwargs, grad_scaler, fn: str):
    """The checks shared by gradient_penalty's relatives; returns (spec, weight)."""
    if not callable(D):
        raise TypeError(f"D must be callable (a module or function), got {type(D).__name__}")
    _check_grad_context(fn, grad_scaler)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(repr(k) for k in KINDS)}; got {kind!r}")
    _check_method(method)
    if d_kwargs is not None and not isinstance(d_kwargs, dict):
        raise TypeError(f"d_kwargs must be a dict or None, got {type(d_kwargs).__name__}")
    if not isinstance(d_args, (tuple, list)):
        raise TypeError(f"d_args must be a tuple, got {type(d_args).__name__}")
    return KINDS[kind], _checks.real_number(weight, "weight", minimum=0.0)


def gradient_penalty_at(
    D,
    points: torch.Tensor,
    *,
    kind: str = "zero-gp",
    weight: float = 10.0,
    d_args: tuple = (),
    d_kwargs: dict | None = None,
    return_per_sample: bool = False,
    grad_scaler: torch.amp.GradScaler | None = None,
    method: str = "double-backward",
):
    """weight · penalty of D's input gradient at given ``points``, for any of ``KINDS``.

    The kind gives the formula (its centre, one-sidedness and reduction: mean (‖g‖ − 1)² for
    ``wgan-gp``, mean ‖g‖² for ``zero-gp``, ...); ``points`` replace where the kind would evaluate
    it (interpolates, real, fake or DRAGAN's perturbed points), e.g. the points of the latent path
    of Thanh-Tung et al. (``latent_path_points``). ``points`` [B, ...] are treated as a constant
    (detached), as ``gradient_penalty`` treats real and fake: the penalty's gradient reaches D's
    parameters only. The other arguments are ``gradient_penalty``'s.
    """
    spec, weight = _check_penalty_args(D, kind, weight, method, d_args, d_kwargs, grad_scaler, "gradient_penalty_at")
    _checks.batch(points, "points")
    _check_values(points, "points")
    return _penalty_at(D, points, spec, weight, d_args, d_kwargs, grad_scaler, method, return_per_sample)


def latent_path_points(
    G: Callable[[torch.Tensor], torch.Tensor],
    E: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    z: torch.Tensor,
    *,
    alpha: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Points on the generator's path from a real sample to a fake one (Thanh-Tung, Tran &
    Venkatesh, "Improving Generalization and Stability of GANs", ICLR 2019, Appendix F,
    Algorithm 1): with z_x = E(real) the encoder's latent code of each real sample,

        X_i = G(α_i·z_x,i + (1 − α_i)·z_i),   α_i ~ U(0, 1) per sample,

    so that X moves along G's manifold from (an approximation of) the real sample, G(E(x)) ≈ x,
    to the fake G(z) instead of along the straight line between them.

    Args:
        G: the generator, called as ``G(latent)``; its output must have real's shape.
        E: the encoder, called as ``E(real)``; its output must have z's shape.
        real: the real batch [B, ...].
        z: the latent codes [B, d] of the fake batch.
        alpha: optional weights [B] (or [B, 1]) in [0, 1]; otherwise one ``torch.rand(B)``
            (float32) from ``generator`` or the device's default generator, the draw of
            ``gradient_penalty``'s α.
        generator: a ``torch.Generator`` for α.

    Returns X [B, ...] without graph: computed under ``torch.no_grad()``, as the authors'
    ``cal_gradpen`` treats its points as constants (``real_data.detach()``, ``fake_data.detach()``):
    the penalty at X regularizes D only; G and E receive no gradient from it. G and E run in the
    mode they are in (a G in training mode updates its batch-norm statistics, as for the fakes).
    """
    if not callable(G):
        raise TypeError(f"G must be callable (a module or function), got {type(G).__name__}")
    if not callable(E):
        raise TypeError(f"E must be callable (a module or function), got {type(E).__name__}")
    _checks.batch(real, "real")
    _checks.batch(z, "z")
    if z.shape[0] != real.shape[0]:
        raise ValueError(f"z must have one latent code per real sample: real has B = {real.shape[0]}, "
                         f"z has {z.shape[0]} (shape {list(z.shape)})")
    _checks.generator(generator)
    if alpha is not None and generator is not None:
        raise ValueError("generator only applies when alpha is drawn at random; pass alpha or generator, not both")
    with torch.no_grad():
        z_x = E(real)
        if not isinstance(z_x, torch.Tensor):
            raise TypeError(f"E(real) must return a tensor, got {type(z_x).__name__}")
        if z_x.shape != z.shape:
            raise ValueError(f"E(real) must have the shape of z, {list(z.shape)}: E maps each real sample to a "
                             f"latent code; got {list(z_x.shape)}")
        if z_x.device != z.device:
            raise ValueError(f"E(real) and z must be on the same device, got {z_x.device} and {z.device}")
        if alpha is None:
            a = draw_alpha(z, generator)
        else:
            a = _check_alpha(alpha, z)
        a = _per_sample(a.to(z.dtype), z.dim())
        latent = a * z_x.to(z.dtype) + (1 - a) * z
        points = G(latent)
        if not isinstance(points, torch.Tensor):
            raise TypeError(f"G(latent) must return a tensor, got {type(points).__name__}")
        if points.shape != real.shape:
            raise ValueError(f"G's output must have the shape of real, {list(real.shape)}, got {list(points.shape)}")
    return points.detach()


def latent_path_penalty(
    D,
    G,
    E,
    real: torch.Tensor,
    z: torch.Tensor,
    *,
    kind: str = "zero-gp",
    weight: float = 10.0,
    alpha: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    d_args: tuple = (),
    d_kwargs: dict | None = None,
    return_per_sample: bool = False,
    grad_scaler: torch.amp.GradScaler | None = None,
    method: str = "double-backward",
):
    """The penalty of an interpolating kind on the latent path instead of the straight line:
    ``gradient_penalty_at(D, latent_path_points(G, E, real, z, alpha=alpha, generator=generator), ...)``
    (Thanh-Tung et al., ICLR 2019, Appendix F, Algorithm 1, with ``kind="zero-gp"``).

    ``kind`` must be one that takes points between real and fake (``wgan-gp``, ``zero-gp``, ``lp``,
    ``max-gp``); ``gradient_penalty_at`` takes any kind at given points.
    """
    if kind in KINDS and KINDS[kind].point != "interpolate":
        between = ", ".join(repr(k) for k, s in KINDS.items() if s.point == "interpolate")
        raise ValueError(f"kind must be one that takes points between real and fake ({between}) for the latent "
                         f"path; {kind!r} is taken at {KINDS[kind].point} points (use gradient_penalty_at)")
    spec, weight = _check_penalty_args(D, kind, weight, method, d_args, d_kwargs, grad_scaler, "latent_path_penalty")
    points = latent_path_points(G, E, real, z, alpha=alpha, generator=generator)
    return _penalty_at(D, points, spec, weight, d_args, d_kwargs, grad_scaler, method, return_per_sample)


def r1_penalty(
    logits: torch.Tensor,
    inputs: torch.Tensor,
    weight: float = 10.0,
    *,
    grad_scaler: torch.amp.GradScaler | None = None,
    return_per_sample: bool = False,
    method: str = "double-backward",
    D=None,
    d_args: tuple = (),
    d_kwargs: dict | None = None,
):
    """weight · mean_i ‖∂ sum(logits) / ∂inputs_i‖² from logits already computed from ``inputs``.

    The shared forward: run ``D`` once on ``inputs.requires_grad_(True)`` and use the same logits
    for the main loss and for R1 (as StyleGAN2-ADA's combined phase), or for R1 on a real ∪
    Fake-As-Real batch.

    ``method="jvp"`` gives the same value and exactly the same gradients (parameters and
    ``inputs``) without a double backward, so ``torch.compile`` can compile it: it needs the
    discriminator, ``D`` (called as ``D(inputs, *d_args, **d_kwargs)``), which it runs once more in
    forward mode. D must then compute the same function again — no random augmentation or dropout
    inside D and no forward that updates state (spectral norm in training mode): a mismatch with
    ``logits`` raises a ValueError (``gradient_penalty(D, real, kind="r1", method="jvp")`` replays
    D's random state and buffers instead). ``per_sample`` is then returned without graph.
    """
    _check_grad_context("r1_penalty", grad_scaler)
    _check_method(method)
    if method == "jvp" and not callable(D):
        raise ValueError(
            "r1_penalty(method='jvp') needs the discriminator as D=...: its forward-mode pass re-runs D on inputs"
            + ("" if D is None else f" (got a {type(D).__name__}, which is not callable)")
        )
    if method != "jvp" and (D is not None or d_args != () or d_kwargs is not None):
        raise ValueError("D, d_args and d_kwargs apply only to r1_penalty(method='jvp')")
    _checks.batch(inputs, "inputs")
    _check_values(inputs, "inputs")
    if not inputs.requires_grad:
        raise ValueError(
            "inputs must require grad and logits must be computed from them: "
            "call inputs.requires_grad_(True) before D(inputs)"
        )
    weight = _checks.real_number(weight, "weight", minimum=0.0)
    _check_logits(logits, inputs.shape[0], "logits")
    if method == "jvp":
        return _r1_penalty_jvp(D, logits, inputs, d_args, d_kwargs, weight, grad_scaler, return_per_sample)
    per_sample = _per_sample_input_penalty(logits, inputs, KINDS["r1"], grad_scaler)
    return _finish(per_sample, weight, "mean", return_per_sample)


class LazyRegularizer:
    """Lazy regularization (StyleGAN2): apply a penalty every ``interval`` steps with gain ``interval``.

    ``due(step)`` says whether this step applies it (``step % interval == offset``); multiply the
    penalty by ``gain``. ``offset`` staggers two lazy penalties, e.g. R1 and R2 on alternating
    steps half an interval apart, each with gain ``interval``::

        lazy_r1, lazy_r2 = fastgp.LazyRegularizer(16), fastgp.LazyRegularizer(16, offset=8)
        if lazy_r1.due(step):
            loss = loss + lazy_r1.gain * fastgp.gradient_penalty(D, real, kind="r1", weight=gamma / 2)
        if lazy_r2.due(step):
            loss = loss + lazy_r2.gain * fastgp.gradient_penalty(D, real, fake, kind="r2", weight=gamma / 2)
    ``adjust_optimizer(opt)`` rescales an Adam-like or RMSprop optimizer of the regularized network
    by ``mb_ratio = interval / (interval + 1)`` (lr·mb_ratio, betas**mb_ratio; for RMSprop
    alpha**mb_ratio and momentum**mb_ratio), as StyleGAN2 does for its separate penalty steps.

    Example::

        lazy = fastgp.LazyRegularizer(16)
        lazy.adjust_optimizer(d_opt)
        ...
        if lazy.due(step):
            (lazy.gain * fastgp.gradient_penalty(D, real, kind="r1", weight=5.0)).backward()
    """

    def __init__(self, interval: int, *, offset: int = 0):
        self.interval = _checks.integer(interval, "interval", minimum=1)
        self.offset = _checks.integer(offset, "offset", minimum=0)
        if self.offset >= self.interval:
            raise ValueError(f"offset must be in [0, interval) = [0, {self.interval}), got {self.offset}")

    @property
    def gain(self) -> int:
        return self.interval

    @property
    def mb_ratio(self) -> float:
        return self.interval / (self.interval + 1)

    def due(self, step: int) -> bool:
        return _checks.integer(step, "step", minimum=0) % self.interval == self.offset

    def adjust_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        ratio = self.mb_ratio
        for group in optimizer.param_groups:
            if "fastgp_lazy_interval" in group:
                raise ValueError("optimizer was already adjusted for lazy regularization")
            if "betas" not in group and "alpha" not in group:
                raise TypeError(
                    f"adjust_optimizer supports optimizers with betas (Adam, AdamW, ...) or RMSprop, "
                    f"got {type(optimizer).__name__}"
                )
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * ratio
            if "betas" in group:
                group["betas"] = tuple(beta**ratio for beta in group["betas"])
            else:
                group["alpha"] = group["alpha"] ** ratio
                group["momentum"] = group.get("momentum", 0) ** ratio
            group["fastgp_lazy_interval"] = self.interval
        return optimizer


# --------------------------------------------------------------------------------------------
# R1 + R2 in one call (the R3GAN recipe)
# --------------------------------------------------------------------------------------------
#
# R3GAN (Huang et al., NeurIPS 2024; brownvc/R3GAN, R3GAN/Trainer.py, AccumulateDiscriminatorGradients)
# runs D on the reals and on the fakes, takes R1 and R2 with two autograd.grad calls (each a
# differentiated backward through its half), and minimizes mean(softplus(−(r − f)) + γ/2·(R1 + R2)).
# Here both input gradients come from ONE autograd.grad over the sum of all logits (the penalty's
# graph is differentiated once), and, when batching real and fake through D cannot change what D
# computes, from ONE forward of D on the concatenated batch, whose logits also serve the loss.

BATCHING = ("auto", "concat", "separate")


class R1R2(NamedTuple):
    """What :func:`r1_r2_penalty` returns: the weighted penalty, D's logits of the two batches (with
    graph: use them for the loss) and the unweighted per-sample penalties (with graph)."""

    penalty: torch.Tensor  # gamma/2 · (mean_i r1_i + mean_j r2_j), a scalar
    real_logits: torch.Tensor  # D(real), [B_real] or [B_real, 1]
    fake_logits: torch.Tensor  # D(fake), [B_fake] or [B_fake, 1]
    r1: torch.Tensor  # ‖∂ sum D / ∂real_i‖², [B_real]
    r2: torch.Tensor  # ‖∂ sum D / ∂fake_j‖², [B_fake]


def batch_mixing_modules(D) -> list[str]:
    """The names of D's submodules whose output for a sample depends on the other samples of the
    batch: batch-norm layers in training mode (batch statistics). Empty for a D that is not an
    ``nn.Module`` (nothing can be inspected) and for batch norm in eval mode (running statistics)."""
    if not isinstance(D, _nn.Module):
        return []
    return [name or type(D).__name__ for name, m in D.named_modules()
            if isinstance(m, _nn.modules.batchnorm._BatchNorm) and m.training]


def _repeat_batch_args(d_args, d_kwargs: dict, batch: int):
    """D's extra arguments for the concatenated batch: every tensor [batch, ...] twice along dim 0
    (R3GAN conditions the real and the fake batch with the same labels); other arguments as they are."""
    def twice(name, value):
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            return value
        if value.shape[0] != batch:
            raise ValueError(
                f"{name} must have one row per sample (leading dimension {batch}) to be repeated for the "
                f"concatenated real and fake batch, got shape {list(value.shape)}; pass batching='separate'"
            )
        return torch.cat([value, value])
    return ([twice(f"d_args[{i}]", a) for i, a in enumerate(d_args)],
            {k: twice(f"d_kwargs[{k!r}]", v) for k, v in d_kwargs.items()})


def r1_r2_penalty(
    D: Callable[..., torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    gamma: float,
    d_args: tuple = (),
    d_kwargs: dict | None = None,
    batching: str = "auto",
    grad_scaler: torch.amp.GradScaler | None = None,
    method: str = "double-backward",
) -> R1R2:
    """R1 on the reals and R2 on the fakes, weighted γ/2 each as in R3GAN, with D's logits for the loss.

    penalty = γ/2 · (mean_i ‖∇ₓ D(real_i)‖² + mean_j ‖∇ₓ D(fake_j)‖²), the input gradients taken by
    ONE ``autograd.grad`` over both batches (one differentiated backward)::

        out = fastgp.r1_r2_penalty(D, real, fake.detach(), gamma=gamma)
        loss = fastgp.losses.d_relativistic_pairing(out.real_logits, out.fake_logits) + out.penalty
        loss.backward()

    is R3GAN's ``AccumulateDiscriminatorGradients`` (same loss, penalties and parameter gradients,
    to rounding; tests/test_r3gan.py). Note the γ/2: ``gamma`` is R3GAN's (and StyleGAN's) γ, not the
    ``weight`` of :func:`gradient_penalty`.

    Args:
        D: the discriminator, called as ``D(x, *d_args, **d_kwargs)``; logits [B] or [B, 1].
        real: a [B, ...] batch, treated as a constant (detached), as R3GAN detaches it.
        fake: a [B', ...] batch with real's per-sample shape, dtype and device (the batch sizes
            may differ), treated as a constant (detached).
        gamma: R3GAN's γ (>= 0); each penalty is weighted γ/2.
        d_args: D's extra positional arguments, the same for both batches (R3GAN's ``Conditions``).
        d_kwargs: D's extra keyword arguments, the same for both batches.
        batching: ``"concat"``: ONE forward of D on cat([real, fake]) serves both penalties and the
            loss; tensor arguments in ``d_args``/``d_kwargs`` must have one row per sample (real and
            fake must then have the same batch size) and are repeated. ``"separate"``: D(real) then
            D(fake), R3GAN's two forwards (still one autograd.grad). ``"auto"`` (default):
            ``"concat"`` unless D is not an ``nn.Module`` or has batch norm in training mode
            (:func:`batch_mixing_modules`), or real and fake differ in batch size.
        grad_scaler: a ``torch.amp.GradScaler`` under autocast: the gradient is taken of the scaled
            logits and unscaled before the penalty.
        method: ``"double-backward"``; ``"jvp"`` is not supported for R1 + R2 yet and raises.

    When batching changes results: a D whose output for one sample depends on the others — batch
    norm in training mode (statistics over the batch, and a running-statistics update per forward),
    minibatch standard deviation, anything that mixes samples — computes a different function on
    the concatenated batch than on each half. ``batching="concat"`` refuses batch norm in training
    mode (ValueError) and ``"auto"`` falls back to two forwards for it; a sample-mixing layer that
    is not batch norm cannot be detected: pass ``batching="separate"``. Random augmentation inside D
    draws different numbers for one forward of 2B samples than for two of B (same distribution).
    R3GAN's D has no normalization and no minibatch statistics: one forward is exact for it.

    Lazy regularization: R3GAN applies R1 and R2 at every D step (its code has no lazy schedule);
    for a StyleGAN2-style one use :class:`LazyRegularizer` (``lazy.gain * out.penalty`` when due),
    and for R1 and R2 on alternating steps two of them staggered by ``offset`` (see its docstring).
    """
    if not callable(D):
        raise TypeError(f"D must be callable (a module or function), got {type(D).__name__}")
    _check_grad_context("r1_r2_penalty", grad_scaler)
    _checks.choice(method, "method", ("double-backward", "jvp"))
    if method == "jvp":
        raise ValueError(
            "r1_r2_penalty supports method='double-backward' only: method='jvp' is not implemented for R1 + R2 "
            "yet; take gradient_penalty(D, real, kind='r1', method='jvp') and kind='r2' separately"
        )
    _checks.batch(real, "real")
    _checks.batch(fake, "fake")
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real and fake must have the same per-sample shape, got {list(real.shape)} and "
                         f"{list(fake.shape)}")
    _checks.same_dtype_device(real, "real", fake, "fake")
    gamma = _checks.real_number(gamma, "gamma", minimum=0.0)
    _checks.choice(batching, "batching", BATCHING)
    if d_kwargs is not None and not isinstance(d_kwargs, dict):
        raise TypeError(f"d_kwargs must be a dict or None, got {type(d_kwargs).__name__}")
    if not isinstance(d_args, (tuple, list)):
        raise TypeError(f"d_args must be a tuple, got {type(d_args).__name__}")
    d_kwargs = d_kwargs or {}
    n_real, n_fake = real.shape[0], fake.shape[0]
    mixing = batch_mixing_modules(D)
    if batching == "concat":
        if mixing:
            raise ValueError(
                f"batching='concat' would change D's results: {', '.join(mixing)} normalize with batch statistics in "
                "training mode, which differ for the concatenated real and fake batch; use batching='separate' "
                "(or 'auto', which does), or put those layers in eval mode"
            )
        if n_real != n_fake:
            raise ValueError(f"batching='concat' needs real and fake of the same batch size to repeat D's "
                             f"arguments, got {n_real} and {n_fake}; use batching='separate'")
    concat = batching == "concat" or (
        batching == "auto" and isinstance(D, _nn.Module) and not mixing and n_real == n_fake)
    with torch.enable_grad():
        if concat:
            x = torch.cat([real.detach(), fake.detach()]).requires_grad_(True)
            args, kwargs = _repeat_batch_args(d_args, d_kwargs, n_real)
            logits = D(x, *args, **kwargs)
            grad = _input_gradient(logits, x, grad_scaler, create_graph=True, retain_graph=True)
            r1, r2 = _head_per_sample(grad, 0.0, False).split([n_real, n_fake])
            real_logits, fake_logits = logits[:n_real], logits[n_real:]
        else:
            xr, xf = real.detach().requires_grad_(True), fake.detach().requires_grad_(True)
            real_logits = D(xr, *d_args, **d_kwargs)  # R3GAN's order: the reals first
            fake_logits = D(xf, *d_args, **d_kwargs)
            _check_logits(real_logits, n_real, "D(real)")
            _check_logits(fake_logits, n_fake, "D(fake)")
            if not (real_logits.requires_grad and fake_logits.requires_grad):
                raise ValueError(_NOT_CONNECTED)
            total = real_logits.sum() + fake_logits.sum()
            if grad_scaler is not None:
                total = grad_scaler.scale(total)
            grad_r, grad_f = torch.autograd.grad(total, (xr, xf), create_graph=True, allow_unused=True)
            if grad_r is None or grad_f is None:
                raise ValueError(_NOT_CONNECTED)
            if grad_scaler is not None:
                inv = 1.0 / grad_scaler.get_scale()
                grad_r, grad_f = grad_r * inv, grad_f * inv
            r1 = _head_per_sample(grad_r, 0.0, False)
            r2 = _head_per_sample(grad_f, 0.0, False)
        penalty = (gamma / 2) * (r1.mean() + r2.mean())
    return R1R2(penalty, real_logits, fake_logits, r1, r2)


# --------------------------------------------------------------------------------------------
# Exact penalties without double backward (method="jvp")
# --------------------------------------------------------------------------------------------
#
# For P = reduce_i weight·p(‖g_i‖) with g = ∇ₓ sum D(x, θ), the chain rule gives, with the direction
# u = ∂P/∂g evaluated at g and then held fixed,
#     ∇_θ P = ∇_θ ⟨∇ₓ sum D(x, θ), u⟩   and   ∇ₓ P = ∇ₓ ⟨∇ₓ sum D(x, θ), u⟩ = H(x)·u,
# and ⟨∇ₓ sum D, u⟩ is the forward-mode directional derivative of sum D along u. So the penalty's
# gradients need no differentiated backward pass:
#   1. one forward + an ordinary backward give g (no graph kept);
#   2. the penalty head's forward + backward give the value P and u = ∂P/∂g;
#   3. one forward-mode pass of D at (x, tangent u) gives the directional derivative J, whose
#      reverse-mode graph (reverse-over-forward) carries exactly ∇_θ P and ∇ₓ P.
# The returned scalar is P + (J − J.detach()): its value is P, its backward is the exact one. None
# of this is a double backward, so torch.compile can compile it.
# Step 3 (D's second run, in forward mode) is fastgp/forward_mode.py.

METHODS = ("double-backward", "jvp")


def _check_method(method) -> str:
    return _checks.choice(method, "method", METHODS)


def _jvp_head(grad: torch.Tensor, kind: PenaltyKind, weight: float):
    """(penalty, weighted per-sample penalties, u = ∂penalty/∂grad), all without graph: the fused
    head's forward and backward, the same ops as the double-backward path's value."""
    with torch.enable_grad():
        leaf = grad.detach().requires_grad_(True)
        weighted = weight * _head_per_sample(leaf, kind.center, kind.one_sided)
        value = _reduce(weighted, kind.reduction)
        (direction,) = torch.autograd.grad(value, leaf)
    return value.detach(), weighted.detach(), direction


def _jvp_penalty(D, x, primal, logits, d_args, d_kwargs, kind: PenaltyKind, weight, grad_scaler, replay,
                 return_per_sample, shared_forward: bool = False):
    """Steps 1–3 above. ``logits`` = D(x) from step 1; with ``shared_forward`` (r1_penalty) its graph
    is kept for the caller's loss and the replayed logits are checked. ``primal`` is x, or x detached when
    nothing upstream needs ∇ₓ P: through an x that requires grad the forward-mode pass carries
    ∇ₓ P = H·u to it."""
    # The graph of logits is kept only when the caller's loss still needs it (r1_penalty); a
    # retained graph also defeats torch.compile's donated buffers.
    grad = _input_gradient(logits, x, grad_scaler, create_graph=False, retain_graph=shared_forward)
    value, weighted, direction = _jvp_head(grad, kind, weight)
    # With a GradScaler the tangent is scaled like the gradient was, so that a reduced-precision
    # forward-mode pass does not underflow; J is divided by the scale in float32 below.
    scale = 1.0 if grad_scaler is None else grad_scaler.get_scale()
    tangent_in = direction * scale if scale != 1.0 else direction
    primal, tangent = forward_mode.directional_derivative(D, replay, primal, tangent_in.to(x.dtype), d_args, d_kwargs,
                                                          _NOT_REPRODUCED)
    if tangent is None:
        raise ValueError(_NOT_CONNECTED)
    if shared_forward:
        _check_replayed_logits(primal, logits)
    jvp = tangent.to(value.dtype).sum()
    if scale != 1.0:
        jvp = jvp * (1.0 / scale)
    penalty = value + (jvp - jvp.detach())
    return (penalty, weighted) if return_per_sample else penalty


_NOT_REPRODUCED = (
    "method='jvp' re-runs D on inputs, and D(inputs) did not reproduce logits: D must compute the "
    "same function again (no random augmentation or dropout inside D, no forward that updates "
    "state such as spectral norm's power iteration in training mode). Use "
    "gradient_penalty(D, real, kind='r1', method='jvp'), which replays D's random state and "
    "buffers, or method='double-backward'"
)


def _check_replayed_logits(recomputed: torch.Tensor, logits: torch.Tensor) -> None:
    """r1_penalty(method="jvp") re-runs D on inputs: it must reproduce the given logits."""
    tol = {torch.float64: 1e-9, torch.float32: 1e-4}.get(logits.dtype, 2e-2)
    same = torch.allclose(recomputed.detach().reshape(logits.shape).to(logits.dtype), logits.detach(), rtol=tol, atol=tol)
    if not same:
        raise ValueError(_NOT_REPRODUCED)


def _gradient_penalty_jvp(D, x, d_args, d_kwargs, kind: PenaltyKind, weight, grad_scaler, return_per_sample):
    """gradient_penalty's method="jvp": x is gradient_penalty's own leaf (real and fake are
    constants), so the forward-mode primal is x detached and no Hessian-vector product is formed."""
    replay = forward_mode.ForwardReplay(D)  # before D's first call
    with torch.enable_grad():
        logits = replay.first_call(D, x, d_args, d_kwargs)
        return _jvp_penalty(D, x, x.detach(), logits, d_args, d_kwargs, kind, weight, grad_scaler, replay,
                            return_per_sample)


def _r1_penalty_jvp(D, logits, inputs, d_args, d_kwargs, weight, grad_scaler, return_per_sample):
    if d_kwargs is not None and not isinstance(d_kwargs, dict):
        raise TypeError(f"d_kwargs must be a dict or None, got {type(d_kwargs).__name__}")
    if not isinstance(d_args, (tuple, list)):
        raise TypeError(f"d_args must be a tuple, got {type(d_args).__name__}")
    # D already ran: the replay keeps D's buffers from advancing a second time, a random draw in D
    # is refused (step 1's draws are unknown), and the recomputed logits are checked against the given ones.
    replay = forward_mode.ForwardReplay(D)
    with torch.enable_grad():
        return _jvp_penalty(D, inputs, inputs, logits, d_args, d_kwargs or {}, KINDS["r1"], weight, grad_scaler,
                            replay, return_per_sample, shared_forward=True)
