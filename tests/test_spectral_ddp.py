"""fastgp.nn.spectral_norm under DistributedDataParallel: two gloo processes, the GAN pattern of
two forwards (D(real), D(fake)) before one backward, with DDP broadcasting buffers (u, v) at every
forward — the setting of pytorch#22095 / #65907. Each rank writes its gradients, parameters and
vectors; the test checks that both ranks agree and that the gradients equal a single-process
emulation of the same step."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

pytestmark = pytest.mark.slow  # spawns gloo processes (the fast tier, -m "not slow", skips them)

WORKER = textwrap.dedent(
    """
    import os, sys
    import torch, torch.distributed as dist
    from torch import nn
    import fastgp
    from fastgp.nn import SpectralNormStep, spectral_norm

    rank, mode, out = int(os.environ["RANK"]), sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(6, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1)).double()
    for i in (0, 2):
        spectral_norm(D[i])
    init = {k: v.clone() for k, v in D.state_dict().items()}
    ddp = nn.parallel.DistributedDataParallel(D, broadcast_buffers=True)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    if mode == "once-per-step":
        SpectralNormStep(D, optimizer=opt)
    g = torch.Generator().manual_seed(100 + rank)
    real, fake = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    for step in range(2):
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-ddp(real)).mean() + torch.nn.functional.softplus(ddp(fake)).mean()
        loss.backward()
        grads = [p.grad.clone() for p in D.parameters()]
        if step == 0:
            first = {"grads": grads, "state": {k: v.clone() for k, v in D.state_dict().items()}}
        opt.step()
    torch.save({"init": init, "first": first, "final": D.state_dict(), "real": real, "fake": fake}, out)
    # Leave the group as fastgp.train does: the DDP reducer freed and every rank's collectives done
    # first (a gloo thread racing the group's destructor aborted a rank at exit once in CI).
    del ddp, opt
    import gc
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(mode, tmp_path):
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE="2", OMP_NUM_THREADS="1")
    procs, outs = [], []
    for rank in range(2):
        out = tmp_path / f"{mode}-{rank}.pt"
        outs.append(out)
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, mode, str(out)], env=dict(env, RANK=str(rank)),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        output, _ = p.communicate(timeout=120)
        assert p.returncode == 0, output
    return [torch.load(o) for o in outs]


def emulate_first_step(result_rank0, results, mode):
    """Single-process gradient of the first step: each rank from the same initial state, averaged."""
    from torch import nn

    from fastgp.nn import SpectralNormStep, spectral_norm

    grads = None
    for r in results:
        D = nn.Sequential(nn.Linear(6, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1)).double()
        for i in (0, 2):
            spectral_norm(D[i])
        D.load_state_dict(result_rank0["init"])
        if mode == "once-per-step":
            SpectralNormStep(D)
        loss = torch.nn.functional.softplus(-D(r["real"])).mean() + torch.nn.functional.softplus(D(r["fake"])).mean()
        g = torch.autograd.grad(loss, list(D.parameters()))
        grads = list(g) if grads is None else [a + b for a, b in zip(grads, g)]
    return [g / len(results) for g in grads]


@pytest.mark.parametrize("mode", ["default", "once-per-step"])
def test_ddp_two_forwards_before_backward(mode, tmp_path):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.fail("torch.distributed with gloo is required for this test")
    results = run_ranks(mode, tmp_path)
    r0, r1 = results
    assert not torch.equal(r0["real"], r1["real"])  # the ranks saw different data
    for a, b in zip(r0["first"]["grads"], r1["first"]["grads"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # all-reduced
    for key in r0["final"]:
        torch.testing.assert_close(r0["final"][key], r1["final"][key], rtol=0, atol=0)  # params, u, v agree
    expected = emulate_first_step(r0, results, mode)
    for got, exp in zip(r0["first"]["grads"], expected):
        torch.testing.assert_close(got, exp, rtol=1e-10, atol=1e-12)
