"""Drop-in for the LEGACY ``torch.nn.utils.spectral_norm`` (the forward pre-hook) running fastgp's
fused power iteration. Public as ``fastgp.nn.utils.spectral_norm`` / ``remove_spectral_norm``,
mirroring torch's ``torch.nn.utils`` namespace.

Most GAN code (BasicSR/Real-ESRGAN U-Net discriminators, BigGAN-style code, mmcv's ConvModule)
calls the legacy function and reads ``module.weight_orig`` or saves checkpoints other code loads
with it; ``fastgp.nn.spectral_norm`` (the parametrization drop-in) cannot replace it there. This
one keeps everything torch's has:

- the same module surgery: parameter ``<name>_orig``, buffers ``<name>_u`` [h] and ``<name>_v``
  [w], ``<name>`` a plain attribute (``weight_orig.data`` until the first forward, W/σ after);
- the same random ``u``, ``v`` (the same draws in the same order) and NO warm-up iterations;
- the same forward pre-hook: in training, ``n_power_iterations`` iterations in the legacy ORDER
  (``v = normalize(Wᵀ u)`` first, then ``u = normalize(W v)``), in place on the buffers (so a
  DataParallel replica on device 0 updates the module's own buffers, as torch's comment requires)
  and without autograd; in eval, none; then ``W / σ`` with ``σ = uᵀ W v`` and u, v constants;
- the same ``dim`` (1 for ConvTranspose), ``eps``, checkpoint format and version metadata
  (``metadata['spectral_norm']['<name>.version'] = 1``), and the oldest format's conversion.

How the legacy order runs on fastgp's kernel, which iterates the other way round (``u`` first,
then ``v``, reading W once per iteration): ``n`` legacy iterations are a half step
``v = normalize(Wᵀ u)``, then ``n − 1`` iterations of the fused kernel (each ``u = normalize(W v)``,
``v = normalize(Wᵀ u)`` in one pass over W), then the half step ``p = W v``, ``u = normalize(p)``,
and σ = uᵀ p from that same product: n + 1 passes over W where torch's loop makes 2n + 1 (its σ
multiplies W v again). With one iteration (the default) no full iteration is left for the kernel:
the two half steps are the very ops of torch's loop, in every dtype.
(Running the kernel on Wᵀ instead would need a row-major copy of Wᵀ at every training forward,
which costs more than it saves.) W / σ and its gradient, first and second order, are
``fastgp.spectral``'s fused autograd Function: 3 passes over W in backward where autograd's
division by σ(W) makes about 9.

The hook is a subclass of torch's ``SpectralNorm``, and the state-dict hooks ARE torch's: torch's
``remove_spectral_norm`` removes fastgp's, torch's ``spectral_norm`` refuses a second hook on a
weight that has fastgp's (and the other way round), and a checkpoint's conversion is torch's own.

Exact or refuse: complex weights are refused (torch's legacy function transposes without
conjugating, so it does not compute the spectral norm of a complex matrix; the parametrization
``fastgp.nn.spectral_norm`` does), as are integer weights and ``eps <= 0``.
"""

from __future__ import annotations

from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.spectral_norm import SpectralNorm as _TorchSpectralNorm
from torch.nn.utils.spectral_norm import SpectralNormLoadStateDictPreHook, SpectralNormStateDictHook
from torch.nn.utils.spectral_norm import remove_spectral_norm as _torch_remove_spectral_norm

from .. import _checks, backend
from .. import spectral as _spectral

__all__ = [
    "SpectralNorm",
    "SpectralNormLoadStateDictPreHook",
    "SpectralNormStateDictHook",
    "spectral_norm",
    "remove_spectral_norm",
]

_CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)

T_module = TypeVar("T_module", bound=nn.Module)


