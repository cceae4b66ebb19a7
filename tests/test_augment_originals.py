"""fastgp.augment against DiffAugment (Zhao et al., 2020; mit-han-lab/data-efficient-gans,
``DiffAugment_pytorch.py``), seed for seed.

``original_diff_augment`` below is our own minimal re-implementation of the algorithm that file
documents, written independently of fastgp (index arithmetic and masks, no fastgp code): the same
``torch.rand`` / ``torch.randint`` calls in the same order, shapes and dtypes from the default
generator, and the same images:

- colour: x + (u₁ − ½); saturation (x − mean_c)·2u₂ + mean_c; contrast (x − mean)·(u₃ + ½) + mean,
  with u drawn as [B, 1, 1, 1] in x's dtype;
- translation: tx ∈ [−s_h, s_h] over the height, then ty ∈ [−s_w, s_w] over the width ([B, 1, 1]
  each, s = int(size·⅛ + ½)); out[i, j] = x[i + tx, j + ty] inside the image, 0 outside;
- cutout: a square of int(size·½ + ½) pixels whose centre is drawn over the height, then over
  the width, in [0, size + 1 − cut % 2), clipped at the border and multiplied by 0.

With the same generator state, fastgp must return the same images and the same input gradients.
Every test runs on its case's device: the inputs are drawn on the CPU and moved, and the in-op
draws come from that device's generator, so on CUDA the oracle is the original's code run on the
same device from an equal (CUDA) generator.
"""

import pytest
import torch

from fastgp import augment
from helpers import make, rng_states

POLICIES = [
    "color,translation,cutout",
    "translation,cutout",
    "translation",
    "cutout",
    "color",
    "cutout,translation",
    "translation,color",
    "color,cutout,translation,translation",
]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def original_uniform(x):
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)


def original_color(x):
    x = x + (original_uniform(x) - 0.5)
    channel_mean = x.mean(dim=1, keepdim=True)
    x = (x - channel_mean) * (original_uniform(x) * 2) + channel_mean
    image_mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - image_mean) * (original_uniform(x) + 0.5) + image_mean


def original_translation(x, ratio=0.125):
    batch, channels, height, width = x.shape
    s_h, s_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    tx = torch.randint(-s_h, s_h + 1, size=[batch, 1, 1], device=x.device)
    ty = torch.randint(-s_w, s_w + 1, size=[batch, 1, 1], device=x.device)
    rows = torch.arange(height, device=x.device).view(1, height, 1) + tx  # source row i + tx
    cols = torch.arange(width, device=x.device).view(1, 1, width) + ty  # source column j + ty
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    index = rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)  # [B, H, W]
    index = index.flatten(1).unsqueeze(1).expand(-1, channels, -1)
    out = x.flatten(2).gather(2, index).view_as(x)
    return out * inside.unsqueeze(1).to(x.dtype)


def original_cutout(x, ratio=0.5):
    batch, _, height, width = x.shape
    cut_h, cut_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    centre_h = torch.randint(0, height + (1 - cut_h % 2), size=[batch, 1, 1], device=x.device)
    centre_w = torch.randint(0, width + (1 - cut_w % 2), size=[batch, 1, 1], device=x.device)
    top, left = centre_h - cut_h // 2, centre_w - cut_w // 2
    rows = torch.arange(height, device=x.device).view(1, height, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, width)
    in_box = (rows >= top) & (rows < top + cut_h) & (cols >= left) & (cols < left + cut_w)
    return x * (~in_box).to(x.dtype).unsqueeze(1)


ORIGINAL_FNS = {"color": original_color, "translation": original_translation, "cutout": original_cutout}


def original_diff_augment(x, policy, channels_first=True):
    if not policy:
        return x
    if not channels_first:
        x = x.permute(0, 3, 1, 2)
    for word in policy.split(","):
        x = ORIGINAL_FNS[word](x)
    if not channels_first:
        x = x.permute(0, 2, 3, 1)
    return x.contiguous()


def run(fn, x, seed, upstream=None):
    """fn(x) from the default generators seeded with ``seed``: output, input gradient, RNG states
    after (the CPU's and x's device's)."""
    x = x.detach().clone().requires_grad_(True)
    torch.manual_seed(seed)
    out = fn(x)
    after = rng_states(x.device)
    if upstream is None:
        upstream = make(tuple(out.shape), torch.float64, seed=seed + 1, device=x.device).to(out.dtype)
    (grad,) = torch.autograd.grad(out, x, upstream)
    return out.detach(), grad, after


