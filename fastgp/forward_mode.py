"""The forward-mode pass of D behind the penalties' ``method="jvp"`` (see fastgp/penalty.py, section
"Exact penalties without double backward", for the mathematics): step 1 runs D once (recording its
random draws), step 3 runs it again on a dual input and returns its output's tangent, whose
reverse-mode graph carries the penalty's gradients. Step 3 must be exact or refuse.

Where the tangent formulas run. Forward-mode AD computes each operator's tangent in the autograd
layer of the dispatcher, from a per-operator formula (derivatives.yaml); reverse-over-forward needs
that formula to be differentiable in reverse mode, which it is not for every operator (batch/layer/
group/instance norm's formulas use saved statistics that carry no graph: gradients silently 34–47 %
off in float64; softmax, log_softmax, logsumexp, logcumsumexp and the 1-norm raise "modified by an
inplace operation"; glu's has no formula in reverse mode; grid_sample and cdist have none at all).
So step 3 runs under two modes, one on each side of that layer:

* ``_ExactOps`` (a TorchFunctionMode, ABOVE autograd) replaces the Python entry points of the known
  problem operators — ``F.layer_norm``, ``torch.layer_norm``, ``torch.native_layer_norm``, batch,
  instance and group norm in all their spellings, the softmax family, ``logsumexp``, ``glu`` … — by
  explicit torch ops, whose formulas are exact. A replacement must happen above autograd: below
  it the operator's formula has already been chosen.
* ``_Step3Check`` (a TorchDispatchMode, BELOW autograd, where every path to a kernel meets: a
  Python function, a Tensor method, ``torch.ops.aten`` or a C++ composite) sees every ATen operator
  that runs — D's own and those of the tangent formulas — and lets through only the operators of
  ``ALLOWED`` (each one tested against double backward in float64, tests/test_forward_mode.py) and
  ``NO_DERIVATIVE`` (factories, comparisons and shape queries, which carry no derivative). Any
  other operator raises ``UnsupportedOperator``, naming it and pointing to
  ``method="double-backward"``: a path that escaped ``_ExactOps`` (a problem operator reached some
  other way) is refused, never silently wrong.

Step 3 must compute the same function as step 1:
- random draws are replayed, not redrawn: step 1 runs under ``_RecordRandom`` (a dispatch mode),
  which keeps the outputs of every random operator (``nondeterministic_seeded``: dropout,
  ``torch.rand``, ``bernoulli_`` … from any generator), and step 3 returns them in order without
  drawing. No generator is rewound, so nothing another thread can observe moves (each generator
  advances once, in step 1, as with double backward);
- when D is an nn.Module, step 3 runs on copies of D's buffers taken before step 1
  (torch.func.functional_call): BatchNorm running statistics and spectral norm's power
  iteration advance once per call, as with double backward, and step 3 sees step 1's state.

Threads. PyTorch's forward-AD levels are process-wide, not per thread: step 3 holds ``_LOCK``, so
concurrent jvp calls take turns in it (the rest of a call runs in parallel). A forward-mode level
opened outside fastgp (``torch.autograd.forward_ad.dual_level()``, in this thread or another) cannot
be nested: step 3 then raises a RuntimeError saying so.
"""

from __future__ import annotations

import re
import threading
import warnings

import torch
import torch.autograd.forward_ad as _fwad
import torch.nn.functional as _F
from torch import nn as _nn
from torch.overrides import TorchFunctionMode as _TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode as _TorchDispatchMode

_LOCK = threading.RLock()  # re-entrant: a D that itself calls a jvp penalty gets the nested-level error, not a deadlock

# --------------------------------------------------------------------------------------------
# Explicit replacements of the problem operators (above autograd)
# --------------------------------------------------------------------------------------------


