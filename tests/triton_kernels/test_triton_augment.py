"""Triton kernels of the augment family (fastgp.triton.augment) against the pure-PyTorch reference.

Run in its own process (see conftest.py): ``TRITON_INTERPRET=1 python -m pytest tests/triton_kernels``.
Shapes are small because the interpreter is slow. The forward moves values, so it must be exact in
every dtype; the adjoint sums in the accumulation dtype and is compared with the dtype's tolerance.
"""

import os

import pytest
import torch

import fastgp
from fastgp import augment
from fastgp.reference import augment as ref
from fastgp.triton import augment as ta

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRETED else "cuda"
PADDINGS = ("zeros", "reflect", "replicate")
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=2e-2),
}


def image(shape, dtype, layout, seed):
    gen = torch.Generator().manual_seed(seed)
    if layout == "strided":
        x = torch.randn(*shape[:-1], 2 * shape[-1], generator=gen, dtype=torch.float64).to(dtype)[..., ::2]
    else:
        x = torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)
        if layout == "channels_last":
            x = x.to(memory_format=torch.channels_last)
    return x.to(DEVICE)


def shifts_for(batch, copies, height, width, padding, seed):
    gen = torch.Generator().manual_seed(seed)
    lim_y, lim_x = (height - 1, width - 1) if padding == "reflect" else (height + 1, width + 1)
    dy = torch.randint(-lim_y, lim_y + 1, (batch, copies), generator=gen)
    dx = torch.randint(-lim_x, lim_x + 1, (batch, copies), generator=gen)
    return torch.stack([dy, dx], dim=-1).to(DEVICE)


def boxes_for(batch, copies, height, width, seed):
    gen = torch.Generator().manual_seed(seed)
    cols = [torch.randint(lo, hi, (batch, copies), generator=gen) for lo, hi in
            ((-2, height + 1), (-2, width + 1), (0, height + 2), (0, width + 2))]  # fmt: skip
    return torch.stack(cols, dim=-1).to(DEVICE)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("with_boxes", [False, True], ids=["plain", "cutout"])
def test_translate_and_adjoint_match_reference(padding, layout, with_boxes):
    for index, shape in enumerate([(2, 3, 5, 6), (1, 2, 1, 1), (2, 1, 4, 3)]):
        batch, _, height, width = shape
        x = image(shape, torch.float32, layout, seed=index)
        shifts = shifts_for(batch, 3, height, width, padding, seed=index)
        boxes = boxes_for(batch, 3, height, width, seed=index) if with_boxes else None
        out = ta.translate(x, shifts, boxes, padding)
        assert torch.equal(out, ref.translate(x, shifts, boxes, padding))
        if layout == "channels_last" and not x.is_contiguous():
            assert out.is_contiguous(memory_format=torch.channels_last)
        grad = image(out.shape, torch.float32, layout, seed=10 + index)
        got = ta.translate_backward(grad, shifts, boxes, padding)
        torch.testing.assert_close(got, ref.translate_backward(grad, shifts, boxes, padding), **TOL[torch.float32])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("padding", PADDINGS)
def test_dtypes(dtype, padding):
    x = image((2, 3, 6, 5), dtype, "contiguous", seed=1)
    shifts = shifts_for(2, 4, 6, 5, padding, seed=2)
    out = ta.translate(x, shifts, None, padding)
    assert out.dtype == dtype and torch.equal(out, ref.translate(x, shifts, None, padding))
    grad = image(out.shape, dtype, "contiguous", seed=3)
    got = ta.translate_backward(grad, shifts, None, padding)
    assert got.dtype == dtype
    torch.testing.assert_close(got, ref.translate_backward(grad, shifts, None, padding), **TOL[dtype])


def test_wide_rows_use_several_programs_per_row():
    x = image((1, 1, 3, 1100), torch.float32, "contiguous", seed=4)  # a row > one 1024 block
    shifts = torch.tensor([[[1, 7], [-1, -1030]]], device=DEVICE)
    out = ta.translate(x, shifts, None, "replicate")
    assert torch.equal(out, ref.translate(x, shifts, None, "replicate"))
    got = ta.translate_backward(out, shifts, None, "replicate")
    torch.testing.assert_close(got, ref.translate_backward(out, shifts, None, "replicate"))