def assert_same(got, expected, exact):
    if exact:  # gathers and masks only: no arithmetic, so the values are the original's exactly
        assert torch.equal(got, expected)
    else:
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("policy", POLICIES)
def test_diffaugment_seed_for_seed(backend_name, device, policy, dtype):
    x = make((5, 3, 12, 10), dtype, seed=1, device=device)
    for seed in range(3):
        got, got_grad, got_state = run(lambda t: augment.DiffAugment(t, policy), x, seed)
        expected, expected_grad, expected_state = run(lambda t: original_diff_augment(t, policy), x, seed)
        assert torch.equal(got_state, expected_state), "the generator must be consumed as the original does"
        exact = "color" not in policy
        assert_same(got, expected, exact)
        assert_same(got_grad, expected_grad, exact and dtype == torch.float64)
        if not exact:
            torch.testing.assert_close(got_grad, expected_grad)


def padded_translation(x, ratio=0.125):
    """rand_translation exactly as DiffAugment writes it (mit-han-lab/data-efficient-gans,
    DiffAugment_pytorch.py): one ring of zeros by F.pad, then a gather with indices clamped onto the
    ring. The same draws and values as original_translation; only the backward of out-of-image reads
    differs for non-finite gradients (theirs goes to the ring, which F.pad's backward discards)."""
    batch, _, height, width = x.shape
    s_h, s_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    tx = torch.randint(-s_h, s_h + 1, size=[batch, 1, 1], device=x.device)
    ty = torch.randint(-s_w, s_w + 1, size=[batch, 1, 1], device=x.device)
    grid_b, grid_y, grid_x = torch.meshgrid(
        torch.arange(batch, device=x.device), torch.arange(height, device=x.device),
        torch.arange(width, device=x.device), indexing="ij",
    )  # fmt: skip
    grid_y = torch.clamp(grid_y + tx + 1, 0, height + 1)
    grid_x = torch.clamp(grid_x + ty + 1, 0, width + 1)
    x_pad = torch.nn.functional.pad(x, [1, 1, 1, 1])
    return x_pad.permute(0, 2, 3, 1).contiguous()[grid_b, grid_y, grid_x].permute(0, 3, 1, 2)


def _chain(x, policy, fns):
    for word in policy.split(","):
        x = fns[word](x)
    return x


@pytest.mark.parametrize("policy", ["translation,cutout", "cutout", "translation"])
def test_diffaugment_nan_and_inf_upstream_gradients_as_the_original(backend_name, device, policy):
    """Issue 16: the original's backward is grad·mask (cutout) then the gather's adjoint (translation,
    whose zero-padding reads send their gradient to the discarded padding): a NaN/inf gradient in
    the box gives NaN on its source pixel, one on a padding read reaches nothing."""
    fns = {**ORIGINAL_FNS, "translation": padded_translation}
    original = lambda t: _chain(t, policy, fns)  # noqa: E731
    x = make((4, 3, 9, 8), torch.float32, seed=2, device=device)
    upstream = make((4, 3, 9, 8), torch.float32, seed=3, device=device)
    upstream[:, :, ::2, ::3] = float("nan")
    upstream[:, 1, 1::2, 1::3] = float("inf")
    upstream[:, 2, 1::2, 2::3] = -float("inf")
    for seed in range(4):
        got, got_grad, _ = run(lambda t: augment.DiffAugment(t, policy), x, seed, upstream)
        expected, expected_grad, _ = run(original, x, seed, upstream)
        assert torch.equal(got, expected)
        torch.testing.assert_close(got_grad, expected_grad, rtol=0, atol=0, equal_nan=True)
    assert got_grad.isnan().any()


@pytest.mark.parametrize("policy", ["color,translation,cutout", "translation"])
def test_diffaugment_seed_for_seed_odd_sizes_and_layouts(backend_name, device, policy):
    for shape, layout in [((3, 2, 9, 7), "channels_last"), ((2, 3, 5, 11), "strided"), ((4, 1, 16, 16), "contiguous")]:
        x = make(shape, torch.float32, layout, seed=2, device=device)
        got, got_grad, _ = run(lambda t: augment.DiffAugment(t, policy), x, 11)
        expected, expected_grad, _ = run(lambda t: original_diff_augment(t, policy), x, 11)
        torch.testing.assert_close(got, expected)
        torch.testing.assert_close(got_grad, expected_grad)
    nhwc = make((3, 8, 6, 2), torch.float64, seed=3, device=device)
    got, _, _ = run(lambda t: augment.DiffAugment(t, policy, channels_first=False), nhwc, 4)
    expected, _, _ = run(lambda t: original_diff_augment(t, policy, channels_first=False), nhwc, 4)
    torch.testing.assert_close(got, expected)


