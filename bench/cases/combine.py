"""Benchmark cases of the pixel-wise combination family (float32, on the CPU or a CUDA GPU).

  mean   pixel-wise mean of 64 given pairs of 3×32×32 samples: fastgp.combine.pixelwise (one pass
         gathering both rows) vs indexing + arithmetic as written by hand (target ≥ 2×).
"""

from __future__ import annotations

import torch

from bench.harness import Case, Setup, Unsupported

FLOAT_BYTES = 4


def reference_mean(x: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    return (x[pairs[:, 0]] + x[pairs[:, 1]]) / 2


def _mean_case(batch: int, num_pairs: int, shape) -> Case:
    def setup(device: torch.device) -> Setup:
        g = torch.Generator().manual_seed(0)  # drawn on the CPU: the same data on every device
        x = torch.randn(batch, *shape, generator=g)
        i = torch.randint(0, batch, (num_pairs,), generator=g)
        j = (i + torch.randint(1, batch, (num_pairs,), generator=g)) % batch
        x, pairs = x.to(device), torch.stack([i, j], 1).to(device)
        try:
            import fastgp

            fused = lambda: fastgp.combine.pixelwise(x, "mean", pairs=pairs)  # noqa: E731
        except Exception as error:  # pragma: no cover
            fused = Unsupported(f"import fastgp failed ({type(error).__name__}: {error})", "unavailable")
        compiled = torch.compile(reference_mean, dynamic=False)
        contenders = {
            "fastgp": fused,
            "reference": lambda: reference_mean(x, pairs),
            "compile": lambda: compiled(x, pairs),
        }
        row = FLOAT_BYTES
        for s in shape:
            row *= s
        return Setup(contenders, copy_bytes=3 * num_pairs * row)  # read two rows, write one, per pair

    return Case(
        "mean",
        f"{num_pairs} pairs of {batch}, {'×'.join(map(str, shape))}",
        setup,
        "pixel-wise mean (x_i + x_j)/2 of given pairs i ≠ j, forward",
        target=("reference", 2.0),
    )


def cases() -> list[Case]:
    return [_mean_case(64, 64, (3, 32, 32))]
