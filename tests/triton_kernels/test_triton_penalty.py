"""Triton kernels of the penalty family (fastgp.triton.penalty) against the pure-PyTorch reference.

Run in its own process (see conftest.py): ``TRITON_INTERPRET=1 python -m pytest tests/triton_kernels``.
Shapes are small because the interpreter is slow; the block-size dependent paths (masked tails,
several chunks per row, the two-stage reduction, several tiles per program, several finishing
steps) are reached with rows just above the block sizes or by lowering the module's limits.

Tolerances: float32/float64 outputs are compared with a few ulps (elementwise results are bit-equal
under the interpreter; on a GPU Triton may contract a·r + (1−a)·f into an FMA), reductions with a
tolerance covering a different float32 summation order. float16/bfloat16 use Liger's fair rule: the
kernel's error against a float64 computation on the same inputs stays within 2x the error of the
reference run in that dtype, plus 4 ulps of the accumulation dtype (both sides accumulate in float32,
so when the reference happens to be exact the bare rule would demand the reference's summation order).
"""

import os

import pytest
import torch

import fastgp
from fastgp.reference import penalty as ref
from fastgp.triton import _common
from fastgp.triton import penalty as tp

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRETED else "cuda"
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
LOW_PRECISION = (torch.float16, torch.bfloat16)
# N = 1027 > _MAX_BLOCK: masked tail, two chunks per row in the elementwise kernels.
# N = 4107 > _MAX_BLOCK * _REDUCE_TILES: the two-stage reduction with a partial last chunk.
SHAPES = [(1, 1), (3, 7), (2, 3, 5), (2, 3, 4, 5), (2, 1027), (2, 3, 37, 37)]
HEADS = [(0.0, False), (0.0, True), (1.0, False), (1.0, True), (0.5, False), (0.5, True)]
SEEDS = [0, 1, 12345, 2**31 - 1, 2**32 - 1, 2**32, 2**32 + 12345, 2**62 + 3, 2**63 - 1, -1]


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def dtype_id(dtype):
    return str(dtype).replace("torch.", "")


def randn(shape, dtype, seed, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype).to(DEVICE)


def grad_like(shape, dtype, seed):
    """Rows with norms near 2.0, 0.3 and 1.5 (cycled): above, below and above centres 0.5 / 1."""
    batch, n = shape[0], 1
    for size in shape[1:]:
        n *= size
    scales = torch.tensor([2.0, 0.3, 1.5], dtype=torch.float64).repeat(batch)[:batch] / max(n, 1) ** 0.5
    base = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (base * scales.view(-1, *([1] * (len(shape) - 1)))).to(dtype).to(DEVICE)


def acc_of(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def tolerance(dtype, reduction=False):
    """Elementwise: 2 ulps, plus an absolute term for an FMA-contracted a·r + (1−a)·f whose terms
    cancel (inputs are O(1)). Reductions: a different summation order in the accumulation dtype."""
    if dtype == torch.float64:
        return dict(rtol=1e-12, atol=1e-14) if reduction else dict(rtol=4.5e-16, atol=4e-15)
    return dict(rtol=1e-5, atol=1e-6) if reduction else dict(rtol=2.4e-7, atol=1e-6)


def assert_close(actual, expected, rtol, atol, name="output"):
    """Elementwise |actual − expected| <= atol + rtol·|expected|; NaN/inf must match exactly.

    The message lists how many elements differ and the first bad indices with both values.
    """
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}"
    a, e = actual.detach().cpu().double(), expected.detach().cpu().double()
    both_nan = torch.isnan(a) & torch.isnan(e)
    finite = torch.isfinite(a) & torch.isfinite(e)
    same_inf = torch.isinf(a) & torch.isinf(e) & (a == e)
    close = finite & ((a - e).abs() <= atol + rtol * e.abs())
    bad = ~(close | both_nan | same_inf)
    if bad.any():
        idx = bad.nonzero()[:5].tolist()
        detail = ", ".join(f"{tuple(i)}: {a[tuple(i)].item()!r} vs {e[tuple(i)].item()!r}" for i in idx)
        raise AssertionError(
            f"{name}: {int(bad.sum())}/{bad.numel()} elements differ (rtol={rtol}, atol={atol}; "
            f"NaN/inf mismatches included); first: {detail}"
        )


