"""Sample correction (fastgp.correction): nearest distance vs the reference and cdist, replacement, bad input."""

import pytest
import torch

import fastgp
from fastgp import backend
from fastgp.reference import correction as ref
from helpers import DTYPES, assert_nearest, devices, make


def kernels(device):
    return backend.kernels("correction", device)


def tolerance(dtype):
    """Rounding of the |a|² + |b|² − 2a·b expansion in the accumulation dtype (float32 for half
    inputs), on rows of 72 features of magnitude ~1."""
    return dict(rtol=1e-10, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=2e-3)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_nearest_distance_matches_reference(backend_name, device, dtype, layout, chunk):
    """Every backend keeps the contract; the fused ones agree with the reference on the distances.
    Two identical bank rows may get distances that differ by rounding (a BLAS may round the two
    dot products differently), so which of them is returned is not compared."""
    shape = (5, 3, 4, 6) if layout != "strided" else (5, 72)
    samples = make(shape, dtype, layout, seed=1, device=device)
    bank = make((33, *shape[1:]), dtype, layout, seed=2, device=device)
    bank[20] = samples[1]  # an exact match: distance 0 up to rounding (clamped at 0)
    bank[25] = samples[1]  # the same row again: either may be returned
    d2, index = kernels(device).nearest_distance(samples, bank, chunk)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    assert d2.dtype == acc and index.dtype == torch.int64 and d2.device == samples.device
    assert bool((d2 >= 0).all()) and int(index[1]) in (20, 25)
    assert_nearest(samples, bank, d2, index, **tolerance(dtype))
    if backend_name != "reference":
        expected_d2, _ = ref.nearest_distance(samples, bank, chunk)
        torch.testing.assert_close(d2, expected_d2, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("chunk", [2, 1000])
def test_nearest_distance_exact_ties_take_the_lowest_index(backend_name, device, dtype, chunk):
    """Where the arithmetic is exact (small integers: every product and sum is representable, in any
    summation order), equal distances are exact ties and the lowest index wins, across chunks too."""
    gen = torch.Generator().manual_seed(4)
    samples = torch.randint(-3, 4, (4, 2, 3, 5), generator=gen)  # 30 features
    samples[1] = samples[0] + 10
    bank = samples[0].expand(9, 2, 3, 5) + 5  # d² = 750 from samples 0 and 1
    bank[3] = bank[7] = samples[0]  # sample 0: d² = 0, twice (samples[1] is 3000 away)
    bank[5] = bank[1] = samples[1] + 1  # sample 1: d² = 30, twice
    samples, bank = samples.to(device, dtype), bank.to(device, dtype)
    d2, index = kernels(device).nearest_distance(samples, bank, chunk)
    assert int(index[0]) == 3 and float(d2[0]) == 0.0
    assert int(index[1]) == 1 and float(d2[1]) == 30.0
    assert_nearest(samples, bank, d2, index, rtol=0, atol=0)


def test_nearest_distance_nan_propagates(backend_name, device):
    samples = make((3, 4), seed=5, device=device)
    bank = make((10, 4), seed=6, device=device)
    bank[6, 0] = float("nan")
    bank[8, 1] = float("nan")
    samples[2, 3] = float("nan")
    for chunk in (3, 10):
        d2, index = kernels(device).nearest_distance(samples, bank, chunk)
        assert d2.isnan().all() and index[:2].tolist() == [6, 6] and index[2] == 0


def test_public_distance_normalized_and_memory_chunk(backend_name, device):
    gen = torch.Generator().manual_seed(0)
    samples = (torch.rand(4, 3, 8, 8, generator=gen) * 2 - 1).to(device)
    bank = (torch.rand(50, 3, 8, 8, generator=gen) * 2 - 1).to(device)
    distance, index = fastgp.correction.nearest_distance(samples, bank, chunk=16)
    assert_nearest(samples, bank, distance.double() ** 2, index, rtol=2e-4, atol=1e-3)
    normalized, _ = fastgp.correction.nearest_distance(samples, bank, normalized=True, value_range=2.0)
    torch.testing.assert_close(normalized, distance / (3 * 8 * 8) ** 0.5 / 2.0)
    assert bool(((normalized >= 0) & (normalized <= 1)).all())
    assert fastgp.correction.default_chunk(64, 25600) == 4096


def test_public_distance_issue_example_huge_magnitudes(backend_name, device):
    """Elements of 1e20: |a|² = 1e40 overflows float32 (inf − inf = NaN in the expansion), and even
    rescaled the expansion cancels to 0; the true nearest row is 1 at distance 1."""
    samples = torch.tensor([[1e20, 0.0]], device=device)
    bank = torch.tensor([[0.0, 0.0], [1e20, 1.0]], device=device)
    distance, index = fastgp.correction.nearest_distance(samples, bank)
    assert index.tolist() == [1] and distance.tolist() == [1.0]
    normalized, index = fastgp.correction.nearest_distance(samples, bank, normalized=True, value_range=2.0)
    assert index.tolist() == [1]
    torch.testing.assert_close(normalized.cpu(), torch.tensor([1.0 / 2**0.5 / 2.0]))


EXTREME_SCALES = [
    (torch.float32, 1e20), (torch.float32, 1e-20), (torch.float32, 1e-30), (torch.float64, 1e200),
    (torch.float64, 1e-200), (torch.bfloat16, 1e20), (torch.bfloat16, 1e-30), (torch.float16, 1e-3),
]


@pytest.mark.parametrize("dtype,scale", EXTREME_SCALES, ids=str)
@pytest.mark.parametrize("chunk", [3, 1000])
def test_public_distance_extreme_magnitudes(backend_name, device, dtype, scale, chunk):
    """At magnitudes where |a|² over- or underflows the accumulation dtype, the returned row is the
    nearest and its distance right, against float64 distances of the rescaled values (samples near
    distinct bank rows, at distances ~1e-2 of the magnitude: no ties, not within rounding)."""
    gen = torch.Generator().manual_seed(11)
    u = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    v = torch.randn(20, 6, generator=gen, dtype=torch.float64)
    v[[3, 17, 9, 12]] = u + 0.05 * torch.randn(4, 6, generator=gen, dtype=torch.float64)
    samples, bank = (u * scale).to(dtype).to(device), (v * scale).to(dtype).to(device)
    a, b = samples.double().cpu() / scale, bank.double().cpu() / scale  # the stored values, rescaled
    exact = (a[:, None, :] - b[None, :, :]).norm(dim=-1)
    distance, index = fastgp.correction.nearest_distance(samples, bank, chunk=chunk)
    assert index.tolist() == [3, 17, 9, 12] == exact.argmin(1).tolist()
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    assert distance.dtype == acc
    torch.testing.assert_close(distance.cpu(), (exact.min(1).values * scale).to(acc), rtol=1e-5, atol=0)
    normalized, _ = fastgp.correction.nearest_distance(samples, bank, normalized=True, value_range=scale, chunk=chunk)
    torch.testing.assert_close(normalized.cpu(), (exact.min(1).values / 6**0.5).to(acc), rtol=1e-5, atol=0)


def test_public_distance_nan_propagates_and_near_duplicates_are_exact(backend_name, device):
    """NaN inputs still give NaN (index of the first NaN row); a sample 0.1 from a bank row of norm
    ~1e3 (whose expansion |a|² + |b|² − 2a·b ~ 1e6 cancels to its rounding, ~0.1 in float32) gets
    its distance from the difference."""
    samples = make((3, 4), seed=5, device=device) * 1000
    bank = make((10, 4), seed=6, device=device) * 1000
    bank[6, 0] = float("nan")
    distance, index = fastgp.correction.nearest_distance(samples, bank)
    assert distance.isnan().all() and index.tolist() == [6, 6, 6]
    bank[6, 0] = 0.0
    bank[4] = samples[1]
    bank[4, 2] += 0.1
    offset = float((bank[4, 2] - samples[1, 2]).abs())
    distance, index = fastgp.correction.nearest_distance(samples, bank)
    assert int(index[1]) == 4 and float(distance[1]) == pytest.approx(offset, rel=1e-6)


def test_public_distance_ordinary_inputs_take_the_fast_path(backend_name, device, monkeypatch):
    """Ordinary inputs are answered by the kernel's expansion: the exact search never runs."""

    def refuse(rows, bank):
        raise AssertionError("the exact search ran on ordinary inputs")

    monkeypatch.setattr(fastgp.correction, "_exact_nearest_index", refuse)
    samples = make((8, 3, 4, 4), seed=1, device=device)
    bank = make((300, 3, 4, 4), seed=2, device=device)
    for scale in (1.0, 1e-12, 1e12):
        fastgp.correction.nearest_distance(samples * scale, bank * scale, chunk=64)


def test_nearest_distance_not_differentiable(backend_name, device):
    samples = torch.randn(3, 5, requires_grad=True, device=device)
    distance, _ = fastgp.correction.nearest_distance(samples, torch.randn(4, 5, device=device))
    assert not distance.requires_grad


def test_replace_realistic_with_pool(backend_name, device):
    # Seeded, and the bank in [-1, 0] while other samples lie in [0.5, 1]: only the rows made
    # realistic on purpose can fall below the threshold (random data could, by chance).
    gen = torch.Generator().manual_seed(0)
    bank = -torch.rand(20, 3, 4, 4, generator=gen)
    fakes = 0.5 + 0.5 * torch.rand(6, 3, 4, 4, generator=gen)
    fakes[1] = bank[3] + 0.01  # realistic: normalized distance 0.005
    fakes[4] = bank[7]
    pool = 0.5 + 0.5 * torch.rand(5, 3, 4, 4, generator=gen)
    pool[0] = bank[0]  # realistic too: skipped
    bank, fakes, pool = bank.to(device), fakes.to(device), pool.to(device)
    corrected, mask = fastgp.correction.replace_realistic(fakes, bank, threshold=0.1, pool=pool)
    assert mask.tolist() == [False, True, False, False, True, False]
    assert torch.equal(corrected[1], pool[1]) and torch.equal(corrected[4], pool[2])
    assert torch.equal(corrected[~mask], fakes[~mask])


def test_replace_realistic_without_pool_and_gradients(backend_name, device):
    gen = torch.Generator().manual_seed(0)
    bank = -torch.rand(20, 8, generator=gen).to(device)  # far from the fakes in [0.5, 1] (see above)
    fakes = (0.5 + 0.5 * torch.rand(4, 8, generator=gen)).to(device).requires_grad_(True)
    with torch.no_grad():
        fakes[2] = bank[5]
    corrected, mask = fastgp.correction.replace_realistic(fakes, bank)
    assert mask.tolist() == [False, False, True, False]
    assert torch.equal(corrected[2], fakes[0])  # the batch's first non-realistic fake
    corrected.sum().backward()
    assert fakes.grad[:, 0].tolist() == [2.0, 1.0, 0.0, 1.0]


def test_replace_realistic_nothing_eligible(backend_name, device):
    bank = torch.rand(5, 8, device=device)
    corrected, mask = fastgp.correction.replace_realistic(bank[:2].clone(), bank)
    assert not mask.any() and torch.equal(corrected, bank[:2])


@pytest.mark.parametrize("device", devices())
def test_opcheck(device):
    for samples, bank in ((make((4, 3, 4, 5), seed=1, device=device), make((9, 3, 4, 5), seed=2, device=device)),
                          (make((4, 3, 4, 5), layout="channels_last", device=device),
                           make((9, 60), layout="strided", device=device))):
        torch.library.opcheck(torch.ops.fastgp.nearest_distance.default, (samples, bank, 4))


S = torch.randn(3, 4)
K = torch.randn(5, 4)
nearest = fastgp.correction.nearest_distance
replace = fastgp.correction.replace_realistic

BAD = [
    (lambda S, K: nearest(S, torch.randn(0, 4)), ValueError, "bank is empty"),
    (lambda S, K: nearest(S, torch.randn(5, 6)), ValueError, "same number of features per row, got 4"),
    (lambda S, K: nearest(S, K.double()), TypeError, "samples and bank must have the same dtype"),
    (lambda S, K: nearest(S, K, chunk=0), ValueError, "chunk must be >= 1"),
    (lambda S, K: nearest(S, K, value_range=0.0), ValueError, "value_range must be > 0"),
    (lambda S, K: nearest(S, K, normalized=1), TypeError, "normalized must be a bool"),
    (lambda S, K: nearest(S.long(), K), TypeError, "samples must have a floating dtype"),
    (lambda S, K: fastgp.correction.replace_realistic(S, K, threshold=1.5), ValueError, r"threshold must be in \[0, 1\]"),
    (lambda S, K: fastgp.correction.replace_realistic(S, K, threshold=-0.1), ValueError, r"threshold must be in \[0, 1\]"),
    (lambda S, K: fastgp.correction.replace_realistic(S, K, pool=torch.randn(2, 5)), ValueError, "pool must have the per-sample shape"),
    # Issue 16: replace_realistic's errors named `samples` for its fakes and pool.
    (lambda S, K: replace(S.long(), K), TypeError, "^fakes must have a floating dtype"),
    (lambda S, K: replace(S[:0], K), ValueError, r"^fakes has an empty batch \(shape \[0, 4\]\)"),
    (lambda S, K: replace(S, torch.randn(5, 6)), ValueError, "^fakes and bank must have the same number of features per row"),
    (lambda S, K: replace(S, K.double()), TypeError, "^fakes and bank must have the same dtype"),
    (lambda S, K: replace(S, K, pool=torch.randn(0, 4)), ValueError, r"^pool has an empty batch"),
    (lambda S, K: replace(S, K, pool=S.long()), TypeError, "^pool must have a floating dtype"),
    # Zero features: every normalized distance is 0/0 (the extension returned NaN, the reference raised).
    (lambda S, K: nearest(torch.randn(3, 0), torch.randn(5, 0)), ValueError,
     r"^samples and bank have no features per row \(shapes \[3, 0\] and \[5, 0\]\); need at least one$"),
    (lambda S, K: nearest(torch.randn(3, 2, 0), torch.randn(5, 0), normalized=True), ValueError, "no features per row"),
    (lambda S, K: replace(torch.randn(3, 0, 4), torch.randn(5, 0)), ValueError, "^fakes and bank have no features per row"),
]


@pytest.mark.parametrize("call,error,match", BAD)
def test_bad_input(backend_name, device, call, error, match):
    with torch.device(device), pytest.raises(error, match=match):
        call(S.to(device), K.to(device))


def test_raw_op_checks():
    with pytest.raises(RuntimeError, match="bank is empty"):
        torch.ops.fastgp.nearest_distance(S, torch.randn(0, 4), 2)
    with pytest.raises(RuntimeError, match="same number of features per row"):
        torch.ops.fastgp.nearest_distance(S, torch.randn(2, 3), 2)


# ----------------------------------------------------------------------------------------------
# Counting (the measure of reality on the rectangles) and the pluggable measure
# ----------------------------------------------------------------------------------------------


def canvas(n=1, size=32):
    return -torch.ones(n, 1, size, size)


def square(img, y, x, side=8):
    img[..., y:y + side, x:x + side] = 1.0
    return img


def test_count_components_constructed_images():
    imgs = canvas(10)
    square(square(imgs[0], 2, 2), 20, 20)  # two separated squares
    square(square(imgs[1], 2, 2), 2, 10)  # touching along an edge (columns 2-9 and 10-17): one component
    square(square(imgs[2], 2, 2), 6, 6)  # overlapping: one component
    square(square(imgs[3], 2, 2), 10, 10)  # corners meet diagonally only: two (4-connectivity)
    square(square(imgs[4], 2, 2), 20, 20)[..., 30, 0] = 1.0  # plus a stray on pixel: three
    square(square(imgs[5], 2, 2), 20, 20)[..., 5, 5] = -1.0  # a hole inside a square changes nothing
    square(imgs[6], 2, 2)[..., 2:10, 5] = -1.0  # an off column cuts the square in two
    square(square(square(imgs[7], 0, 0), 0, 24), 24, 12)  # three squares at the borders
    imgs[8, 0, ::2, :] = 1.0  # a snake: rows joined at alternating ends, one long component
    for r in range(1, 32, 2):
        imgs[8, 0, r, 31 if r % 4 == 1 else 0] = 1.0
    # imgs[9]: empty
    counts = fastgp.correction.count_components(imgs)
    assert counts.dtype == torch.int64
    assert counts.tolist() == [2, 1, 1, 2, 3, 2, 2, 3, 1, 0]


def test_count_components_threshold_nan_and_noise():
    img = square(square(canvas(), 2, 2), 20, 20)
    gen = torch.Generator().manual_seed(0)
    soft = img * 0.6 + 0.3 * (torch.rand(img.shape, generator=gen) - 0.5)  # |noise| < 0.15 < 0.6: signs kept
    assert fastgp.correction.count_components(soft).tolist() == [2]
    assert fastgp.correction.count_components(soft, threshold=0.9).tolist() == [0]  # nothing above 0.9
    img[0, 0, 3, 3] = float("nan")  # NaN is off: a hole, no new component
    img[0, 0, 30, 30] = float("nan")
    assert fastgp.correction.count_components(img).tolist() == [2]


def test_count_components_matches_scipy_labelling_on_noisy_images():
    ndimage = pytest.importorskip("scipy.ndimage")
    gen = torch.Generator().manual_seed(1)
    from fastgp.train.images import rectangles

    imgs = torch.cat([torch.randn(40, 1, 32, 32, generator=gen),  # white noise, long winding components
                      rectangles(40, 3, seed=2) + 0.9 * torch.randn(40, 1, 32, 32, generator=gen)])
    cross = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    expected = [ndimage.label((im[0] > 0).numpy(), structure=cross)[1] for im in imgs]
    assert fastgp.correction.count_components(imgs).tolist() == expected
    odd = torch.randn(6, 1, 7, 13, generator=gen)  # not square, odd sides
    assert fastgp.correction.count_components(odd).tolist() == [
        ndimage.label((im[0] > 0).numpy(), structure=cross)[1] for im in odd]


def test_count_components_training_rectangles_and_siblings():
    from fastgp.train.images import rectangles, sibling_rectangles

    for n_rect in (1, 2, 4):
        assert fastgp.correction.count_components(rectangles(200, n_rect, seed=3)).tolist() == [n_rect] * 200
        assert fastgp.correction.count_components(sibling_rectangles(200, n_rect, seed=3)).tolist() == [n_rect] * 200


def two_squares(n):
    return torch.cat([square(square(canvas(), 2, 2), 20, 20)] * n)


def test_replace_realistic_count_measure_with_pool(backend_name, device):
    fakes = canvas(4)
    square(square(fakes[0], 2, 2), 20, 20)  # correct count: realistic
    square(fakes[1], 2, 2)  # one square
    square(square(fakes[2], 2, 2), 2, 10)  # touching: one component, not realistic
    square(square(fakes[3], 0, 0), 22, 22)  # correct count: realistic
    pool = torch.cat([two_squares(1), square(canvas(), 5, 5), square(square(square(canvas(), 0, 0), 0, 24), 24, 12)])
    fakes, pool = fakes.to(device), pool.to(device)
    corrected, mask = fastgp.correction.replace_realistic(fakes, pool=pool, measure="count", count=2)
    assert mask.tolist() == [True, False, False, True]
    # replacements: the pool's samples with another count (rows 1 and 2), in order
    assert torch.equal(corrected[0], pool[1]) and torch.equal(corrected[3], pool[2])
    assert torch.equal(corrected[1:3], fakes[1:3])
    # without a pool: the batch's own first non-realistic fake, cycled
    corrected, mask = fastgp.correction.replace_realistic(fakes, measure="count", count=2)
    assert torch.equal(corrected[0], fakes[1]) and torch.equal(corrected[3], fakes[2])
    # count 1: the touching pair and the single square are the realistic ones now
    _, mask = fastgp.correction.replace_realistic(fakes, measure="count", count=1)
    assert mask.tolist() == [False, True, True, False]


def test_replace_realistic_callable_measure_and_gradients(backend_name, device):
    fakes = torch.randn(5, 3, device=device, requires_grad=True)
    pool = torch.randn(3, 3, device=device)
    with torch.no_grad():
        pool[0] = 5.0  # "realistic" by the measure below: skipped
    measure = lambda x: x.sum(1) > 4.0  # noqa: E731
    with torch.no_grad():
        fakes[2] = 3.0
    corrected, mask = fastgp.correction.replace_realistic(fakes, pool=pool, measure=measure)
    assert mask.tolist() == [False, False, True, False, False]
    assert torch.equal(corrected[2], pool[1])
    corrected.sum().backward()
    assert fakes.grad[:, 0].tolist() == [1.0, 1.0, 0.0, 1.0, 1.0]


IMG = two_squares(2)
MEASURE_BAD = [
    (lambda: replace(IMG, measure=3), TypeError, "^measure must be 'nearest', 'count' or a callable, got int"),
    (lambda: replace(IMG, measure="counting", count=2), ValueError, "^measure must be one of 'nearest', 'count'"),
    (lambda: replace(IMG, measure="count"), ValueError, "^count is required with measure='count'"),
    (lambda: replace(IMG, measure="count", count=-1), ValueError, "^count must be >= 0"),
    (lambda: replace(IMG, measure="count", count=2.0), TypeError, "^count must be an int"),
    (lambda: replace(IMG, K, measure="count", count=2), ValueError, "^bank applies to measure='nearest', not to measure='count'"),
    (lambda: replace(IMG, measure="count", count=2, threshold=0.1), ValueError, "^threshold applies to measure='nearest'"),
    (lambda: replace(IMG, measure="count", count=2, chunk=4), ValueError, "^chunk applies to measure='nearest'"),
    (lambda: replace(IMG, K, count=2), ValueError, "^count applies to measure='count', not to measure='nearest'"),
    (lambda: replace(IMG), ValueError, "^bank is required with measure='nearest'"),
    (lambda: replace(IMG, K, measure=lambda x: x.sum() > 0), ValueError, "^bank applies to measure='nearest', not to measure=a callable"),
    (lambda: replace(S, measure="count", count=2), ValueError, r"^fakes must be single-channel images \[B, 1, H, W\]"),
    (lambda: replace(IMG, pool=S, measure="count", count=2), ValueError, "^pool must have the per-sample shape"),
    (lambda: replace(IMG, measure=lambda x: x.flatten(1).sum(1)), TypeError, "^measure must return a bool tensor"),
    (lambda: replace(IMG, measure=lambda x: [True, False]), TypeError, "^measure must return a bool tensor .* got list"),
    (lambda: replace(IMG, measure=lambda x: torch.ones(3, dtype=torch.bool)), ValueError,
     r"^measure must return one bool per sample of fakes \(\[2\]"),
    (lambda: fastgp.correction.count_components(IMG.long()), TypeError, "^images must have a floating dtype"),
    (lambda: fastgp.correction.count_components(IMG[:, 0]), ValueError, r"^images must have a batch dimension and at least 4"),
    (lambda: fastgp.correction.count_components(IMG.repeat(1, 3, 1, 1)), ValueError, "^images must be single-channel"),
    (lambda: fastgp.correction.count_components(IMG, threshold=True), TypeError, "^threshold must be a real number"),
    (lambda: fastgp.correction.count_components([IMG]), TypeError, "^images must be a torch.Tensor"),
]


@pytest.mark.parametrize("call,error,match", MEASURE_BAD)
def test_measure_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
