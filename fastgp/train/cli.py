"""``fastgp-train`` / ``python -m fastgp.train``: the command line of the reference trainer."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time

from . import checkpoint, config, rundir


# The bundled configs: inside an installed package (setup.py copies configs/ there), else configs/
# of the source tree beside the package (a checkout, an editable install).
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED_CONFIGS = next((folder for folder in (os.path.join(_PACKAGE, "configs"),
                                               os.path.join(os.path.dirname(_PACKAGE), "configs"))
                        if os.path.isdir(folder)), os.path.join(os.path.dirname(_PACKAGE), "configs"))


def config_path(given: str) -> str:
    """``--config`` takes a file, or the name of a bundled config (``ring`` for configs/ring.yaml),
    so that the README's commands work from any folder with an installed package."""
    if os.path.exists(given) or os.path.basename(given) != given or os.path.splitext(given)[1]:
        return given
    bundled = os.path.join(BUNDLED_CONFIGS, given + ".yaml")
    return bundled if os.path.isfile(bundled) else given


def prog() -> str:
    """How the user called the trainer: ``fastgp-train`` (the console script; ``fastgp-train.exe`` or
    ``fastgp-train-script.py`` on Windows) or ``python -m fastgp.train``."""
    return "fastgp-train" if os.path.basename(sys.argv[0]).startswith("fastgp-train") else "python -m fastgp.train"


def _nearest_config(path: str) -> str | None:
    """The existing YAML file whose name is closest to a missing ``path``: looked for beside it, in
    ./configs and in the bundled configs (the README's paths are relative to the repository root)."""
    candidates = {}
    for folder in (os.path.dirname(path) or os.curdir, "configs", BUNDLED_CONFIGS):
        if os.path.isdir(folder):
            for name in sorted(os.listdir(folder)):
                stem, ext = os.path.splitext(name)
                if ext in (".yaml", ".yml"):
                    candidates.setdefault(stem, _shown(os.path.join(folder, name)))
    stem = os.path.splitext(os.path.basename(path))[0]
    close = difflib.get_close_matches(stem, candidates, n=1)
    return candidates[close[0]] if close else None


def _shown(path: str) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    rel = os.path.relpath(path)
    return os.path.abspath(path) if rel.startswith(os.pardir) else rel


def _check_configs_exist(paths) -> None:
    for path in paths:
        if not os.path.exists(path):
            near = _nearest_config(path)
            hint = f"; did you mean {near}?" if near else ""
            raise config.ConfigError(f"--config: {path} does not exist{hint}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog(),
        description=(
            "Train a GAN with fastgp's regularizers. With no arguments: 8 Gaussians ×10 with the "
            "zero-centred gradient penalty (under a minute on 2 CPU cores). Options come from the "
            "defaults below, then each --config file in order, then each --set."
        ),
        epilog=config.help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", action="append", default=[], metavar="FILE|NAME",
                        help="YAML file of options, or the name of a bundled one (repeatable; later files win), "
                             "e.g. ring or configs/ring.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                        help="override one option, typed by its default (repeatable), e.g. --set optim.n_dis=2")
    parser.add_argument("--out", metavar="DIR", help="run directory [runs/<data.name>-<UTC time>]")
    parser.add_argument("--resume", metavar="DIR",
                        help="continue the run in DIR from its checkpoint; only "
                             + ", ".join(config.RESUMABLE) + " may be changed with --set")
    parser.add_argument("--force", action="store_true",
                        help="with --out: replace the run already in DIR (its files are deleted first); with "
                             "--resume: continue the checkpoint's run even if DIR's config.yaml or metrics.jsonl "
                             "are of another run or config.yaml was edited (they are rewritten)")
    return parser


def _check_extras(cfg: dict) -> None:
    """Before training: the pictures written at the end need matplotlib (the [train] extra), the
    TensorBoard event files need tensorboard (the [tensorboard] extra)."""
    from .._extras import missing
    from .tensorboard_log import problem as tensorboard_problem

    if cfg["log"]["plots"]:
        problem = missing("matplotlib", "train", "the pictures written at the end of the run (log.plots)")
        if problem:
            raise config.ConfigError(f"{problem} (or --set log.plots=false)")
    if cfg["log"]["tensorboard"]:
        problem = tensorboard_problem()
        if problem:
            raise config.ConfigError(f"{problem} (or --set log.tensorboard=false)")


def run(argv=None) -> int:
    args = _parser().parse_args(argv)
    from .loop import CONFIG, train

    if args.resume:
        if args.config or args.out:
            raise config.ConfigError("--resume DIR takes its config and output directory from DIR: drop --config/--out")
        out = args.resume
        payload = checkpoint.load(out)
        saved = config.validate(payload["config"])
        cfg = config.resolve(sets=args.sets, base=saved)
        conflicts = config.resume_conflicts(saved, cfg)
        if conflicts:
            raise config.ConfigError("cannot change these options when resuming: " + "; ".join(conflicts))
        if cfg["steps"] < payload["step"]:
            raise config.ConfigError(
                f"steps: the checkpoint in {out} is at step {payload['step']}; resume with steps >= {payload['step']}"
            )
        rundir.check_resume(out, payload, cfg, args.force)  # train() checks again; here: before saying "resuming"
        print(f"resuming {out} at step {payload['step']} of {cfg['steps']}", file=sys.stderr)
    else:
        args.config = [config_path(given) for given in args.config]
        _check_configs_exist(args.config)
        cfg = config.resolve(files=args.config, sets=args.sets)  # fails here, before any training
        out = args.out or os.path.join("runs", f"{cfg['data']['name']}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
        payload = None
    _check_extras(cfg)
    result = train(cfg, out, resume=payload, force=args.force)
    summary = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.last.items()
                        if k != "run_id")
    print(f"wrote {out} (run {result.run_id}): {CONFIG}, metrics.jsonl, checkpoint.pt"
          + (", samples.png, curves.png" if cfg["log"]["plots"] else "")
          + (", tensorboard/" if cfg["log"]["tensorboard"] else ""), file=sys.stderr)
    if summary:
        print(f"final: {summary}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    """Entry point: configuration and checkpoint errors are one clear line and exit status 2."""
    try:
        return run(argv)
    except (config.ConfigError, checkpoint.CheckpointError) as e:
        print(f"fastgp-train: error: {e}", file=sys.stderr)
        return 2