def assert_fair(actual, low_precision_reference, exact, acc_dtype, name="output"):
    """Liger's rule: err(kernel) <= 2·err(reference in the same dtype) + 4 ulp(acc)·max|exact|.

    Errors are measured against ``exact`` (a float64 computation on the same input values);
    NaN/inf positions must agree with ``exact``.
    """
    assert actual.dtype == low_precision_reference.dtype, name
    a = actual.detach().cpu().double()
    r = low_precision_reference.detach().cpu().double()
    x = exact.detach().cpu().double()
    non_finite = ~torch.isfinite(x)
    assert torch.equal(torch.isnan(a), torch.isnan(x)), f"{name}: NaN positions differ"
    assert torch.equal(a[non_finite & ~torch.isnan(x)], x[non_finite & ~torch.isnan(x)]), f"{name}: inf differ"
    finite = ~non_finite
    if not finite.any():
        return
    err_kernel = (a - x)[finite].abs().max().item()
    err_reference = (r - x)[finite].abs().max().item()
    floor = 4 * torch.finfo(acc_dtype).eps * x[finite].abs().max().item()
    assert err_kernel <= 2 * err_reference + floor, (
        f"{name}: kernel error {err_kernel:.3e} > 2 x reference error {err_reference:.3e} + {floor:.3e}"
    )


def f64(t):
    return t.double() if t.is_floating_point() else t


# ------------------------------------------------------------------------------------------------
# interpolate
# ------------------------------------------------------------------------------------------------


def check_interpolate(real, fake, alpha):
    out = tp.interpolate(real, fake, alpha)
    expected = ref.interpolate(real, fake, alpha)
    assert out.dtype == real.dtype and out.shape == real.shape
    if real.dtype in LOW_PRECISION:
        exact = ref.interpolate(f64(real), f64(fake), f64(alpha))
        assert_fair(out, expected, exact, torch.float32, "interpolate")
    else:
        assert_close(out, expected, **tolerance(real.dtype), name="interpolate")
    return out


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_interpolate_matches_reference(dtype, shape):
    real, fake = randn(shape, dtype, 1), randn(shape, dtype, 2)
    alpha = torch.rand(shape[0], generator=torch.Generator().manual_seed(3)).to(dtype).to(DEVICE)
    real_before, fake_before = real.clone(), fake.clone()
    out = check_interpolate(real, fake, alpha)
    assert out.is_contiguous()
    assert torch.equal(real, real_before) and torch.equal(fake, fake_before)  # inputs untouched


def _layout_pair(layout, dtype):
    """(real, fake, expected memory format of the output) for a layout case."""
    shape = (3, 4, 5, 6)
    real, fake = randn(shape, dtype, 1), randn(shape, dtype, 2)
    if layout == "channels_last":
        return real.to(memory_format=torch.channels_last), fake.to(memory_format=torch.channels_last), "cl"
    if layout == "channels_last_b1":
        return (real[:1].to(memory_format=torch.channels_last), fake[:1].to(memory_format=torch.channels_last), "cl")
    if layout == "batch_slice":  # every other sample: not dense
        big_r, big_f = randn((6, 4, 5, 6), dtype, 1), randn((6, 4, 5, 6), dtype, 2)
        return big_r[::2], big_f[1::2], "contiguous"
    if layout == "inner_slice":  # every other column: not dense
        return randn((3, 4, 5, 12), dtype, 1)[..., ::2], randn((3, 4, 5, 12), dtype, 2)[..., 1::2], "contiguous"
    if layout == "batch_not_outer":  # dense, but samples interleaved in memory
        return real.transpose(0, 1).contiguous().transpose(0, 1), fake, "contiguous"
    if layout == "mixed":  # channels_last real with a contiguous fake: both made contiguous
        return real.to(memory_format=torch.channels_last), fake, "contiguous"
    raise AssertionError(layout)


LAYOUTS = ["channels_last", "channels_last_b1", "batch_slice", "inner_slice", "batch_not_outer", "mixed"]


def assert_layout(out, like, kind):
    if kind == "cl":
        assert out.is_contiguous(memory_format=torch.channels_last), out.stride()
        assert out.stride() == like.stride()
    else:
        assert out.is_contiguous(), out.stride()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_interpolate_layouts(layout, dtype):
    real, fake, kind = _layout_pair(layout, dtype)
    alpha = torch.rand(real.shape[0], generator=torch.Generator().manual_seed(3)).to(dtype).to(DEVICE)
    real_before = real.clone()
    out = check_interpolate(real, fake, alpha)
    assert_layout(out, real, kind)
    assert torch.equal(real, real_before)


