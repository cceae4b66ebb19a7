"""The raw kernels of the penalty family on every device: each fused backend against the pure-PyTorch
reference on identical inputs, and the reference itself against float64 closed forms."""

import pytest
import torch

import fastgp
from fastgp import backend
from fastgp._layout import accumulation_dtype
from fastgp.reference import penalty as ref
from helpers import DTYPES, LAYOUTS, devices, make, shapes_for, tolerances


def kernels(device):
    return backend.kernels("penalty", device)


def layout_cases():
    for layout in LAYOUTS:
        for shape in shapes_for(layout):
            yield layout, shape


LAYOUT_CASES = list(layout_cases())


def assert_same_layout(out, like):
    """Outputs keep the memory format of a dense input (channels_last stays channels_last)."""
    assert out.shape == like.shape
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        assert out.is_contiguous(memory_format=torch.channels_last)


# ------------------------------------------------------------------------------------------
# Philox: the reference stream is Philox4x32-10 (Random123 known answer)
# ------------------------------------------------------------------------------------------


def test_reference_philox_known_answer():
    # Random123 kat_vectors: philox4x32_10, counter 0, key 0 -> first word 0x6627e8d5.
    assert int(ref.philox4x32(torch.tensor([0]), 0)[0]) == 0x6627E8D5


def test_reference_philox_uniform_range_and_spread():
    u = ref.philox_uniform(20000, seed=1234)
    assert u.dtype == torch.float32
    assert bool((u >= 0).all()) and bool((u < 1).all())
    assert abs(u.mean().item() - 0.5) < 0.01  # std of the mean ~ 0.002
    assert abs(u.var().item() - 1 / 12) < 0.003


# ------------------------------------------------------------------------------------------
# interpolate / interpolate_random
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout,shape", LAYOUT_CASES)
def test_interpolate_matches_reference(kernel_backend, device, dtype, layout, shape):
    real = make(shape, dtype, layout, seed=1, device=device)
    fake = make(shape, dtype, layout, seed=2, device=device)
    alpha = torch.rand(shape[0], generator=torch.Generator().manual_seed(3)).to(device, dtype)
    out = kernels(device).interpolate(real, fake, alpha)
    torch.testing.assert_close(out, ref.interpolate(real, fake, alpha), **tolerances(dtype))
    assert out.dtype == dtype and out.device == real.device
    assert_same_layout(out, real)
    # The inputs are left untouched.
    torch.testing.assert_close(real, make(shape, dtype, layout, seed=1, device=device), rtol=0, atol=0)


