"""Spectral normalization: the fused power iteration and the differentiable W / σ around it.

``W_SN = W / σ(W)`` with σ estimated by power iteration on the matrix view of W (Miyato et al.),
exactly as ``torch.nn.utils.parametrizations.spectral_norm`` computes it:

- the matrix view: ``dim`` moved to the front, the rest flattened (``dim=1`` for ConvTranspose);
- each iteration, under no_grad and IN PLACE on the stored vectors:
  ``u = normalize(W v)`` then ``v = normalize(Wᵀ u)``, ``normalize(x) = x / max(‖x‖, eps)``;
- ``σ = uᵀ W v`` with u and v treated as constants, so ``∂σ/∂W = u vᵀ``.

The compiled kernels read W once per iteration and produce σ without another pass (derivation in
csrc/fastgp/spectral.h). Only the power iteration is a kernel; ``W / σ`` is an autograd Function
(``_DivideBySigma``) whose backward is torch's gradient, g/σ − (⟨g, W⟩/σ²)·u vᵀ, in three passes of
torch ops instead of autograd's nine, and built from differentiable ops under create_graph, so
first AND second derivatives (gradient penalties through spectral-normalized layers) are those of
torch's parametrization.

float16/bfloat16 weights iterate in float32; u and v are stored in the weight's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _checks, backend
from ._layout import accumulation_dtype

FAMILY = "spectral"


# --------------------------------------------------------------------------------------------
# Fake (meta) implementations of the compiled ops, so torch.compile can trace code calling them
# --------------------------------------------------------------------------------------------


def _register_fake_kernels() -> None:
    if not backend._load_extension():
        return

    @torch.library.register_fake("fastgp::spectral_power_iteration")
    def _(weight, u, v, n_iterations, eps):
        return weight.new_empty((), dtype=accumulation_dtype(weight.dtype))

    @torch.library.register_fake("fastgp::spectral_power_iteration_grouped")
    def _(weights, us, vs, n_iterations, eps):
        dtype = accumulation_dtype(weights[0].dtype) if len(weights) else torch.float32
        device = weights[0].device if len(weights) else "cpu"
        return torch.empty((len(weights),), dtype=dtype, device=device)


_register_fake_kernels()


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def check_n_power_iterations(value) -> int:
    return _checks.integer(value, "n_power_iterations", minimum=0)


def check_eps(value) -> float:
    eps = _checks.real_number(value, "eps")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    return eps


def _check_triplet(weight, u, v, index: str = "") -> None:
    _checks.floating(weight, f"weight{index}")
    if weight.dim() != 2:
        raise ValueError(f"weight{index} must be a matrix [h, w], got shape {list(weight.shape)}")
    for name, vec, size in ((f"u{index}", u, weight.shape[0]), (f"v{index}", v, weight.shape[1])):
        _checks.tensor(vec, name)
        if vec.shape != (size,):
            raise ValueError(f"{name} must have shape [{size}], got {list(vec.shape)}")
        if vec.dtype != weight.dtype:
            raise TypeError(f"{name} must have the dtype of weight{index} ({weight.dtype}), got {vec.dtype}")
        if vec.device != weight.device:
            raise ValueError(f"{name} must be on the device of weight{index} ({weight.device}), got {vec.device}")
        if not vec.is_contiguous():
            raise ValueError(f"{name} must be contiguous (it is updated in place)")


# --------------------------------------------------------------------------------------------
# Power iteration (no autograd: the vectors are state, not functions of W)
# --------------------------------------------------------------------------------------------


def power_iteration(
    weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor, n_iterations: int = 1, eps: float = 1e-12
) -> torch.Tensor:
    """Advance ``u``, ``v`` in place by ``n_iterations`` power iterations on ``weight`` [h, w].

    Returns σ = uᵀ W v for the final vectors (0-d; float32 for float16/bfloat16 weights), without
    a gradient. ``n_iterations=0`` only computes σ.
    """
    _check_triplet(weight, u, v)
    n_iterations = _checks.integer(n_iterations, "n_iterations", minimum=0)
    eps = check_eps(eps)
    with torch.no_grad():
        return backend.kernels(FAMILY, weight.device).spectral_power_iteration(
            weight.detach(), u, v, n_iterations, eps
        )


def power_iteration_grouped(weights, us, vs, n_iterations: int = 1, eps: float = 1e-12) -> torch.Tensor:
    """``power_iteration`` over lists of matrices of different shapes in ONE fused call.

    All weights share one dtype and device. Returns σ [G] (float32 for float16/bfloat16).
    """
    weights, us, vs = list(weights), list(us), list(vs)
    if not (len(weights) == len(us) == len(vs)):
        raise ValueError(f"weights, us and vs must have the same length, got {len(weights)}, {len(us)} and {len(vs)}")
    for g, (w, u, v) in enumerate(zip(weights, us, vs)):
        _check_triplet(w, u, v, f"[{g}]")
        if w.dtype != weights[0].dtype or w.device != weights[0].device:
            raise ValueError(
                f"all weights must share one dtype and device, got {weights[0].dtype} on {weights[0].device} "
                f"and {w.dtype} on {w.device} (weights[{g}])"
            )
    n_iterations = _checks.integer(n_iterations, "n_iterations", minimum=0)
    eps = check_eps(eps)
    if not weights:
        return torch.empty(0)
    with torch.no_grad():
        return backend.kernels(FAMILY, weights[0].device).spectral_power_iteration_grouped(
            [w.detach() for w in weights], us, vs, n_iterations, eps
        )


# --------------------------------------------------------------------------------------------
# σ with torch's gradient
# --------------------------------------------------------------------------------------------


def weight_to_matrix(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """The matrix view torch's spectral norm iterates on: ``dim`` first, the rest flattened."""
    if dim != 0:
        weight = weight.permute(dim, *(d for d in range(weight.dim()) if d != dim))
    return weight.flatten(1)


