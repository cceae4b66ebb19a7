"""fastgp.top_k on the Triton backend (the FAR selection kernel on negated scores) against torch.topk."""

import os

import pytest
import torch

import fastgp

DEVICE = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


@pytest.mark.parametrize("m", [5, 130])
def test_top_k_on_triton_matches_torch_topk(m):
    scores = (torch.randperm(m, generator=torch.Generator().manual_seed(m)).float() - m / 2).to(DEVICE)
    scores.requires_grad_(True)
    with fastgp.use_backend("triton"):
        kept, indices = fastgp.top_k(scores, m // 2)
    expected = torch.topk(scores.detach(), m // 2)
    assert torch.equal(indices, expected.indices) and torch.equal(kept.detach(), expected.values)
    kept.sum().backward()
    assert torch.equal(scores.grad, torch.zeros_like(scores).index_fill_(0, expected.indices, 1.0))