@pytest.mark.parametrize("padding", ["zeros", "replicate"])
def test_extreme_shifts_equal_shifts_of_the_image_size(padding):
    """Shifts up to the int64 limits give the image of a shift of ±size (no index overflow: -2**63
    once gave the top row where the bottom row is right)."""
    big = torch.tensor([2**63 - 1, -(2**63), 2**31, -(2**40)])
    x = image((4, 2, 5, 4), torch.float64, "contiguous", seed=8)
    shifts = torch.stack([torch.stack([big, big.flip(0)], -1), torch.stack([-big.flip(0), big], -1)], dim=1).to(DEVICE)
    clamped = torch.stack([shifts[..., 0].clamp(-5, 5), shifts[..., 1].clamp(-4, 4)], dim=-1)
    out = ta.translate(x, shifts, None, padding)
    assert torch.equal(out, ref.translate(x, clamped, None, padding))
    assert torch.equal(out, ref.translate(x, shifts, None, padding))
    grad = image(out.shape, torch.float64, "contiguous", seed=9)
    got = ta.translate_backward(grad, shifts, None, padding)
    torch.testing.assert_close(got, ref.translate_backward(grad, clamped, None, padding), **TOL[torch.float64])
    if padding == "replicate":  # copy 0 of sample 1: up by 2**63, right by 2**31: the bottom-left pixel
        assert torch.equal(out[2], x[1, :, -1:, :1].expand(-1, 5, 4))


@pytest.mark.parametrize("padding", PADDINGS)
def test_image_without_pixels_gives_empty_output(padding):
    for shape in ((2, 3, 0, 5), (2, 3, 4, 0)):
        x = torch.zeros(shape, device=DEVICE)
        shifts = torch.tensor([[[1, -7]], [[0, 3]]], device=DEVICE)
        assert ta.translate(x, shifts, None, padding).shape == shape
        assert ta.translate_backward(x, shifts, None, padding).shape == shape
        with fastgp.use_backend("triton"):
            assert augment.translate(x, copies=2, padding=padding).shape == (4, *shape[1:])


def test_public_api_reflect_range_on_triton():
    """The public layer decides for every backend: a ratio whose shift reaches the image size and
    explicit shifts outside it are a ValueError under reflect padding (Triton would clamp them)."""
    x = image((2, 1, 16, 16), torch.float32, "contiguous", seed=10)
    with fastgp.use_backend("triton"):
        with pytest.raises(ValueError, match=r"padding='reflect'.*ratio=0.99.*ratio must be < 0.96875"):
            augment.translate(x, ratio=0.99, padding="reflect")
        with pytest.raises(ValueError, match="reflect padding needs"):
            augment.translate(x, shifts=torch.full((2, 1, 2), -(2**63), device=DEVICE), padding="reflect")
        out, shifts = augment.translate(x, copies=8, ratio=0.968, padding="reflect", return_shifts=True)
        assert torch.equal(out, ref.translate(x, shifts, None, "reflect"))


@pytest.mark.parametrize("padding", PADDINGS)
def test_public_api_gradcheck_and_gradgradcheck_on_triton(padding):
    x = image((2, 2, 4, 5), torch.float64, "contiguous", seed=5).requires_grad_()
    shifts = shifts_for(2, 2, 4, 5, padding, seed=6)
    with fastgp.use_backend("triton"):
        def fn(x):
            return augment.translate(x, shifts=shifts, padding=padding)

        assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