# ----------------------------------------------------------------------------------------------
# DiffAugment AS WRITTEN: mit-han-lab/data-efficient-gans, DiffAugment_pytorch.py at commit
# 0b6339510be1e3859d360cbf464d0a425514a6b4 (file last changed in 3a5ba9f).
# Kept verbatim as the comparison target under the BSD 2-clause licence (the repository's
# LICENSE.txt, reproduced below as its first condition requires). Transcribed unchanged but for
# the names (prefixed ``authors_``, so as not to shadow fastgp's) and the F.pad import spelled out;
# the bit-for-bit claims are checked against this, not a restatement.
#
# Copyright (c) 2020, Shengyu Zhao, Zhijian Liu, Ji Lin, Jun-Yan Zhu, and Song Han
# All rights reserved.
#
# Redistribution and use in source and binary forms, with or without
# modification, are permitted provided that the following conditions are met:
#
# * Redistributions of source code must retain the above copyright notice, this
#   list of conditions and the following disclaimer.
#
# * Redistributions in binary form must reproduce the above copyright notice,
#   this list of conditions and the following disclaimer in the documentation
#   and/or other materials provided with the distribution.
#
# THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
# AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
# IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
# DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE
# FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
# DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
# SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
# CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
# OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
# OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
# ----------------------------------------------------------------------------------------------


def authors_DiffAugment(x, policy='', channels_first=True):
    if policy:
        if not channels_first:
            x = x.permute(0, 3, 1, 2)
        for p in policy.split(','):
            for f in AUTHORS_AUGMENT_FNS[p]:
                x = f(x)
        if not channels_first:
            x = x.permute(0, 2, 3, 1)
        x = x.contiguous()
    return x


def authors_rand_brightness(x):
    x = x + (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)
    return x


