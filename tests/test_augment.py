"""The public augment API: fastgp.augment.translate, DiffAugment, fastgp.nn.Augment — semantics,
random draws, gradients to second order, and every bad input named in the issue."""

import pytest
import torch

import fastgp
from fastgp import augment
from fastgp.reference import augment as ref
from helpers import devices, make, translate_oracle

PADDINGS = ("zeros", "reflect", "replicate")


def gen(seed=0, device="cpu"):
    return torch.Generator(device=device).manual_seed(seed)


# ------------------------------------------------------------------------------------------
# translate: semantics and the random draw
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_translate_matches_reference_with_returned_shifts(backend_name, device, padding, layout):
    x = make((4, 3, 9, 7), torch.float32, layout, seed=1, device=device)
    out, shifts = augment.translate(x, copies=5, ratio=0.25, padding=padding, generator=gen(2, device=device), return_shifts=True)
    assert out.shape == (20, 3, 9, 7) and shifts.shape == (4, 5, 2) and shifts.dtype == torch.int64
    assert torch.equal(out.double().cpu(), translate_oracle(x, shifts, None, padding))
    if layout == "channels_last":  # kept on every backend (the reference dropped it: issue 16)
        assert out.is_contiguous(memory_format=torch.channels_last)


def test_shift_distribution_matches_diffaugment(backend_name, device):
    """s = int(size·ratio + 0.5) per axis; every integer in [-s, s] is drawn."""
    x = torch.zeros(64, 1, 32, 20, device=device)
    _, shifts = augment.translate(x, copies=16, ratio=0.125, generator=gen(0, device=device), return_shifts=True)
    s_y, s_x = int(32 * 0.125 + 0.5), int(20 * 0.125 + 0.5)  # 4 and 3 (2.5 rounds up)
    assert (s_y, s_x) == (4, 3)
    assert set(shifts[..., 0].unique().tolist()) == set(range(-s_y, s_y + 1))
    assert set(shifts[..., 1].unique().tolist()) == set(range(-s_x, s_x + 1))
    _, shifts = augment.translate(x, copies=3, max_shift=(2, 0), generator=gen(0, device=device), return_shifts=True)
    assert shifts[..., 0].abs().max() <= 2 and bool((shifts[..., 1] == 0).all())


def test_generator_reproduces_and_sample_major_order(backend_name, device):
    x = make((3, 2, 8, 8), seed=3, device=device)
    first = augment.translate(x, copies=4, generator=gen(5, device=device))
    assert torch.equal(first, augment.translate(x, copies=4, generator=gen(5, device=device)))
    _, shifts = augment.translate(x, copies=4, generator=gen(5, device=device), return_shifts=True)
    for b in range(3):
        for k in range(4):
            expected = translate_oracle(x[b : b + 1], shifts[b : b + 1, k : k + 1])
            assert torch.equal(first[b * 4 + k : b * 4 + k + 1].double().cpu(), expected)


def test_include_original(backend_name, device):
    x = make((3, 2, 8, 8), seed=4, device=device)
    out, shifts = augment.translate(x, copies=16, include_original=True, generator=gen(1, device=device), return_shifts=True)
    assert bool((shifts[:, 0] == 0).all())
    assert torch.equal(out.view(3, 16, 2, 8, 8)[:, 0], x)


def test_shifts_replay_on_a_paired_tensor(backend_name, device):
    image = make((2, 3, 8, 8), seed=1, device=device)
    mask = (make((2, 1, 8, 8), seed=2, device=device) > 0).float()
    out, shifts = augment.translate(image, copies=3, generator=gen(0, device=device), return_shifts=True)
    moved_mask = augment.translate(mask, shifts=shifts)
    assert torch.equal(moved_mask.double().cpu(), translate_oracle(mask, shifts))
    assert torch.equal(augment.translate(image, shifts=shifts, copies=3), out)
    # int32 shifts are accepted too.
    assert torch.equal(augment.translate(image, shifts=shifts.int()), out)


@pytest.mark.parametrize("padding", PADDINGS)
def test_translate_gradcheck_and_gradgradcheck(backend_name, device, padding):
    x = make((2, 2, 5, 6), torch.float64, seed=1, device=device).requires_grad_()
    shifts = torch.tensor([[[1, -2], [0, 3], [-4, 5]], [[2, 2], [-1, -5], [4, 0]]], device=device)

    def fn(x):
        return augment.translate(x, shifts=shifts, padding=padding)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_grad_matches_reference_autograd(backend_name, device):
    """First and second derivatives of an R1-like loss through translation, vs torch autograd."""
    x = make((3, 2, 6, 6), torch.float64, seed=2, device=device)
    weight = make((1, 2, 6, 6), torch.float64, seed=3, device=device)
    shifts = torch.randint(-3, 4, (3, 4, 2), generator=gen(4, device=device), device=device)

    def r1(translate_fn, x):
        x = x.clone().requires_grad_()
        score = (translate_fn(x).tanh() * weight).sum()
        (g,) = torch.autograd.grad(score, x, create_graph=True)
        penalty = g.square().sum()
        (gg,) = torch.autograd.grad(penalty, x)
        return g.detach(), gg

    for padding in PADDINGS:
        got = r1(lambda t: augment.translate(t, shifts=shifts, padding=padding), x)
        expected = r1(lambda t: ref.translate(t, shifts, None, padding), x)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------------------------
