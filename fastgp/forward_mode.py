"""The forward-mode pass of D behind the penalties' ``method="jvp"`` (see fastgp/penalty.py, section
"Exact penalties without double backward", for the mathematics).

Step 3 runs D a second time, and must compute the same function as step 1:
- the default random generators (CPU and x's device) and the torch.Generator attributes of D's
  submodules are rewound to their state before step 1 and restored after step 3 (dropout and
  random augmentation inside D draw the same numbers);
- when D is an nn.Module, step 3 runs on copies of D's buffers taken before step 1
  (torch.func.functional_call): BatchNorm running statistics and spectral norm's power
  iteration advance once per call, as with double backward, and step 3 sees step 1's state;
- PyTorch's forward-mode formulas of batch/layer/instance norm (training statistics) and
  softmax are not differentiable in reverse mode (their saved statistics carry no graph: the
  parameter gradients came out wrong in float64, or autograd raised): inside step 3 those calls
  run as explicit torch ops (``_ForwardADExactOps``).
"""

from __future__ import annotations

import warnings

import torch
import torch.autograd.forward_ad as _fwad
import torch.nn.functional as _F
from torch import nn as _nn
from torch.overrides import TorchFunctionMode as _TorchFunctionMode


def _has_tangent(t) -> bool:
    return isinstance(t, torch.Tensor) and _fwad.unpack_dual(t).tangent is not None


def _stat_dtype(x: torch.Tensor) -> torch.dtype:
    """Statistics of reduced-precision inputs in float32, as the fused norm kernels accumulate."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _normalize(x, dims, weight, bias, eps, affine_shape):
    xs = x.to(_stat_dtype(x))
    mean = xs.mean(dim=dims, keepdim=True)
    var = xs.var(dim=dims, unbiased=False, keepdim=True)
    out = (xs - mean) * torch.rsqrt(var + eps)
    if weight is not None:
        out = out * weight.reshape(affine_shape)
    if bias is not None:
        out = out + bias.reshape(affine_shape)
    return out.to(x.dtype)


def _batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    if not (training or running_mean is None or running_var is None) or not _has_tangent(input):
        # Running statistics are constants: the built-in formula is exact.
        return _F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
    # Batch statistics. The running statistics are not updated: step 1 already did (step 3 replays it).
    shape = [1, input.shape[1]] + [1] * (input.dim() - 2)
    return _normalize(input, [0, *range(2, input.dim())], weight, bias, eps, shape)


def _instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                   use_input_stats=True, momentum=0.1, eps=1e-5):
    if not use_input_stats or not _has_tangent(input):
        return _F.instance_norm(input, running_mean, running_var, weight, bias, use_input_stats, momentum, eps)
    shape = [1, input.shape[1]] + [1] * (input.dim() - 2)
    return _normalize(input, list(range(2, input.dim())), weight, bias, eps, shape)


def _layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    if not _has_tangent(input):
        return _F.layer_norm(input, normalized_shape, weight, bias, eps)
    dims = list(range(input.dim() - len(normalized_shape), input.dim()))
    return _normalize(input, dims, weight, bias, eps, tuple(normalized_shape))


def _softmax_args(input, dim, dtype):
    x = input if dtype is None else input.to(dtype)
    return x, x - x.amax(dim=dim, keepdim=True).detach()  # a constant shift: exact, and no overflow


def _softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None or not _has_tangent(input):
        return _F.softmax(input, dim, _stacklevel, dtype)
    _, shifted = _softmax_args(input, dim, dtype)
    e = shifted.exp()
    return e / e.sum(dim=dim, keepdim=True)


def _log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None or not _has_tangent(input):
        return _F.log_softmax(input, dim, _stacklevel, dtype)
    _, shifted = _softmax_args(input, dim, dtype)
    return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()


def _softmax_no_stacklevel(input, dim, dtype=None):  # torch.softmax and Tensor.softmax
    return _softmax(input, dim, dtype=dtype)


def _log_softmax_no_stacklevel(input, dim, dtype=None):
    return _log_softmax(input, dim, dtype=dtype)


class _ForwardADExactOps(_TorchFunctionMode):
    """Inside the forward-mode pass: the functions whose built-in forward-mode formula is not
    differentiable in reverse mode run as explicit torch ops (see the section comment)."""

    REPLACEMENTS = {
        _F.batch_norm: _batch_norm,
        _F.instance_norm: _instance_norm,
        _F.layer_norm: _layer_norm,
        _F.softmax: _softmax,
        _F.log_softmax: _log_softmax,
        torch.softmax: _softmax_no_stacklevel,
        torch.log_softmax: _log_softmax_no_stacklevel,
        torch.Tensor.softmax: _softmax_no_stacklevel,
        torch.Tensor.log_softmax: _log_softmax_no_stacklevel,
    }

    def __torch_function__(self, func, types, args=(), kwargs=None):
        replacement = self.REPLACEMENTS.get(func)
        return (replacement or func)(*args, **(kwargs or {}))


class _ForwardReplay:
    """What D's forward reads besides its arguments, captured before step 1 and replayed in step 3:
    random generators and (when D is a module) its buffers."""

    def __init__(self, D, device: torch.device):
        self.module = D if isinstance(D, _nn.Module) else None
        generators = [torch.default_generator]
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            generators.append(torch.cuda.default_generators[index])
        if self.module is not None:
            for sub in self.module.modules():
                generators += [g for g in vars(sub).values() if isinstance(g, torch.Generator)]
        self.generators = list({id(g): g for g in generators}.values())
        self.states = [g.get_state() for g in self.generators]
        self.buffers = {}
        if self.module is not None:
            self.buffers = {name: b.clone() for name, b in self.module.named_buffers()}

    def call(self, D, x, d_args, d_kwargs):
        """D(x, ...) from the state captured at construction; every generator ends where it was."""
        after = [g.get_state() for g in self.generators]
        try:
            for g, state in zip(self.generators, self.states):
                g.set_state(state)
            if self.buffers:
                return torch.func.functional_call(D, self.buffers, (x, *d_args), d_kwargs, strict=False)
            return D(x, *d_args, **d_kwargs)
        finally:
            for g, state in zip(self.generators, after):
                g.set_state(state)


_FORWARD_AD_LOADED = False


def _load_forward_ad_decompositions() -> None:
    """PyTorch scripts its forward-AD decompositions at the first make_dual of a process, warning
    about its own use of torch.jit.script (a FutureWarning on torch 2.14+; on 2.11 also
    DeprecationWarnings for torch.jit.script_method, from torch.utils.mkldnn): load them once here,
    quietly. (Under torch.compile this is a graph break on the first call only: the flag is then a
    constant.)"""
    global _FORWARD_AD_LOADED
    load = getattr(_fwad, "_maybe_load_decompositions", None)
    if load is not None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"`torch\.jit\.script(_method)?` is deprecated", Warning)
            load()
    _FORWARD_AD_LOADED = True
