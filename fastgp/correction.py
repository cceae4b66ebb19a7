"""Sample correction (SC): find the realistic fakes of D's negative batch and replace them.

Xuan et al. ("On the Anomalous Generalization of GANs", Sec. 5.1) replace "the realistic samples in
the negative training batch with less realistic ones by a certain pre-defined measure of reality",
a measure that "could differ for different datasets". ``replace_realistic`` takes it as ``measure``:

=========  ===================================================================================
measure    a fake is realistic when
=========  ===================================================================================
nearest    its normalized distance to the nearest training sample is below ``threshold`` (0.1):
           the paper's measure for natural images (Sec. 5.3, "DIF less than 0.1")
count      it holds exactly ``count`` objects, counted by ``count_components``: the paper's
           measure for its rectangles ("The samples with true rectangle number is discarded
           [...] by counting the number of rectangle", Appendix F)
callable   ``measure(samples)`` returns True for it (a bool tensor [B]): any other measure
=========  ===================================================================================

Counting (``count_components``): a pixel is on when its value is > ``threshold`` (0: the middle of
the tanh range [-1, 1]; NaN is off); the count is the number of 4-connected components of on
pixels (pixels sharing an edge; diagonal contact does not connect). Components are found by label
propagation: every on pixel starts with its own label (its index + 1), and each round every on
pixel takes the largest label among itself and its on 4-neighbours, then (pointer jumping, twice)
the label of the pixel its label names, until nothing changes; a component then holds the label of
its largest pixel index, so the count is the number of on pixels that kept their own label. Exact
(integer labels); rounds: 2–3 for separated squares, a few dozen for 32×32 white noise, at most
about the longest path inside a component. What it counts: two squares that
touch or overlap make ONE component, a stray on pixel is a component of its own, an off pixel
inside a square changes nothing unless it cuts the square in two; it does not check that a
component is a rectangle (a blob counts as one). For the training rectangles (separated 8×8
squares, values −1 and 1) it returns the number of squares exactly.

Nearest distance:

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

__all__ = ["MEASURES", "count_components", "nearest_distance", "replace_realistic"]

MEASURES = ("nearest", "count")

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


def count_components(images: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """``[B]`` int64: the number of 4-connected components of pixels > ``threshold`` in each
    single-channel image of ``images`` [B, 1, H, W] (the algorithm and what it counts: see the
    module notes). Not differentiable."""
    _checks.batch(images, "images", min_rank=4)
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be single-channel images [B, 1, H, W], got shape {list(images.shape)}")
    threshold = _checks.real_number(threshold, "threshold")
    with torch.no_grad():
        on = images.detach()[:, 0] > threshold
        h, w = on.shape[1:]
        own = torch.arange(1, h * w + 1, device=on.device, dtype=torch.int64).reshape(1, h, w)
        labels = torch.where(on, own, 0)
        b = on.shape[0]
        while True:
            # The largest label among each pixel and its 4 neighbours (zero padding: off) ...
            padded = torch.nn.functional.pad(labels, (1, 1, 1, 1))
            best = torch.maximum(labels, torch.maximum(
                torch.maximum(padded[:, :-2, 1:-1], padded[:, 2:, 1:-1]),
                torch.maximum(padded[:, 1:-1, :-2], padded[:, 1:-1, 2:])))
            best = torch.where(on, best, 0).reshape(b, -1)
            # ... then twice the label of the pixel that label names (pointer jumping: that pixel is
            # in the same component and its label is >= its own index + 1, so labels only grow
            # within the component, faster than one pixel per round).
            for _ in range(2):
                best = torch.gather(torch.nn.functional.pad(best, (1, 0)), 1, best)
            best = best.reshape(labels.shape)
            if torch.equal(best, labels):
                break
            labels = best
        return ((labels == own) & on).flatten(1).sum(1)


def replace_realistic(
    fakes: torch.Tensor,
    bank: torch.Tensor | None = None,
    threshold: float | None = None,
    pool: torch.Tensor | None = None,
    value_range: float | None = None,
    chunk: int | None = None,
    *,
    measure="nearest",
    count: int | None = None,
):
    """``(corrected, mask)``: the realistic fakes replaced by less realistic samples; ``mask`` [B]
    bool marks the replaced rows.

    Which fakes are realistic is decided by ``measure`` (see the module notes):

    - ``"nearest"`` (default): normalized nearest distance to ``bank`` (required) below
      ``threshold`` (default 0.1, in [0, 1]); ``value_range`` (default 2) and ``chunk`` as in
      :func:`nearest_distance`.
    - ``"count"``: exactly ``count`` (required, an int >= 0) 4-connected components of pixels
      > 0 (:func:`count_components`); ``fakes`` are single-channel images [B, 1, H, W].
    - a callable: ``measure(samples)`` returns a bool tensor [len(samples)] on their device, True
      for the realistic ones.

    Arguments that a measure does not read are refused (``bank``, ``threshold``, ``value_range``,
    ``chunk`` belong to "nearest", ``count`` to "count").

    Replacements are the samples of ``pool`` ([P, ...], e.g. extra fakes) that are not realistic by
    the same measure, taken in order (cycled if fewer than needed); without a pool, the batch's
    own non-realistic fakes are used. When no sample qualifies nothing is replaced (the mask is all
    False). Gradients flow to the kept fakes and to the pool rows used.
    """
    realistic = _measure(measure, bank, threshold, value_range, chunk, count)
    _checks.batch(fakes, "fakes", min_rank=1)
    mask = realistic(fakes, "fakes")
    if pool is None:
        source, source_ok = fakes, ~mask
    else:
        _checks.batch(pool, "pool", min_rank=1)
        if pool.shape[1:] != fakes.shape[1:] or pool.dtype != fakes.dtype or pool.device != fakes.device:
            raise ValueError(
                f"pool must have the per-sample shape, dtype and device of fakes, got {list(pool.shape)} "
                f"{pool.dtype} {pool.device} and {list(fakes.shape)} {fakes.dtype} {fakes.device}"
            )
        source, source_ok = pool, ~realistic(pool, "pool")
    eligible = source_ok.nonzero().flatten()
    needed = mask.nonzero().flatten()
    if eligible.numel() == 0 or needed.numel() == 0:
        return fakes, torch.zeros_like(mask)
    picks = eligible[torch.arange(needed.numel(), device=eligible.device) % eligible.numel()]
    corrected = fakes.index_copy(0, needed, source.index_select(0, picks))
    return corrected, mask


def _measure(measure, bank, threshold, value_range, chunk, count):
    """The measure of reality as ``realistic(samples, name) -> bool [B]`` (``name``: the argument
    the samples came in, for the errors), every argument checked against the measure first."""
    if isinstance(measure, str):
        _checks.choice(measure, "measure", MEASURES)
    elif not callable(measure):
        raise TypeError(f"measure must be 'nearest', 'count' or a callable, got {type(measure).__name__}")
    # Exact-or-refuse: an argument the chosen measure would not read is a mistake, not ignored.
    given = {k for k, v in (("bank", bank), ("threshold", threshold), ("value_range", value_range),
                            ("chunk", chunk), ("count", count)) if v is not None}
    reads = {"nearest": {"bank", "threshold", "value_range", "chunk"}, "count": {"count"}}
    unread = sorted(given - reads.get(measure, set()) if isinstance(measure, str) else given)
    if unread:
        owner = "'count'" if unread[0] == "count" else "'nearest'"
        shown = repr(measure) if isinstance(measure, str) else "a callable"
        raise ValueError(f"{unread[0]} applies to measure={owner}, not to measure={shown}; leave it out")
    if measure == "nearest":
        if bank is None:
            raise ValueError("bank is required with measure='nearest' (the real samples to measure distances to)")
        threshold = 0.1 if threshold is None else _checks.real_number(threshold, "threshold")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1] (a normalized distance), got {threshold}")
        value_range = 2.0 if value_range is None else value_range

        def realistic(samples, name):
            distance, _ = _nearest_distance(samples, bank, True, value_range, chunk, name)
            return distance < threshold

        return realistic
    if measure == "count":
        if count is None:
            raise ValueError("count is required with measure='count' (the number of objects of a real sample)")
        count = _checks.integer(count, "count", minimum=0)

        def realistic(samples, name):
            if samples.dim() != 4 or samples.shape[1] != 1:
                raise ValueError(f"{name} must be single-channel images [B, 1, H, W] for measure='count', "
                                 f"got shape {list(samples.shape)}")
            return count_components(samples) == count

        return realistic

    def realistic(samples, name):
        with torch.no_grad():
            out = measure(samples.detach())
        if not isinstance(out, torch.Tensor) or out.dtype != torch.bool:
            got = out.dtype if isinstance(out, torch.Tensor) else type(out).__name__
            raise TypeError(f"measure must return a bool tensor (True: realistic), got {got} for {name}")
        if out.shape != samples.shape[:1] or out.device != samples.device:
            raise ValueError(f"measure must return one bool per sample of {name} ([{samples.shape[0]}] on "
                             f"{samples.device}), got shape {list(out.shape)} on {out.device}")
        return out

    return realistic
