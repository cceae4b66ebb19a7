"""The trainer under torch.distributed: two CPU processes on gloo, as torchrun launches them."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastgp.train import checkpoint, config, distributed
from fastgp.train.loop import METRICS, train
from helpers import run_gloo_ranks

# slow: spawns gloo processes (the fast tier, -m "not slow", skips them).
pytestmark = [pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built"), pytest.mark.slow]

WORLD = 2
SETS = [
    "steps=6", "batch_size=32", "model.hidden=16", "log.every=2", "log.diag_every=0", "log.eval_samples=64",
    "log.progress=false", "log.plots=false", "checkpoint.every=3", "regularizers.penalty.kind=zero-gp",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, port, out_dir, sets, resume, result_dir):
    # What torchrun sets for each process.
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    cfg = config.resolve(sets=sets)
    payload = checkpoint.load(out_dir) if resume else None
    run = train(cfg, out_dir, resume=payload)
    far = {k: run.far.last[k] for k in ("logits", "indices")} if run.far.enabled else None
    ada = (run.ada.controller.p, run.ada.controller.rt) if run.ada.enabled else None
    torch.save(
        {"G": run.G.state_dict(), "D": run.D.state_dict(), "data_rng": run.generators["data"].get_state(), "far": far,
         "ada": ada},
        os.path.join(result_dir, f"rank{rank}.pt"),
    )


def _launch(out_dir, result_dir, sets=SETS, resume=False):
    mp.spawn(_worker, args=(_free_port(), str(out_dir), sets, resume, str(result_dir)), nprocs=WORLD, join=True)
    return [torch.load(os.path.join(result_dir, f"rank{r}.pt")) for r in range(WORLD)]


def _assert_same_states(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_two_ranks_identical_parameters_rank0_writes_exact_resume(tmp_path):
    # One uninterrupted 6-step run, and a 3-step run resumed to 6 (process launches are slow:
    # the checks share them).
    whole, results_whole = tmp_path / "whole", tmp_path / "rw"
    part, results_part = tmp_path / "part", tmp_path / "rp"
    results_whole.mkdir()
    results_part.mkdir()
    ranks = _launch(whole, results_whole)
    for name in ("G", "D"):
        _assert_same_states(ranks[0][name], ranks[1][name])
    # Each rank drew its own batches.
    assert not torch.equal(ranks[0]["data_rng"], ranks[1]["data_rng"])
    # One writer: one record per logging step, and the checkpoint carries both ranks' streams.
    with open(whole / METRICS) as f:
        steps = [json.loads(line)["step"] for line in f]
    assert steps == [2, 4, 6]
    payload = checkpoint.load(str(whole))
    assert payload["world_size"] == WORLD and len(payload["rng_by_rank"]) == WORLD
    assert torch.equal(payload["rng_by_rank"][1]["generators"]["data"], ranks[1]["data_rng"])
    _assert_same_states(payload["models"]["D"], ranks[0]["D"])

    _launch(part, results_part, sets=SETS + ["steps=3"])
    # A single process cannot continue a two-process run.
    with pytest.raises(checkpoint.CheckpointError, match="2 process"):
        train(config.resolve(sets=SETS), str(part), resume=checkpoint.load(str(part)))
    resumed = _launch(part, results_part, sets=SETS, resume=True)
    for rank in range(WORLD):
        for name in ("G", "D"):
            _assert_same_states(resumed[rank][name], ranks[rank][name])


def test_torchrun_command_line(tmp_path):
    """The documented command: torchrun --nproc_per_node=2 -m fastgp.train ..."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(_free_port()),
            "-m", "fastgp.train", "--out", str(out)]
    for s in SETS:
        args += ["--set", s]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.yaml", METRICS]
    assert checkpoint.load(str(out))["world_size"] == WORLD