def _stat_dtype(x: torch.Tensor) -> torch.dtype:
    """Statistics of reduced-precision inputs in float32, as the fused norm kernels accumulate."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _normalize(x, dims, weight, bias, eps, affine_shape, mean=None, var=None):
    """(x − mean)/√(var + eps)·weight + bias; batch statistics over ``dims`` unless given."""
    xs = x.to(_stat_dtype(x))
    if mean is None:
        mean = xs.mean(dim=dims, keepdim=True)
        var = xs.var(dim=dims, unbiased=False, keepdim=True)
    out = (xs - mean) * torch.rsqrt(var + eps)
    if weight is not None:
        out = out * weight.reshape(affine_shape)
    if bias is not None:
        out = out + bias.reshape(affine_shape)
    return out.to(x.dtype)


def _channel_shape(input):
    return [1, input.shape[1]] + [1] * (input.dim() - 2)


def _batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    shape = _channel_shape(input)
    if training or running_mean is None or running_var is None:
        # Batch statistics. The running statistics are not updated: step 1 already did (step 3
        # runs on copies of the buffers).
        return _normalize(input, [0, *range(2, input.dim())], weight, bias, eps, shape)
    return _normalize(input, None, weight, bias, eps, shape,
                      running_mean.reshape(shape), running_var.reshape(shape))


def _torch_batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled=True):
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


def _instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                   use_input_stats=True, momentum=0.1, eps=1e-5):
    shape = _channel_shape(input)
    if use_input_stats or running_mean is None or running_var is None:
        return _normalize(input, list(range(2, input.dim())), weight, bias, eps, shape)
    return _normalize(input, None, weight, bias, eps, shape, running_mean.reshape(shape), running_var.reshape(shape))


def _torch_instance_norm(input, weight, bias, running_mean, running_var, use_input_stats, momentum, eps,
                         cudnn_enabled=True):
    return _instance_norm(input, running_mean, running_var, weight, bias, use_input_stats, momentum, eps)


def _layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    dims = list(range(input.dim() - len(normalized_shape), input.dim()))
    return _normalize(input, dims, weight, bias, eps, normalized_shape)


def _native_layer_norm(input, normalized_shape, weight, bias, eps):
    """(out, mean, rstd) as torch.native_layer_norm returns them, all differentiable."""
    dims = list(range(input.dim() - len(normalized_shape), input.dim()))
    xs = input.to(_stat_dtype(input))
    mean = xs.mean(dim=dims, keepdim=True)
    rstd = torch.rsqrt(xs.var(dim=dims, unbiased=False, keepdim=True) + eps)
    return _layer_norm(input, normalized_shape, weight, bias, eps), mean, rstd


def _group_norm(input, num_groups, weight=None, bias=None, eps=1e-5, cudnn_enabled=True):
    grouped = input.reshape(input.shape[0], num_groups, -1)
    out = _normalize(grouped, [2], None, None, eps, None).reshape(input.shape)
    shape = _channel_shape(input)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def _shifted(input, dim, dtype=None):
    """input − max (a constant shift along dim: exact, and no overflow); ±inf maxima shift by 0."""
    x = input if dtype is None else input.to(dtype)
    peak = x.detach().amax(dim=dim, keepdim=True)
    return x - torch.where(peak.isfinite(), peak, torch.zeros_like(peak))


def _softmax_dim(input, dim, stacklevel):
    return _F._get_softmax_dim("softmax", input.dim(), stacklevel) if dim is None else dim


def _softmax(input, dim=None, _stacklevel=3, dtype=None):
    e = _shifted(input, _softmax_dim(input, dim, _stacklevel), dtype).exp()
    return e / e.sum(dim=_softmax_dim(input, dim, _stacklevel), keepdim=True)


def _log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    dim = _softmax_dim(input, dim, _stacklevel)
    shifted = _shifted(input, dim, dtype)
    return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()


def _softmin(input, dim=None, _stacklevel=3, dtype=None):
    return _softmax(-input if dtype is None else -input.to(dtype), dim, _stacklevel)


def _softmax_no_stacklevel(input, dim, dtype=None):  # torch.softmax, Tensor.softmax, torch.special.softmax
    return _softmax(input, dim, dtype=dtype)


def _log_softmax_no_stacklevel(input, dim, dtype=None):
    return _log_softmax(input, dim, dtype=dtype)


def _logsumexp(input, dim, keepdim=False):
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    x = input
    peak = x.detach().amax(dim=dims, keepdim=True) if x.numel() else torch.zeros_like(x.sum(dims, keepdim=True))
    peak = torch.where(peak.isfinite(), peak, torch.zeros_like(peak))
    out = (x - peak).exp().sum(dim=dims, keepdim=True).log() + peak
    return out if keepdim else out.squeeze(dims)


def _glu(input, dim=-1):
    a, b = input.chunk(2, dim=dim)
    return a * torch.sigmoid(b)


def _gumbel_softmax(logits, tau=1, hard=False, eps=1e-10, dim=-1):
    """F.gumbel_softmax with the explicit softmax: the same draw (one exponential_ of logits' shape,
    replayed from step 1) and the same straight-through estimator."""
    gumbels = -torch.empty_like(logits, memory_format=torch.legacy_contiguous_format).exponential_().log()
    y_soft = _softmax_no_stacklevel((logits + gumbels) / tau, dim)
    if not hard:
        return y_soft
    index = y_soft.max(dim, keepdim=True)[1]
    y_hard = torch.zeros_like(logits, memory_format=torch.legacy_contiguous_format).scatter_(dim, index, 1.0)
    return y_hard - y_soft.detach() + y_soft


def _cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                   reduction="mean", label_smoothing=0.0):
    if target.is_floating_point() or label_smoothing != 0.0 or input.dim() < 2:
        # Probabilities or smoothing: F.cross_entropy's own log_softmax, which _Step3Check refuses.
        return _F.cross_entropy(input, target, weight, size_average, ignore_index, reduce, reduction, label_smoothing)
    return _F.nll_loss(_log_softmax(input, 1), target, weight, size_average, ignore_index, reduce, reduction)


class _ExactOps(_TorchFunctionMode):
    """Inside step 3: the Python entry points of the operators whose built-in forward-mode formula is
    not differentiable in reverse mode run as explicit torch ops (see the module docstring)."""

    REPLACEMENTS = {
        _F.batch_norm: _batch_norm,
        torch.batch_norm: _torch_batch_norm,
        _F.instance_norm: _instance_norm,
        torch.instance_norm: _torch_instance_norm,
        _F.layer_norm: _layer_norm,
        torch.layer_norm: _layer_norm,
        torch.native_layer_norm: _native_layer_norm,
        _F.group_norm: _group_norm,
        torch.group_norm: _group_norm,
        _F.softmax: _softmax,
        _F.log_softmax: _log_softmax,
        _F.softmin: _softmin,
        torch.softmax: _softmax_no_stacklevel,
        torch.log_softmax: _log_softmax_no_stacklevel,
        torch.Tensor.softmax: _softmax_no_stacklevel,
        torch.Tensor.log_softmax: _log_softmax_no_stacklevel,
        torch.special.softmax: _softmax_no_stacklevel,
        torch.special.log_softmax: _log_softmax_no_stacklevel,
        torch.logsumexp: _logsumexp,
        torch.Tensor.logsumexp: _logsumexp,
        torch.special.logsumexp: _logsumexp,
        _F.glu: _glu,
        _F.gumbel_softmax: _gumbel_softmax,
        _F.cross_entropy: _cross_entropy,
    }

    def __torch_function__(self, func, types, args=(), kwargs=None):
        replacement = self.REPLACEMENTS.get(func)
        return (replacement or func)(*args, **(kwargs or {}))


# --------------------------------------------------------------------------------------------
# The operators step 3 may run (below autograd)
# --------------------------------------------------------------------------------------------

# Operators whose forward-mode formula is differentiable in reverse mode, each verified against
# double backward in float64 (tests/test_forward_mode.py, one case per name). fastgp.translate is
# fastgp's augmentation kernel, whose autograd.Function has an explicit jvp (itself an .apply).
ALLOWED = frozenset("""
    abs acos acosh add addcdiv addcmul addmm addmv alias amax amin as_strided asin asinh atan
    atan2 atanh avg_pool2d avg_pool3d baddbmm bmm cat clamp clamp_max clamp_min clone
    constant_pad_nd convolution copy cos cosh cumsum diagonal div dot elu embedding exp expand expm1
    digamma roll flip gather gelu hardswish hardtanh index_select leaky_relu lerp lgamma linalg_vector_norm
    log log10 log1p log2 log_sigmoid_forward logaddexp logit max max_pool2d_with_indices
    max_pool3d_with_indices maximum mean min minimum mish mm mul mv native_dropout neg
    nll_loss_forward nll_loss2d_forward permute pixel_shuffle pixel_unshuffle pow reciprocal
    reflection_pad1d reflection_pad2d relu remainder repeat replication_pad1d replication_pad2d rsqrt
    rsub select sigmoid silu sin sinh slice softplus split split_with_sizes sqrt squeeze stack
    sub sum t tan tanh transpose tril triu unbind unfold unsqueeze upsample_bilinear2d
    upsample_nearest2d var view where _adaptive_avg_pool2d _adaptive_avg_pool3d _to_copy
    _unsafe_view index to vdot masked_fill scatter
    elu_backward gelu_backward hardswish_backward hardtanh_backward
    leaky_relu_backward log_sigmoid_backward sigmoid_backward 
    softplus_backward tanh_backward threshold_backward prims.add prims.mul
    fastgp.translate