# DiffAugment and the module
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy", ["color,translation,cutout", "translation,cutout", "cutout", "translation", "color", "cutout,translation", ""]
)
def test_diffaugment_matches_reference_policy(backend_name, device, policy):
    x = make((5, 3, 12, 10), torch.float64, seed=1, device=device)
    got = augment.DiffAugment(x, policy, generator=gen(7, device=device))
    expected = ref.diff_augment(x, policy, generator=gen(7, device=device))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # channels_last input ([B, H, W, C] with channels_first=False) gives the same values.
    nhwc = augment.DiffAugment(x.permute(0, 2, 3, 1), policy, channels_first=False, generator=gen(7, device=device))
    torch.testing.assert_close(nhwc.permute(0, 3, 1, 2), expected, rtol=1e-12, atol=1e-12)


def test_diffaugment_cutout_of_nan_images_matches_reference(backend_name, device):
    # The cutout multiplies by DiffAugment's mask on every backend: NaN pixels in the box stay NaN.
    x = make((3, 3, 8, 8), torch.float32, seed=8, device=device)
    x[:, :, 3:5, 3:5] = float("nan")
    got = augment.DiffAugment(x, "translation,cutout", generator=gen(2, device=device))
    expected = ref.diff_augment(x, "translation,cutout", generator=gen(2, device=device))
    torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True)


def test_diffaugment_gradcheck_and_gradgradcheck(backend_name, device):
    x = make((3, 3, 8, 8), torch.float64, seed=2, device=device).requires_grad_()

    def fn(x):
        return augment.DiffAugment(x, "color,translation,cutout", generator=gen(1, device=device))

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("device", devices())
def test_random_draws_identical_across_backends(device):
    """Shifts, cutout boxes and colour factors come from the generator of the device in the public
    layer: every backend of that device returns the same shifts and images for the same seed."""
    x = make((4, 3, 8, 8), seed=9, device=device)
    results = {}
    for name in ("extension", "triton", "reference") if device == "cuda" else ("extension", "reference"):
        with fastgp.use_backend(name):
            out, shifts = augment.translate(x, copies=3, generator=gen(11, device), return_shifts=True)
            policy = augment.DiffAugment(x, "color,translation,cutout", generator=gen(12, device))
            results[name] = (out, shifts, policy)
    out, shifts, policy = results["reference"]
    for name, (other_out, other_shifts, other_policy) in results.items():
        assert torch.equal(other_shifts, shifts) and torch.equal(other_out, out), name
        torch.testing.assert_close(other_policy, policy, rtol=1e-6, atol=1e-6, msg=name)


def test_cutout_boxes_match_diffaugment_mask():
    x = torch.ones(200, 1, 9, 8)
    boxes = augment.cutout_boxes(x, 0.5, gen(3))
    kept = ref.keep_mask(boxes, 9, 8, x.dtype)
    torch.testing.assert_close(kept * x, ref.rand_cutout(x, 0.5, gen(3)), rtol=0, atol=0)


def test_augment_module(backend_name, device):
    x = make((4, 3, 8, 8), seed=1, device=device)
    module = fastgp.nn.Augment(copies=3, padding="reflect", generator=gen(2, device=device))
    out = module(x)
    assert torch.equal(out, augment.translate(x, copies=3, padding="reflect", generator=gen(2, device=device)))
    module.eval()
    assert module(x) is x
    policy = fastgp.nn.Augment(policy="translation,cutout", generator=gen(3, device=device)).train()
    assert torch.equal(policy(x), augment.DiffAugment(x, "translation,cutout", generator=gen(3, device=device)))
    assert "copies=3" in repr(module)


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------

X = torch.zeros(2, 3, 8, 8)
SHIFTS = torch.zeros(2, 1, 2, dtype=torch.long)