def test_interpolate_strided_alpha():
    real, fake = randn((4, 9), torch.float32, 1), randn((4, 9), torch.float32, 2)
    alpha = torch.rand(8, generator=torch.Generator().manual_seed(3)).to(DEVICE)[::2]
    check_interpolate(real, fake, alpha)
    check_interpolate(real, fake, torch.tensor(0.25, device=DEVICE).expand(4))  # stride 0


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy, interpreter
def test_interpolate_propagates_nan_and_inf():
    real, fake = randn((3, 10), torch.float32, 1), randn((3, 10), torch.float32, 2)
    real[0, 3] = float("nan")
    fake[1, 4] = float("inf")
    fake[2, 1] = float("inf")
    alpha = torch.tensor([0.0, 0.5, 1.0], device=DEVICE)
    out = check_interpolate(real, fake, alpha)
    assert torch.isnan(out[0, 3])  # 0·NaN is NaN: not masked
    assert torch.isinf(out[1, 4])
    assert torch.isnan(out[2, 1])  # (1 − 1)·inf: the formula as written, no shortcut
    assert torch.isfinite(out[2, 2:]).all() and torch.isfinite(out[1, 5:]).all()


# ------------------------------------------------------------------------------------------------
# interpolate_random
# ------------------------------------------------------------------------------------------------


def seed_tensor(value):
    return torch.tensor([value], dtype=torch.int64, device=DEVICE)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_interpolate_random_alpha_equals_reference(dtype):
    real, fake = randn((9, 5), dtype, 1), randn((9, 5), dtype, 2)
    for seed in SEEDS:
        out, alpha = tp.interpolate_random(real, fake, seed_tensor(seed))
        expected_out, expected_alpha = ref.interpolate_random(real, fake, seed_tensor(seed))
        assert alpha.dtype == dtype and alpha.shape == (9,)
        assert torch.equal(alpha, expected_alpha), (seed, alpha, expected_alpha)
        # out uses the rounded alpha: it is interpolate() with the returned alpha
        assert torch.equal(out, tp.interpolate(real, fake, alpha)), seed
        if dtype in LOW_PRECISION:
            assert_fair(out, expected_out, ref.interpolate(f64(real), f64(fake), f64(alpha)), torch.float32)
        else:
            assert_close(out, expected_out, **tolerance(dtype), name=f"out (seed {seed})")


