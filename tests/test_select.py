"""Fake-As-Real selection (fastgp.select): raw ops vs the reference, autograd, FakeAsReal, bad input."""

import pytest
import torch

import fastgp
from fastgp import backend
from fastgp.reference import select as ref
from helpers import DTYPES, devices, make


def kernels(device):
    return backend.kernels("select", device)


def logits_with_ties(m, dtype=torch.float32, seed=0, device="cpu"):
    """Logits with repeated values, NaN and infinities, so ordering rules are exercised."""
    gen = torch.Generator().manual_seed(seed)
    values = torch.randint(-4, 5, (m,), generator=gen).to(torch.float64) / 2
    if m > 6:
        values[1] = float("nan")
        values[m // 2] = float("nan")
        values[2] = float("-inf")
        values[3] = float("inf")
        values[4] = -0.0
        values[5] = 0.0
    return values.to(device, dtype)


def order_oracle(logits) -> list:
    """The selection order by its definition: ascending logit, NaN last, ties by index (-0.0 == 0.0)."""
    values = logits.double().cpu().tolist()
    return sorted(range(len(values)), key=lambda i: (values[i] != values[i], 0.0 if values[i] != values[i] else values[i], i))


LAYOUTS = [("contiguous", (9, 3, 4, 5)), ("channels_last", (9, 3, 4, 5)), ("strided", (9, 7)), ("contiguous", (9,)),
           ("contiguous", (40, 2, 3))]


# ------------------------------------------------------------------------------------------
# Raw ops
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout,shape", LAYOUTS)
def test_far_select_matches_reference(kernel_backend, device, dtype, layout, shape):
    candidates = make(shape, dtype, layout, seed=1, device=device)
    logits = logits_with_ties(shape[0], dtype, device=device)
    for k in (1, 3, shape[0]):
        selected, indices = kernels(device).far_select(logits, candidates, k)
        expected, expected_indices = ref.far_select(logits, candidates, k)
        assert torch.equal(indices, expected_indices)
        assert torch.equal(selected, expected) and selected.dtype == dtype
        assert torch.equal(selected, candidates[indices])
        if layout == "channels_last":
            assert selected.is_contiguous(memory_format=torch.channels_last)


def test_far_select_order_nan_last_ties_by_index(backend_name, device):
    logits = torch.tensor([1.0, float("nan"), 0.5, 1.0, float("-inf"), float("nan"), 0.5, -0.0, 0.0], device=device)
    _, indices = kernels(device).far_select(logits, torch.randn(9, 2, device=device), 9)
    # -inf, then the 0s (-0.0 == 0.0, by index), the 0.5s by index, the 1s by index, NaN last by index.
    assert indices.tolist() == [4, 7, 8, 2, 6, 0, 3, 1, 5]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m", [9, 40])
def test_far_select_matches_definition(backend_name, device, dtype, m):
    candidates = make((m, 2, 3), dtype, seed=2, device=device)
    logits = logits_with_ties(m, dtype, seed=3, device=device)
    order = order_oracle(logits)
    for k in (1, 4, m):
        selected, indices = kernels(device).far_select(logits, candidates, k)
        assert indices.tolist() == order[:k]
        assert torch.equal(selected, candidates[order[:k]])
        real = make((3, 2, 3), dtype, seed=4, device=device)
        batch, batch_indices = kernels(device).far_batch(real, logits, candidates, k)
        assert batch_indices.tolist() == order[:k]
        assert torch.equal(batch, torch.cat([real, candidates[order[:k]]]))


def test_far_select_agrees_with_topk_without_ties(backend_name, device):
    logits = torch.randn(256, generator=torch.Generator().manual_seed(0)).to(device)
    candidates = torch.randn(256, 3, 8, 8, device=device)
    _, indices = kernels(device).far_select(logits, candidates, 32)
    assert torch.equal(indices, torch.topk(logits, 32, largest=False).indices)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_far_batch_matches_reference(kernel_backend, device, dtype, layout):
    candidates = make((12, 3, 4, 5), dtype, layout, seed=1, device=device)
    logits = logits_with_ties(12, dtype, device=device)
    for real in (make((5, 3, 4, 5), dtype, layout, seed=2, device=device),
                 make((5, 3, 4, 5), dtype, "contiguous", seed=2, device=device), make((0, 3, 4, 5), dtype, seed=2, device=device)):
        batch, indices = kernels(device).far_batch(real, logits, candidates, 4)
        expected, expected_indices = ref.far_batch(real, logits, candidates, 4)
        assert torch.equal(indices, expected_indices) and torch.equal(batch, expected)
        assert torch.equal(batch, torch.cat([real, candidates[indices]]))


def _op_samples(device):
    for layout, shape in LAYOUTS[:3]:
        candidates = make(shape, layout=layout, seed=1, device=device)
        logits = logits_with_ties(shape[0], device=device)
        yield "far_select", (logits, candidates, 3)
        yield "far_batch", (make((2, *shape[1:]), layout=layout, seed=2, device=device), logits, candidates, 3)
    permuted = make((5, 9, 3), seed=4, device=device).permute(1, 0, 2)
    yield "far_select", (make((9,), seed=6, device=device), permuted, 2)
    yield "far_batch", (make((2, 3, 4, 5), seed=5, device=device), make((9,), seed=7, device=device),
                        make((9, 3, 4, 5), layout="channels_last", device=device), 2)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("case", range(len(list(_op_samples("cpu")))))
def test_opcheck(device, case):
    name, args = list(_op_samples(device))[case]
    torch.library.opcheck(getattr(torch.ops.fastgp, name).default, args)


@pytest.mark.parametrize("device", devices())
def test_torch_compile_fullgraph(device):
    def step(real, logits, candidates):
        batch, indices = torch.ops.fastgp.far_batch(real, logits, candidates, 4)
        return batch * 2, indices

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    args = (make((4, 3, 8, 8), seed=1, device=device), make((16,), seed=2, device=device), make((16, 3, 8, 8), seed=3, device=device))
    for got, expected in zip(compiled(*args), step(*args)):
        torch.testing.assert_close(got, expected)


# ------------------------------------------------------------------------------------------
# Public API and autograd
# ------------------------------------------------------------------------------------------


def test_far_select_api_accepts_m1_logits_and_detaches_by_default(backend_name, device):
    candidates = torch.randn(10, 3, 4, 4, requires_grad=True, device=device)
    logits = torch.randn(10, 1, requires_grad=True, device=device)
    selected, indices = fastgp.select.far_select(logits, candidates, 4)
    assert not selected.requires_grad and not indices.requires_grad
    assert indices.tolist() == order_oracle(logits.detach().flatten())[:4]
    selected, _ = fastgp.select.far_select(logits, candidates, 4, detach=False)
    assert selected.requires_grad
    selected.sum().backward()
    assert logits.grad is None  # the selection is not differentiable
    expected = torch.zeros(10, device=device)
    expected[indices] = 1
    torch.testing.assert_close(candidates.grad.flatten(1).mean(1), expected)


def test_far_select_gradcheck_and_gradgradcheck(backend_name, device):
    candidates = torch.randn(7, 2, 3, dtype=torch.float64, requires_grad=True, device=device)
    logits = torch.randn(7, dtype=torch.float64, device=device)

    def fn(c):
        return fastgp.select.far_select(logits, c, 3, detach=False)[0]

    assert torch.autograd.gradcheck(fn, (candidates,))
    assert torch.autograd.gradgradcheck(fn, (candidates,))


def test_far_batch_gradcheck_and_gradgradcheck(backend_name, device):
    real = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True, device=device)
    candidates = torch.randn(7, 2, 3, dtype=torch.float64, requires_grad=True, device=device)
    logits = torch.randn(7, dtype=torch.float64, device=device)

    def fn(r, c):
        return fastgp.select.far_batch(r, logits, c, 3, detach=False)[0] ** 2

    assert torch.autograd.gradcheck(fn, (real, candidates))
    assert torch.autograd.gradgradcheck(fn, (real, candidates))


