"""``python -m fastgp.repro NAME``: run a reproduction and print its table (see fastgp.repro)."""

from __future__ import annotations

import argparse
import os
import sys

from ..train.checkpoint import CheckpointError
from . import EXPERIMENTS, ReproError, get, run
from .runner import QUICK_STEPS, RESULTS, TABLE, rebuild


def _positive_int(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} expects an int >= 1, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} expects an int >= 1, got {value}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {e.name:<12} {e.title} ({len(e.settings)} settings × {e.seeds} seeds, {e.steps} steps)"
                        for e in EXPERIMENTS.values())
    parser = argparse.ArgumentParser(
        prog="python -m fastgp.repro",
        description="Run a reduced reproduction of a published experiment with the reference trainer and "
                    "report mean ± std over seeds as a table (stdout, table.md), results.json and a PNG chart.",
        epilog="experiments:\n" + listing,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="the experiment to run (--list names them)")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--seeds", type=_positive_int("--seeds"), metavar="N",
                        help="seeds 0..N-1 [the experiment's; 1 with --quick]")
    parser.add_argument("--steps", type=_positive_int("--steps"), metavar="N",
                        help=f"generator steps of each run [the experiment's; {QUICK_STEPS} with --quick]")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: a few steps, 1 seed, small evaluations; its table says QUICK")
    parser.add_argument("--out", metavar="DIR", help="output directory [runs/repro/NAME]; runs in DIR/<setting>/seed<k>")
    parser.add_argument("--jobs", type=_positive_int("--jobs"), default=1, metavar="N",
                        help="train N runs at once, each in its own process with one torch thread [1]")
    parser.add_argument("--force", action="store_true",
                        help="replace the earlier run in the output directory (refused without it): deletes only the "
                             "files its repro-manifest.json lists, never through a symbolic link")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: write the reports of the finished run in the output directory again, "
                             "with the experiment's text, comparisons and judge as they are now (refused if its runs' "
                             "options are not the experiment's)")
    return parser


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        print(parser.epilog.removeprefix("experiments:\n"))
        return 0
    if args.name is None:
        parser.error(f"NAME is required (one of: {', '.join(EXPERIMENTS)}) unless --list is given")
    from .._extras import missing

    if args.report:
        given = [flag for flag, on in (("--seeds", args.seeds), ("--steps", args.steps), ("--quick", args.quick),
                                       ("--jobs", args.jobs != 1), ("--force", args.force)) if on]
        if given:
            parser.error(f"--report rebuilds the reports of a finished run as it was run: {', '.join(given)} "
                         "cannot be given with it")
    problem = missing("matplotlib", "train", "the reproductions' charts")  # before training, not after it
    if problem:
        print(f"{parser.prog}: error: {problem}", file=sys.stderr)
        return 2
    try:
        exp = get(args.name)
        out = args.out or os.path.join("runs", "repro", exp.name)
        if args.report:
            results = rebuild(exp, out)
        else:
            results = run(exp, out, seeds=args.seeds, steps=args.steps, quick=args.quick, force=args.force,
                          jobs=args.jobs)
    except (ReproError, CheckpointError) as e:  # CheckpointError: a trainer run's disk write failed
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    with open(os.path.join(out, TABLE), encoding="utf-8") as f:
        print(f.read())
    print(f"wrote {os.path.join(out, TABLE)}, {os.path.join(out, RESULTS)}, {os.path.join(out, results['chart'])} "
          f"({results['seconds']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
