"""Sample correction (SC): find fakes that are too close to the training data and replace them.

A discriminator trained on small batches is confused by fakes that are almost training samples;
sample correction measures each fake's distance to its nearest real sample and replaces the fakes
whose normalized distance is below a threshold (0.1) by less realistic ones.

Distances: for sample a and bank row b, d² = max(0, ‖a‖² + ‖b‖² − 2a·b), computed in float32
(float64 for float64 input) with the dot products from the BLAS, the bank visited in chunks so
that no [B, N] distance matrix is ever held (memory O(B·chunk)). Ties: the returned row attains
the minimum distance up to floating-point rounding; among distances that come out exactly equal in
the kernel's own arithmetic the lowest index wins, but rows whose distances differ only by rounding
(two identical bank rows whose dot products a BLAS rounds differently, or another backend's
summation order) may come back either way: callers must not rely on which of two such rows is
chosen. A NaN distance propagates (distance NaN, index of the first NaN).

Range: the expansion overflows for elements of ~1e19 and above in float32 (inf − inf: NaN), underflows
for ~1e-19 and below (every d² 0), and cancels to rounding for near-duplicates. So the returned
row's distance is always recomputed from the difference a − b with max-abs scaling (exact up to
rounding, O(B·D)), and the samples whose d² is NaN, inf or below 2⁻¹⁰⁰ (2⁻⁹⁶⁹ in float64) are
searched again exactly over the whole bank (scaled differences, O(N·D) each; NaN inputs keep NaN
and the first NaN's index). Distances are then right for any finite input up to the largest finite
value of the accumulation dtype (beyond it: inf). Ordinary inputs never take that search. The normalized
distance is the root-mean-square per-element distance divided by ``value_range``:
sqrt(d² / D) / value_range, in [0, 1] for samples inside a range of width ``value_range``.

Not differentiable: the results never require grad (they decide which samples to use).
"""

from __future__ import annotations

import math

import torch

from . import _checks, backend
from ._layout import accumulation_dtype
from .reference.correction import fold_chunk
from .reference.penalty import LOWEST_TRUSTED_SUM_SQUARES, needs_rescaling, scaled_norm

FAMILY = "correction"

__all__ = ["nearest_distance", "replace_realistic"]

# Default chunk: about this many distances in flight (B · chunk: 1 MiB of float32), e.g. 4096 bank
# rows for B = 64. Larger chunks mean fewer BLAS calls and parallel regions per call (each a
# barrier, costly on a loaded machine) at a memory cost still far below the B×N matrix.
_CHUNK_ELEMENTS = 2**18


def _register_fake_kernels() -> None:
    if not backend._load_extension():
        return

    @torch.library.register_fake("fastgp::nearest_distance")
    def _(samples, bank, chunk):
        b = samples.shape[0]
        return samples.new_empty((b,), dtype=accumulation_dtype(samples.dtype)), samples.new_empty((b,), dtype=torch.int64)


_register_fake_kernels()