""".split())

# Operators that carry no derivative (factories, comparisons, integer results, shape queries) and
# the bookkeeping of autograd's own formulas: allowed, with nothing to verify.
NO_DERIVATIVE = frozenset("""
    arange argmax argmin bitwise_and bitwise_not bitwise_or detach empty empty_like empty_strided eq
    fill full full_like ge gt isfinite isinf isnan is_same_size le logical_and logical_not logical_or
    lt ne new_empty new_empty_strided new_full new_ones new_zeros ones ones_like scalar_tensor sym_size
    zero zeros zeros_like _efficientzerotensor _has_same_storage_numel _new_zeros_with_same_feature_meta
    _local_scalar_dense
    lift_fresh lift_fresh_copy sgn sign _assert_async
    bernoulli exponential multinomial normal rand rand_like randint randint_like randn randn_like randperm
    uniform fastgp.spectral_power_iteration fastgp.spectral_power_iteration_grouped
""".split())


def _linalg_vector_norm_ok(args, kwargs) -> bool:
    # Only the 2-norm (F.normalize, spectral norm): the 1-norm's formula raises in reverse mode.
    order = kwargs.get("ord", args[1] if len(args) > 1 else 2)
    return order == 2


# Allowed operators with a condition on their arguments.
CONDITIONS = {"linalg_vector_norm": _linalg_vector_norm_ok}


class UnsupportedOperator(RuntimeError):
    """An operator in D that method="jvp" cannot differentiate exactly."""


def _op_name(func) -> str:
    packet = str(func.overloadpacket)
    return packet[len("aten."):] if packet.startswith("aten.") else packet


def _check_operator(func, args, kwargs) -> None:
    name = _op_name(func)
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]  # an in-place variant: the formula of its out-of-place operator
    if name in NO_DERIVATIVE:
        return
    if name in ALLOWED and CONDITIONS.get(name, lambda a, k: True)(args, kwargs):
        return
    raise UnsupportedOperator(
        f"method='jvp' cannot differentiate D exactly: D runs the operator {func.overloadpacket}, whose "
        f"forward-mode formula is not verified differentiable in reverse mode (fastgp.forward_mode.ALLOWED "
        f"lists those that are). Use method='double-backward' for this D"
    )


def _is_random(func) -> bool:
    return torch.Tag.nondeterministic_seeded in func.tags


def _mutated_outputs(func, args, kwargs):
    """The tensors a mutating operator writes to (in its schema's argument order)."""
    bound = list(args) + [kwargs.get(a.name) for a in func._schema.arguments[len(args):]]
    return [t for a, t in zip(func._schema.arguments, bound) if a.alias_info is not None and a.alias_info.is_write]


def _clone(out):
    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, (tuple, list)):
        return type(out)(_clone(o) for o in out)
    return out


