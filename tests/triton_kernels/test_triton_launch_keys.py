"""What compiled Triton makes of the kernels' arguments, which the interpreter never shows.

Compiled Triton types every launch argument and caches one compilation per specialization key
(scripts/count_triton_specializations.py). Two consequences that the interpreter hides:

* an unannotated Python float argument is compiled as float32 (the interpreter keeps float64), so
  a float64 threshold or eps would be rounded on a GPU only: float scalars are typed ``tl.float64``;
* every integer argument equal to 1 or divisible by 16, every 16-byte-aligned pointer and every
  constexpr value is another compilation (0.5-2 s on a cold cache): sizes that do not shape a hot
  loop are ``do_not_specialize``, small tables ``do_not_specialize_on_alignment``, cheap branches
  runtime flags (docs/design.md, "Triton compilations").

The annotation tests read the ``JITFunction`` a GPU compiles and run everywhere; the key tests
record launches under the interpreter.
"""

import importlib.util
import os
import pathlib

import pytest
import torch
from triton.runtime.jit import JITFunction

from fastgp.triton import augment as ta
from fastgp.triton import combine as tc
from fastgp.triton import correction as tco
from fastgp.triton import penalty as tp
from fastgp.triton import select as ts
from fastgp.triton import spectral as tsp

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRETED else "cuda"
FAMILIES = (ta, tc, tco, tp, ts, tsp)
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _counter():
    spec = importlib.util.spec_from_file_location("count_triton_specializations",
                                                  ROOT / "scripts" / "count_triton_specializations.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compiled(kernel) -> JITFunction:
    """The JITFunction a GPU launches: the kernel itself, or (under the interpreter) one made from
    the kernel's Python function with the same specialization options."""
    if isinstance(kernel, JITFunction):
        return kernel
    options = {k: v for k, v in kernel.kwargs.items() if k in ("do_not_specialize", "do_not_specialize_on_alignment")}
    return JITFunction(kernel.fn, **options)


def _launched_kernels():
    """(family, name, kernel) of every kernel a launcher starts (the ``*_kernel`` functions)."""
    for family in FAMILIES:
        for name, value in sorted(vars(family).items()):
            if name.endswith("_kernel") and hasattr(value, "fn"):
                yield family.__name__.rsplit(".", 1)[-1], name, value


# Every float scalar parameter of a launched kernel: typed float64 so that float64 inputs keep it.
FLOAT_PARAMETERS = {
    ("combine", "_combine_kernel"): ("threshold",),
    ("spectral", "_finish_kernel"): ("eps",),
    ("penalty", "_grad_norm_forward_row_kernel"): ("center", "lowest_trusted"),
    ("penalty", "_grad_norm_finish_kernel"): ("center", "lowest_trusted"),
    ("penalty", "_grad_norm_backward_kernel"): ("center",),
}


@pytest.mark.parametrize("family,name", sorted(FLOAT_PARAMETERS), ids=[".".join(k) for k in sorted(FLOAT_PARAMETERS)])
def test_float_parameters_are_typed_float64(family, name):
    kernel = getattr(next(f for f in FAMILIES if f.__name__.endswith("." + family)), name)
    params = {p.name: p for p in _compiled(kernel).params}
    for param in FLOAT_PARAMETERS[family, name]:
        assert params[param].annotation_type == "fp64", f"{family}.{name}({param}) compiles as float32"


def test_every_kernel_is_listed_or_takes_no_float():
    # A kernel not listed above must not declare an untyped scalar that its launcher fills with a
    # float (checked on the launches below); here: the list names only existing parameters.
    kernels = {(family, name): kernel for family, name, kernel in _launched_kernels()}
    assert set(FLOAT_PARAMETERS) <= set(kernels)
    for key, names in FLOAT_PARAMETERS.items():
        assert set(names) <= {p.name for p in _compiled(kernels[key]).params}


def _launch_every_family(dtype=torch.float64):
    """One call of every launcher with float scalars that float32 cannot hold exactly."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 6, generator=g, dtype=dtype).to(DEVICE)
    y = torch.randn(4, 3, 5, 6, generator=g, dtype=dtype).to(DEVICE)
    tp.interpolate(x, y, torch.rand(4, generator=g, dtype=dtype).to(DEVICE))
    tp.interpolate_random(x, y, torch.tensor([7], device=DEVICE))
    penalty, norm = tp.grad_norm_penalty_forward(x, 0.1, False)
    tp.grad_norm_penalty_forward(torch.randn(2, 5000, generator=g, dtype=dtype).to(DEVICE), 0.1, True)
    tp.grad_norm_penalty_backward(torch.ones_like(penalty), x, norm, 0.1, True)
    tc.pixelwise_combine(x, torch.tensor([[0, 1], [2, 3]], device=DEVICE), 3, 0.1)
    shifts = torch.tensor([[[1, -2]], [[0, 3]], [[-1, 0]], [[2, 2]]], device=DEVICE)
    out = ta.translate(x, shifts, None, "reflect")
    ta.translate_backward(out, shifts, None, "reflect")
    ts.far_batch(x, torch.randn(4, generator=g, dtype=dtype).to(DEVICE), y, 2)
    tco.nearest_distance(x, y, 2)
    w = torch.randn(6, 5, generator=g, dtype=dtype).to(DEVICE)
    u = torch.randn(6, generator=g, dtype=dtype).to(DEVICE)
    v = torch.randn(5, generator=g, dtype=dtype).to(DEVICE)
    tsp.spectral_power_iteration(w, u, v, 1, 1e-12)
    tsp.spectral_power_iteration(w, u, v, 0, 1e-12)


@pytest.mark.skipif(not INTERPRETED, reason="records launches through the interpreter")
def test_no_float_reaches_an_untyped_parameter():
    with _counter().recording() as recorder:
        _launch_every_family()
    launched = {key[0].rsplit(".", 1)[-1] for key in recorder.keys}
    assert {name for _, name, _ in _launched_kernels()} <= launched  # every kernel was launched
    assert recorder.unannotated_floats == set()


def _next_float64(value: float, toward: float) -> torch.Tensor:
    return torch.nextafter(torch.tensor(value, dtype=torch.float64), torch.tensor(toward, dtype=torch.float64))


# 0.1 rounded to float32 is 0.10000000149, above the float64 values just above 0.1. On a GPU the
# threshold test failed before threshold was typed float64 (the interpreter passed it); the eps
# test failed under the interpreter too (tl.maximum rounded the Python float to float32).
def test_float64_threshold_is_not_rounded_to_float32():
    above = _next_float64(0.1, 1.0)  # the float64 just above 0.1, below float32(0.1)
    x = torch.stack([above, torch.tensor(1.0, dtype=torch.float64)]).view(2, 1).to(DEVICE)
    pairs = torch.tensor([[0, 1]], device=DEVICE)
    assert tc.pixelwise_combine(x, pairs, 3, 0.1).item() == 1.0  # "and": both above 0.1


def test_float64_eps_is_not_rounded_to_float32():
    # W = [[a]] with |a| just below eps: u' = a / max(|a|, eps) = a / eps, with eps in float64.
    a = _next_float64(0.1, 0.0)
    w = a.view(1, 1).to(DEVICE)
    u = torch.ones(1, dtype=torch.float64, device=DEVICE)
    v = torch.ones(1, dtype=torch.float64, device=DEVICE)
    tsp.spectral_power_iteration(w, u, v, 1, 0.1)
    assert abs(u.item() - a.item() / 0.1) <= 1e-15  # a / float32(0.1) is 1.5e-8 away


@pytest.mark.skipif(not INTERPRETED, reason="records launches through the interpreter")
def test_sizes_outside_the_hot_loops_reuse_one_compilation():
    """Counts of rows, pairs, copies, candidates, bank rows (1, multiples of 16 or neither), the
    penalty's center/one-sided flags and the combine mode do not multiply the compilations: with
    one dtype, one row length and aligned tensors every kernel has one specialization key."""
    g = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(DEVICE)

    with _counter().recording() as recorder:
        for count in (1, 3, 16):
            x = randn(count + 1, 3, 5, 8)  # rows of 120 elements; H = 5 is not specialized either
            real = randn(count, 120)
            tp.interpolate(real, randn(count, 120), torch.rand(count, generator=g).to(DEVICE))
            tp.interpolate_random(real, randn(count, 120), torch.tensor([count], device=DEVICE))
            for center, one_sided in ((0.0, False), (1.0, True), (1.0, False)):
                grad = randn(2, 120)
                penalty, norm = tp.grad_norm_penalty_forward(grad, center, one_sided)
                tp.grad_norm_penalty_backward(torch.ones_like(penalty), grad, norm, center, one_sided)
            tp.grad_norm_penalty_forward(randn(2, 5000), float(count % 2), count == 3)  # two-stage reduction
            pairs = torch.stack([torch.arange(count), torch.arange(1, count + 1)], dim=1).to(DEVICE)
            for mode in range(5):
                tc.pixelwise_combine(x, pairs, mode, 0.5)
            shifts = torch.randint(-2, 3, (2, count, 2), generator=g).to(DEVICE)  # K = count copies
            out = ta.translate(x[:2], shifts, None, "zeros")
            ta.translate_backward(out, shifts, None, "zeros")
            ts.far_batch(x, randn(count + 1), x + 1, count)
            tco.nearest_distance(x[:2], randn(count + 16, 3, 5, 8), 16)  # chunks of 16 rows and a remainder
            w = randn(3 * count, 2 * count + 1)
            tsp.spectral_power_iteration(w, randn(3 * count), randn(2 * count + 1), 1, 1e-12)
    assert recorder.by_kernel() and all(keys == 1 for keys in recorder.by_kernel().values()), recorder.by_kernel()
