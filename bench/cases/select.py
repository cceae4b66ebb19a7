"""Benchmark cases of the Fake-As-Real family (float32, on the CPU or a CUDA GPU).

  far-batch   building the FAR real batch: M1 = 256 candidates of 3×32×32 scored by D, the M0 = 32
              lowest selected and joined with 32 real samples into one [64, 3, 32, 32] batch.
              fastgp.select.far_batch (selection + gather written straight into the output) vs
              torch.topk + index_select + cat as written by hand (target ≥ 2×).
"""

from __future__ import annotations

import torch

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


def cases() -> list[Case]:
    return [_far_case(256, 32, 32, (3, 32, 32))]
