"""What the client examples share: the side-by-side comparison of a client's run and its fastgp swap
(same seed), and the command line that prints it. The clients themselves (their networks, objectives
and loops) stay in their own files."""

from __future__ import annotations

import argparse

import torch


def summarize(reference: tuple, fastgp: tuple) -> dict:
    """Compare two runs, each (history [steps, k] float64, step-0 gradients, seconds per step)."""
    ref, ref_grads, ref_s = reference
    ours, our_grads, our_s = fastgp
    grad_diff = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) for a, b in zip(our_grads, ref_grads))
    return {
        "step0_reference": ref[0].tolist(),
        "step0_fastgp": ours[0].tolist(),
        "step0_grad_rel_diff": grad_diff,
        "curve_max_abs_diff": float((ours - ref).abs().max()),
        "reference_s_per_step": ref_s,
        "fastgp_s_per_step": our_s,
        "reference": ref,
        "fastgp": ours,
    }


def main(argv, *, description: str, compare, columns: str, names: tuple[str, str], dtype_help: str) -> None:
    """Parse --steps/--seed/--dtype, run ``compare(steps, seed, dtype)`` and print its summary;
    ``columns`` names the history's columns, ``names`` the (reference, fastgp) runs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64", help=dtype_help)
    args = parser.parse_args(argv)
    r = compare(args.steps, args.seed, getattr(torch, args.dtype))
    head = f"step 0 ({columns}): "
    width = max(len(n) for n in names)
    print(head + f"{names[0]:<{width}}", [f"{v:.6f}" for v in r["step0_reference"]])
    print(" " * len(head) + f"{names[1]:<{width}}", [f"{v:.6f}" for v in r["step0_fastgp"]])
    print(f"step 0 D gradients: largest relative difference {r['step0_grad_rel_diff']:.2e}")
    print(f"loss curves over {args.steps} steps: largest difference {r['curve_max_abs_diff']:.2e}")
    print(f"time per step: {names[0]} {1e3 * r['reference_s_per_step']:.2f} ms, "
          f"{names[1]} {1e3 * r['fastgp_s_per_step']:.2f} ms")