BAD_INPUTS = [
    (lambda X, SHIFTS: augment.translate(torch.zeros(2, 3, 8)), ValueError, r"x must have shape \[B, C, H, W\]"),
    (lambda X, SHIFTS: augment.translate(torch.zeros(1, 2, 3, 8, 8)), ValueError, "rank 4"),
    (lambda X, SHIFTS: augment.translate(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)), TypeError, "x must have a floating dtype"),
    (lambda X, SHIFTS: augment.translate(torch.zeros(2, 3, 8, 8, dtype=torch.int64)), TypeError, "x must have a floating dtype"),
    (lambda X, SHIFTS: augment.translate([[1.0]]), TypeError, "x must be a torch.Tensor"),
    (lambda X, SHIFTS: augment.translate(X, copies=0), ValueError, "copies must be >= 1"),
    (lambda X, SHIFTS: augment.translate(X, copies=2.0), TypeError, "copies must be an int"),
    (lambda X, SHIFTS: augment.translate(X, ratio=1.0), ValueError, r"ratio must lie in \[0, 1\)"),
    (lambda X, SHIFTS: augment.translate(X, ratio=-0.1), ValueError, r"ratio must lie in \[0, 1\)"),
    (lambda X, SHIFTS: augment.translate(X, ratio="0.1"), TypeError, "ratio must be a real number"),
    (lambda X, SHIFTS: augment.translate(X, max_shift=-1), ValueError, "max_shift must be >= 0"),
    (lambda X, SHIFTS: augment.translate(X, max_shift=8), ValueError, "max_shift must be smaller than the image size"),
    (lambda X, SHIFTS: augment.translate(X, max_shift=(1, 8)), ValueError, "max_shift must be smaller than the image size"),
    (lambda X, SHIFTS: augment.translate(X, max_shift=(1, 2, 3)), ValueError, "max_shift must be an int or a"),
    (lambda X, SHIFTS: augment.translate(X, shifts=torch.zeros(2, 1, 3, dtype=torch.long)), ValueError, r"shifts must have shape \[B, K, 2\]"),
    (lambda X, SHIFTS: augment.translate(X, shifts=torch.zeros(3, 1, 2, dtype=torch.long)), ValueError, r"shifts must have shape \[B, K, 2\]"),
    (lambda X, SHIFTS: augment.translate(X, shifts=torch.zeros(2, 2, dtype=torch.long)), ValueError, r"shifts must have shape \[B, K, 2\]"),
    (lambda X, SHIFTS: augment.translate(X, shifts=torch.zeros(2, 1, 2)), TypeError, "shifts must have an integer dtype"),
    (lambda X, SHIFTS: augment.translate(X, shifts=SHIFTS.to("meta")), ValueError, "shifts must be on the device of x"),
    (lambda X, SHIFTS: augment.translate(X, shifts=[[0, 0]]), TypeError, "shifts must be a torch.Tensor"),
    (lambda X, SHIFTS: augment.translate(X, shifts=SHIFTS, copies=2), ValueError, r"copies \(2\) must equal K"),
    (lambda X, SHIFTS: augment.translate(X, shifts=SHIFTS, include_original=True), ValueError, "shifts replays a draw"),
    (lambda X, SHIFTS: augment.translate(X, shifts=torch.full((2, 1, 2), 8), padding="reflect"), ValueError, "reflect padding needs"),
    (lambda X, SHIFTS: augment.translate(X, padding="circular"), ValueError, "padding must be one of"),
    (lambda X, SHIFTS: augment.translate(X, generator=0), TypeError, "generator must be a torch.Generator"),
    (lambda X, SHIFTS: augment.translate(X, include_original=1), TypeError, "include_original must be a bool"),
    (lambda X, SHIFTS: augment.DiffAugment(X, "color,rotate"), ValueError, "policy has an unknown word 'rotate'"),
    (lambda X, SHIFTS: augment.DiffAugment(X, 3), TypeError, "policy must be a str"),
    (lambda X, SHIFTS: augment.DiffAugment(torch.zeros(2, 3, 8, 8, dtype=torch.int32)), TypeError, "x must have a floating dtype"),
    (lambda X, SHIFTS: augment.DiffAugment(torch.zeros(3, 8, 8)), ValueError, "rank 4"),
    (lambda X, SHIFTS: fastgp.nn.Augment(copies=0), ValueError, "copies must be >= 1"),
    (lambda X, SHIFTS: fastgp.nn.Augment(ratio=1.5), ValueError, r"ratio must lie in \[0, 1\)"),
    (lambda X, SHIFTS: fastgp.nn.Augment(padding="wrap"), ValueError, "padding must be one of"),
    (lambda X, SHIFTS: fastgp.nn.Augment(policy="color,flip"), ValueError, "policy word must be one of"),
]


@pytest.mark.parametrize("call,error,match", BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))])
def test_bad_input(backend_name, device, call, error, match):
    with torch.device(device), pytest.raises(error, match=match):
        call(X.to(device), SHIFTS.to(device))
