"""Run the fastgp benchmarks.

Usage::

    python -m bench                    # every family (every module under bench/cases/)
    python -m bench penalty            # one family; its rows are upserted into the existing results
    python -m bench --quick            # few rounds and the small shapes: a smoke test (~2 minutes)
    python -m bench --device cuda      # time every case on the GPU (CUDA events); results in
                                       # bench/results/<gpu name>.md/.json beside the CPU's
    python -m bench --out DIR          # write DIR/<machine>.json and DIR/<machine>.md (default bench/results)
    python -m bench penalty -k head    # only the cases whose name contains "head"
    python -m bench --list             # list the families and cases, run nothing
    python -m bench --no-compile       # no torch.compile contender: fastgp against eager only
                                       # (the GPU check's quick first pass)
    python -m bench --wait-quiet 900   # on a shared machine: re-run rounds disturbed by other
                                       # processes once the CPU is quiet (up to 900 s of waiting)

``<machine>`` is a slug of the core count and CPU model on the CPU (e.g. ``cpu-2core-intel-xeon``),
of the GPU's name with ``--device cuda`` (e.g. ``nvidia-h200``).
The JSON keeps, per case, the raw per-round times, medians, p20/p80, ratios, dispatch counts, the
versions and the fastgp backend that ran; running one family replaces that family's rows only, and
the Markdown is regenerated from the whole JSON.

Columns of the Markdown table:

* fastgp / reference / compile ms — median milliseconds per call (p20–p80 band in parentheses),
  all contenders timed round-robin in one process after warm-up. *reference* is the eager code
  users write today; *compile* is ``torch.compile`` of it, or ``unsupported: <exception>`` when
  its first call raises (double backward under aot_autograd does).
  On CUDA, fastgp is also timed with its Triton backend forced (the *triton* contender, in the
  JSON and in the notes under the table) beside the default backend (the extension).
* speed-up vs reference / vs compile — baseline median / fastgp median (> 1: fastgp faster).
* ATen ops (fastgp / reference) — operator calls reaching a TorchDispatchMode in one call
  (forward, backward and optimizer ops; ``torch.ops.fastgp.*`` included).
* intermediate MB (fastgp / reference) — the sum of nbytes of those ops' freshly allocated tensor
  outputs (views and in-place results excluded).
* copy-roofline ms — a plain ``dst.copy_(src)`` moving as many bytes as the op must read + write.
* target — the case's required speed-up on this device (and, where set, its bound on fastgp ms /
  copy-roofline ms) and whether it was ``met`` or ``MISSED`` (reported as is).

Torch threads are set to the number of cores available to the process and recorded. Results are
written after every case, so an interrupted run keeps the cases it finished.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import warnings
from pathlib import Path

import torch

from bench import harness

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def discover_families() -> list[str]:
    import bench.cases

    return sorted(m.name for m in pkgutil.iter_modules(bench.cases.__path__) if not m.name.startswith("_"))


def load_cases(family: str) -> list[harness.Case]:
    module = importlib.import_module(f"bench.cases.{family}")
    cases = module.cases()
    for order, case in enumerate(cases):
        case.family = family
        case.order = order
    return cases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("families", nargs="*", help="families to run (default: all under bench/cases/)")
    parser.add_argument("--quick", action="store_true", help="few rounds and the small shapes: a smoke test, not a measurement")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to time the cases (default cpu)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: bench/results)")
    parser.add_argument("-k", dest="pattern", default=None, help="run only cases whose name contains this")
    parser.add_argument("--list", action="store_true", help="list families and cases, run nothing")
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="do not run the torch.compile contender (a compile per case, 5-30 s cold on a GPU): "
        "fastgp against eager PyTorch only, e.g. as a quick first pass",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="budget for waiting until other processes leave the CPU alone: rounds timed while they "
        "used > 10%% of it are run again (default 0: keep every round, report the load)",
    )
    args = parser.parse_args(argv)

    available = discover_families()
    families = args.families or available
    unknown = [f for f in families if f not in available]
    if unknown:
        parser.error(f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {unknown}; available: {available}")

    if args.list:
        for family in families:
            for case in load_cases(family):
                cuda = f"  cuda target={case.cuda_target}" if case.cuda_target else ""
                bound = f"  max fastgp/copy={case.max_copy_ratio}" if case.max_copy_ratio else ""
                large = "  (large: not in --quick)" if case.large else ""
                print(f"{case.key}  target={case.target}{cuda}{bound}{large}  {case.description}")
        return 0

    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            f"bench: --device cuda: no CUDA GPU is visible (torch {torch.__version__}, CUDA "
            f"{torch.version.cuda or 'none'}): nothing timed",
            file=sys.stderr,
        )
        return 2
    device = torch.device(args.device)
    cores = harness.core_count()
    torch.set_num_threads(cores)
    warnings.filterwarnings("ignore", message=".*compiled extension is unavailable.*")
    settings = harness.Settings.for_mode(args.quick, args.wait_quiet, device)
    settings.compile = not args.no_compile
    info = harness.fastgp_info(device)
    gpu = f", GPU {harness.gpu_name(device)}" if device.type == "cuda" else ""
    print(
        f"bench: machine {harness.machine_slug(device)} ({harness.cpu_model()}, {cores} cores, torch threads "
        f"{torch.get_num_threads()}{gpu}), torch {torch.__version__}, fastgp backend on {device.type}: "
        f"{info.get(f'backend_{device.type}', info.get('error', '?'))}, "
        f"{'quick' if args.quick else 'full'}: {settings.rounds} rounds of ~{settings.block_seconds * 1e3:.0f} ms blocks",
        flush=True,
    )

    start = time.perf_counter()
    records, failures, skipped = [], 0, 0
    replace = set(families) if not args.pattern else set()
    for family in families:
        for case in load_cases(family):
            if args.pattern and args.pattern not in case.name:
                continue
            if args.quick and case.large:
                skipped += 1
                continue
            t0 = time.perf_counter()
            print(f"  {case.key} ...", flush=True)
            try:
                record = harness.run_case(case, settings, log=lambda msg: print(msg, flush=True))
            except Exception as error:  # a broken case must not lose the others' results
                failures += 1
                print(f"    FAILED: {type(error).__name__}: {error}", flush=True)
                continue
            record["order"] = case.order
            records.append(record)
            print(f"    {harness.summary_line(record)}  [{time.perf_counter() - t0:.1f} s]", flush=True)
            harness.write_results(args.out, records, replace, device)

    json_path, md_path = harness.write_results(args.out, records, replace, device)
    print(
        f"bench: wrote {json_path} and {md_path} in {time.perf_counter() - start:.1f} s"
        + (f"; --quick skipped {skipped} large-shape case(s)" if skipped else "")
        + (f" (of which {settings.wait_budget.waited:.0f} s waiting for a quiet CPU)" if settings.wait_budget else ""),
        flush=True,
    )
    for rec in records:
        for name, entry in rec["contenders"].items():
            if entry.get("status") == "error":
                failures += 1
                print(f"bench: {rec['family']}/{rec['name']} {rec['shape']}: {name} raised:\n{entry.get('traceback', '')}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
