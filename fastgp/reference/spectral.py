"""Pure-PyTorch power iteration of spectral normalization: the torch ops that
``torch.nn.utils.parametrizations.spectral_norm`` runs (``_SpectralNorm._power_method`` and the
σ of its forward), written the same way. The oracle of the tests and the benchmark baseline.

Same names and signatures as the compiled ops (``torch.ops.fastgp.spectral_power_iteration*``)
and the Triton launchers: u and v are updated in place, σ = uᵀ W v is returned in the
accumulation dtype (float32 for float16/bfloat16 weights, which iterate in float32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._layout import accumulation_dtype


@torch.no_grad()
def spectral_power_iteration(
    weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor, n_iterations: int, eps: float
) -> torch.Tensor:
    acc = accumulation_dtype(weight.dtype)
    weight_mat = weight.to(acc)  # no copy for float32/float64
    u_acc, v_acc = u.to(acc), v.to(acc)
    for _ in range(n_iterations):
        u_acc = F.normalize(torch.mv(weight_mat, v_acc), dim=0, eps=eps)
        v_acc = F.normalize(torch.mv(weight_mat.H, u_acc), dim=0, eps=eps)
    if n_iterations > 0:
        u.copy_(u_acc)
        v.copy_(v_acc)
    return torch.vdot(u_acc, torch.mv(weight_mat, v_acc))


@torch.no_grad()
def spectral_power_iteration_grouped(weights, us, vs, n_iterations: int, eps: float) -> torch.Tensor:
    """One chain of small ops per matrix: what a model of torch spectral-normalized layers runs."""
    if len(weights) == 0:
        return torch.empty(0)
    sigmas = [spectral_power_iteration(w, u, v, n_iterations, eps) for w, u, v in zip(weights, us, vs)]
    return torch.stack(sigmas)