def test_two_ranks_spectral_norm_state_and_global_fake_as_real(tmp_path):
    sets = SETS + [
        "regularizers.penalty.kind=r1",
        "regularizers.spectral-norm.d=true", "regularizers.spectral-norm.g=true",
        "regularizers.spectral-norm.once_per_step=true",
        "regularizers.fake-as-real.n_far=4", "regularizers.fake-as-real.n_candidates=16",
        "regularizers.fake-as-real.global=true",
    ]
    results = tmp_path / "results"
    results.mkdir()
    ranks = _launch(tmp_path / "run", results, sets=sets)
    # Parameters and every buffer (the spectral-norm vectors u, v included) agree on both ranks.
    for name in ("G", "D"):
        assert any(key.endswith("_u") for key in ranks[0][name])
        _assert_same_states(ranks[0][name], ranks[1][name])
    # The last D step's selection is global: the 2·M0 lowest logits over both ranks' candidates,
    # M0 to each rank in order (indices are rank·M1 + i).
    logits = torch.cat([r["far"]["logits"] for r in ranks])
    order = torch.sort(logits, stable=True).indices[: 2 * 4]
    assert torch.equal(ranks[0]["far"]["indices"], order[:4]) and torch.equal(ranks[1]["far"]["indices"], order[4:])


def test_two_ranks_ada_and_consistency_agree_and_resume_exactly(tmp_path):
    """ADA's signs are summed over the ranks (same p everywhere); its checkpointed state (p and the
    signs of an unfinished interval, reduced) lets a resumed two-process run continue exactly."""
    sets = SETS + [
        "data.name=rectangles", "data.n_images=128", "model.channels=8", "noise.dim=8", "batch_size=8",
        "regularizers.augment.kind=translate", "regularizers.augment.copies=2", "regularizers.augment.max_shift=3",
        "regularizers.ada.enabled=true", "regularizers.ada.interval=2", "regularizers.ada.kimg=0.002",
        "regularizers.consistency.mode=icr",
    ]
    results = {name: tmp_path / f"r-{name}" for name in ("whole", "part")}
    for path in results.values():
        path.mkdir()
    whole = _launch(tmp_path / "whole", results["whole"], sets=sets)
    assert whole[0]["ada"] == whole[1]["ada"] and whole[0]["ada"][1] is not None
    # The parameters agree; G's batch-norm statistics do not (rank 0's buffers are broadcast at the
    # start of each step, so the last step's updates are each rank's own).
    for name in ("G", "D"):
        params = lambda state: {k: v for k, v in state.items() if "running_" not in k and "num_batches" not in k}  # noqa: E731
        _assert_same_states(params(whole[0][name]), params(whole[1][name]))
    _launch(tmp_path / "part", results["part"], sets=sets + ["steps=3"])  # checkpoint mid-interval
    resumed = _launch(tmp_path / "part", results["part"], sets=sets, resume=True)
    for rank in range(WORLD):
        assert resumed[rank]["ada"] == whole[rank]["ada"]
        for name in ("G", "D"):
            _assert_same_states(resumed[rank][name], whole[rank][name])


def _bn_two_forwards(rank):
    """A batch-norm model under ``distributed.wrap``: rank-dependent buffers, synced, then two
    training forwards before one backward (ICR's G(z), G(z + Δz))."""
    ctx = distributed.Context(rank, WORLD, rank)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    model[1].running_mean.fill_(float(rank + 1))
    model[1].running_var.fill_(float(rank + 2))
    wrapped = distributed.wrap(model, ctx, torch.device("cpu"))
    distributed.sync_buffers([model], ctx)
    synced = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(rank))
    (wrapped(x).square().mean() + wrapped(x + 0.1).square().mean()).backward()
    return {"synced": synced, "grad": model[0].weight.grad.clone()}


def test_sync_buffers_copies_rank0_buffers_and_two_forwards_backpropagate():
    ranks = run_gloo_ranks(_bn_two_forwards, WORLD)
    # Every rank holds rank 0's buffers after the sync (running_mean 1, running_var 2).
    for rank in ranks:
        _assert_same_states(rank["synced"], ranks[0]["synced"])
    assert torch.equal(ranks[1]["synced"]["1.running_mean"], torch.ones(4))
    assert torch.equal(ranks[1]["synced"]["1.running_var"], torch.full((4,), 2.0))
    # The backward through both forwards ran (no in-place buffer change in between) and DDP
    # averaged the gradients: both ranks hold the same, non-zero gradient.
    assert torch.equal(ranks[0]["grad"], ranks[1]["grad"]) and ranks[0]["grad"].abs().sum() > 0
