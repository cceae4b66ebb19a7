"""Pure-PyTorch reference for the ``select`` family (Fake-As-Real top-k selection).

The raw ops ``far_select`` and ``far_batch`` have the signatures and semantics of
``torch.ops.fastgp.far_select`` / ``far_batch`` and the Triton launchers (see csrc/ops.cpp):
the k candidates with the lowest logits, in ascending logit order, NaN last, ties by ascending
index — the first k entries of ``torch.sort(logits, stable=True)``.
"""

from __future__ import annotations

import torch


def rows_format(t: torch.Tensor) -> torch.memory_format:
    """The memory format of a row-gathering op's output (csrc/fastgp/rows.h)."""
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def lowest_indices(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k lowest logits, ascending, NaN last, ties by index (int64 [k])."""
    return torch.sort(logits.float() if logits.dtype != torch.float64 else logits, stable=True).indices[:k]


def far_select(logits: torch.Tensor, candidates: torch.Tensor, k: int):
    indices = lowest_indices(logits, k)
    selected = candidates.index_select(0, indices).contiguous(memory_format=rows_format(candidates))
    return selected, indices


def far_batch(real: torch.Tensor, logits: torch.Tensor, candidates: torch.Tensor, k: int):
    indices = lowest_indices(logits, k)
    batch = torch.cat([real, candidates.index_select(0, indices)]).contiguous(
        memory_format=rows_format(candidates)
    )
    return batch, indices


def far_batch_reference(real: torch.Tensor, logits: torch.Tensor, candidates: torch.Tensor, k: int):
    """The FAR real batch as GAN code writes it: topk, index_select, cat (the benchmark baseline)."""
    indices = torch.topk(logits.flatten(), k, largest=False).indices
    return torch.cat([real, candidates[indices]])