def matrix_to_weight(matrix: torch.Tensor, shape: torch.Size, dim: int) -> torch.Tensor:
    """The inverse of ``weight_to_matrix``: a [h, w] matrix back in the layout of a weight of ``shape``."""
    if dim == 0:
        return matrix.reshape(shape)
    others = [d for d in range(len(shape)) if d != dim]
    permuted = matrix.reshape(shape[dim], *(shape[d] for d in others))
    order = [dim, *others]
    return permuted.permute(*sorted(range(len(shape)), key=order.__getitem__))


class _DivideBySigma(torch.autograd.Function):
    """``W / σ`` where σ = uᵀ W v (matrix view of W) was already computed, u and v constants.

    The gradient is torch's, ∂L/∂W = g/σ − (⟨g, W⟩/σ²)·u vᵀ, where autograd's generic path (a
    division by a tensor, then σ's own backward) costs about nine passes over W-sized tensors
    (g/σ, g·W, /σ², a negation, the sum, u vᵀ, its scaling, the accumulation of the two). Here a
    first-order backward makes three: the dot ⟨g, W⟩, g/σ, and a rank-1 update in place (BLAS
    ``ger`` through ``addr_``) — 0.55 ms instead of 1.24 ms for a 512×784 float32 layer on one CPU
    thread, against torch's ``W / (uᵀ W v)``.

    Under ``create_graph`` (a gradient of the gradient with respect to W) the same formula is built
    from differentiable ops instead, with σ recomputed as uᵀ W v from the saved W so that it is a
    function of W: second derivatives are exact. (A gradient penalty taken with respect to D's
    INPUT does not go through this backward with create_graph; its gradient reaches W/σ as an
    ordinary first-order gradient.)
    """

    @staticmethod
    def forward(ctx, weight, u, v, sigma, dim):
        sigma = sigma.to(weight.dtype, copy=True)
        ctx.dim = dim
        ctx.save_for_backward(weight, u, v, sigma)
        return weight / sigma

    @staticmethod
    def backward(ctx, grad):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        weight, u, v, sigma = ctx.saved_tensors
        dim = ctx.dim
        if torch.is_grad_enabled():  # create_graph: differentiable in W, grad, and through σ(W)
            sigma = torch.vdot(u, torch.mv(weight_to_matrix(weight, dim), v))
            rank_one = matrix_to_weight(torch.outer(u, v), weight.shape, dim)
            return grad / sigma - ((grad * weight).sum() / sigma.square()) * rank_one, None, None, None, None
        acc = accumulation_dtype(weight.dtype)
        # reshape(-1) follows logical order, so the dot is right whatever the two layouts are.
        dot = torch.vdot(grad.reshape(-1).to(acc), weight.reshape(-1).to(acc))
        scaled_v = v * (-dot / sigma.to(acc).square()).to(v.dtype)
        grad_weight = grad / sigma
        if dim == 0 and grad_weight.is_contiguous():
            grad_weight.view(weight.shape[0], -1).addr_(u, scaled_v)
        else:  # a permuted matrix view or a channels_last gradient: add u vᵀ in W's layout
            grad_weight.add_(matrix_to_weight(torch.outer(u, scaled_v), weight.shape, dim))
        return grad_weight, None, None, None, None


