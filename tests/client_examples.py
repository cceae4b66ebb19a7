"""The checks the client examples' tests share (tests/test_examples_*.py): a client's run and its
fastgp swap, as ``examples/_client_compare.summarize`` reports them, are the same run."""

from __future__ import annotations

import torch


def assert_same_run(r: dict, steps: int, columns: int, curve_atol: float = 1e-10) -> None:
    """Step 0: the same losses and D gradients to rounding (never to the last bit); the curves over the
    run within ``curve_atol`` (rounding differences grow with the GAN's dynamics); both runs timed."""
    torch.testing.assert_close(torch.tensor(r["step0_fastgp"]), torch.tensor(r["step0_reference"]),
                               rtol=1e-12, atol=1e-14)
    assert r["step0_grad_rel_diff"] < 1e-12
    assert r["fastgp"].shape == r["reference"].shape == (steps, columns)
    assert r["curve_max_abs_diff"] < curve_atol
    assert r["reference_s_per_step"] > 0 and r["fastgp_s_per_step"] > 0