def test_r1_through_far_selection_double_backward(backend_name, device):
    """R1 on a batch holding selected candidates: the penalty's gradient reaches the candidates."""
    candidates = torch.randn(8, 5, dtype=torch.float64, requires_grad=True, device=device)
    weight = torch.randn(5, dtype=torch.float64, device=device)
    logits = torch.randn(8, dtype=torch.float64, device=device)

    def penalty(c):
        selected, _ = fastgp.select.far_select(logits, c, 3, detach=False)
        out = torch.tanh(selected @ weight)  # a toy D of the selected rows
        (g,) = torch.autograd.grad(out.sum(), selected, create_graph=True)
        return (g**2).sum()

    value = penalty(candidates)
    (grad,) = torch.autograd.grad(value, candidates)
    c = candidates.detach().clone().requires_grad_(True)
    idx = order_oracle(logits)[:3]
    s = c[idx]
    (g,) = torch.autograd.grad(torch.tanh(s @ weight).sum(), s, create_graph=True)
    (expected,) = torch.autograd.grad((g**2).sum(), c)
    torch.testing.assert_close(grad, expected)


def _toy_discriminator(device):
    torch.manual_seed(0)
    D = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 8), torch.nn.Softplus(), torch.nn.Linear(8, 1))
    return D.to(device)