class SpectralNorm(_TorchSpectralNorm):
    """The forward pre-hook: torch's ``SpectralNorm`` with the power iteration and σ on fastgp's
    kernels. Attributes ``name``, ``dim`` (non-negative), ``n_power_iterations``, ``eps`` and the
    class attribute ``_version`` are torch's."""

    def __init__(self, name: str = "weight", n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        n_power_iterations = _checks.integer(n_power_iterations, "n_power_iterations")
        dim = _checks.integer(dim, "dim")
        # torch's own ValueError for n_power_iterations <= 0 (its message, which its tests match).
        super().__init__(name, n_power_iterations, dim, _spectral.check_eps(eps))

    def compute_weight(self, module: nn.Module, do_power_iteration: bool) -> torch.Tensor:
        weight = getattr(module, self.name + "_orig")
        u = getattr(module, self.name + "_u")
        v = getattr(module, self.name + "_v")
        with torch.no_grad():
            weight_mat = self.reshape_weight_to_matrix(weight.detach())
            if do_power_iteration:
                sigma = self._power_iteration(weight_mat, u, v)
            else:  # σ = uᵀ W v from the stored vectors: one pass of the kernel
                sigma = backend.kernels(_spectral.FAMILY, weight.device).spectral_power_iteration(
                    weight_mat, u, v, 0, self.eps
                )
        # Clones, as torch's: the vectors saved for this forward's backward must not be the
        # buffers that the next training forward (D(real), then D(fake)) updates in place.
        u = u.clone(memory_format=torch.contiguous_format)
        v = v.clone(memory_format=torch.contiguous_format)
        if weight.dim() == 1:  # torch's matrix view of a vector is a column [h, 1]
            return _spectral._DivideBySigma.apply(weight.unsqueeze(1), u, v, sigma, 0).squeeze(1)
        return _spectral._DivideBySigma.apply(weight, u, v, sigma, self.dim)

    def _power_iteration(self, weight_mat: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``n_power_iterations`` legacy iterations (v first), in place on the buffers u and v, and
        σ = uᵀ W v; see the module docstring for how they are split around the fused kernel."""
        F.normalize(torch.mv(weight_mat.t(), u), dim=0, eps=self.eps, out=v)
        if self.n_power_iterations > 1:
            backend.kernels(_spectral.FAMILY, weight_mat.device).spectral_power_iteration(
                weight_mat, u, v, self.n_power_iterations - 1, self.eps
            )
        product = torch.mv(weight_mat, v)
        F.normalize(product, dim=0, eps=self.eps, out=u)
        return torch.dot(u, product)

    @staticmethod
    def apply(module: nn.Module, name: str, n_power_iterations: int, dim: int, eps: float) -> "SpectralNorm":
        """Register the hook on ``module.<name>`` (torch's ``SpectralNorm.apply``, with fastgp's hook)."""
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, _TorchSpectralNorm) and hook.name == name:  # torch's or fastgp's
                raise RuntimeError(f"Cannot register two spectral_norm hooks on the same parameter {name}")
        weight = _check_weight(module, name)
        ndim = weight.dim()
        dim = _checks.integer(dim, "dim")
        if not -ndim <= dim < ndim:
            raise ValueError(f"dim must be in [{-ndim}, {ndim - 1}] for the {ndim}-d {name}, got {dim}")
        fn = SpectralNorm(name, n_power_iterations, dim % ndim, eps)

        with torch.no_grad():
            h, w = fn.reshape_weight_to_matrix(weight).shape
            # The draws of torch's apply, in its order: one generator state gives both the same u, v.
            u = F.normalize(weight.new_empty(h).normal_(0, 1), dim=0, eps=fn.eps)
            v = F.normalize(weight.new_empty(w).normal_(0, 1), dim=0, eps=fn.eps)

        delattr(module, fn.name)
        module.register_parameter(fn.name + "_orig", weight)
        # As torch: code that reads module.<name> before the first forward (weight init) finds it.
        setattr(module, fn.name, weight.data)
        module.register_buffer(fn.name + "_u", u)
        module.register_buffer(fn.name + "_v", v)
        module.register_forward_pre_hook(fn)
        module._register_state_dict_hook(SpectralNormStateDictHook(fn))
        module._register_load_state_dict_pre_hook(SpectralNormLoadStateDictPreHook(fn))
        return fn


def _check_weight(module: nn.Module, name: str) -> torch.Tensor:
    """module.<name> as the legacy hook needs it: a real floating parameter of rank >= 1."""
    if name not in module._parameters:
        hint = " (it is parametrized: remove its parametrizations first)" if name in getattr(
            module, "parametrizations", {}) else ""
        raise ValueError(f"module {type(module).__name__} has no parameter named {name!r}{hint}")
    weight = module._parameters[name]
    if weight is None:
        raise ValueError(f"`SpectralNorm` cannot be applied as parameter `{name}` is None")
    if isinstance(weight, nn.parameter.UninitializedParameter):
        raise ValueError(
            "The module passed to `SpectralNorm` can't have uninitialized parameters. "
            "Make sure to run the dummy forward before applying spectral normalization"
        )
    if weight.is_complex():
        raise TypeError(
            f"{name} is complex ({weight.dtype}): torch's legacy spectral_norm transposes without conjugating, so "
            "it does not compute the spectral norm of a complex matrix; use fastgp.nn.spectral_norm (the "
            "parametrization drop-in), which does"
        )
    if weight.dtype not in _checks.FLOATING_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {weight.dtype}")
    if weight.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension, got a 0-d tensor")
    return weight


def spectral_norm(
    module: T_module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-12, dim: int | None = None
) -> T_module:
    """Apply spectral normalization to ``module.<name>``: the signature and semantics of the legacy
    ``torch.nn.utils.spectral_norm`` (see this module's docstring), on fastgp's fused kernels.

    ``dim`` defaults to 1 for ConvTranspose layers and 0 otherwise (a negative ``dim`` counts from
    the end). Returns the module.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if dim is None:
        dim = 1 if isinstance(module, _CONV_TRANSPOSE) else 0
    SpectralNorm.apply(module, name, n_power_iterations, dim, eps)
    return module


def remove_spectral_norm(module: T_module, name: str = "weight") -> T_module:
    """Remove the spectral normalization of ``module.<name>`` (fastgp's or torch's legacy one):
    ``<name>`` becomes a parameter holding W/σ for the current u, v (no iteration), and the hooks
    go. A ValueError if it has none. Returns the module."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    # torch's removal finds the hook by torch's class, of which fastgp's is a subclass; the state
    # dict hooks are torch's own classes.
    return _torch_remove_spectral_norm(module, name)
