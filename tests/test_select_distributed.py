"""Global Fake-As-Real selection across ranks (fastgp.select.far_select_global), with two gloo processes."""

import pytest
import torch
import torch.distributed as dist

import fastgp
from helpers import run_gloo_ranks

pytestmark = pytest.mark.slow  # spawns gloo processes (the fast tier, -m "not slow", skips them)

WORLD = 2
M, K = 12, 3


def _inputs(rank):
    gen = torch.Generator().manual_seed(100 + rank)
    logits = torch.randint(-3, 4, (M,), generator=gen).float()  # many ties, also across ranks
    logits[rank] = float("nan")
    candidates = torch.randn(M, 2, 3, generator=gen)
    return logits, candidates


def _select(rank):
    logits, candidates = _inputs(rank)
    selected, indices = fastgp.select.far_select_global(logits, candidates, K)
    real = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(rank))
    far = fastgp.select.FakeAsReal(K, M, global_selection=True)
    batch, batch_indices = far.mixed_batch(real, logits, candidates)
    assert torch.equal(batch, torch.cat([real[: 5 - K], selected])) and torch.equal(batch_indices, indices)
    return {"selected": selected, "indices": indices}


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_global_selection_two_gloo_ranks():
    results = run_gloo_ranks(_select, WORLD)
    all_logits = torch.cat([_inputs(r)[0] for r in range(WORLD)])
    all_candidates = torch.cat([_inputs(r)[1] for r in range(WORLD)])
    order = torch.sort(all_logits, stable=True).indices[: WORLD * K]
    for rank, result in enumerate(results):
        share = order[rank * K : (rank + 1) * K]
        assert torch.equal(result["indices"], share)
        assert torch.equal(result["selected"], all_candidates[share])


def test_global_selection_needs_process_group():
    with pytest.raises(ValueError, match="initialized torch.distributed process group"):
        fastgp.select.far_select_global(torch.randn(4), torch.randn(4, 2), 1)


def _select_mismatched(rank):
    m = M + rank  # different candidate counts per rank
    try:
        fastgp.select.far_select_global(torch.randn(m), torch.randn(m, 2, 3), K)
    except ValueError as error:
        return str(error)
    return ""


def test_global_selection_shape_mismatch_is_a_clear_error_on_every_rank():
    for message in run_gloo_ranks(_select_mismatched, WORLD):
        assert message == "candidates must have the same shape on every rank, got [12, 2, 3], [13, 2, 3]"