def spectral_normalize(
    weight: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    dim: int = 0,
    n_power_iterations: int = 1,
    eps: float = 1e-12,
    sigma: torch.Tensor | None = None,
) -> torch.Tensor:
    """``weight / σ``: the forward of ``fastgp.nn.spectral_norm`` as a function.

    Advances ``u``, ``v`` (the buffers, in place) by ``n_power_iterations`` first (0 in eval mode),
    then divides by σ = uᵀ W v with the gradient of torch's parametrization. A precomputed ``sigma``
    (the once-per-step mode) is used as σ's value instead of running the kernel at all. 1-D weights
    are simply normalized.
    """
    _checks.floating(weight, "weight")
    if weight.dim() < 1:
        raise ValueError("weight must have at least one dimension, got a 0-d tensor")
    dim = _checks.integer(dim, "dim")
    if not -weight.dim() <= dim < weight.dim():
        raise ValueError(f"dim must be in [{-weight.dim()}, {weight.dim() - 1}] for a {weight.dim()}-d weight, got {dim}")
    eps = check_eps(eps)
    if weight.dim() == 1:
        return F.normalize(weight, dim=0, eps=eps)
    dim = dim % weight.dim()
    _check_triplet(weight_to_matrix(weight, dim), u, v)
    n_power_iterations = check_n_power_iterations(n_power_iterations)
    if sigma is not None:
        _checks.tensor(sigma, "sigma")
        if sigma.numel() != 1:
            raise ValueError(f"sigma must hold one value, got shape {list(sigma.shape)}")
    return normalize_unchecked(weight, u, v, dim, n_power_iterations, eps, sigma)


def normalize_unchecked(weight, u, v, dim: int, n_power_iterations: int, eps: float, sigma=None) -> torch.Tensor:
    """``spectral_normalize`` without its argument checks, for the nn layer, which checked its
    arguments when it was built and owns u and v (a per-forward check would cost ~15% of a call)."""
    if weight.dim() == 1:
        return F.normalize(weight, dim=0, eps=eps)
    if sigma is None:
        with torch.no_grad():
            sigma = backend.kernels(FAMILY, weight.device).spectral_power_iteration(
                weight_to_matrix(weight.detach(), dim), u, v, n_power_iterations, eps
            )
    # Clones: a second forward before backward updates the buffers in place again (the GAN
    # pattern D(real), D(fake)); the graph of the first must keep its own u, v (as torch does).
    u = u.clone(memory_format=torch.contiguous_format)
    v = v.clone(memory_format=torch.contiguous_format)
    return _DivideBySigma.apply(weight, u, v, sigma, dim)