@pytest.mark.parametrize("shape", [(1, 1), (3, 1027), (2, 3, 4, 5)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
def test_interpolate_random_shapes_and_chunks(dtype, shape):
    # every chunk of a row draws the same alpha; only chunk 0 stores it
    real, fake = randn(shape, dtype, 1), randn(shape, dtype, 2)
    out, alpha = tp.interpolate_random(real, fake, seed_tensor(2**32 + 99))
    _, expected_alpha = ref.interpolate_random(real, fake, seed_tensor(2**32 + 99))
    assert torch.equal(alpha, expected_alpha)
    assert torch.equal(out, tp.interpolate(real, fake, alpha))


def test_interpolate_random_channels_last_and_strided():
    real, fake, _ = _layout_pair("channels_last", torch.float32)
    out, alpha = tp.interpolate_random(real, fake, seed_tensor(5))
    assert out.stride() == real.stride()
    assert torch.equal(out, tp.interpolate(real, fake, alpha))
    real, fake, _ = _layout_pair("inner_slice", torch.float32)
    out, alpha = tp.interpolate_random(real, fake, seed_tensor(5))
    assert out.is_contiguous()
    assert torch.equal(out, tp.interpolate(real, fake, alpha))


def test_interpolate_random_alpha_range_reproducibility_and_seeds():
    real, fake = torch.ones(256, 1, device=DEVICE), torch.zeros(256, 1, device=DEVICE)
    _, a = tp.interpolate_random(real, fake, seed_tensor(2024))
    assert a.dtype == torch.float32
    assert bool((a >= 0).all()) and bool((a < 1).all())
    assert abs(a.mean().item() - 0.5) < 0.06  # std of the mean ~ 0.018
    assert a.unique().numel() == 256
    # same seed, same alphas; alpha[b] depends on (seed, b) only, so a shorter batch draws the prefix
    _, again = tp.interpolate_random(real[:64], fake[:64], seed_tensor(2024))
    assert torch.equal(again, a[:64])
    _, other = tp.interpolate_random(real[:64], fake[:64], seed_tensor(2025))
    assert not torch.equal(other, a[:64])
    _, high = tp.interpolate_random(real[:64], fake[:64], seed_tensor(2024 + 2**32))  # the high key word counts
    assert not torch.equal(high, a[:64])


@pytest.mark.parametrize("dtype,seed,index", [(torch.bfloat16, 19, 5), (torch.float16, 143, 6)], ids=["bf16", "fp16"])
def test_interpolate_random_low_precision_alpha_can_round_to_one(dtype, seed, index):
    # alpha is the float32 uniform in [0, 1) ROUNDED to the input dtype: just below 1 it becomes 1.0
    real, fake = randn((16, 3), dtype, 1), randn((16, 3), dtype, 2)
    out, alpha = tp.interpolate_random(real, fake, seed_tensor(seed))
    _, expected = ref.interpolate_random(real, fake, seed_tensor(seed))
    assert torch.equal(alpha, expected)
    assert alpha[index].item() == 1.0
    assert torch.equal(out[index], real[index])


def test_interpolate_random_matches_extension():
    """Triton's alpha == the C++ (CPU, and CUDA when built) alpha, bit for bit."""
    try:
        import fastgp._C  # noqa: F401
    except ModuleNotFoundError as error:
        if error.name not in ("fastgp._C", "fastgp"):
            raise
        pytest.skip(f"the C++ extension is not built ({error})")
    op = torch.ops.fastgp.interpolate_random  # AttributeError: built but without the op -> fail
    devices = ["cpu"] + (["cuda"] if DEVICE == "cuda" and torch._C._dispatch_has_kernel_for_dispatch_key(
        "fastgp::interpolate_random", "CUDA") else [])
    for dtype in DTYPES:
        real, fake = randn((17, 4), dtype, 1), randn((17, 4), dtype, 2)
        for seed in [0, 7, 2**31, 2**32 - 1, 2**32, 2**32 + 5, 2**40 + 123, 2**62 - 1, 2**63 - 1]:
            _, alpha = tp.interpolate_random(real, fake, seed_tensor(seed))
            for device in devices:
                _, cpp_alpha = op(real.to(device), fake.to(device), torch.tensor([seed], device=device))
                assert torch.equal(alpha.cpu(), cpp_alpha.cpu()), (dtype, seed, device, alpha, cpp_alpha)


# ------------------------------------------------------------------------------------------------
# grad_norm_penalty_forward / grad_norm_penalty_backward
# ------------------------------------------------------------------------------------------------


def check_forward(grad, center, one_sided):
    penalty, norm = tp.grad_norm_penalty_forward(grad, center, one_sided)
    expected_penalty, expected_norm = ref.grad_norm_penalty_forward(grad, center, one_sided)
    acc = acc_of(grad.dtype)
    assert penalty.dtype == acc and norm.dtype == acc
    assert penalty.shape == (grad.shape[0],) and norm.shape == (grad.shape[0],)
    if grad.dtype in LOW_PRECISION:
        exact_penalty, exact_norm = ref.grad_norm_penalty_forward(f64(grad), center, one_sided)
        assert_fair(penalty, expected_penalty, exact_penalty, acc, "penalty")
        assert_fair(norm, expected_norm, exact_norm, acc, "norm")
    else:
        assert_close(penalty, expected_penalty, **tolerance(acc, reduction=True), name="penalty")
        assert_close(norm, expected_norm, **tolerance(acc, reduction=True), name="norm")
    return penalty, norm


def check_backward(grad_penalty, grad, norm, center, one_sided):
    grad_in = tp.grad_norm_penalty_backward(grad_penalty, grad, norm, center, one_sided)
    expected = ref.grad_norm_penalty_backward(grad_penalty, grad, norm, center, one_sided)
    assert grad_in.dtype == grad.dtype and grad_in.shape == grad.shape
    if grad.dtype in LOW_PRECISION:
        exact = ref.grad_norm_penalty_backward(f64(grad_penalty), f64(grad), f64(norm), center, one_sided)
        assert_fair(grad_in, expected, exact, torch.float32, "grad_in")
    else:
        assert_close(grad_in, expected, **tolerance(grad.dtype), name="grad_in")
    return grad_in


@pytest.mark.parametrize("center,one_sided", HEADS, ids=lambda v: str(v))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_penalty_head_matches_reference(dtype, shape, center, one_sided):
    grad = grad_like(shape, dtype, seed=4)
    grad_before = grad.clone()
    penalty, norm = check_forward(grad, center, one_sided)
    grad_penalty = torch.linspace(0.5, 1.5, shape[0], dtype=acc_of(dtype), device=DEVICE)
    grad_in = check_backward(grad_penalty, grad, norm, center, one_sided)
    assert grad_in.is_contiguous()
    assert torch.equal(grad, grad_before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("layout", [layout for layout in LAYOUTS if layout != "mixed"])
def test_penalty_head_layouts(layout, dtype):
    grad, _, kind = _layout_pair(layout, dtype)
    for center, one_sided in [(1.0, False), (0.0, False)]:
        penalty, norm = check_forward(grad, center, one_sided)
        grad_penalty = torch.rand(grad.shape[0], generator=torch.Generator().manual_seed(7)).to(DEVICE)
        grad_in = check_backward(grad_penalty, grad, norm, center, one_sided)
        assert_layout(grad_in, grad, kind)


def test_penalty_backward_strided_vectors():
    # grad_penalty of a mean() reduction arrives expanded (stride 0); norm may be a strided view
    grad = grad_like((4, 3, 5), torch.float32, seed=4)
    _, norm = tp.grad_norm_penalty_forward(grad, 1.0, False)
    norm_strided = torch.stack([norm, norm], dim=1)[:, 0]
    assert norm_strided.stride(0) == 2
    check_backward(torch.tensor(0.25, device=DEVICE).expand(4), grad, norm_strided, 1.0, False)
    check_backward(torch.tensor(0.25, device=DEVICE).expand(4), grad, norm_strided, 0.0, False)


def test_penalty_head_float64_center_not_rounded_to_float32():
    # center 0.1 is not a float32 value: the float64 path must use it exactly
    grad = grad_like((3, 50), torch.float64, seed=8)
    penalty, norm = tp.grad_norm_penalty_forward(grad, 0.1, False)
    assert torch.equal(penalty, (norm - 0.1) ** 2)
    check_forward(grad, 0.1, False)
    check_backward(torch.ones(3, dtype=torch.float64, device=DEVICE), grad, norm, 0.1, True)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_penalty_head_zero_rows(dtype):
    grad = grad_like((3, 2, 5), dtype, seed=4)
    grad[1] = 0
    acc = acc_of(dtype)
    for center, one_sided, expected in [(1.0, False, 1.0), (1.0, True, 0.0), (0.0, False, 0.0), (0.5, False, 0.25)]:
        penalty, norm = check_forward(grad, center, one_sided)
        assert norm[1].item() == 0.0 and penalty[1].item() == expected
        grad_in = check_backward(torch.ones(3, dtype=acc, device=DEVICE), grad, norm, center, one_sided)
        assert torch.equal(grad_in[1], torch.zeros_like(grad_in[1]))  # coef 0 at norm 0: not NaN
        assert torch.isfinite(grad_in).all()


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy, interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("shape", [(4, 6), (4, 4099)], ids=str)
def test_penalty_head_propagates_nan_and_inf(dtype, shape):
    grad = grad_like(shape, dtype, seed=4)
    grad[1, 2] = float("nan")
    grad[2, 0] = float("inf")
    acc = acc_of(dtype)
    for center, one_sided in HEADS:
        penalty, norm = check_forward(grad, center, one_sided)
        assert torch.isnan(penalty[1]) and torch.isnan(norm[1]), (center, one_sided)
        assert torch.isinf(penalty[2]) and torch.isinf(norm[2]), (center, one_sided)
        assert torch.isfinite(penalty[[0, 3]]).all() and torch.isfinite(norm[[0, 3]]).all()
        grad_in = check_backward(torch.ones(4, dtype=acc, device=DEVICE), grad, norm, center, one_sided)
        assert torch.isnan(grad_in[1, 2]) and not torch.isfinite(grad_in[2]).all()
        assert torch.isfinite(grad_in[[0, 3]]).all()


def test_penalty_head_half_accumulates_in_float32():
    # 20000 ones: a float16 accumulator saturates at 2048, bfloat16 at 256
    for dtype in LOW_PRECISION:
        penalty, norm = tp.grad_norm_penalty_forward(torch.ones(2, 20000, dtype=dtype, device=DEVICE), 0.0, False)
        assert torch.equal(penalty, torch.full((2,), 20000.0, device=DEVICE))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=dtype_id)
def test_penalty_sum_matches_reference(dtype):
    grad = grad_like((3, 2, 5), dtype, seed=10)
    for center, one_sided, scale in ((1.0, False, 1 / 3), (0.0, False, 1.0), (1.0, True, 2.0)):
        total = tp.grad_norm_penalty_sum(grad, center, one_sided, scale)
        expected = ref.grad_norm_penalty_sum(grad, center, one_sided, scale)
        assert total.shape == () and total.dtype == expected.dtype
        torch.testing.assert_close(total, expected, rtol=1e-5 if dtype != torch.float64 else 1e-12, atol=1e-6)


def test_penalty_forward_is_deterministic():
    grad = grad_like((3, 9001), torch.float32, seed=9)
    first = tp.grad_norm_penalty_forward(grad, 1.0, False)
    for _ in range(2):
        again = tp.grad_norm_penalty_forward(grad, 1.0, False)
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


# ------------------------------------------------------------------------------------------------
# Paths that need huge rows on a GPU, reached by lowering the launchers' limits
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_grid_y", [1, 2])
def test_several_tiles_per_program(monkeypatch, max_grid_y):
    # rows longer than MAX_GRID_Y chunks: each program walks several tiles
    monkeypatch.setattr(_common, "MAX_GRID_Y", max_grid_y)
    for dtype in (torch.float32, torch.float16):
        real, fake = randn((2, 5000), dtype, 1), randn((2, 5000), dtype, 2)
        alpha = torch.tensor([0.3, 0.8], dtype=dtype, device=DEVICE)
        check_interpolate(real, fake, alpha)
        out, alpha = tp.interpolate_random(real, fake, seed_tensor(3))
        assert torch.equal(alpha, ref.interpolate_random(real, fake, seed_tensor(3))[1])
        assert torch.equal(out, tp.interpolate(real, fake, alpha))
        grad = grad_like((2, 9000), dtype, seed=4)
        for center, one_sided in [(1.0, True), (0.0, False)]:
            _, norm = check_forward(grad, center, one_sided)
            check_backward(torch.ones(2, dtype=torch.float32, device=DEVICE), grad, norm, center, one_sided)


def test_finishing_kernel_loops_over_many_partials(monkeypatch):
    monkeypatch.setattr(tp, "_REDUCE_TILES", 1)
    monkeypatch.setattr(tp, "_FINISH_BLOCK", 16)
    grad = grad_like((2, 20 * 1024 + 3), torch.float32, seed=4)  # 21 partials per row, 2 steps
    for center, one_sided in [(1.0, False), (0.5, True), (0.0, False)]:
        check_forward(grad, center, one_sided)


def test_empty_inputs():
    empty = torch.empty(0, 3, device=DEVICE)
    assert tp.interpolate(empty, empty, torch.empty(0, device=DEVICE)).shape == (0, 3)
    out, alpha = tp.interpolate_random(empty, empty, seed_tensor(1))
    assert out.shape == (0, 3) and alpha.shape == (0,)
    penalty, norm = tp.grad_norm_penalty_forward(empty, 1.0, False)
    assert penalty.shape == (0,) and norm.shape == (0,)
    assert tp.grad_norm_penalty_backward(penalty, empty, norm, 1.0, False).shape == (0, 3)
    # rows of zero elements: norm 0 (the reference cannot reshape these)
    rows = torch.empty(2, 0, device=DEVICE)
    penalty, norm = tp.grad_norm_penalty_forward(rows, 1.0, False)
    assert torch.equal(penalty, torch.ones(2, device=DEVICE)) and torch.equal(norm, torch.zeros(2, device=DEVICE))
    _, alpha = tp.interpolate_random(rows, rows, seed_tensor(1))
    assert torch.equal(alpha, ref.philox_uniform(2, 1).to(DEVICE))


# ------------------------------------------------------------------------------------------------
# Guards and registration
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# Autograd of the public API on the Triton backend (docs/design.md, "Autograd")
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("center,one_sided", [(1.0, False), (0.0, False), (1.0, True), (0.7, False)])
@pytest.mark.parametrize("reduction", ["mean", "none", "max"])
def test_public_head_gradcheck_and_gradgradcheck(center, one_sided, reduction):
    scales = torch.tensor([0.1, 0.5, 0.9, 1.3], dtype=torch.float64, device=DEVICE).view(4, 1, 1)
    grad = (randn((4, 3, 5), torch.float64, 7) * scales).requires_grad_(True)
    fn = lambda g: fastgp.grad_norm_penalty(g, center=center, one_sided=one_sided, reduction=reduction)  # noqa: E731
    with fastgp.use_backend("triton"):
        assert torch.autograd.gradcheck(fn, (grad,), fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, (grad,), fast_mode=True)


def test_public_interpolate_gradcheck_and_gradgradcheck():
    real = randn((3, 2, 4), torch.float64, 1).requires_grad_(True)
    fake = randn((3, 2, 4), torch.float64, 2).requires_grad_(True)
    alpha = torch.rand(3, dtype=torch.float64, device=DEVICE, requires_grad=True)
    with fastgp.use_backend("triton"):
        for fn, args in [
            (lambda r, f, a: fastgp.interpolate(r, f, alpha=a), (real, fake, alpha)),
            (lambda r, f: fastgp.interpolate(r, f, generator=torch.Generator().manual_seed(3)), (real, fake)),
        ]:
            assert torch.autograd.gradcheck(fn, args, fast_mode=True)
            assert torch.autograd.gradgradcheck(fn, args, fast_mode=True)


def test_plain_backward_launches_the_triton_backward_kernel(monkeypatch):
    calls = []
    kernel = tp.grad_norm_penalty_backward

    def counting(*args):
        calls.append(1)
        return kernel(*args)

    monkeypatch.setattr(tp, "grad_norm_penalty_backward", counting)
    grad = grad_like((3, 40), torch.float32, seed=5).requires_grad_(True)
    with fastgp.use_backend("triton"):
        fastgp.grad_norm_penalty(grad).backward()
    assert len(calls) == 1
    penalty, norm = ref.grad_norm_penalty_forward(grad.detach(), 1.0, False)
    expected = ref.grad_norm_penalty_backward(torch.full_like(penalty, 1 / 3), grad.detach(), norm, 1.0, False)
    assert_close(grad.grad, expected, **tolerance(torch.float32, True))


def test_public_layer_rejects_bad_arguments_on_the_triton_backend():
    """User input is validated once, in fastgp/penalty.py, with the same words on every backend."""
    x = torch.randn(3, 4, device=DEVICE)
    a = torch.rand(3, device=DEVICE)
    with fastgp.use_backend("triton"):
        with pytest.raises(TypeError, match="real must have a floating dtype"):
            fastgp.interpolate(x.to(torch.int32), x.to(torch.int32), a)
        with pytest.raises(TypeError, match="fake and real must have the same dtype"):
            fastgp.interpolate(x, x.double(), a)
        with pytest.raises(ValueError, match="fake and real must have the same shape"):
            fastgp.interpolate(x, x[:, :3], a)
        with pytest.raises(ValueError, match="alpha must have shape"):
            fastgp.interpolate(x, x, a[:2])
        with pytest.raises(ValueError, match="grad must have a batch dimension"):
            fastgp.grad_norm_penalty(torch.tensor(1.0, device=DEVICE))
        with pytest.raises(TypeError, match="grad must have a floating dtype"):
            fastgp.grad_norm_penalty(x.to(torch.int64))
        with pytest.raises(ValueError, match="center must be >= 0"):
            fastgp.grad_norm_penalty(x, center=-1.0)
        if DEVICE == "cuda":
            with pytest.raises(ValueError, match="alpha must be on the device of real"):
                fastgp.interpolate(x, x, a.cpu())


def test_launchers_assert_their_memory_invariants():
    """The raw launchers do not validate user input, but never index out of bounds: a call that
    breaks what their pointer arithmetic relies on is an internal error (AssertionError)."""
    x = torch.randn(3, 4, device=DEVICE)
    a = torch.rand(3, device=DEVICE)
    norm = torch.ones(3, device=DEVICE)
    bad_calls = [
        lambda: tp.interpolate(x, x[:, :3], a),  # fake shorter than real
        lambda: tp.interpolate(x, x, a[:2]),  # alpha read past its end
        lambda: tp.interpolate_random(x, x, torch.tensor([1, 2], device=DEVICE)),
        lambda: tp.interpolate_random(x, x, torch.tensor([1], dtype=torch.int32, device=DEVICE)),
        lambda: tp.grad_norm_penalty_forward(torch.tensor(1.0, device=DEVICE), 1.0, False),
        lambda: tp.grad_norm_penalty_backward(norm[:2], x, norm, 1.0, False),
        lambda: tp.grad_norm_penalty_backward(norm, x, norm[:2], 1.0, False),
    ]
    for call in bad_calls:
        with pytest.raises(AssertionError, match="fastgp internal error"):
            call()


@pytest.mark.triton_compile_early
def test_registered_as_custom_ops():
    if not hasattr(torch.library, "triton_op"):
        pytest.skip("torch.library.triton_op needs torch >= 2.6")
    for name in ("interpolate", "interpolate_random", "grad_norm_penalty_forward", "grad_norm_penalty_backward"):
        assert hasattr(torch.ops.fastgp_triton, name), name
    real, fake = randn((3, 4), torch.float32, 1), randn((3, 4), torch.float32, 2)
    out, alpha = torch.ops.fastgp_triton.interpolate_random(real, fake, seed_tensor(4))
    assert torch.equal(alpha, ref.interpolate_random(real, fake, seed_tensor(4))[1])
    penalty, norm = torch.ops.fastgp_triton.grad_norm_penalty_forward(real, 1.0, True)
    assert_close(norm, ref.grad_norm_penalty_forward(real, 1.0, True)[1], **tolerance(torch.float32, True))


@pytest.mark.triton_compile_early
@pytest.mark.skipif(INTERPRETED, reason="fake tensors cannot run interpreted kernels (wrap_triton passes "
                    "an InterpretedFunction through unchanged); needs a GPU")
def test_opcheck_and_compile_on_gpu():
    real, fake = randn((4, 3, 8, 8), torch.float32, 1), randn((4, 3, 8, 8), torch.float32, 2)
    alpha = torch.rand(4, device=DEVICE)
    norm = real.flatten(1).norm(dim=1)
    samples = [
        ("interpolate", (real, fake, alpha)),
        ("interpolate_random", (real, fake, seed_tensor(11))),
        ("grad_norm_penalty_forward", (real, 1.0, False)),
        ("grad_norm_penalty_backward", (torch.rand(4, device=DEVICE), real, norm, 1.0, False)),
    ]
    for name, args in samples:
        torch.library.opcheck(getattr(torch.ops.fastgp_triton, name).default, args)

    def head(grad, real, fake, alpha):
        penalty, _ = torch.ops.fastgp_triton.grad_norm_penalty_forward(grad, 1.0, False)
        return penalty.mean(), torch.ops.fastgp_triton.interpolate(real, fake, alpha)

    compiled = torch.compile(head, fullgraph=True)
    for got, expected in zip(compiled(real, real, fake, alpha), head(real, real, fake, alpha)):
        torch.testing.assert_close(got, expected)


def test_public_errors_name_the_problem_on_triton_backend():
    # Issue 16: grad_scaler of the wrong type, inference mode and complex logits, on this backend too.
    real, fake = torch.randn(4, 3, device=DEVICE), torch.randn(4, 3, device=DEVICE)
    D = lambda x: x.flatten(1).sum(1)  # noqa: E731
    with fastgp.use_backend("triton"):
        with pytest.raises(TypeError, match="^grad_scaler must be a torch.amp.GradScaler or None, got str$"):
            fastgp.gradient_penalty(D, real, fake, grad_scaler="x")
        with pytest.raises(TypeError, match="^D's output must be real floating-point logits, got dtype torch.complex64$"):
            fastgp.gradient_penalty(lambda x: D(x).to(torch.complex64), real, kind="r1")
        with torch.inference_mode():
            with pytest.raises(RuntimeError, match=r"^gradient_penalty needs gradients, which torch.inference_mode"):
                fastgp.gradient_penalty(D, real, fake)


@pytest.mark.parametrize(
    "dtype,scale",
    [(torch.float32, 1e20), (torch.float32, 1e-30), (torch.float64, 1e200), (torch.float64, 1e-200),
     (torch.bfloat16, 1e20), (torch.bfloat16, 1e-30)],
    ids=str,
)
@pytest.mark.parametrize("shape", [(3, 7), (2, 4107)], ids=str)  # one program per row; two-stage
def test_grad_norm_head_extreme_magnitudes(dtype, scale, shape):
    """Rows whose plain sum of squares over- or underflows get the scaled norm (as the reference and
    the C++ kernels): norm, penalty and backward against float64 closed forms on g / scale."""
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    unit = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    unit[0] = 0.0
    g = (unit * scale).to(dtype).to(DEVICE)
    u = g.double().cpu() / scale
    norm = u.norm(dim=1)
    for center in (0.0, 1.0):
        penalty, got_norm = tp.grad_norm_penalty_forward(g, center, False)
        expected = norm**2 * scale * scale if center == 0 else (norm * scale - center) ** 2
        torch.testing.assert_close(got_norm.cpu(), (norm * scale).to(acc), rtol=2e-5, atol=0)
        torch.testing.assert_close(penalty.cpu(), expected.to(acc), rtol=2e-5, atol=0)
        grad_in = tp.grad_norm_penalty_backward(torch.ones_like(penalty), g, got_norm, center, False)
        coef = torch.where(norm > 0, 2 * (scale - center / norm.clamp_min(1e-300)), torch.zeros_like(norm))
        torch.testing.assert_close(grad_in.cpu(), (coef[:, None] * u).to(dtype), rtol=2e-2 if dtype != acc else 2e-5,
                                   atol=0)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy, interpreter
@pytest.mark.parametrize("one_sided", [False, True])
def test_penalty_head_nan_row_gradient_is_nan_in_every_element(one_sided):
    # Only a zero norm is masked: a NaN row's coefficient is NaN, as the extension's and torch's.
    grad = grad_like((3, 4), torch.float32, seed=9)
    grad[1, 2] = float("nan")
    _, norm = tp.grad_norm_penalty_forward(grad, 1.0, one_sided)
    grad_in = tp.grad_norm_penalty_backward(torch.ones(3, device=DEVICE), grad, norm, 1.0, one_sided)
    assert torch.isnan(grad_in[1]).all(), grad_in[1]
    assert torch.isfinite(grad_in[[0, 2]]).all()