def authors_rand_saturation(x):
    x_mean = x.mean(dim=1, keepdim=True)
    x = (x - x_mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + x_mean
    return x


def authors_rand_contrast(x):
    x_mean = x.mean(dim=[1, 2, 3], keepdim=True)
    x = (x - x_mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + x_mean
    return x


def authors_rand_translation(x, ratio=0.125):
    shift_x, shift_y = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
    translation_x = torch.randint(-shift_x, shift_x + 1, size=[x.size(0), 1, 1], device=x.device)
    translation_y = torch.randint(-shift_y, shift_y + 1, size=[x.size(0), 1, 1], device=x.device)
    grid_batch, grid_x, grid_y = torch.meshgrid(
        torch.arange(x.size(0), dtype=torch.long, device=x.device),
        torch.arange(x.size(2), dtype=torch.long, device=x.device),
        torch.arange(x.size(3), dtype=torch.long, device=x.device),
    )
    grid_x = torch.clamp(grid_x + translation_x + 1, 0, x.size(2) + 1)
    grid_y = torch.clamp(grid_y + translation_y + 1, 0, x.size(3) + 1)
    x_pad = torch.nn.functional.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    x = x_pad.permute(0, 2, 3, 1).contiguous()[grid_batch, grid_x, grid_y].permute(0, 3, 1, 2).contiguous()
    return x


def authors_rand_cutout(x, ratio=0.5):
    cutout_size = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
    offset_x = torch.randint(0, x.size(2) + (1 - cutout_size[0] % 2), size=[x.size(0), 1, 1], device=x.device)
    offset_y = torch.randint(0, x.size(3) + (1 - cutout_size[1] % 2), size=[x.size(0), 1, 1], device=x.device)
    grid_batch, grid_x, grid_y = torch.meshgrid(
        torch.arange(x.size(0), dtype=torch.long, device=x.device),
        torch.arange(cutout_size[0], dtype=torch.long, device=x.device),
        torch.arange(cutout_size[1], dtype=torch.long, device=x.device),
    )
    grid_x = torch.clamp(grid_x + offset_x - cutout_size[0] // 2, min=0, max=x.size(2) - 1)
    grid_y = torch.clamp(grid_y + offset_y - cutout_size[1] // 2, min=0, max=x.size(3) - 1)
    mask = torch.ones(x.size(0), x.size(2), x.size(3), dtype=x.dtype, device=x.device)
    mask[grid_batch, grid_x, grid_y] = 0
    x = x * mask.unsqueeze(1)
    return x


AUTHORS_AUGMENT_FNS = {
    'color': [authors_rand_brightness, authors_rand_saturation, authors_rand_contrast],
    'translation': [authors_rand_translation],
    'cutout': [authors_rand_cutout],
}

LAYOUTS = ["contiguous", "channels_last", "strided", "nhwc", "nhwc-view"]
LAYOUT_POLICIES = POLICIES + ["translation,cutout,color", "cutout,color", "color,cutout", "color,translation",
                              "color,cutout,translation", "translation,translation,color"]


def layout_input(layout, shape, dtype, device):
    """(x, channels_first): an NCHW ``shape`` batch in ``layout``; "nhwc" a contiguous [B, H, W, C]
    tensor and "nhwc-view" an [B, H, W, C] view of NCHW memory, both for channels_first=False."""
    batch, channels, height, width = shape
    if layout == "nhwc":
        return make((batch, height, width, channels), dtype, seed=1, device=device), False
    if layout == "nhwc-view":
        return make(shape, dtype, seed=1, device=device).permute(0, 2, 3, 1), False
    return make(shape, dtype, layout, seed=1, device=device), True


@pytest.mark.filterwarnings("ignore:torch.meshgrid")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_diffaugment_bit_for_bit_with_the_authors_code_in_every_layout(backend_name, device, dtype, layout):
    """Issue 21: the images AND input gradients of the authors' DiffAugment, bit for bit, in every
    layout and dtype — colour after a translation included (the original's translation returns a
    contiguous tensor; its backward a channels_last gradient; colour's means sum in memory order)."""
    for shape in [(5, 3, 12, 10), (2, 4, 9, 7)]:
        x, channels_first = layout_input(layout, shape, dtype, device)
        for policy in LAYOUT_POLICIES:
            for seed in range(2):
                got, got_grad, got_state = run(lambda t: augment.DiffAugment(t, policy, channels_first), x, seed)
                expected, expected_grad, expected_state = run(
                    lambda t: authors_DiffAugment(t, policy, channels_first), x, seed)
                assert torch.equal(got_state, expected_state), policy
                assert torch.equal(got, expected), (policy, seed)
                assert torch.equal(got_grad, expected_grad), (policy, seed)


@pytest.mark.filterwarnings("ignore:torch.meshgrid")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_diffaugment_copies_are_the_authors_calls_concatenated_in_every_layout(backend_name, device, layout):
    """copies=K, copy-major: the images of K calls of the authors' code concatenated, bit for bit in
    every layout; the input gradient sums the K copies' gradients in another order than autograd's
    accumulation over the K calls, so it is equal to rounding only (README, DiffAugment)."""
    for dtype in (torch.float32, torch.float64):
        x, channels_first = layout_input(layout, (3, 3, 8, 6), dtype, device)
        for policy in ["color,translation,cutout", "translation,color", "color", "cutout,color"]:
            def concatenated(t):
                return torch.cat([authors_DiffAugment(t, policy, channels_first) for _ in range(3)])

            def ours(t):
                return augment.DiffAugment(t, policy, channels_first, copies=3, order="copy-major")

            got, got_grad, got_state = run(ours, x, 5)
            expected, expected_grad, expected_state = run(concatenated, x, 5)
            assert torch.equal(got_state, expected_state)
            assert torch.equal(got, expected), policy
            torch.testing.assert_close(got_grad, expected_grad)


def test_diffaugment_forward_mode_through_the_layout_steps(backend_name, device):
    """The identity that hands colour's backward a channels_last gradient is an identity in
    forward mode too (method="jvp" differentiates D's augmentation forward): the tangent equals
    the reverse-mode directional derivative, colour before and after a translation."""
    x = make((2, 3, 8, 8), torch.float64, "channels_last", seed=4, device=device)
    tangent = make((2, 3, 8, 8), torch.float64, seed=5, device=device)
    for policy in ["color,translation,cutout", "translation,color", "color,cutout,translation"]:
        def fn(t):
            return augment.DiffAugment(t, policy, generator=torch.Generator(device).manual_seed(3))

        with torch.autograd.forward_ad.dual_level():
            forward = torch.autograd.forward_ad.unpack_dual(fn(torch.autograd.forward_ad.make_dual(x, tangent))).tangent
        _, reverse = torch.autograd.functional.jvp(fn, x, tangent)
        torch.testing.assert_close(forward, reverse)


def test_an_explicit_generator_draws_what_the_default_generator_would(backend_name, device):
    x = make((4, 3, 8, 8), torch.float64, seed=5, device=device)
    torch.manual_seed(9)
    expected = original_diff_augment(x, "color,translation,cutout")
    got = augment.DiffAugment(x, "color,translation,cutout", generator=torch.Generator(device).manual_seed(9))
    torch.testing.assert_close(got, expected)


def test_translate_random_path_is_rand_translation(backend_name, device):
    """translate(x) with K = 1 is the original's rand_translation; the returned shifts are its draws
    mapped to fastgp's convention, dy = −tx, dx = −ty."""
    x = make((6, 2, 9, 12), torch.float32, seed=6, device=device)
    torch.manual_seed(3)
    out, shifts = augment.translate(x, return_shifts=True)
    torch.manual_seed(3)
    expected = original_translation(x)
    assert torch.equal(out, expected)
    torch.manual_seed(3)
    tx = torch.randint(-1, 2, (6,), device=device)  # int(9·⅛ + ½) = 1 over the height
    ty = torch.randint(-2, 3, (6,), device=device)  # int(12·⅛ + ½) = 2 over the width
    assert torch.equal(shifts[:, 0], torch.stack([-tx, -ty], dim=1))
    # Replaying the returned shifts reproduces the image (fastgp's explicit-shift convention).
    assert torch.equal(augment.translate(x, shifts=shifts), expected)


@pytest.mark.parametrize("include_original", [False, True])
def test_translate_copies_are_successive_rand_translations(backend_name, device, include_original):
    x = make((3, 2, 8, 8), torch.float64, seed=7, device=device)
    copies = 4
    torch.manual_seed(1)
    copy_major = augment.translate(x, copies=copies, include_original=include_original, order="copy-major")
    torch.manual_seed(1)
    first = [x] if include_original else []
    expected = torch.cat(first + [original_translation(x) for _ in range(copies - len(first))])
    assert torch.equal(copy_major, expected)
    torch.manual_seed(1)
    sample_major, shifts = augment.translate(
        x, copies=copies, include_original=include_original, return_shifts=True
    )
    assert torch.equal(sample_major, expected.view(copies, 3, 2, 8, 8).transpose(0, 1).reshape(12, 2, 8, 8))
    # The same shifts replay either order.
    assert torch.equal(augment.translate(x, shifts=shifts, order="copy-major"), copy_major)


@pytest.mark.parametrize("policy", ["color,translation,cutout", "translation,cutout", "color", "cutout,color", ""])
def test_diffaugment_copies_are_the_originals_concatenated(backend_name, device, policy):
    x = make((3, 3, 8, 6), torch.float32, "channels_last", seed=8, device=device)
    copies = 3

    def concatenated(t):
        return torch.cat([original_diff_augment(t, policy) for _ in range(copies)])

    got, got_grad, got_state = run(lambda t: augment.DiffAugment(t, policy, copies=copies, order="copy-major"), x, 2)
    expected, expected_grad, expected_state = run(concatenated, x, 2)
    assert torch.equal(got_state, expected_state)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_grad, expected_grad)
    # Sample-major: the same images, row b·K + k holding copy k of sample b.
    upstream = make((9, 3, 8, 6), torch.float32, seed=3, device=device)
    to_sample_major = lambda t: t.view(copies, 3, *t.shape[1:]).transpose(0, 1).reshape(t.shape)  # noqa: E731
    got_sm, grad_sm, _ = run(lambda t: augment.DiffAugment(t, policy, copies=copies), x, 2, to_sample_major(upstream))
    _, grad_cm, _ = run(lambda t: augment.DiffAugment(t, policy, copies=copies, order="copy-major"), x, 2, upstream)
    torch.testing.assert_close(got_sm, to_sample_major(expected))
    torch.testing.assert_close(grad_sm, grad_cm)


def test_diffaugment_copies_gradgradcheck(backend_name, device):
    x = make((2, 2, 6, 6), torch.float64, seed=9, device=device).requires_grad_()

    def fn(t):  # the same draws at every evaluation: a fresh generator on the device the op draws on
        generator = torch.Generator(device).manual_seed(4)
        return augment.DiffAugment(t, "color,translation,cutout", copies=2, generator=generator)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


BAD_INPUTS = [
    (lambda: augment.translate(torch.zeros(2, 1, 4, 4), order="batch-major"), ValueError, "order must be one of"),
    (lambda: augment.DiffAugment(torch.zeros(2, 1, 4, 4), order=1), ValueError, "order must be one of"),
    (lambda: augment.DiffAugment(torch.zeros(2, 1, 4, 4), copies=0), ValueError, "copies must be >= 1"),
    (lambda: augment.DiffAugment(torch.zeros(2, 1, 4, 4), copies=1.5), TypeError, "copies must be an int"),
]


@pytest.mark.parametrize("call,error,match", BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
