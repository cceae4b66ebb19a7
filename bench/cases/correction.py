"""Benchmark cases of the sample-correction family (float32, on the CPU or a CUDA GPU).

  nearest   the nearest-neighbour distance of 64 samples of 3072 features to a bank of 25,600:
            fastgp.correction.nearest_distance (chunked BLAS products + fused norm / clamp /
            running argmin) vs torch.cdist(...).min(1) (target ≥ 1.5×), and the PEAK extra memory
            of one call of each, measured in a fresh process (target: ≥ 10× lower for fastgp).

Peak memory: each contender runs once in its own subprocess after its inputs are allocated; the
peak resident set (VmHWM) is reset just before the call (``echo 5 > /proc/self/clear_refs``) and
the figure is its growth over the resident set at that moment, which counts a kernel's private
scratch too (a TorchDispatchMode sees only op outputs). One warm-up call runs first, so one-time
BLAS and thread-pool buffers are excluded for both contenders. Page granularity (4 KiB); memory the
allocator reuses without touching new pages is not counted.

On a GPU the peak is read from torch's CUDA caching allocator in this process: the peak of
allocated bytes during one call (after one warm-up call and with the peak statistics reset just
before it), minus the bytes allocated before it — the call's working memory, outputs included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from bench.harness import Case, Setup, Unsupported

_PEAK_SCRIPT = r"""
import gc, json, resource, sys
import torch
torch.set_num_threads(int(sys.argv[4]))
import fastgp
b, n, d = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
g = torch.Generator().manual_seed(0)
samples = torch.randn(b, d, generator=g)
bank = torch.randn(n, d, generator=g)
which = sys.argv[5]
fn = (lambda: fastgp.correction.nearest_distance(samples, bank)) if which == "fastgp" else (
    lambda: torch.cdist(samples, bank).min(1))
def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
fn()  # warm: one-time BLAS / thread-pool buffers are not the call's working memory
gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM (the peak RSS) to the current RSS
before = status("VmRSS")
out = fn()
print(json.dumps({"peak_extra_bytes": status("VmHWM") - before}))
"""


def _peak_extra_bytes(which: str, b: int, n: int, d: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(b), str(n), str(d), str(torch.get_num_threads()), which],
        capture_output=True, text=True, check=True, env=dict(os.environ),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_extra_bytes"]


def _cuda_peak_extra_bytes(fn) -> int:
    """Peak extra CUDA memory of one call of ``fn`` (allocated by torch's allocator)."""
    fn()  # warm: cuBLAS workspaces and the like are not the call's working memory
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    del out
    return peak


def reference_nearest(samples: torch.Tensor, bank: torch.Tensor):
    return torch.cdist(samples, bank).min(1)


def _nearest_case(b: int, n: int, d: int) -> Case:
    def setup(device: torch.device) -> Setup:
        g = torch.Generator().manual_seed(0)  # drawn on the CPU: the same data on every device
        samples = torch.randn(b, d, generator=g).to(device)
        bank = torch.randn(n, d, generator=g).to(device)
        try:
            import fastgp

            fused = lambda: fastgp.correction.nearest_distance(samples, bank)  # noqa: E731
        except Exception as error:  # pragma: no cover
            fused = Unsupported(f"import fastgp failed ({type(error).__name__}: {error})", "unavailable")
        compiled = torch.compile(reference_nearest, dynamic=False)
        contenders = {
            "fastgp": fused,
            "reference": lambda: reference_nearest(samples, bank),
            "compile": lambda: compiled(samples, bank),
        }
        if device.type == "cuda" and not isinstance(fused, Unsupported):
            peaks = {"fastgp": _cuda_peak_extra_bytes(fused), "reference": _cuda_peak_extra_bytes(contenders["reference"])}
            how = "one call, peak of torch's CUDA allocator"
        else:
            peaks = {which: _peak_extra_bytes(which, b, n, d) for which in ("fastgp", "reference")}
            how = "fresh process, VmHWM growth"

        def derive(_medians):
            # Below 64 KiB the figure is at the page-count noise level: the ratio is a lower bound.
            ratio = peaks["reference"] / max(peaks["fastgp"], 65536)
            return {
                "peak_extra_bytes": peaks,
                "peak_ratio_reference_over_fastgp": ratio,
                "markdown": [
                    f"peak extra memory of one call ({how}): fastgp "
                    f"{peaks['fastgp'] / 1e6:.2f} MB vs torch.cdist(...).min(1) {peaks['reference'] / 1e6:.2f} MB "
                    f"(≥ {ratio:.0f}× lower; target ≥ 10×: {'met' if ratio >= 10 else 'MISSED'})"
                ],
            }

        notes = [f"bank {n}×{d} float32 = {n * d * 4 / 1e6:.0f} MB; fastgp default chunk = "
                 f"{__import__('fastgp').correction.default_chunk(b, n)} bank rows"]
        # At the least: read the bank and the samples once.
        return Setup(contenders, copy_bytes=(n + b) * d * 4, derive=derive, notes=notes)

    return Case(
        "nearest",
        f"B={b}, bank {n}, D={d}",
        setup,
        "nearest-neighbour L2 distance + index of each sample in a bank (forward)",
        target=("reference", 1.5),
    )


def cases() -> list[Case]:
    return [_nearest_case(64, 25600, 3072)]
