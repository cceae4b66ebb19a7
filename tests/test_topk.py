"""fastgp.top_k / fastgp.TopKSchedule (Sinha et al., NeurIPS 2020), on every backend of the FAR selection."""

import pytest
import torch

import fastgp


@pytest.mark.parametrize("shape", [(1,), (7,), (64, 1), (300,)])
def test_same_set_as_torch_topk_on_distinct_scores(backend_case, device, shape):
    n = shape[0]
    scores = (torch.randperm(n, generator=torch.Generator().manual_seed(n)).float() / 3 - 5).reshape(shape).to(device)
    for k in sorted({1, max(1, n // 2), n}):
        kept, indices = fastgp.top_k(scores, k)
        expected = torch.topk(scores.reshape(-1), k)
        assert indices.dtype == torch.int64 and indices.shape == (k,)
        # Descending order, so the same sequence as torch.topk's (distinct scores: no tie to order).
        assert torch.equal(indices, expected.indices) and torch.equal(kept, expected.values)


def test_ties_by_ascending_index_and_nan_last(backend_case, device):
    scores = torch.tensor([1.0, 3.0, float("nan"), 3.0, 0.0, 1.0], device=device)
    _, indices = fastgp.top_k(scores, 5)
    assert indices.tolist() == [1, 3, 0, 5, 4]
    _, indices = fastgp.top_k(scores, 6)
    assert indices.tolist()[-1] == 2


def test_gradient_flows_only_to_the_kept_samples(backend_case, device):
    scores = torch.tensor([[0.5], [-1.0], [2.0], [0.0], [1.5]], device=device, dtype=torch.float64, requires_grad=True)
    kept, indices = fastgp.top_k(scores, 3)
    (kept * torch.tensor([1.0, 2.0, 3.0], device=device, dtype=torch.float64)).sum().backward()
    assert indices.tolist() == [2, 4, 0]
    assert scores.grad.flatten().tolist() == [3.0, 0.0, 1.0, 0.0, 2.0]


def test_generator_loss_over_the_top_k_matches_the_plain_formula():
    # The authors' G step: loss over torch.topk of D's outputs; here through a toy G and D.
    torch.manual_seed(0)
    G, D = torch.nn.Linear(3, 4).double(), torch.nn.Linear(4, 1).double()
    z = torch.randn(10, 3, dtype=torch.float64)
    logits = D(G(z))
    ours = torch.nn.functional.softplus(-fastgp.top_k(logits, 6)[0]).mean()
    grads = torch.autograd.grad(ours, list(G.parameters()))
    theirs = torch.nn.functional.softplus(-torch.topk(D(G(z)), 6, dim=0).values).mean()
    for a, b in zip(grads, torch.autograd.grad(theirs, list(G.parameters()))):
        torch.testing.assert_close(a, b)


def test_gradcheck():
    scores = torch.tensor([0.3, -1.2, 2.5, 0.9], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: fastgp.top_k(s, 2)[0], (scores,))


@pytest.mark.parametrize("gamma,nu", [(0.99, 0.5), (0.99, 0.75), (0.9, 0.2), (1.0, 0.5)])
def test_schedule_is_the_papers_formula(gamma, nu):
    schedule = fastgp.TopKSchedule(gamma, nu)
    for batch in (1, 7, 64, 256):
        for epoch in (0, 1, 5, 30, 69, 70, 200):
            assert schedule.k(batch, epoch) == max(1, int(max(gamma**epoch, nu) * batch))
    assert schedule.k(64, 0) == 64  # k starts at the whole batch
    assert fastgp.TopKSchedule().k(64, 10_000) == 32  # and ends at ν·B


def test_bad_input():
    good = torch.randn(5)
    with pytest.raises(TypeError, match="scores"):
        fastgp.top_k([1.0, 2.0], 1)
    with pytest.raises(TypeError, match="scores"):
        fastgp.top_k(torch.arange(5), 1)
    with pytest.raises(ValueError, match=r"scores must have shape \[B\] or \[B, 1\]"):
        fastgp.top_k(torch.randn(5, 2), 1)
    with pytest.raises(ValueError, match=r"scores must have shape"):
        fastgp.top_k(torch.randn(0), 1)
    with pytest.raises(ValueError, match=r"k must be in \[1, M\]"):
        fastgp.top_k(good, 0)
    with pytest.raises(ValueError, match=r"k must be in \[1, M\]"):
        fastgp.top_k(good, 6)
    with pytest.raises(TypeError, match="k must be an int"):
        fastgp.top_k(good, 2.0)
    for kwargs, message in (({"gamma": 0.0}, "gamma must be in"), ({"gamma": 1.5}, "gamma must be in"),
                            ({"min_fraction": 0.0}, "min_fraction must be in"),
                            ({"min_fraction": 2.0}, "min_fraction must be in")):
        with pytest.raises(ValueError, match=message):
            fastgp.TopKSchedule(**kwargs)
    with pytest.raises(TypeError, match="gamma"):
        fastgp.TopKSchedule(gamma="0.9")
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        fastgp.TopKSchedule().k(8, -1)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        fastgp.TopKSchedule().k(0, 1)