def test_fake_as_real_loss_matches_hand_written(backend_name, device):
    D = _toy_discriminator(device)
    real, fake, candidates = (make(shape, seed=seed, device=device) for seed, shape in
                              ((11, (8, 3, 4, 4)), (12, (8, 3, 4, 4)), (13, (20, 3, 4, 4))))
    far = fastgp.select.FakeAsReal(n_far=3, n_candidates=20, weight=10.0)
    loss = far(D, real, fake, candidates)
    loss.backward()
    grads = [p.grad.clone() for p in D.parameters()]
    D.zero_grad()

    # The method written by hand.
    with torch.no_grad():
        idx = torch.topk(D(candidates).flatten(), 3, largest=False).indices
    x = torch.cat([real[:5], candidates[idx]]).requires_grad_(True)
    r = D(x)
    f = D(fake)
    (g,) = torch.autograd.grad(r.sum(), x, create_graph=True)
    expected = torch.nn.functional.softplus(-r).mean() + torch.nn.functional.softplus(f).mean()
    expected = expected + 10.0 * g.flatten(1).pow(2).sum(1).mean()
    expected.backward()
    torch.testing.assert_close(loss, expected)
    for got, want in zip(grads, (p.grad for p in D.parameters())):
        torch.testing.assert_close(got, want)


def test_fake_as_real_mixed_batch(backend_name, device):
    far = fastgp.select.FakeAsReal(n_far=2, n_candidates=6)
    real, candidates = torch.randn(4, 3, device=device), torch.randn(6, 3, device=device)
    logits = torch.tensor([3.0, -1.0, 2.0, -5.0, 0.0, 1.0], device=device)
    batch, indices = far.mixed_batch(real, logits, candidates)
    assert indices.tolist() == [3, 1]
    assert torch.equal(batch, torch.cat([real[:2], candidates[[3, 1]]]))


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------

C = torch.randn(6, 3)
L = torch.randn(6)
far_select = fastgp.select.far_select

BAD = [
    (lambda L, C: far_select(L, C, 0), ValueError, r"k must be in \[1, M\] with M = 6 candidates, got 0"),
    (lambda L, C: far_select(L, C, 7), ValueError, r"k must be in \[1, M\] with M = 6 candidates, got 7"),
    (lambda L, C: far_select(L, C, 2.0), TypeError, "k must be an int"),
    (lambda L, C: far_select(torch.randn(5), C, 2), ValueError, r"logits must have shape \[M\] or \[M, 1\] with M = 6"),
    (lambda L, C: far_select(torch.randn(6, 2), C, 2), ValueError, r"logits must have shape \[M\] or \[M, 1\]"),
    (lambda L, C: far_select(torch.randn(2, 3), C, 2), ValueError, r"logits must have shape \[M\] or \[M, 1\]"),
    (lambda L, C: far_select(torch.arange(6), C, 2), TypeError, "logits must have a floating dtype"),
    (lambda L, C: far_select([0.0] * 6, C, 2), TypeError, "logits must be a torch.Tensor"),
    (lambda L, C: far_select(L, C.long(), 2), TypeError, "candidates must have a floating dtype"),
    (lambda L, C: far_select(L, torch.randn(0, 3), 1), ValueError, "candidates has an empty batch"),
    (lambda L, C: far_select(L, C, 2, detach=1), TypeError, "detach must be a bool"),
    (lambda L, C: fastgp.select.far_batch(torch.randn(2, 4), L, C, 2), ValueError, "real must have the per-sample shape"),
    (lambda L, C: fastgp.select.far_batch(torch.randn(2, 3).double(), L, C, 2), TypeError, "real and candidates must have the same dtype"),
    (lambda L, C: fastgp.select.FakeAsReal(5, 4), ValueError, r"n_far must be <= n_candidates \(4\)"),
    (lambda L, C: fastgp.select.FakeAsReal(0, 4), ValueError, "n_far must be >= 1"),
    (lambda L, C: fastgp.select.FakeAsReal(2, 6).mixed_batch(torch.randn(4, 3), L, torch.randn(5, 3)), ValueError,
     "candidates must hold n_candidates = 6 samples, got 5"),
    (lambda L, C: fastgp.select.FakeAsReal(2, 6).mixed_batch(torch.randn(1, 3), L, C), ValueError,
     "real must hold at least n_far = 2 samples"),
]


@pytest.mark.parametrize("call,error,match", BAD)
def test_bad_input(backend_name, device, call, error, match):
    with torch.device(device), pytest.raises(error, match=match):
        call(L.to(device), C.to(device))


@pytest.mark.parametrize(
    "args,match",
    [((L, C, 0), r"k must be in \[1, M\]"), ((torch.randn(5), C, 1), r"logits must have shape \[M\]"),
     ((L.long(), C, 1), "logits must be float16"), ((L, C.long(), 1), "candidates must be float16")],
)
def test_raw_op_checks(args, match):
    with pytest.raises(RuntimeError, match=match):
        torch.ops.fastgp.far_select(*args)
