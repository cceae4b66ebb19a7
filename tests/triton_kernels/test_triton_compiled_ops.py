"""The Triton launchers as custom ops (``torch.ops.fastgp_triton.*``), compiled: registration,
opcheck and torch.compile, run first (``triton_compile_early``, see conftest.py).

The interpreter passes kernels through ``wrap_triton`` unchanged and fake tensors cannot run
them, so opcheck and torch.compile of these ops run on a GPU only; the risks they guard are listed
in docs/design.md ("Compiled Triton ops"). The per-family files hold the other ops' opcheck tests.
"""

import os

import pytest
import torch

import fastgp.backend
from fastgp.reference import augment as ref_augment
from fastgp.reference import combine as ref_combine
from fastgp.reference import penalty as ref_penalty
from fastgp.triton import augment as ta  # noqa: F401 - registers the ops
from fastgp.triton import combine as tc  # noqa: F401
from fastgp.triton import correction as tco  # noqa: F401
from fastgp.triton import penalty as tp  # noqa: F401
from fastgp.triton import select as ts  # noqa: F401

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRETED else "cuda"
ON_GPU_ONLY = pytest.mark.skipif(INTERPRETED, reason="fake tensors cannot run interpreted kernels; needs a GPU")

pytestmark = [
    pytest.mark.triton_compile_early,
    pytest.mark.skipif(not hasattr(torch.library, "triton_op"), reason="torch.library.triton_op needs torch >= 2.6"),
]

# The launchers registered as custom ops: every backend op but the spectral ones, which update u
# and v in place (a triton_op declared without mutation must not mutate its inputs).
REGISTERED = ("interpolate", "interpolate_random", "grad_norm_penalty_forward", "grad_norm_penalty_backward",
              "translate", "translate_backward", "far_select", "far_batch", "pixelwise_combine", "nearest_distance")


def test_every_launcher_but_spectral_is_a_custom_op():
    assert set(REGISTERED) == set(fastgp.backend.OPS) - {"spectral_power_iteration", "spectral_power_iteration_grouped",
                                                          "grad_norm_penalty_sum"}
    for name in REGISTERED:
        op = getattr(torch.ops.fastgp_triton, name).default
        assert not any(arg.alias_info is not None and arg.alias_info.is_write for arg in op._schema.arguments), name


def _image(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


@ON_GPU_ONLY
def test_translate_opcheck_and_compile():
    x = _image(2, 3, 8, 8)
    shifts = torch.tensor([[[1, -2], [0, 3]], [[-3, 1], [2, 2]]], device=DEVICE)
    boxes = torch.tensor([[[0, 0, 2, 3], [1, 1, 0, 0]], [[4, 4, 8, 8], [2, 0, 1, 8]]], device=DEVICE)
    for padding in ("zeros", "reflect", "replicate"):
        torch.library.opcheck(torch.ops.fastgp_triton.translate.default, (x, shifts, boxes, padding))
        grad = _image(4, 3, 8, 8, seed=1)
        torch.library.opcheck(torch.ops.fastgp_triton.translate_backward.default, (grad, shifts, None, padding))
    compiled = torch.compile(lambda a, s, b: torch.ops.fastgp_triton.translate(a, s, b, "reflect") * 2, fullgraph=True)
    assert torch.equal(compiled(x, shifts, boxes), ref_augment.translate(x, shifts, boxes, "reflect") * 2)


@ON_GPU_ONLY
def test_compile_with_runtime_flags_and_unspecialized_sizes():
    """The kernels whose mode, center == 0 / one-sided flags and sizes are runtime arguments
    (do_not_specialize) traced by torch.compile, over two batch sizes (dynamic shapes)."""

    def step(grad, x, pairs):
        penalty, _ = torch.ops.fastgp_triton.grad_norm_penalty_forward(grad, 0.0, False)
        one_sided, _ = torch.ops.fastgp_triton.grad_norm_penalty_forward(grad, 1.0, True)
        mixed = [torch.ops.fastgp_triton.pixelwise_combine(x, pairs, mode, 0.25) for mode in range(5)]
        return penalty.sum() + one_sided.sum(), mixed

    compiled = torch.compile(step, fullgraph=True, dynamic=True)
    for batch in (3, 16):
        grad, x = _image(batch, 40, seed=batch), _image(batch, 3, 4, 4, seed=batch + 1)
        pairs = torch.stack([torch.arange(batch - 1), torch.arange(1, batch)], dim=1).to(DEVICE)
        total, mixed = compiled(grad, x, pairs)
        expected = (ref_penalty.grad_norm_penalty_forward(grad, 0.0, False)[0].sum()
                    + ref_penalty.grad_norm_penalty_forward(grad, 1.0, True)[0].sum())
        torch.testing.assert_close(total, expected)
        for mode, got in enumerate(mixed):
            assert torch.equal(got, ref_combine.pixelwise_combine(x, pairs, mode, 0.25)), mode
