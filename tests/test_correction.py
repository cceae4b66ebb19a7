"""Sample correction (fastgp.correction): nearest distance vs the reference and cdist, replacement, bad input."""

import pytest
import torch

import fastgp
from fastgp import backend
from fastgp.reference import correction as ref
from helpers import DTYPES, make


def kernels():
    return backend.kernels("correction", "cpu")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_nearest_distance_matches_reference(backend_name, dtype, layout, chunk):
    shape = (5, 3, 4, 6) if layout != "strided" else (5, 72)
    samples = make(shape, dtype, layout, seed=1)
    bank = make((33, *shape[1:]), dtype, layout, seed=2)
    bank[20] = samples[1]  # an exact match: distance 0 (clamped), index 20
    bank[25] = samples[1]  # a tie: the lower index wins
    d2, index = kernels().nearest_distance(samples, bank, chunk)
    expected_d2, expected_index = ref.nearest_distance(samples, bank, chunk)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    assert d2.dtype == acc and index.dtype == torch.int64
    assert torch.equal(index, expected_index) and index[1] == 20
    tol = dict(rtol=1e-10, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(d2, expected_d2, **tol)
    assert bool((d2 >= 0).all())
    # Against torch.cdist in float64, on squared distances (a square root would amplify the
    # cancellation error of the expansion near 0, which cdist's matrix-product path shares).
    exact = torch.cdist(samples.double().flatten(1), bank.double().flatten(1)).min(1)
    torch.testing.assert_close(d2.double(), exact.values**2, rtol=1e-4, atol=2e-3)


def test_nearest_distance_nan_propagates(backend_name):
    samples = torch.randn(3, 4)
    bank = torch.randn(10, 4)
    bank[6, 0] = float("nan")
    bank[8, 1] = float("nan")
    samples[2, 3] = float("nan")
    for chunk in (3, 10):
        d2, index = kernels().nearest_distance(samples, bank, chunk)
        assert d2.isnan().all() and index[:2].tolist() == [6, 6] and index[2] == 0


def test_public_distance_normalized_and_memory_chunk(backend_name):
    torch.manual_seed(0)  # fixed data: the argmin comparison must not meet a near-tie by chance
    samples = torch.rand(4, 3, 8, 8) * 2 - 1
    bank = torch.rand(50, 3, 8, 8) * 2 - 1
    distance, index = fastgp.correction.nearest_distance(samples, bank, chunk=16)
    exact = torch.cdist(samples.flatten(1).double(), bank.flatten(1).double()).min(1)
    torch.testing.assert_close(distance.double(), exact.values, rtol=1e-4, atol=1e-4)
    assert torch.equal(index, exact.indices)
    normalized, _ = fastgp.correction.nearest_distance(samples, bank, normalized=True, value_range=2.0)
    torch.testing.assert_close(normalized, distance / (3 * 8 * 8) ** 0.5 / 2.0)
    assert bool(((normalized >= 0) & (normalized <= 1)).all())
    assert fastgp.correction.default_chunk(64, 25600) == 4096


def test_nearest_distance_not_differentiable(backend_name):
    samples = torch.randn(3, 5, requires_grad=True)
    distance, _ = fastgp.correction.nearest_distance(samples, torch.randn(4, 5))
    assert not distance.requires_grad


def test_replace_realistic_with_pool(backend_name):
    # Seeded, and the bank in [-1, 0] while other samples lie in [0.5, 1]: only the rows made
    # realistic on purpose can fall below the threshold (random data could, by chance).
    gen = torch.Generator().manual_seed(0)
    bank = -torch.rand(20, 3, 4, 4, generator=gen)
    fakes = 0.5 + 0.5 * torch.rand(6, 3, 4, 4, generator=gen)
    fakes[1] = bank[3] + 0.01  # realistic: normalized distance 0.005
    fakes[4] = bank[7]
    pool = 0.5 + 0.5 * torch.rand(5, 3, 4, 4, generator=gen)
    pool[0] = bank[0]  # realistic too: skipped
    corrected, mask = fastgp.correction.replace_realistic(fakes, bank, threshold=0.1, pool=pool)
    assert mask.tolist() == [False, True, False, False, True, False]
    assert torch.equal(corrected[1], pool[1]) and torch.equal(corrected[4], pool[2])
    assert torch.equal(corrected[~mask], fakes[~mask])


def test_replace_realistic_without_pool_and_gradients(backend_name):
    gen = torch.Generator().manual_seed(0)
    bank = -torch.rand(20, 8, generator=gen)  # far from the fakes in [0.5, 1] (see above)
    fakes = (0.5 + 0.5 * torch.rand(4, 8, generator=gen)).requires_grad_(True)
    with torch.no_grad():
        fakes[2] = bank[5]
    corrected, mask = fastgp.correction.replace_realistic(fakes, bank)
    assert mask.tolist() == [False, False, True, False]
    assert torch.equal(corrected[2], fakes[0])  # the batch's first non-realistic fake
    corrected.sum().backward()
    assert fakes.grad[:, 0].tolist() == [2.0, 1.0, 0.0, 1.0]


def test_replace_realistic_nothing_eligible(backend_name):
    bank = torch.rand(5, 8)
    corrected, mask = fastgp.correction.replace_realistic(bank[:2].clone(), bank)
    assert not mask.any() and torch.equal(corrected, bank[:2])


def test_opcheck():
    for samples, bank in ((make((4, 3, 4, 5), seed=1), make((9, 3, 4, 5), seed=2)),
                          (make((4, 3, 4, 5), layout="channels_last"), make((9, 60), layout="strided"))):
        torch.library.opcheck(torch.ops.fastgp.nearest_distance.default, (samples, bank, 4))


S = torch.randn(3, 4)
K = torch.randn(5, 4)
nearest = fastgp.correction.nearest_distance
replace = fastgp.correction.replace_realistic

BAD = [
    (lambda: nearest(S, torch.randn(0, 4)), ValueError, "bank is empty"),
    (lambda: nearest(S, torch.randn(5, 6)), ValueError, "same number of features per row, got 4"),
    (lambda: nearest(S, K.double()), TypeError, "samples and bank must have the same dtype"),
    (lambda: nearest(S, K, chunk=0), ValueError, "chunk must be >= 1"),
    (lambda: nearest(S, K, value_range=0.0), ValueError, "value_range must be > 0"),
    (lambda: nearest(S, K, normalized=1), TypeError, "normalized must be a bool"),
    (lambda: nearest(S.long(), K), TypeError, "samples must have a floating dtype"),
    (lambda: fastgp.correction.replace_realistic(S, K, threshold=1.5), ValueError, r"threshold must be in \[0, 1\]"),
    (lambda: fastgp.correction.replace_realistic(S, K, threshold=-0.1), ValueError, r"threshold must be in \[0, 1\]"),
    (lambda: fastgp.correction.replace_realistic(S, K, pool=torch.randn(2, 5)), ValueError, "pool must have the per-sample shape"),
    # Issue 16: replace_realistic's errors named `samples` for its fakes and pool.
    (lambda: replace(S.long(), K), TypeError, "^fakes must have a floating dtype"),
    (lambda: replace(S[:0], K), ValueError, r"^fakes has an empty batch \(shape \[0, 4\]\)"),
    (lambda: replace(S, torch.randn(5, 6)), ValueError, "^fakes and bank must have the same number of features per row"),
    (lambda: replace(S, K.double()), TypeError, "^fakes and bank must have the same dtype"),
    (lambda: replace(S, K, pool=torch.randn(0, 4)), ValueError, r"^pool has an empty batch"),
    (lambda: replace(S, K, pool=S.long()), TypeError, "^pool must have a floating dtype"),
    # Zero features: every normalized distance is 0/0 (the extension returned NaN, the reference raised).
    (lambda: nearest(torch.randn(3, 0), torch.randn(5, 0)), ValueError,
     r"^samples and bank have no features per row \(shapes \[3, 0\] and \[5, 0\]\); need at least one$"),
    (lambda: nearest(torch.randn(3, 2, 0), torch.randn(5, 0), normalized=True), ValueError, "no features per row"),
    (lambda: replace(torch.randn(3, 0, 4), torch.randn(5, 0)), ValueError, "^fakes and bank have no features per row"),
]


@pytest.mark.parametrize("call,error,match", BAD)
def test_bad_input(backend_name, call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_raw_op_checks():
    with pytest.raises(RuntimeError, match="bank is empty"):
        torch.ops.fastgp.nearest_distance(S, torch.randn(0, 4), 2)
    with pytest.raises(RuntimeError, match="same number of features per row"):
        torch.ops.fastgp.nearest_distance(S, torch.randn(2, 3), 2)
