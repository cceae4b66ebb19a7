"""Global Fake-As-Real selection across ranks (fastgp.select.far_select_global), with two gloo processes."""

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import fastgp

WORLD = 2
M, K = 12, 3


def _inputs(rank):
    gen = torch.Generator().manual_seed(100 + rank)
    logits = torch.randint(-3, 4, (M,), generator=gen).float()  # many ties, also across ranks
    logits[rank] = float("nan")
    candidates = torch.randn(M, 2, 3, generator=gen)
    return logits, candidates


def _worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        logits, candidates = _inputs(rank)
        selected, indices = fastgp.select.far_select_global(logits, candidates, K)
        real = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(rank))
        far = fastgp.select.FakeAsReal(K, M, global_selection=True)
        batch, batch_indices = far.mixed_batch(real, logits, candidates)
        assert torch.equal(batch, torch.cat([real[: 5 - K], selected])) and torch.equal(batch_indices, indices)
        torch.save({"selected": selected, "indices": indices}, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_global_selection_two_gloo_ranks():
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(os.path.join(tmp, "init"), tmp), nprocs=WORLD, join=True)
        results = [torch.load(os.path.join(tmp, f"{r}.pt")) for r in range(WORLD)]
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


def _mismatch_worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        m = M + rank  # different candidate counts per rank
        try:
            fastgp.select.far_select_global(torch.randn(m), torch.randn(m, 2, 3), K)
            message = ""
        except ValueError as error:
            message = str(error)
        with open(os.path.join(out_dir, f"{rank}.txt"), "w") as f:
            f.write(message)
    finally:
        dist.destroy_process_group()


def test_global_selection_shape_mismatch_is_a_clear_error_on_every_rank():
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_mismatch_worker, args=(os.path.join(tmp, "init"), tmp), nprocs=WORLD, join=True)
        for r in range(WORLD):
            with open(os.path.join(tmp, f"{r}.txt")) as f:
                assert f.read() == "candidates must have the same shape on every rank, got [12, 2, 3], [13, 2, 3]"
