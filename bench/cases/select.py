"""Benchmark cases of the Fake-As-Real family (float32, on the CPU or a CUDA GPU).

  far-batch   building the FAR real batch: M1 = 256 candidates of 3×32×32 scored by D, the M0 = 32
              lowest selected and joined with 32 real samples into one [64, 3, 32, 32] batch.
              fastgp.select.far_batch (selection + gather written straight into the output) vs
              torch.topk + index_select + cat as written by hand (target ≥ 2×).
  top-k       top-k generator training's selection, B = 64 … 4096 scores, k = B/2 (ν = 0.5), forward
              + ``kept.backward(grad)`` (G's loss reaches the kept scores only): fastgp.top_k (the
              FAR selection kernel on the negated scores, then index_select) vs
              ``torch.topk(scores, k)`` as top-k GAN code writes it (its values are the gathered
              scores; a separate gather would only slow the baseline). The setup first checks that
              both keep the same indices, values and gradient, bit for bit (distinct scores).
"""

from __future__ import annotations

import torch

from bench.cases._same import assert_same
from bench.harness import Case, Setup, Unsupported

FLOAT_BYTES = 4


def reference_far_batch(real: torch.Tensor, logits: torch.Tensor, candidates: torch.Tensor, k: int) -> torch.Tensor:
    """The FAR real batch as GAN code writes it."""
    idx = torch.topk(logits.flatten(), k, largest=False).indices
    return torch.cat([real, candidates.index_select(0, idx)])


def _far_case(m1: int, m0: int, n_real: int, shape) -> Case:
    def setup(device: torch.device) -> Setup:
        g = torch.Generator().manual_seed(0)  # drawn on the CPU: the same data on every device
        candidates = torch.randn(m1, *shape, generator=g).to(device)
        logits = torch.randn(m1, 1, generator=g).to(device)
        real = torch.randn(n_real, *shape, generator=g).to(device)
        try:
            import fastgp

            fused = lambda: fastgp.select.far_batch(real, logits, candidates, m0)  # noqa: E731
        except Exception as error:  # pragma: no cover - shown in the table
            fused = Unsupported(f"import fastgp failed ({type(error).__name__}: {error})", "unavailable")
        compiled = torch.compile(reference_far_batch, dynamic=False)
        contenders = {
            "fastgp": fused,
            "reference": lambda: reference_far_batch(real, logits, candidates, m0),
            "compile": lambda: compiled(real, logits, candidates, m0),
        }
        row = FLOAT_BYTES
        for s in shape:
            row *= s
        # At the least: read the real and the selected rows, write the batch.
        return Setup(contenders, copy_bytes=2 * (n_real + m0) * row)

    return Case(
        "far-batch",
        f"M1={m1}→M0={m0} + {n_real} real, {'×'.join(map(str, shape))}",
        setup,
        "FAR real batch: lowest-k selection of candidates by logit, gathered after the real rows in one batch",
        target=("reference", 2.0),
    )


def reference_top_k(scores: torch.Tensor, k: int):
    """The k highest scores and their indices, descending, as top-k GAN code writes it."""
    return torch.topk(scores.flatten(), k)


def _top_k_case(batch: int) -> Case:
    k = batch // 2

    def setup(device: torch.device) -> Setup:
        g = torch.Generator().manual_seed(0)  # drawn on the CPU: the same data on every device
        scores = torch.randn(batch, 1, generator=g).to(device).requires_grad_(True)
        grad = torch.randn(k, generator=g).to(device)

        def run(fn):
            def call():
                scores.grad = None
                kept, indices = fn(scores, k)
                kept.backward(grad)
                return kept, indices

            return call

        try:
            import fastgp

            fused = run(fastgp.top_k)
        except Exception as error:  # pragma: no cover - shown in the table
            fused = Unsupported(f"import fastgp failed ({type(error).__name__}: {error})", "unavailable")
        compiled = torch.compile(reference_top_k, dynamic=False)
        contenders = {"fastgp": fused, "reference": run(reference_top_k), "compile": run(compiled)}
        if not isinstance(fused, Unsupported):
            expected = [t.detach() for t in contenders["reference"]()] + [scores.grad.clone()]
            got = [t.detach() for t in fused()] + [scores.grad.clone()]
            assert_same("top_k vs torch.topk", got, expected, exact=True)
        # At the least: read the scores and the incoming gradient, write kept, indices and the gradient.
        return Setup(contenders, copy_bytes=FLOAT_BYTES * (batch + k + k) + 8 * k + FLOAT_BYTES * batch)

    return Case(
        "top-k",
        f"B={batch}, k={k}",
        setup,
        "top-k training selection, fwd + bwd: fastgp.top_k vs torch.topk",
    )


def cases() -> list[Case]:
    return [_far_case(256, 32, 32, (3, 32, 32))] + [_top_k_case(b) for b in (64, 256, 1024, 4096)]