def test_diffaugment_on_triton_matches_reference_policy():
    x = image((3, 3, 8, 8), torch.float64, "contiguous", seed=7)
    with fastgp.use_backend("triton"):
        got = augment.DiffAugment(x, "color,translation,cutout", generator=torch.Generator().manual_seed(1))
    expected = ref.diff_augment(x, "color,translation,cutout", generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_public_layer_rejects_bad_arguments_on_the_triton_backend():
    """User input is validated once, in fastgp/augment.py, with the same words on every backend."""
    x = image((2, 1, 4, 4), torch.float32, "contiguous", seed=0)
    good = torch.zeros(2, 1, 2, dtype=torch.long, device=DEVICE)
    with fastgp.use_backend("triton"):
        with pytest.raises(ValueError, match="padding must be one of"):
            augment.translate(x, shifts=good, padding="wrap")
        with pytest.raises(TypeError, match="shifts must have an integer dtype"):
            augment.translate(x, shifts=good.float())
        with pytest.raises(ValueError, match="shifts must have shape"):
            augment.translate(x, shifts=good[:1])
        with pytest.raises(TypeError, match="x must have a floating dtype"):
            augment.translate(x.int(), shifts=good)
        with pytest.raises(ValueError, match="x must have shape"):
            augment.translate(x[0], shifts=good)
        with pytest.raises(ValueError, match="reflect padding needs"):
            augment.translate(x, shifts=torch.full_like(good, 4), padding="reflect")


def test_launchers_assert_their_memory_invariants():
    x = image((2, 1, 4, 4), torch.float32, "contiguous", seed=0)
    good = torch.zeros(2, 1, 2, dtype=torch.long, device=DEVICE)
    bad_calls = [
        lambda: ta.translate(x, good, None, "wrap"),
        lambda: ta.translate(x, good.float(), None, "zeros"),
        lambda: ta.translate(x, good[:1], None, "zeros"),
        lambda: ta.translate(x, good, torch.zeros(2, 1, 3, dtype=torch.long, device=DEVICE), "zeros"),
        lambda: ta.translate(x[0], good, None, "zeros"),
        lambda: ta.translate_backward(x[:1], good, None, "zeros"),
    ]
    for call in bad_calls:
        with pytest.raises(AssertionError, match="fastgp internal error"):
            call()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("padding", PADDINGS)
def test_cutout_keeps_nan_and_inf_as_the_reference(dtype, padding):
    # Issue 16: DiffAugment multiplies by a mask, so a NaN/inf pixel inside the box gives NaN
    # (inf·0); the kernel wrote 0 there. It now multiplies by 0.
    x = image((2, 3, 5, 6), dtype, "contiguous", seed=3)
    x[0, 1, 2, 3] = float("nan")
    x[1, 0, :, 2] = float("inf")
    x[1, 2, 4, :] = -float("inf")
    shifts = torch.tensor([[[0, 0], [1, -1]], [[0, 0], [-1, 2]]], device=DEVICE)
    boxes = torch.tensor([[[1, 2, 3, 3], [0, 0, 5, 6]], [[2, 1, 3, 4], [-1, -1, 3, 9]]], device=DEVICE)
    out = ta.translate(x, shifts, boxes, padding)
    expected = ref.translate(x, shifts, boxes, padding)
    assert out.dtype == dtype
    torch.testing.assert_close(out, expected, rtol=0, atol=0, equal_nan=True)
    inside = ref.keep_mask(boxes, 5, 6, torch.float32).expand_as(out) == 0
    assert out[inside].isnan().sum() >= 6 and not out[inside].isinf().any()


def test_diffaugment_cutout_of_nan_images_on_triton_matches_reference():
    x = image((3, 3, 8, 8), torch.float32, "contiguous", seed=8)
    x[:, :, 3:5, 3:5] = float("nan")
    with fastgp.use_backend("triton"):
        got = augment.DiffAugment(x, "translation,cutout", generator=torch.Generator().manual_seed(2))
    expected = ref.diff_augment(x, "translation,cutout", generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("padding", PADDINGS)
def test_cutout_backward_keeps_nan_and_inf_gradients_as_the_reference(dtype, padding):
    # Issue 16: the backward of x * mask is grad * mask: a NaN/inf gradient inside the box gives NaN
    # on its source pixel; the kernel used to skip box pixels (0).
    grad = image((4, 3, 5, 6), dtype, "contiguous", seed=4)
    grad[0, 1, 2, 3] = float("nan")
    grad[1, 0, 0, 0] = float("inf")
    grad[2, 2, 4, 5] = -float("inf")  # outside its box: stays -inf
    grad[3, 1, 1, 4] = float("nan")
    shifts = torch.tensor([[[0, 0], [1, -1]], [[0, 0], [-1, 2]]], device=DEVICE)
    boxes = torch.tensor([[[1, 2, 3, 3], [0, 0, 5, 6]], [[2, 1, 3, 4], [-1, -1, 3, 9]]], device=DEVICE)
    grad_x = ta.translate_backward(grad, shifts, boxes, padding)
    expected = ref.translate_backward(grad, shifts, boxes, padding)
    assert grad_x.dtype == dtype
    torch.testing.assert_close(grad_x, expected, **TOL[dtype], equal_nan=True)
    assert grad_x.isnan().sum() >= 2 and bool(grad_x.isinf().any())
