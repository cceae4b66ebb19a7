"""Drop-in for ``torch.nn.utils.parametrizations.spectral_norm`` running fastgp's fused kernels.

``fastgp.nn.spectral_norm(module)`` registers a parametrization with the SAME buffers, the same
random initialization and 15 warm-up iterations, the same forward in training and eval mode and
the same state_dict keys (``parametrizations.weight.original``, ``parametrizations.weight.0._u``,
``..._v``) as torch's, so checkpoints load both ways; checkpoints of the legacy
``torch.nn.utils.spectral_norm`` (``weight_orig``, ``weight_u``, ``weight_v``, and its oldest
format without ``weight_v`` but with the normalized ``weight``) load too. As torch's, it may be
registered twice on one weight (the parametrizations stack) and accepts complex weights (which run
a pure-PyTorch path: the kernels are real).

Beyond torch: ``apply_spectral_norm`` / ``remove_spectral_norm`` for whole models, and the opt-in
once-per-step mode (``SpectralNormStep``): every spectral-normalized layer of a model advances its
power iteration once per optimizer step, all layers in ONE grouped kernel call, and every forward
inside the step (real, fake, interpolates) reuses the same σ.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .. import _checks
from .. import spectral as _spectral

_CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_COMPLEX_DTYPES = (torch.complex64, torch.complex128)
DEFAULT_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d) + _CONV_TRANSPOSE + (nn.Embedding,)


class _StepCache:
    """The once-per-step state of one layer: σ and W/σ with the keys they are valid for.

    A plain object rather than module attributes: it is written at every step and read at every
    forward, and ``nn.Module.__setattr__`` costs microseconds per assignment.
    """

    __slots__ = ("sigma", "sigma_key", "weight_sn", "weight_sn_key")

    def __init__(self):
        self.sigma: torch.Tensor | None = None
        self.sigma_key: tuple | None = None
        self.weight_sn: torch.Tensor | None = None
        self.weight_sn_key: tuple | None = None


class SpectralNorm(nn.Module):
    """The parametrization: ``weight ↦ weight / σ(weight)`` (see ``fastgp.spectral``).

    Buffers ``_u`` [h] and ``_v`` [w] in the weight's dtype, exactly like torch's ``_SpectralNorm``.
    ``once_per_step`` (set by ``SpectralNormStep``) stops the per-forward iteration: σ is then the
    value cached by the last ``step()`` (recomputed from u, v if the weight or the vectors changed
    since), and with ``cache_weight`` the normalized weight W/σ itself is reused by every forward of
    the step (see ``_cached_weight``).
    """

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12):
        super().__init__()
        ndim = weight.ndim
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"dim must be an int or None, got {type(dim).__name__}")
        if dim >= max(ndim, 1) or dim < -max(ndim, 1):
            raise ValueError(f"dim must be in [{-max(ndim, 1)}, {max(ndim, 1) - 1}] for a {ndim}-d weight, got {dim}")
        self.n_power_iterations = _spectral.check_n_power_iterations(n_power_iterations)
        self.eps = _spectral.check_eps(eps)
        self.dim = dim if dim >= 0 else dim + ndim
        self.once_per_step = False
        self.cache_weight = False
        self._cache = _StepCache()
        if ndim > 1:
            weight_mat = _spectral.weight_to_matrix(weight, self.dim)
            h, w = weight_mat.shape
            # The same draws in the same order as torch, so one seed gives both the same state.
            u = weight_mat.new_empty(h).normal_(0, 1)
            v = weight_mat.new_empty(w).normal_(0, 1)
            self.register_buffer("_u", nn.functional.normalize(u, dim=0, eps=self.eps))
            self.register_buffer("_v", nn.functional.normalize(v, dim=0, eps=self.eps))
            if weight.is_complex():
                self._complex_power_method(weight_mat, 15)
            else:
                _spectral.power_iteration(weight_mat, self._u, self._v, 15, self.eps)

    @torch.no_grad()
    def _complex_power_method(self, weight_mat: torch.Tensor, n_iterations: int) -> None:
        """torch's iteration for complex weights (u = normalize(W v), v = normalize(Wᴴ u), in place):
        the fused kernels are real, so complex weights run this pure-PyTorch path."""
        weight_mat = weight_mat.detach()
        for _ in range(n_iterations):
            self._u.copy_(F.normalize(torch.mv(weight_mat, self._v), dim=0, eps=self.eps))
            self._v.copy_(F.normalize(torch.mv(weight_mat.H, self._u), dim=0, eps=self.eps))

    def _complex_forward(self, weight: torch.Tensor) -> torch.Tensor:
        if weight.ndim == 1:
            return F.normalize(weight, dim=0, eps=self.eps)
        weight_mat = _spectral.weight_to_matrix(weight, self.dim)
        if self.training:
            self._complex_power_method(weight_mat, self.n_power_iterations)
        u = self._u.clone(memory_format=torch.contiguous_format)
        v = self._v.clone(memory_format=torch.contiguous_format)
        return weight / torch.vdot(u, torch.mv(weight_mat, v))  # σ = uᴴ W v

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if weight.is_complex():
            return self._complex_forward(weight)
        if weight.ndim == 1:
            return _spectral.normalize_unchecked(weight, None, None, 0, 0, self.eps)
        if self.once_per_step:
            # Inference tensors have no version counter and must never reach autograd later:
            # inference-mode forwards (sampling, evaluation) are not cached.
            if self.cache_weight and not torch.is_inference_mode_enabled():
                return self._cached_weight(weight)
            return self._normalize_with_step_sigma(weight)
        n = self.n_power_iterations if self.training else 0
        return _spectral.normalize_unchecked(weight, self._u, self._v, self.dim, n, self.eps)

    def _normalize_with_step_sigma(self, weight: torch.Tensor) -> torch.Tensor:
        return _spectral.normalize_unchecked(
            weight, self._u, self._v, self.dim, 0, self.eps, sigma=self._cached_sigma(weight)
        )

    def _state_key(self, weight: torch.Tensor) -> tuple:
        """What σ depends on: the weight and the vectors, as objects, storage and version.

        An in-place write (optimizer step, load_state_dict, a manual edit) bumps ``_version``; a
        module moved or cast (``.to()``, ``.double()``) or a swapped tensor (``functional_call``)
        changes the object or its storage, which ``.data =`` assignments do without a version bump.
        """
        return tuple(
            (id(t), t.data_ptr(), t._version, t.dtype, t.device) for t in (weight, self._u, self._v)
        )

    def _cached_sigma(self, weight: torch.Tensor) -> torch.Tensor:
        # σ from the last step(); if the weight or the vectors were written since, σ = uᵀ W v is
        # recomputed for the current state (one pass over W, no iteration).
        key = self._state_key(weight)
        cache = self._cache
        if cache.sigma is None or cache.sigma_key != key:
            with torch.no_grad():
                weight_mat = _spectral.weight_to_matrix(weight.detach(), self.dim)
                self._set_sigma(_spectral.power_iteration(weight_mat, self._u, self._v, 0, self.eps), weight)
        return cache.sigma

    def _set_sigma(self, sigma: torch.Tensor, weight: torch.Tensor) -> None:
        # Recorded after the kernel ran: the in-place update of u, v may have bumped their versions.
        self._cache.sigma = sigma
        self._cache.sigma_key = self._state_key(weight)
        self.invalidate_weight_cache()

    def invalidate_weight_cache(self) -> None:
        self._cache.weight_sn = None
        self._cache.weight_sn_key = None

    def reset_step_cache(self) -> None:
        self._cache = _StepCache()

    def _cached_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """W/σ, computed once and returned by every forward of the step while it stays valid.

        Every forward (real, fake, interpolates) then uses the SAME tensor, so autograd sums their
        gradients into it and runs the W/σ backward (and its u vᵀ term) once per backward call,
        as ``parametrize.cached()`` does. The tensor is rebuilt when
        - step() ran or σ had to be recomputed (``_set_sigma`` drops it);
        - the weight or the vectors changed (the state key: optimizer step, load_state_dict, an
          in-place edit, a cast or move);
        - a backward computed its gradient (the hook below): that backward may have freed its
          graph, so a later forward must not build on it (two backward passes in one step);
        - the autograd mode differs from the one it was built in: grad enabled or not,
          ``weight.requires_grad`` (a W/σ without a graph never serves a forward that needs one),
          or train/eval (inference-mode forwards bypass the cache altogether);
        - the returned tensor itself was modified in place (its own version).
        """
        sigma = self._cached_sigma(weight)  # first: it may invalidate the cached W/σ
        cache = self._cache
        key = (cache.sigma_key, torch.is_grad_enabled(), weight.requires_grad, self.training)
        cached = cache.weight_sn
        if cached is not None and cache.weight_sn_key == (key, cached._version):
            return cached
        result = _spectral.normalize_unchecked(weight, self._u, self._v, self.dim, 0, self.eps, sigma=sigma)
        if result.requires_grad:
            result.register_hook(_invalidate_on_gradient(self, result))
        cache.weight_sn = result
        cache.weight_sn_key = (key, result._version)
        return result

    def __getstate__(self):
        # Copies (copy.deepcopy of D, e.g. for an EMA) start without the step's caches: a cached
        # W/σ is a non-leaf tensor, which deepcopy refuses, and σ's key names the ORIGINAL tensors.
        state = self.__dict__.copy()
        state["_cache"] = _StepCache()
        return state

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value  # as torch: assigning the weight stores it as the original

    def extra_repr(self) -> str:
        mode = ", once_per_step" if self.once_per_step else ""
        return f"n_power_iterations={getattr(self, 'n_power_iterations', 0)}, dim={self.dim}, eps={self.eps}{mode}"


def _invalidate_on_gradient(parametrization: SpectralNorm, weight_sn: torch.Tensor):
    """A gradient hook on a cached W/σ that drops it from the cache once a backward reaches it.

    Weak references: the hook lives on W/σ's graph, which must not keep the layer (or W/σ itself)
    alive. It returns None, so the gradient passes unchanged.
    """
    layer_ref, tensor_ref = weakref.ref(parametrization), weakref.ref(weight_sn)

    def hook(grad):
        layer = layer_ref()
        if layer is not None and layer._cache.weight_sn is not None and layer._cache.weight_sn is tensor_ref():
            layer.invalidate_weight_cache()

    return hook


def _spectral_parametrization(module: nn.Module, name: str):
    """The first spectral norm (ours or torch's) registered on module.<name>, else None."""
    if not parametrize.is_parametrized(module, name):
        return None
    for p in module.parametrizations[name]:
        if isinstance(p, SpectralNorm) or type(p).__name__ == "_SpectralNorm":
            return p
    return None


class _LegacyLoadHook:
    """A load_state_dict pre-hook (one per module and weight name) mapping the keys of the legacy
    ``torch.nn.utils.spectral_norm`` onto the parametrization's. A class rather than a closure, so
    ``remove_spectral_norm`` can find and remove it (and it pickles)."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        old = prefix + self.name
        if old + "_orig" not in state_dict:
            return
        new = f"{prefix}parametrizations.{self.name}"
        if old + "_v" not in state_dict and old in state_dict and old + "_u" in state_dict:
            # The oldest format (no version metadata) stored the normalized weight W and no v.
            state_dict[old + "_v"] = self._solve_v(module, state_dict[old + "_orig"], state_dict[old], state_dict[old + "_u"])
        state_dict[new + ".original"] = state_dict.pop(old + "_orig")
        for suffix in ("_u", "_v"):
            if old + suffix in state_dict:
                state_dict[f"{new}.0.{suffix}"] = state_dict.pop(old + suffix)
        # Files of that format also stored the normalized weight itself: derived data.
        state_dict.pop(old, None)

    def _solve_v(self, module, weight_orig, weight_sn, u) -> torch.Tensor:
        """The v the legacy loader derives: σ = mean(W_orig / W), then the v with normalize(W_orig v) = u
        and uᵀ W_orig v = σ (least squares, as those files went through a training forward)."""
        parametrization = _spectral_parametrization(module, self.name)
        dim = parametrization.dim if parametrization is not None else 0
        with torch.no_grad():
            sigma = (weight_orig / weight_sn).mean()
            weight_mat = _spectral.weight_to_matrix(weight_orig, dim)
            v = torch.linalg.pinv(weight_mat) @ u
            return v * (sigma / torch.dot(u, weight_mat @ v))


def _legacy_load_hooks(module: nn.Module, name: str) -> list:
    """The ids of module's load_state_dict pre-hooks that are fastgp's legacy hook for ``name``."""
    found = []
    for key, wrapped in module._load_state_dict_pre_hooks.items():
        hook = getattr(wrapped, "hook", wrapped)
        if isinstance(hook, _LegacyLoadHook) and hook.name == name:
            found.append(key)
    return found


def spectral_norm(
    module: nn.Module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-12, dim: int | None = None
) -> nn.Module:
    """Apply spectral normalization to ``module.<name>``: the signature and semantics of
    ``torch.nn.utils.parametrizations.spectral_norm``, on fastgp's fused kernels.

    ``dim`` defaults to 1 for ConvTranspose layers and 0 otherwise. ``n_power_iterations=0`` (which
    torch rejects) never iterates in forward: useful with ``SpectralNormStep``.
    Returns the module.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    weight = getattr(module, name, None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"module {type(module).__name__} has no parameter or buffer named {name!r}")
    if hasattr(module, name + "_orig"):
        raise ValueError(
            f"module {type(module).__name__} already has the legacy torch.nn.utils.spectral_norm on {name!r} "
            "(a forward pre-hook that overwrites it): remove it with torch.nn.utils.remove_spectral_norm first"
        )
    if weight.dtype not in _checks.FLOATING_DTYPES + _COMPLEX_DTYPES:
        raise TypeError(
            f"{name} must have a floating (float16, bfloat16, float32, float64) or complex (complex64, "
            f"complex128) dtype, got {weight.dtype}"
        )
    if dim is None:
        dim = 1 if isinstance(module, _CONV_TRANSPOSE) else 0
    # A second call on the same weight stacks a second parametrization, as torch's does: its u, v
    # are drawn for the current (already normalized) weight.
    parametrization = SpectralNorm(weight, n_power_iterations, dim, eps)
    parametrize.register_parametrization(module, name, parametrization)
    if not _legacy_load_hooks(module, name):
        module._register_load_state_dict_pre_hook(_LegacyLoadHook(name), with_module=True)
    return module


def spectral_norms(model: nn.Module) -> list[SpectralNorm]:
    """Every fastgp spectral-norm parametrization inside ``model``."""
    return [m for m in model.modules() if isinstance(m, SpectralNorm)]


def apply_spectral_norm(
    model: nn.Module,
    layer_types: Iterable[type] = DEFAULT_LAYER_TYPES,
    exclude: Iterable = (),
    n_power_iterations: int = 1,
    eps: float = 1e-12,
) -> nn.Module:
    """Spectral-normalize the ``weight`` of every layer of ``model`` of one of ``layer_types``.

    ``exclude``: module names (as in ``model.named_modules()``) or module objects to leave alone.
    Layers already spectral-normalized are skipped. Returns the model.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layer_types = tuple(layer_types)
    if not all(isinstance(t, type) and issubclass(t, nn.Module) for t in layer_types):
        raise TypeError(f"layer_types must be nn.Module subclasses, got {layer_types}")
    exclude = list(exclude)
    excluded_names = {e for e in exclude if isinstance(e, str)}
    excluded_ids = {id(e) for e in exclude if isinstance(e, nn.Module)}
    unknown = excluded_names - {n for n, _ in model.named_modules()}
    if unknown:
        raise ValueError(f"exclude names modules that are not in the model: {sorted(unknown)}")
    for qualified, module in list(model.named_modules()):
        if not isinstance(module, layer_types) or qualified in excluded_names or id(module) in excluded_ids:
            continue
        if _spectral_parametrization(module, "weight") is not None or hasattr(module, "weight_orig"):
            continue
        if isinstance(getattr(module, "weight", None), torch.Tensor):
            spectral_norm(module, "weight", n_power_iterations, eps)
    return model


def _check_removable(module: nn.Module, name: str) -> None:
    """Removing parametrizations removes the whole list: refuse a list that holds others too."""
    others = [type(p).__name__ for p in module.parametrizations[name] if not isinstance(p, SpectralNorm)]
    if others:
        raise ValueError(
            f"{type(module).__name__}.{name} also has other parametrizations ({', '.join(others)}); remove them "
            f"all with torch.nn.utils.parametrize.remove_parametrizations(module, {name!r})"
        )


def _remove_from(module: nn.Module, name: str) -> None:
    """Remove module.<name>'s parametrizations (all fastgp spectral norms) leaving W/σ, and its hook."""
    _check_removable(module, name)
    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    for key in _legacy_load_hooks(module, name):
        del module._load_state_dict_pre_hooks[key]


def _has_fastgp_sn(module: nn.Module, name: str) -> bool:
    return parametrize.is_parametrized(module, name) and any(
        isinstance(p, SpectralNorm) for p in module.parametrizations[name]
    )


def remove_spectral_norm(model: nn.Module, name: str | None = None) -> nn.Module:
    """Remove fastgp's spectral norm, leaving the normalized weights as plain parameters (as
    ``parametrize.remove_parametrizations(..., leave_parametrized=True)``; a layer in training mode
    runs one more power iteration, as torch's does) and removing the load_state_dict hook that
    ``spectral_norm`` added. Returns the model.

    With ``name`` (torch's ``remove_spectral_norm(module, name="weight")``): only ``model.<name>``,
    a ValueError if it has no fastgp spectral norm. Without: every fastgp spectral norm in the
    model and its submodules; other parametrizations (torch's spectral norm included) stay.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if name is not None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        if not _has_fastgp_sn(model, name):
            raise ValueError(f"fastgp spectral_norm of {name!r} not found in {type(model).__name__}")
        _remove_from(model, name)
        return model
    targets = [
        (module, tensor_name)
        for module in model.modules()
        if parametrize.is_parametrized(module)
        for tensor_name in module.parametrizations.keys()
        if _has_fastgp_sn(module, tensor_name)
    ]
    for module, tensor_name in targets:  # refuse before removing anything
        _check_removable(module, tensor_name)
    for module, tensor_name in targets:
        _remove_from(module, tensor_name)
    return model


class SpectralNormStep:
    """The opt-in once-per-step mode for every fastgp spectral norm inside ``model``.

    While attached, forwards do not iterate: σ (and u, v) advance only in ``step()``, which runs
    ``n_power_iterations`` of ALL layers in one grouped kernel call per (device, dtype), so the
    real, fake and interpolate forwards of one discriminator step all use the same σ. With
    ``optimizer`` given, ``step()`` runs after each ``optimizer.step()`` (a step post-hook).
    ``step()`` is also run once on attaching, so the first forwards have a fresh σ. ``detach()``
    returns to the default (torch-compatible) per-forward iteration.

    ``cache_weight`` (default True): the first forward of a step computes W/σ and later forwards
    reuse that same tensor, so a backward runs the W/σ backward once instead of once per forward.
    The gradients are exactly those of recomputing W/σ in every forward (``cache_weight=False``,
    kept for comparison); what invalidates the cache is listed in ``SpectralNorm._cached_weight``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        n_power_iterations: int | None = None,
        cache_weight: bool = True,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
        if not isinstance(cache_weight, bool):
            raise TypeError(f"cache_weight must be a bool, got {type(cache_weight).__name__}")
        self.n_power_iterations = (
            None if n_power_iterations is None else _spectral.check_n_power_iterations(n_power_iterations)
        )
        self._layers: list[tuple[nn.Module, str, SpectralNorm]] = []
        for module in model.modules():
            if not parametrize.is_parametrized(module):
                continue
            for name, plist in module.parametrizations.items():
                for index, p in enumerate(plist):
                    if not (isinstance(p, SpectralNorm) and hasattr(p, "_u")):
                        continue
                    if index != 0 or plist.original.is_complex():
                        raise ValueError(
                            f"{type(module).__name__}.{name}: the once-per-step mode needs fastgp's spectral norm "
                            "as the only or first parametrization of a real weight (stacked or complex ones "
                            "iterate per forward)"
                        )
                    self._layers.append((module, name, p))
        if not self._layers:
            raise ValueError("model has no fastgp spectral-normalized layer with a matrix weight")
        for _, _, p in self._layers:
            p.once_per_step = True
            p.cache_weight = cache_weight
        self._hook = optimizer.register_step_post_hook(lambda *args: self.step()) if optimizer is not None else None
        self.step()

    @torch.no_grad()
    def step(self) -> None:
        """Advance every layer's u, v and σ in one grouped call per (device, dtype)."""
        groups: dict[tuple, list] = {}
        for module, name, p in self._layers:
            weight = module.parametrizations[name].original
            n = p.n_power_iterations if self.n_power_iterations is None else self.n_power_iterations
            groups.setdefault((weight.device, weight.dtype, n, p.eps), []).append((weight, p))
        for (_, _, n, eps), items in groups.items():
            mats = [_spectral.weight_to_matrix(w.detach(), p.dim) for w, p in items]
            sigmas = _spectral.power_iteration_grouped(mats, [p._u for _, p in items], [p._v for _, p in items], n, eps)
            for (weight, p), sigma in zip(items, sigmas.unbind(0)):
                p._set_sigma(sigma, weight)

    def state_dict(self) -> dict:
        """The σ each layer divides by until the next ``step()``, for checkpoints. (u and v are
        buffers of the model already; σ recomputed from them after loading is uᵀWv by another
        kernel, equal only up to the last bits, so an exactly resumed run restores σ itself.)"""
        return {"sigmas": [p._cached_sigma(module.parametrizations[name].original).clone()
                           for module, name, p in self._layers]}

    def load_state_dict(self, state: dict) -> None:
        """Restore the σ of ``state_dict()``; call it after loading the model's weights."""
        if not isinstance(state, dict) or not isinstance(state.get("sigmas"), (list, tuple)):
            raise ValueError("state must be a dict with a list 'sigmas' (from SpectralNormStep.state_dict())")
        sigmas = state["sigmas"]
        if len(sigmas) != len(self._layers):
            raise ValueError(f"state holds {len(sigmas)} sigmas for {len(self._layers)} spectral-normalized layers")
        for (module, name, p), sigma in zip(self._layers, sigmas):
            weight = module.parametrizations[name].original
            if not isinstance(sigma, torch.Tensor) or sigma.numel() != 1:
                raise ValueError(f"each sigma must be a one-element tensor, got {sigma!r}")
            p._set_sigma(sigma.to(weight.device), weight)

    def detach(self) -> None:
        """Back to the default mode: every training forward iterates again."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        for _, _, p in self._layers:
            p.once_per_step = False
            p.cache_weight = False
            p.reset_step_cache()
