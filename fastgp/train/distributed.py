"""Data-parallel training: ``torchrun --nproc_per_node=N -m fastgp.train ...``.

torchrun starts N processes and sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``; ``setup`` then joins the process group (gloo on the CPU, nccl for ``device: cuda``,
each process on GPU ``LOCAL_RANK``). Without those variables, or with ``WORLD_SIZE=1``, nothing
changes: a single process, no process group.

What the trainer does with N processes:

- G and D are wrapped in ``DistributedDataParallel`` for the training forwards only; evaluation,
  diagnostics, checkpoints and the EMA use the plain modules (a DDP forward is a collective and
  would hang when only rank 0 evaluates). DDP broadcasts rank 0's parameters at construction and
  averages the gradients in each backward, so the parameters — and with them the spectral-norm
  state — stay identical on every rank. The buffers (batch-norm statistics, spectral-norm
  vectors) are broadcast from rank 0 once at the start of every step (``sync_buffers``), not by
  DDP at every forward: a step runs G or D more than once before one backward (consistency
  regularization's G(z + Δz), augmented copies), and a broadcast between those forwards would
  write into a batch-norm buffer that an earlier forward's graph saved (torch 2.11's batch-norm
  backward saves the running statistics and refuses the changed version). Each forward then
  updates the rank's batch-norm statistics from its own batch: within a step the ranks' running
  statistics differ (evaluation and checkpoints use rank 0's, which no broadcast ever changes).
- ``batch_size`` is per process (the global batch is ``batch_size × N``); each rank draws its own
  data, noise and penalty randomness (generators seeded with the seed and the rank).
- Only rank 0 writes: the config, ``metrics.jsonl`` (its own losses and the metrics of the shared
  G), the pictures and the checkpoints. A checkpoint holds the random state of every rank, so
  ``--resume`` under the same N continues every rank's stream; another N is a clear error.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str) -> int:
    text = os.environ[name]
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {text!r}") from None


def context_from_env() -> Context:
    """The process's place in a torchrun launch (a single process when not launched by torchrun)."""
    if "WORLD_SIZE" not in os.environ or _env_int("WORLD_SIZE") <= 1:
        return Context()
    rank = _env_int("RANK")
    return Context(rank, _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank)


def setup(device: torch.device) -> tuple[Context, torch.device]:
    """Join the process group when launched by torchrun; returns the context and this rank's device."""
    ctx = context_from_env()
    if not ctx.enabled:
        return ctx, device
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch was built without torch.distributed")
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ctx.rank, world_size=ctx.world_size)
    return ctx, device


def teardown(ctx: Context) -> None:
    """Leave the process group. The barrier first: on torch 2.11 a gloo worker thread still
    releasing a finished all_gather (whose tensors need the GIL) while the main thread destroys the
    group (holding it) deadlocked one rank at exit (seen once in CI's torch-2.11 phase); after the
    barrier every rank's earlier collectives are done and released."""
    if ctx.enabled and dist.is_initialized():
        gc.collect()  # the DDP reducers the caller dropped release their hold on the group now
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: nn.Module, ctx: Context, device: torch.device) -> nn.Module:
    """``model`` for the training forwards: DDP-wrapped when distributed, else itself."""
    if not ctx.enabled:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    # Buffers are synchronised by ``sync_buffers`` once per step (see the module docstring).
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


@torch.no_grad()
def sync_buffers(modules, ctx: Context) -> None:
    """Copy rank 0's buffers of each module into every rank's (a no-op when not distributed).

    Call it between steps, when no autograd graph holds a buffer: the copy is in place."""
    if not ctx.enabled:
        return
    # One broadcast per dtype and device, not per buffer: a collective per batch-norm statistic
    # would be dozens of small launches every step on a GPU.
    groups: dict[tuple, list[torch.Tensor]] = {}
    for module in modules:
        for buffer in module.buffers():
            groups.setdefault((buffer.dtype, buffer.device), []).append(buffer)
    for buffers in groups.values():
        flat = torch.cat([b.reshape(-1) for b in buffers])
        dist.broadcast(flat, src=0)
        for buffer, part in zip(buffers, flat.split([b.numel() for b in buffers])):
            buffer.copy_(part.view_as(buffer))


def gather(obj, ctx: Context) -> list:
    """``obj`` of every rank, in rank order, on every rank (``[obj]`` when not distributed)."""
    if not ctx.enabled:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out