def _interpolate_oracle(real, fake, alpha):
    """alpha·real + (1 − alpha)·fake in float64, rounded once to real's dtype."""
    a = alpha.double().view(-1, *[1] * (real.dim() - 1))
    return (a * real.double() + (1 - a) * fake.double()).to(real.dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout,shape", LAYOUT_CASES[::2])
def test_interpolate_matches_closed_form(backend_name, device, dtype, layout, shape):
    real = make(shape, dtype, layout, seed=1, device=device)
    fake = make(shape, dtype, layout, seed=2, device=device)
    alpha = torch.rand(shape[0], generator=torch.Generator().manual_seed(3)).to(device, dtype)
    out = kernels(device).interpolate(real, fake, alpha)
    torch.testing.assert_close(out, _interpolate_oracle(real, fake, alpha), **tolerances(dtype))
    seed = torch.tensor([7], dtype=torch.int64, device=device)
    out, alpha = kernels(device).interpolate_random(real, fake, seed)
    # alpha is the Philox stream of the seed (its known answer is checked above), rounded to dtype.
    assert torch.equal(alpha.cpu(), ref.philox_uniform(shape[0], 7).to(dtype))
    torch.testing.assert_close(out, _interpolate_oracle(real, fake, alpha), **tolerances(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout,shape", LAYOUT_CASES)
def test_interpolate_random_matches_reference_stream(kernel_backend, device, dtype, layout, shape):
    real = make(shape, dtype, layout, seed=1, device=device)
    fake = make(shape, dtype, layout, seed=2, device=device)
    for seed_value in (0, 7, 2**32 + 5, 2**62 - 1):
        seed = torch.tensor([seed_value], dtype=torch.int64, device=device)
        out, alpha = kernels(device).interpolate_random(real, fake, seed)
        expected_out, expected_alpha = ref.interpolate_random(real, fake, seed)
        # Every backend, on every device, draws the same Philox stream: alpha is bit-identical.
        assert alpha.dtype == dtype and alpha.shape == (shape[0],) and alpha.device == real.device
        assert torch.equal(alpha, expected_alpha), (alpha, expected_alpha)
        torch.testing.assert_close(out, expected_out, **tolerances(dtype))
        assert_same_layout(out, real)


def test_interpolate_random_seeds_differ(backend_name, device):
    real, fake = torch.ones(64, 3, device=device), torch.zeros(64, 3, device=device)
    _, a = kernels(device).interpolate_random(real, fake, torch.tensor([1], device=device))
    _, b = kernels(device).interpolate_random(real, fake, torch.tensor([2], device=device))
    assert not torch.equal(a, b)


# ------------------------------------------------------------------------------------------
# grad_norm_penalty_forward / grad_norm_penalty_backward
# ------------------------------------------------------------------------------------------

HEADS = [(1.0, False), (0.0, False), (1.0, True), (0.5, False), (0.0, True)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout,shape", LAYOUT_CASES)
@pytest.mark.parametrize("center,one_sided", HEADS)
def test_penalty_head_matches_reference(kernel_backend, device, dtype, layout, shape, center, one_sided):
    grad = make(shape, dtype, layout, seed=4, scale=0.4, device=device)
    penalty, norm = kernels(device).grad_norm_penalty_forward(grad, center, one_sided)
    expected_penalty, expected_norm = ref.grad_norm_penalty_forward(grad, center, one_sided)
    acc = accumulation_dtype(dtype)
    assert penalty.dtype == acc and norm.dtype == acc and penalty.shape == (shape[0],)
    tol = tolerances(acc)
    torch.testing.assert_close(penalty, expected_penalty, **tol)
    torch.testing.assert_close(norm, expected_norm, **tol)

    grad_penalty = torch.linspace(0.5, 1.5, shape[0], dtype=acc, device=device)
    grad_in = kernels(device).grad_norm_penalty_backward(grad_penalty, grad, norm, center, one_sided)
    expected = ref.grad_norm_penalty_backward(grad_penalty, grad, expected_norm, center, one_sided)
    assert grad_in.dtype == dtype
    torch.testing.assert_close(grad_in, expected, **tolerances(dtype))
    assert_same_layout(grad_in, grad)

    scale = 1.0 / shape[0]
    total = kernels(device).grad_norm_penalty_sum(grad, center, one_sided, scale)
    assert total.shape == () and total.dtype == acc
    torch.testing.assert_close(total, ref.grad_norm_penalty_sum(grad, center, one_sided, scale), **tol)


def _head_oracle(grad, center, one_sided):
    """(penalty, norm, coef) per sample in float64: d penalty_b / d grad_b = coef_b · grad_b."""
    sum_sq = (grad.double().flatten(1) ** 2).sum(dim=1)
    norm = sum_sq.sqrt()
    if center == 0:
        return sum_sq, norm, torch.full_like(norm, 2.0)
    distance = norm - center
    if one_sided:
        distance = distance.clamp_min(0)
    coef = torch.where(norm > 0, 2 * distance / norm.clamp_min(1e-300), torch.zeros_like(norm))
    return distance**2, norm, coef


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout,shape", LAYOUT_CASES[::2])
@pytest.mark.parametrize("center,one_sided", HEADS)
def test_penalty_head_matches_closed_form(backend_name, device, dtype, layout, shape, center, one_sided):
    grad = make(shape, dtype, layout, seed=4, scale=0.4, device=device)
    penalty, norm = kernels(device).grad_norm_penalty_forward(grad, center, one_sided)
    expected_penalty, expected_norm, coef = _head_oracle(grad, center, one_sided)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=1e-6)
    torch.testing.assert_close(penalty.double(), expected_penalty, **tol)
    torch.testing.assert_close(norm.double(), expected_norm, **tol)
    grad_penalty = torch.linspace(0.5, 1.5, shape[0], dtype=norm.dtype, device=device)
    grad_in = kernels(device).grad_norm_penalty_backward(grad_penalty, grad, norm, center, one_sided)
    expected = grad.double() * (grad_penalty.double() * coef).view(-1, *[1] * (grad.dim() - 1))
    torch.testing.assert_close(grad_in, expected.to(dtype), **tolerances(dtype))
    total = kernels(device).grad_norm_penalty_sum(grad, center, one_sided, 0.5)
    torch.testing.assert_close(total.double(), 0.5 * expected_penalty.sum(), **tol)


def test_penalty_head_large_rows_fp32_accuracy(backend_name, device):
    # Long rows: the float32 accumulation must stay close to a float64 sum.
    grad = make((3, 3, 64, 64), torch.float32, seed=5, device=device)
    penalty, norm = kernels(device).grad_norm_penalty_forward(grad, 1.0, False)
    exact = grad.double().flatten(1).norm(dim=1)
    torch.testing.assert_close(norm.double(), exact, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16), ids=str)
def test_penalty_head_half_accumulates_in_float32(backend_name, device, dtype):
    # 20000 elements of 1.0: a float16 accumulator would saturate at 2048; bf16 at 256.
    grad = torch.ones(2, 20000, dtype=dtype, device=device)
    penalty, norm = kernels(device).grad_norm_penalty_forward(grad, 0.0, False)
    assert torch.equal(penalty, torch.full((2,), 20000.0, device=device))


def test_penalty_head_zero_gradient(backend_name, device):
    grad = torch.zeros(3, 10, dtype=torch.float64, device=device)
    penalty, norm = kernels(device).grad_norm_penalty_forward(grad, 1.0, False)
    assert torch.equal(penalty, torch.ones(3, dtype=torch.float64, device=device))
    ones = torch.ones(3, dtype=torch.float64, device=device)
    grad_in = kernels(device).grad_norm_penalty_backward(ones, grad, norm, 1.0, False)
    assert torch.equal(grad_in, torch.zeros_like(grad))  # not NaN: coef is 0 at norm 0
    penalty0, _ = kernels(device).grad_norm_penalty_forward(grad, 0.0, False)
    assert torch.equal(penalty0, torch.zeros(3, dtype=torch.float64, device=device))


def test_penalty_head_propagates_non_finite(backend_name, device):
    grad = make((4, 6), seed=6, device=device)
    grad[1, 2] = float("nan")
    grad[2, 0] = float("inf")
    for center in (0.0, 1.0):
        penalty, norm = kernels(device).grad_norm_penalty_forward(grad, center, False)
        assert torch.isnan(penalty[1]) and torch.isinf(penalty[2])
        assert torch.isfinite(penalty[[0, 3]]).all()
        grad_in = kernels(device).grad_norm_penalty_backward(torch.ones(4, device=device), grad, norm, center, False)
        assert torch.isnan(grad_in[1]).any()
        assert not torch.isfinite(grad_in[2]).all()



@pytest.mark.parametrize("one_sided", [False, True])
def test_penalty_head_nan_row_gradient_is_nan_in_every_element(backend_name, device, one_sided):
    # A NaN row has a NaN norm, so its coefficient is NaN: nothing is masked to 0 (as torch's
    # autograd of (norm - 1)**2 gives), on every backend.
    grad = make((3, 4), seed=7, device=device, dtype=torch.float64)
    grad[1, 2] = float("nan")
    penalty, norm = kernels(device).grad_norm_penalty_forward(grad, 1.0, one_sided)
    ones = torch.ones(3, dtype=torch.float64, device=device)
    grad_in = kernels(device).grad_norm_penalty_backward(ones, grad, norm, 1.0, one_sided)
    assert torch.isnan(grad_in[1]).all(), grad_in[1]
    assert torch.isfinite(grad_in[[0, 2]]).all()

# ------------------------------------------------------------------------------------------
# The compiled ops: schema, fake kernels, torch.compile
# ------------------------------------------------------------------------------------------


def _op_samples(device):
    cases = [("contiguous", (4, 3, 5, 7)), ("channels_last", (4, 3, 5, 7)), ("contiguous", (3, 11)), ("strided", (3, 2, 6))]
    for layout, shape in cases:
        real, fake, grad = (make(shape, layout=layout, seed=seed, device=device) for seed in (1, 2, 3))
        yield from _samples_of(real, fake, grad)
    # Batch dimension not outermost (a permuted view), and mixed layouts: kernels copy to contiguous.
    permuted = make((5, 4, 3), seed=4, device=device).permute(1, 0, 2)
    yield from _samples_of(permuted, make((4, 5, 3), seed=5, device=device), permuted)
    channels_last = make((2, 3, 4, 5), layout="channels_last", seed=6, device=device)
    yield from _samples_of(channels_last, make((2, 3, 4, 5), seed=7, device=device), channels_last)


def _samples_of(real, fake, grad):
    batch, device = real.shape[0], real.device
    norm = grad.reshape(batch, -1).norm(dim=1)
    yield "interpolate", (real, fake, torch.rand(batch, device=device))
    yield "interpolate_random", (real, fake, torch.tensor([11], device=device))
    yield "grad_norm_penalty_forward", (grad, 1.0, False)
    yield "grad_norm_penalty_forward", (grad, 0.0, True)
    yield "grad_norm_penalty_backward", (torch.rand(batch, device=device), grad, norm, 1.0, False)
    yield "grad_norm_penalty_sum", (grad, 1.0, False, 1.0 / batch)
    # Inputs that require grad: opcheck then also checks the C++ autograd registration.
    leaf = grad.detach().clone().requires_grad_(True)
    yield "grad_norm_penalty_forward", (leaf, 1.0, True)
    yield "grad_norm_penalty_sum", (leaf, 0.0, False, 2.0)
    yield "grad_norm_penalty_backward", (torch.rand(batch, requires_grad=True, device=device), leaf, norm, 1.0, False)


OPCHECK_CASES = len(list(_op_samples("cpu")))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("case", range(OPCHECK_CASES))
def test_opcheck(device, case):
    name, args = list(_op_samples(device))[case]
    torch.library.opcheck(getattr(torch.ops.fastgp, name).default, args)


@pytest.mark.parametrize("device", devices())
def test_torch_compile_fullgraph_calls_compiled_ops(device):
    def head(grad, real, fake, alpha):
        penalty, _ = torch.ops.fastgp.grad_norm_penalty_forward(grad, 1.0, False)
        return penalty.mean(), torch.ops.fastgp.interpolate(real, fake, alpha)

    compiled = torch.compile(head, fullgraph=True, backend="aot_eager")
    args = tuple(make((4, 3, 8, 8), seed=seed, device=device) for seed in (1, 2, 3)) + (torch.rand(4, device=device),)
    for got, expected in zip(compiled(*args), head(*args)):
        torch.testing.assert_close(got, expected)


def test_torch_compile_public_penalty_head(backend_name, device):
    torch._dynamo.reset()
    compiled = torch.compile(fastgp.grad_norm_penalty, backend="aot_eager", fullgraph=True)
    grad = torch.randn(6, 5, requires_grad=True, device=device)
    value = compiled(grad)
    value.backward()
    expected_grad = grad.grad.clone()
    grad.grad = None
    expected = fastgp.grad_norm_penalty(grad)
    expected.backward()
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(expected_grad, grad.grad)