class _RecordRandom(_TorchDispatchMode):
    """Step 1: D runs as usual; the outputs of its random operators are kept, in order."""

    def __init__(self):
        super().__init__()
        self.draws = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if _is_random(func):
            written = _mutated_outputs(func, args, kwargs) if func._schema.is_mutable else []
            self.draws.append((func, _clone(written) if written else _clone(out)))
        return out


class _Step3Check(_TorchDispatchMode):
    """Step 3: every operator is checked (``ALLOWED``), and random operators return step 1's draws."""

    def __init__(self, draws, unrecorded_message: str):
        super().__init__()
        self.draws = list(reversed(draws)) if draws is not None else None
        self.unrecorded_message = unrecorded_message

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        _check_operator(func, args, kwargs)
        if _is_random(func):
            return self._replay(func, args, kwargs)
        return func(*args, **kwargs)

    def _replay(self, func, args, kwargs):
        if self.draws is None:
            raise ValueError(self.unrecorded_message)
        if not self.draws or self.draws[-1][0] != func:
            raise ValueError(
                f"method='jvp': D's second run drew random numbers differently from its first ({func} "
                f"where the first run drew {self.draws[-1][0] if self.draws else 'nothing more'}): D's "
                f"random draws must not depend on anything but its inputs. Use method='double-backward'"
            )
        _, recorded = self.draws.pop()
        if func._schema.is_mutable:
            written = _mutated_outputs(func, args, kwargs)
            for target, value in zip(written, recorded):
                target.copy_(value)
            return written[0] if len(written) == 1 else tuple(written)
        return _clone(recorded)


