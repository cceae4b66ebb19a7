"""Pure-PyTorch reference for the ``select`` family (Fake-As-Real top-k selection).

The raw ops ``far_select`` and ``far_batch`` have the signatures and semantics of
``torch.ops.fastgp.far_select`` / ``far_batch`` and the Triton launchers (see csrc/ops.cpp):
the k candidates with the lowest logits, in ascending logit order, NaN last, ties by ascending
index — the first k entries of ``torch.sort(logits, stable=True)``.
"""

from __future__ import annotations

import torch

from .._layout import image_memory_format


def lowest_indices(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k lowest logits, ascending, NaN last, ties by index (int64 [k])."""
    return torch.sort(logits.float() if logits.dtype != torch.float64 else logits, stable=True).indices[:k]


def far_select(logits: torch.Tensor, candidates: torch.Tensor, k: int):
    indices = lowest_indices(logits, k)
    selected = candidates.index_select(0, indices).contiguous(memory_format=image_memory_format(candidates))
    return selected, indices


def far_batch(real: torch.Tensor, logits: torch.Tensor, candidates: torch.Tensor, k: int):
    indices = lowest_indices(logits, k)
    batch = torch.cat([real, candidates.index_select(0, indices)]).contiguous(
        memory_format=image_memory_format(candidates)
    )
    return batch, indices


def far_batch_reference(real: torch.Tensor, logits: torch.Tensor, candidates: torch.Tensor, k: int):
    """The FAR real batch as GAN code writes it: topk, index_select, cat (the benchmark baseline)."""
    indices = torch.topk(logits.flatten(), k, largest=False).indices
    return torch.cat([real, candidates[indices]])