def default_chunk(batch: int, bank_rows: int) -> int:
    return max(1, min(bank_rows, max(256, min(8192, _CHUNK_ELEMENTS // max(batch, 1)))))


def nearest_distance(
    samples: torch.Tensor,
    bank: torch.Tensor,
    normalized: bool = False,
    value_range: float = 2.0,
    chunk: int | None = None,
):
    """``(distance [B], index [B] int64)``: each sample's L2 distance to its nearest bank row.

    Args:
        samples: [B, ...] float samples with at least one feature per row.
        bank: [N, ...] real samples (N >= 1) with the same number of features and dtype.
        normalized: return sqrt(d² / D) / value_range (D = features per sample) instead of the
            L2 distance.
        value_range: the width of the data range (2 for images in [−1, 1]).
        chunk: bank rows per chunk (default: about 262144 / B, within [256, 8192]).

    The distance is float32 for float16/bfloat16/float32 input and float64 for float64. The index
    is that of a row at the returned distance (up to rounding); among rows within rounding of
    each other, which one is returned depends on the backend and the BLAS (see the module notes).
    """
    return _nearest_distance(samples, bank, normalized, value_range, chunk, "samples")


def _nearest_distance(samples, bank, normalized, value_range, chunk, name: str):
    """nearest_distance, its errors naming the caller's argument ``name`` (fakes, pool)."""
    _checks.batch(samples, name, min_rank=1)
    _checks.floating(bank, "bank")
    if bank.dim() < 1 or bank.shape[0] == 0:
        raise ValueError(f"bank is empty (shape {list(bank.shape)}); need at least one real sample")
    features = samples[0].numel()
    if bank[0].numel() != features:
        raise ValueError(
            f"{name} and bank must have the same number of features per row, got {features} "
            f"(shape {list(samples.shape)}) and {bank[0].numel()} (shape {list(bank.shape)})"
        )
    if features == 0:  # every distance would be 0/0 once normalized: undefined, on every backend
        raise ValueError(f"{name} and bank have no features per row (shapes {list(samples.shape)} and "
                         f"{list(bank.shape)}); need at least one")
    _checks.same_dtype_device(samples, name, bank, "bank")
    _checks.boolean(normalized, "normalized")
    value_range = _checks.real_number(value_range, "value_range")
    if value_range <= 0:
        raise ValueError(f"value_range must be > 0, got {value_range}")
    if chunk is None:
        chunk = default_chunk(samples.shape[0], bank.shape[0])
    chunk = _checks.integer(chunk, "chunk", minimum=1)
    with torch.no_grad():
        d2, index = backend.kernels(FAMILY, samples.device).nearest_distance(samples.detach(), bank.detach(), chunk)
        distance, index = _robust_distances(samples.detach(), bank.detach(), d2, index)
        if normalized:
            return distance / math.sqrt(features) / value_range, index
        return distance, index


def _robust_distances(samples, bank, d2, index):
    """(distance, index) from the kernel's fast-path (d², index): the returned rows' distances
    recomputed from the difference a − b (no cancellation, scaled: no over/underflow, O(B·D)),
    and the samples whose d² is not trustworthy searched again exactly over the whole bank.

    The expansion |a|² + |b|² − 2a·b overflows for elements of ~1e19 and above in float32 (inf − inf
    = NaN: the wrong row), underflows for ~1e-19 and below (every d² 0: the first row), and its
    cancellation leaves only rounding near 0. Those samples are flagged by their d²: NaN, inf or
    below the range where it is reliable; NaN inputs land there too and keep NaN (the first NaN's
    index). Ordinary inputs never take the exact search."""
    acc = accumulation_dtype(samples.dtype)
    rows = samples.reshape(samples.shape[0], -1).to(acc)
    flagged = ~(d2 >= LOWEST_TRUSTED_SUM_SQUARES[acc]) | (d2 == float("inf"))
    if flagged.any():
        index = index.clone()
        index[flagged] = _exact_nearest_index(rows[flagged], bank)
    diff = rows - bank.index_select(0, index).reshape(rows.shape).to(acc)
    # Few passes over [B, D] (each elementwise op is a parallel region, costly on a loaded
    # machine): the plain sum of squares, then the scaled norm only for the rows where it over-
    # or underflowed (as the penalty's norm).
    sum_sq = torch.einsum("bd,bd->b", diff, diff)
    distance = sum_sq.sqrt()
    rescale = needs_rescaling(sum_sq)
    if rescale.any():
        distance[rescale] = scaled_norm(diff[rescale])
    return distance, index


def _exact_nearest_index(rows, bank):
    """Index of each row's nearest bank row by the scaled norm of the difference (exact up to
    rounding at any magnitude; lowest index among equal distances, first NaN if any), the bank
    visited in chunks of at most 2^22 differences: O(R·N·D) work, only for flagged rows."""
    features = rows.shape[1]
    chunk = max(1, 2**22 // max(1, rows.shape[0] * features))
    best = torch.full((rows.shape[0],), float("inf"), dtype=rows.dtype, device=rows.device)
    best_j = torch.full((rows.shape[0],), -1, dtype=torch.int64, device=rows.device)
    for j0 in range(0, bank.shape[0], chunk):
        kc = bank[j0 : j0 + chunk].reshape(-1, features).to(rows.dtype)
        diff = (rows[:, None, :] - kc[None, :, :]).reshape(-1, features)
        d = scaled_norm(diff).reshape(rows.shape[0], kc.shape[0])
        best, best_j = fold_chunk(best, best_j, d, j0)
    return best_j


def replace_realistic(
    fakes: torch.Tensor,
    bank: torch.Tensor,
    threshold: float = 0.1,
    pool: torch.Tensor | None = None,
    value_range: float = 2.0,
    chunk: int | None = None,
):
    """``(corrected, mask)``: the fakes whose normalized nearest distance to ``bank`` is below
    ``threshold`` replaced by less realistic samples; ``mask`` [B] bool marks the replaced rows.

    Replacements are the samples of ``pool`` ([P, ...], e.g. extra fakes) whose own normalized
    distance is >= threshold, taken in order (cycled if fewer than needed); without a pool, the
    batch's own non-realistic fakes are used. When no sample qualifies nothing is replaced (the
    mask is all False). Gradients flow to the kept fakes and to the pool rows used.
    """
    threshold = _checks.real_number(threshold, "threshold")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1] (a normalized distance), got {threshold}")
    distance, _ = _nearest_distance(fakes, bank, True, value_range, chunk, "fakes")
    mask = distance < threshold
    if pool is None:
        source, source_ok = fakes, ~mask
    else:
        _checks.batch(pool, "pool", min_rank=1)
        if pool.shape[1:] != fakes.shape[1:] or pool.dtype != fakes.dtype or pool.device != fakes.device:
            raise ValueError(
                f"pool must have the per-sample shape, dtype and device of fakes, got {list(pool.shape)} "
                f"{pool.dtype} {pool.device} and {list(fakes.shape)} {fakes.dtype} {fakes.device}"
            )
        pool_distance, _ = _nearest_distance(pool, bank, True, value_range, chunk, "pool")
        source, source_ok = pool, pool_distance >= threshold
    eligible = source_ok.nonzero().flatten()
    needed = mask.nonzero().flatten()
    if eligible.numel() == 0 or needed.numel() == 0:
        return fakes, torch.zeros_like(mask)
    picks = eligible[torch.arange(needed.numel(), device=eligible.device) % eligible.numel()]
    corrected = fakes.index_copy(0, needed, source.index_select(0, picks))
    return corrected, mask