# --------------------------------------------------------------------------------------------
# The replayed second run
# --------------------------------------------------------------------------------------------


class ForwardReplay:
    """What D's forward reads besides its arguments, captured in step 1 and replayed in step 3: its
    random draws and (when D is a module) its buffers."""

    def __init__(self, D):
        self.module = D if isinstance(D, _nn.Module) else None
        self.draws = None
        self.buffers = {}
        if self.module is not None:
            self.buffers = {name: b.clone() for name, b in self.module.named_buffers()}

    # Dispatch modes cannot be traced by torch.compile: both runs of D are left to eager mode, as
    # a clean graph break (without the decorator Dynamo warns, then breaks the graph anyway).
    @torch.compiler.disable
    def first_call(self, D, x, d_args, d_kwargs):
        """Step 1: D(x, ...), its random draws recorded."""
        recorder = _RecordRandom()
        with recorder:
            out = D(x, *d_args, **d_kwargs)
        self.draws = recorder.draws
        return out

    def second_call(self, D, x, d_args, d_kwargs):
        if self.buffers:
            return torch.func.functional_call(D, self.buffers, (x, *d_args), d_kwargs, strict=False)
        return D(x, *d_args, **d_kwargs)


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


NESTED_LEVEL = (
    "method='jvp' runs its own forward-mode AD pass, and PyTorch's forward-mode levels cannot be nested: a "
    "torch.autograd.forward_ad.dual_level() is already open (in this thread, or in another one: the levels "
    "are process-wide). Call it outside the dual_level() block, or use method='double-backward'"
)


def _dense(t: torch.Tensor) -> torch.Tensor:
    """t, or a dense copy of it where elements share memory (an expanded x[:1].expand(B, ...)): a
    tangent cannot be attached to overlapping memory. The copy is differentiable (its gradient sums
    into t), so the result is exact."""
    overlap = getattr(torch, "_debug_has_internal_overlap", None)
    shared = overlap(t) != 0 if overlap is not None else any(
        s == 0 and n > 1 for s, n in zip(t.stride(), t.shape))
    return t.contiguous() if shared else t


@torch.compiler.disable
def directional_derivative(D, replay: ForwardReplay, primal, tangent, d_args, d_kwargs,
                           unrecorded_message: str):
    """Step 3: (D's output, its tangent along ``tangent``) from one forward-mode pass of D at
    ``primal``, under the exact-or-refuse modes, with step 1's draws and buffers replayed. The
    tangent carries a reverse-mode graph (reverse-over-forward)."""
    primal = _dense(primal)
    with _LOCK:
        if not _FORWARD_AD_LOADED:
            _load_forward_ad_decompositions()
        try:
            _fwad.enter_dual_level()
        except RuntimeError as error:
            if "Nested forward mode AD" not in str(error):
                raise
            raise RuntimeError(NESTED_LEVEL) from None
        try:
            with torch.enable_grad(), _ExactOps(), _Step3Check(replay.draws, unrecorded_message):
                out = replay.second_call(D, _fwad.make_dual(primal, tangent), d_args, d_kwargs)
            return _fwad.unpack_dual(out)
        except NotImplementedError as error:  # an operator without any forward-mode formula
            found = re.search(r"forward AD with (\S+) that does not support it", str(error))
            if found is None:
                raise
            raise UnsupportedOperator(
                f"method='jvp' cannot differentiate D: D runs the operator aten.{found.group(1)}, which has no "
                f"forward-mode formula in PyTorch. Use method='double-backward' for this D"
            ) from None
        finally:
            _fwad.exit_dual_level()
