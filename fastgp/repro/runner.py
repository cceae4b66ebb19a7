"""Running an experiment of :mod:`fastgp.repro` and reporting it.

An experiment's runs are ordinary trainer runs (``fastgp.train.config.resolve`` then
``fastgp.train.train``), each in its own directory ``OUT/<setting>/seed<k>``. Their final
metrics records (``Run.last``, the last line of each ``metrics.jsonl``) are aggregated per
setting into mean ± sample standard deviation over the seeds, and written as ``results.json``
(every run's values too), ``table.md`` (also printed) and ``NAME.png`` (a bar chart with each
seed's value as a dot).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from ..train import config as train_config
from ..train import rundir as train_rundir
from . import stats
from .stats import Comparison

# A --quick run: enough steps to exercise every code path of the experiment, nothing more.
QUICK_STEPS = 4
QUICK_EVAL_SAMPLES = 256
RESULTS, TABLE = "results.json", "table.md"


class ReproError(ValueError):
    """An experiment that cannot run as asked (a missing trainer feature, a bad argument)."""


@dataclass(frozen=True)
class Metric:
    """One column of the table: ``key`` of the final metrics record, ``derive(record, cfg)`` for a
    quantity computed from it, or ``over_run(records)`` for one computed from every metrics record
    of the run (e.g. how often a regularizer acted); None where it does not apply."""

    key: str
    label: str
    fmt: str = ".3g"
    derive: Callable[[dict, dict], float | None] | None = None
    over_run: Callable[[list], float | None] | None = None

    def value(self, record: dict, cfg: dict, records: list | None = None, tail: int = 1) -> float | None:
        """The metric of a run: ``over_run(records)``; else, with ``tail`` > 1, the mean over the
        last ``tail`` metrics records that have it (one logged point is noisy); else the final
        record's (``record``, which also holds what an experiment's ``measure`` added)."""
        if self.over_run is not None:
            value = self.over_run(records if records is not None else [record])
        else:
            present = [v for v in map(lambda r: self._one(r, cfg), records or []) if v is not None]
            if tail > 1 and present:
                value = sum(map(float, present[-tail:])) / len(present[-tail:])
            else:
                value = self._one(record, cfg)
        return None if value is None else float(value)

    def _one(self, record: dict, cfg: dict):
        return self.derive(record, cfg) if self.derive is not None else record.get(self.key)


def read_records(run_dir: str) -> list[dict]:
    """Every metrics record of a run (its metrics.jsonl), in order."""
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass(frozen=True)
class Setting:
    """One compared configuration: trainer options (dotted keys) on top of the experiment's base."""

    name: str  # also the name of its run directory
    label: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    claim: str  # what the paper reports, in one sentence, for the table's header
    base: dict  # trainer options (dotted keys) shared by every setting
    settings: tuple[Setting, ...]
    metrics: tuple[Metric, ...]
    steps: int  # full run: generator steps of each run
    seeds: int  # full run: seeds 0 .. seeds-1
    quick: dict = field(default_factory=dict)  # extra options of a --quick run (smaller data)
    records: int = 20  # metrics records per run (image metrics are slow: fewer)
    # A measurement outside the trainer's runs (e.g. D trained for a frozen G), run first:
    # study(out_dir, seeds, quick, log) -> dict with "markdown" (its section of the report, put
    # before the training-run table) and "files" (what it wrote into out_dir).
    study: Callable | None = None
    # The files the study or the figure below write into out_dir (an earlier run's are refused
    # without --force, as the reports are).
    own_files: tuple[str, ...] = ()
    # What the recorded full run in docs/repro showed, in words: reproduced / in part / not, and why.
    verdict: str = ""
    # Optional: measure(finished fastgp.train Run) -> extra final values of that run, for metrics
    # the trainer does not log; figure(results, out_dir) -> a further picture's file name.
    measure: Callable | None = None
    figure: Callable | None = None
    # Round 3 (a claim tested, not described): the claim quoted from the paper with its source
    # (file, section, figure or table); the paper's setting, what runs here and each deviation.
    quote: str = ""
    setting_note: str = ""
    # Each plain metric is the mean over the run's last ``tail`` metrics records that have it.
    tail: int = 1
    # Paired by seed, each with a 95 % bootstrap interval (fastgp.repro.stats); judge(results)
    # turns their outcomes (and a study's) into the verdict sentence, which starts with one of
    # stats.VERDICTS. An experiment with a judge needs no hand-written ``verdict``.
    comparisons: tuple[Comparison, ...] = ()
    judge: Callable[[dict], str] | None = None

    def configs(self, steps: int, seed: int, quick: bool) -> dict[str, dict]:
        """The validated trainer config of every setting for one seed; fails before any training,
        naming the setting and the missing or bad option.

        Options, later ones winning: the repro defaults (logging relative to the run's length),
        the base, the setting, what every repro run fixes (seed, steps, no pictures or progress
        bar) and, for --quick, small evaluations and the experiment's quick options."""
        out = {}
        for setting in self.settings:
            options = {**log_defaults(steps, self.records), **self.base, **setting.options,
                       **fixed_options(steps, seed)}
            if quick:
                options.update({"log.eval_samples": QUICK_EVAL_SAMPLES, **self.quick})
            missing = sorted({_feature(k) for k in options if k not in train_config.SCHEMA})
            if missing:
                raise ReproError(
                    f"{self.name}: setting {setting.name!r} needs {', '.join(missing)}, which this trainer does "
                    f"not have (python -m fastgp.train --help lists its options)"
                )
            try:
                out[setting.name] = train_config.validate(train_config.unflatten(options))
            except train_config.ConfigError as e:
                raise ReproError(f"{self.name}: setting {setting.name!r}: {e}") from None
        return out


def _feature(key: str) -> str:
    """The trainer feature an unknown option belongs to: ``regularizers.X`` or the key itself."""
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] == "regularizers" and len(parts) > 2 else key


def log_defaults(steps: int, records: int) -> dict:
    """``records`` metrics records and 4 diagnostics per run (the trainer always takes one at
    the last step); an experiment's base may change them."""
    return {"log.every": max(1, steps // records), "log.diag_every": max(1, steps // 4)}


def fixed_options(steps: int, seed: int) -> dict:
    """What every repro run sets: its seed and length, no pictures or progress bar (the report
    has its own), one checkpoint, at the end."""
    return {"seed": seed, "steps": steps, "log.progress": False, "log.plots": False, "checkpoint.every": steps}


# ------------------------------------------------------------------------------------------------
# Aggregation
# ------------------------------------------------------------------------------------------------


def summarize(values: list) -> dict:
    """``{"mean", "std", "n"}`` of the values that are present (None skipped); ``std`` is the
    sample standard deviation (n − 1), None with fewer than two values; ``mean`` None with none.
    A non-finite value (a diverged run) makes the mean non-finite: it is reported, not hidden."""
    present = [float(v) for v in values if v is not None]
    n = len(present)
    if n == 0:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(present) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in present) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


def aggregate(runs: list[dict], metrics: tuple[Metric, ...]) -> dict:
    """Per metric key, the summary over runs of ``run["values"][key]``."""
    return {m.key: summarize([run["values"].get(m.key) for run in runs]) for m in metrics}


# ------------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------------


# What a run of an experiment wrote into its output directory: read back before deleting anything.
MANIFEST = "repro-manifest.json"
MANIFEST_FORMAT = "fastgp.repro/manifest-1"


def planned_outputs(exp: Experiment, n_seeds: int) -> tuple[list[str], list[str]]:
    """(files, directories) a run of ``exp`` writes, relative to its output directory: the reports,
    the study's and figure's files, and each trainer run's files in ``<setting>/seed<k>``."""
    files, dirs = [RESULTS, TABLE, f"{exp.name}.png", *exp.own_files], []
    for setting in exp.settings:
        dirs.append(setting.name)
        for seed in range(n_seeds):
            run_dir = os.path.join(setting.name, f"seed{seed}")
            dirs.append(run_dir)
            files += [os.path.join(run_dir, name) for name in train_rundir.RUN_FILES]
    return files, dirs


def _relative(rel) -> bool:
    return (isinstance(rel, str) and rel != "" and not os.path.isabs(rel)
            and os.pardir not in rel.split(os.sep) and os.path.normpath(rel) == rel)


def read_manifest(out_dir: str) -> dict | None:
    """The manifest of the earlier run in ``out_dir`` (None where there is none); a file of that
    name that is not one is refused: nothing is deleted on its word."""
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.lexists(path):
        return None
    problem = None
    if os.path.islink(path) or not os.path.isfile(path):
        problem = "a link or a directory"
    else:
        try:
            with open(path, encoding="utf-8") as f:
                manifest = json.load(f)
        except (OSError, ValueError) as e:
            problem = f"unreadable: {e}"
        else:
            if not (isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT
                    and isinstance(manifest.get("experiment"), str)
                    and all(isinstance(manifest.get(k), list) and all(map(_relative, manifest[k]))
                            for k in ("files", "dirs"))):
                problem = f"not of the format {MANIFEST_FORMAT!r}"
    if problem:
        raise ReproError(f"{path} is not a manifest written by fastgp.repro ({problem}): move it away or choose "
                         "another --out")
    return manifest


def _link_on_the_way(out_dir: str, rel: str) -> str | None:
    """The first symbolic link on the path from ``out_dir`` to ``out_dir/rel`` (``rel`` included)."""
    path = out_dir
    for part in rel.split(os.sep):
        path = os.path.join(path, part)
        if os.path.islink(path):
            return path
    return None


def previous_outputs(manifest: dict | None, out_dir: str) -> list[str]:
    """What the earlier run recorded in ``manifest`` left in ``out_dir`` (relative paths): its
    reports and its runs' directories ``<setting>/seed<k>``, finished or not."""
    if manifest is None:
        return []
    top = [f for f in manifest["files"] if os.sep not in f]
    runs = [d for d in manifest["dirs"] if os.sep in d]
    return [rel for rel in top + runs if os.path.lexists(os.path.join(out_dir, rel))]


def check_output_dir(exp: Experiment, out_dir: str, n_seeds: int, force: bool) -> dict | None:
    """Refuse, before any training, an ``out_dir`` where the run would write or delete through a
    link, overwrite what no run of fastgp.repro wrote, or replace an earlier run without
    ``force``; returns the earlier run's manifest."""
    problem = train_rundir.writable_dir_problem(out_dir)
    if problem:
        raise ReproError(f"output directory {out_dir} {problem}")
    manifest = read_manifest(out_dir)
    old_files, old_dirs = (manifest["files"], manifest["dirs"]) if manifest else ([], [])
    files, dirs = planned_outputs(exp, n_seeds)
    for rel in dict.fromkeys(old_files + old_dirs + files + dirs):
        link = _link_on_the_way(out_dir, rel)
        if link is not None:
            raise ReproError(f"{link} is a symbolic link: fastgp.repro writes and deletes only inside {out_dir}, never "
                             "through a link; remove it or choose another --out")
    for rel in old_files + files:
        path = os.path.join(out_dir, rel)
        if os.path.lexists(path) and (rel not in old_files or not os.path.isfile(path)):
            raise ReproError(f"{path} is in the way and was not written by a run of fastgp.repro (no {MANIFEST} "
                             "lists it as a file): move it away or choose another --out")
    for rel in dirs:
        if os.path.lexists(os.path.join(out_dir, rel)) and not os.path.isdir(os.path.join(out_dir, rel)):
            raise ReproError(f"{os.path.join(out_dir, rel)} is in the way: a file where a run directory goes; move it "
                             "away or choose another --out")
    previous = previous_outputs(manifest, out_dir)
    if previous and not force:
        shown = ", ".join(previous[:3]) + (f" and {len(previous) - 3} more" if len(previous) > 3 else "")
        raise ReproError(f"{out_dir} already holds a run of {manifest['experiment']} ({shown}): overwrite it with "
                         "--force (force=True from Python) or choose another --out")
    return manifest


def delete_previous(manifest: dict, out_dir: str) -> None:
    """Delete the files an earlier run listed in its manifest (checked: regular files, reached
    without a link), then its directories that are left empty, then the manifest."""
    for rel in manifest["files"]:
        path = os.path.join(out_dir, rel)
        if os.path.isfile(path) and not os.path.islink(path):
            os.unlink(path)
    for rel in sorted(manifest["dirs"], key=lambda d: -d.count(os.sep)):
        with contextlib.suppress(OSError):  # not empty (files of someone else's): kept
            os.rmdir(os.path.join(out_dir, rel))
    os.unlink(os.path.join(out_dir, MANIFEST))


def write_manifest(exp: Experiment, out_dir: str, n_seeds: int) -> None:
    """Record, before writing any of it, what this run writes (directories: those it creates)."""
    files, dirs = planned_outputs(exp, n_seeds)
    manifest = {"format": MANIFEST_FORMAT, "experiment": exp.name, "files": files,
                "dirs": [d for d in dirs if not os.path.exists(os.path.join(out_dir, d))]}
    try:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
            f.write("\n")
    except OSError as e:
        raise ReproError(f"cannot write into the output directory {out_dir}: {e.strerror or e}") from None


def run(exp: Experiment, out_dir: str, *, seeds: int | None = None, steps: int | None = None,
        quick: bool = False, force: bool = False, jobs: int = 1, log=None) -> dict:
    """Train every setting × seed of ``exp`` in ``out_dir`` and write the reports; returns the
    results (what ``results.json`` holds). ``seeds``/``steps`` default to the experiment's full
    values, or to 1 seed and ``QUICK_STEPS`` with ``quick``.

    A run first records what it will write in ``out_dir/repro-manifest.json``. An ``out_dir``
    that holds an earlier run (a manifest) is refused (as ``fastgp-train --out`` refuses a run
    directory), before any training; ``force`` deletes the files that run's manifest lists and
    its directories left empty, and nothing else. A file in the way that no manifest lists, or a
    symbolic link below ``out_dir`` on the way to anything the run writes or deletes, is refused
    even with ``force``."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    n_seeds = seeds if seeds is not None else (1 if quick else exp.seeds)
    n_steps = steps if steps is not None else (QUICK_STEPS if quick else exp.steps)
    for name, value in (("seeds", n_seeds), ("steps", n_steps), ("jobs", jobs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ReproError(f"{name}: expected an int >= 1, got {value!r}")
    if jobs > 1:
        from . import EXPERIMENTS

        if EXPERIMENTS.get(exp.name) is not exp:
            raise ReproError(f"jobs: {jobs} parallel runs need an experiment of fastgp.repro.EXPERIMENTS (the workers "
                             f"look it up by name); {exp.name!r} is not one: use jobs=1")
    per_seed = [exp.configs(n_steps, seed, quick) for seed in range(n_seeds)]  # all checked before training
    previous = check_output_dir(exp, out_dir, n_seeds, force)
    if previous is not None:  # only with force: stale seeds of a larger earlier run must not linger
        delete_previous(previous, out_dir)
    write_manifest(exp, out_dir, n_seeds)

    results = {
        "experiment": exp.name,
        "title": exp.title,
        "claim": exp.claim,
        "quick": quick,
        "steps": n_steps,
        "seeds": list(range(n_seeds)),
        "base": exp.base,
        "metrics": [{"key": m.key, "label": m.label} for m in exp.metrics],
        "settings": [],
    }
    started = time.perf_counter()
    if exp.study is not None:
        results["study"] = exp.study(out_dir, n_seeds, quick, log)
    jobs_list = [(setting, seed, per_seed[seed][setting.name]) for setting in exp.settings for seed in range(n_seeds)]
    finals = _train_all(exp, out_dir, jobs_list, jobs, log)
    return _report(exp, out_dir, results, per_seed, finals, round(time.perf_counter() - started, 1))


def _report(exp: Experiment, out_dir: str, results: dict, per_seed: list, finals: dict, seconds: float) -> dict:
    """Every run's values (from its final record and metrics.jsonl), the comparisons, the verdict,
    the figure and the report files: the part of a run after its training, shared with ``rebuild``."""
    for setting in exp.settings:
        runs = []
        for seed in range(len(per_seed)):
            cfg = per_seed[seed][setting.name]
            rel = os.path.join(setting.name, f"seed{seed}")
            final, run_seconds = finals[rel]
            need_records = exp.tail > 1 or any(m.over_run for m in exp.metrics)
            records = read_records(os.path.join(out_dir, rel)) if need_records else None
            values = {m.key: m.value(final, cfg, records, exp.tail) for m in exp.metrics}
            runs.append({"seed": seed, "dir": rel, "seconds": run_seconds, "values": values, "final": final})
        results["settings"].append({
            "name": setting.name,
            "label": setting.label,
            "options": setting.options,
            "summary": aggregate(runs, exp.metrics),
            "runs": runs,
        })
    results["comparisons"] = [stats.run_comparison(c, results["settings"]) for c in exp.comparisons]
    if exp.judge is not None:
        results["verdict"] = stats.check_verdict(exp.judge(results))
    results["seconds"] = seconds
    if exp.figure is not None:
        results["figure"] = exp.figure(results, out_dir)
    write_reports(results, exp, out_dir)
    return results


def rebuild(exp: Experiment, out_dir: str) -> dict:
    """Write the reports of the finished run of ``exp`` in ``out_dir`` again, from its runs, with
    the experiment as it is now (its metrics, comparisons, judge, texts and figure): nothing is
    trained. For a report whose text or judge changed after its runs were trained. Each run's final
    record (with what ``exp.measure`` added) is read from the run's ``results.json``, its records from
    its ``metrics.jsonl``. Refused, before anything is written, where ``out_dir`` holds no finished
    run of ``exp``, a run is missing, or a run's options (its ``config.yaml``) are not the ones the
    experiment gives it now: a report must describe the runs it reports. ``results.json`` then says
    ``"rebuilt": true``; its ``seconds`` stay the training's."""
    import yaml

    path = os.path.join(out_dir, RESULTS)
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
    except (OSError, ValueError) as e:
        raise ReproError(f"{out_dir} holds no finished run to rebuild ({path}: {e})") from None
    if old.get("experiment") != exp.name:
        raise ReproError(f"{path} is a run of {old.get('experiment')!r}, not of {exp.name!r}")
    names = [s["name"] for s in old.get("settings", [])]
    if names != [s.name for s in exp.settings]:
        raise ReproError(f"{path}: its settings {names} are not {exp.name}'s now {[s.name for s in exp.settings]}")
    quick, seeds = bool(old["quick"]), list(old["seeds"])
    if seeds != list(range(len(seeds))) or not seeds:
        raise ReproError(f"{path}: seeds must be 0..N-1, got {seeds}")
    per_seed = [exp.configs(old["steps"], seed, quick) for seed in seeds]
    finals = {}
    for setting in old["settings"]:
        for r in setting["runs"]:
            rel = os.path.join(setting["name"], f"seed{r['seed']}")
            cfg_path = os.path.join(out_dir, rel, train_rundir.CONFIG)
            try:
                with open(cfg_path, encoding="utf-8") as f:
                    saved = train_config.flatten(yaml.safe_load(f))
            except (OSError, yaml.YAMLError) as e:
                raise ReproError(f"{cfg_path}: cannot read the run's options ({e})") from None
            now = train_config.flatten(per_seed[r["seed"]][setting["name"]])
            differ = sorted(k for k in now.keys() | saved.keys() if now.get(k) != saved.get(k))
            if differ:
                shown = ", ".join(f"{k}: ran {saved.get(k)!r}, now {now.get(k)!r}" for k in differ[:4])
                raise ReproError(f"{rel}: the run's options are not the experiment's now ({shown}); rerun it")
            finals[rel] = (r["final"], r["seconds"])
    results = {key: old[key] for key in ("quick", "steps", "seeds")}
    results = {"experiment": exp.name, "title": exp.title, "claim": exp.claim, **results, "base": exp.base,
               "metrics": [{"key": m.key, "label": m.label} for m in exp.metrics], "settings": [], "rebuilt": True}
    if "study" in old:
        results["study"] = old["study"]
    write_manifest(exp, out_dir, len(seeds))  # the files written now (a figure added since the run)
    return _report(exp, out_dir, results, per_seed, finals, old["seconds"])


def _train_one(exp: Experiment, cfg: dict, run_dir: str) -> tuple[dict, float]:
    """Train one run; its final metrics record (with what ``exp.measure`` adds) and seconds."""
    from ..train import train

    t0 = time.perf_counter()
    finished = train(cfg, run_dir)
    final = dict(finished.last)
    if exp.measure is not None:
        final.update(exp.measure(finished))
    return final, round(time.perf_counter() - t0, 1)


def _train_in_worker(name: str, cfg: dict, run_dir: str) -> tuple[dict, float]:
    import torch

    from . import EXPERIMENTS

    torch.set_num_threads(1)  # N runs at once on N cores: more threads per run only spin
    return _train_one(EXPERIMENTS[name], cfg, run_dir)


def _train_all(exp: Experiment, out_dir: str, runs: list, jobs: int, log) -> dict:
    """Train every ``(setting, seed, cfg)`` of ``runs``; ``{"<setting>/seed<k>": (final, seconds)}``.
    With ``jobs`` > 1, in a pool of spawned processes (fork would copy a parent's OpenMP state)."""
    total, out = len(runs), {}

    def report(setting, seed, final, seconds):
        out[os.path.join(setting.name, f"seed{seed}")] = (final, seconds)
        shown = ", ".join(f"{m.key}={_fmt(final.get(m.key), m.fmt)}" for m in exp.metrics if m.key in final)
        log(f"[{len(out)}/{total}] {exp.name} {setting.name} seed {seed}: {seconds} s; final {shown}")

    if jobs == 1:
        for setting, seed, cfg in runs:
            report(setting, seed, *_train_one(exp, cfg, os.path.join(out_dir, setting.name, f"seed{seed}")))
        return out
    import concurrent.futures
    import multiprocessing

    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = {pool.submit(_train_in_worker, exp.name, cfg, os.path.join(out_dir, setting.name, f"seed{seed}")):
                   (setting, seed) for setting, seed, cfg in runs}
        for future in concurrent.futures.as_completed(pending):
            report(*pending[future], *future.result())
    return out


# ------------------------------------------------------------------------------------------------
# Reports
# ------------------------------------------------------------------------------------------------


def _fmt(value, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def cell(summary: dict, fmt: str, n_seeds: int) -> str:
    """``mean ± std`` (``mean`` alone for one value, ``—`` for none), with ``(n=k)`` when some
    seeds lack the value."""
    if summary["n"] == 0:
        return "—"
    text = _fmt(summary["mean"], fmt)
    if summary["std"] is not None:
        text += f" ± {_fmt(summary['std'], fmt)}"
    if summary["n"] < n_seeds:
        text += f" (n={summary['n']})"
    return text


def markdown(results: dict, exp: Experiment) -> str:
    n_seeds = len(results["seeds"])
    lines = [f"# {results['experiment']}: {results['title']}", ""]
    if results["quick"]:
        lines += [f"**QUICK run ({results['steps']} steps, {_plural(n_seeds, 'seed')}): a smoke test of the "
                  "pipeline, not a result.**", ""]
    if exp.quote:
        lines += ["## The claim", "", *(f"> {line}" if line else ">" for line in exp.quote.splitlines()), ""]
    else:
        lines += [f"Paper: {results['claim']}", ""]
    if results.get("verdict"):
        lines += [f"**Verdict{' (QUICK run: not a result)' if results['quick'] else ''}: {results['verdict']}**", ""]
    elif exp.verdict and not results["quick"]:
        lines += [f"Verdict (recorded full run): {exp.verdict}", ""]
    if exp.setting_note:
        lines += ["## Setting", "", exp.setting_note.strip(), ""]
    comparisons = list(results.get("study", {}).get("comparisons", [])) + list(results.get("comparisons", []))
    if comparisons:
        labels = {m.key: m.label for m in exp.metrics}
        lines += ["## Paired comparisons", "",
                  "Differences a − b paired by seed; the interval is a 95 % percentile bootstrap over the seed pairs "
                  "(fastgp.repro.stats); \"as claimed\" means the whole interval lies on the side the paper claims.",
                  "", *stats.comparison_table(comparisons, labels), ""]
    if results.get("study"):
        lines += [results["study"]["markdown"], "## Training runs", ""]
    measured = ("the run's final metrics" if exp.tail <= 1
                else f"each run's metrics averaged over its last {exp.tail} logged points")
    lines += [
        f"{results['steps']} generator steps per run, seeds {_seed_range(results['seeds'])}; each cell is the mean "
        f"± sample standard deviation over seeds of {measured}.",
        "",
        "| setting | " + " | ".join(m.label for m in exp.metrics) + " |",
        "|---|" + "---|" * len(exp.metrics),
    ]
    for s in results["settings"]:
        cells = [cell(s["summary"][m.key], m.fmt, n_seeds) for m in exp.metrics]
        lines.append(f"| {s['label']} | " + " | ".join(cells) + " |")
    lines += ["", "Settings (trainer options on top of the shared base):", ""]
    lines += [f"- `{s['name']}`: " + (", ".join(f"`{k}={_yaml(v)}`" for k, v in s["options"].items()) or "the base")
              for s in results["settings"]]
    lines += ["", "Base: " + ", ".join(f"`{k}={_yaml(v)}`" for k, v in results["base"].items()), ""]
    if results.get("figure"):
        lines += [f"![{results['experiment']}: the experiment's own picture]({results['figure']})", ""]
    return "\n".join(lines)


def _yaml(value) -> str:
    """A value as ``--set`` would take it (a mapping in YAML flow style, {alpha: 1.0})."""
    if isinstance(value, dict):
        import yaml

        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip()
    return str(value)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _seed_range(seeds: list) -> str:
    return str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"


def bar_chart(results: dict, exp: Experiment, path: str) -> None:
    """One panel per metric: a bar per setting (the mean, the sample std as an error bar) and
    each seed's value as a dot."""
    from ..train.plots import _pyplot

    plt = _pyplot()
    metrics = exp.metrics
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 0.8, 3.8), squeeze=False)
    names = [s["name"] for s in results["settings"]]
    for ax, m in zip(axes[0], metrics):
        for i, s in enumerate(results["settings"]):
            summary = s["summary"][m.key]
            if summary["n"] == 0 or not math.isfinite(summary["mean"]):
                ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=8)
                continue
            ax.bar(i, summary["mean"], yerr=summary["std"] or 0.0, capsize=3, color=f"C{i}", alpha=0.7)
            dots = [r["values"][m.key] for r in s["runs"] if r["values"].get(m.key) is not None]
            ax.plot([i] * len(dots), dots, "k.", markersize=4)
        means = [s["summary"][m.key]["mean"] for s in results["settings"] if s["summary"][m.key]["n"]]
        if means and min(means) > 0 and max(means) / min(means) > 100:
            ax.set_yscale("log")  # values spanning orders of magnitude (‖∂G/∂z‖ across noise scales)
        else:
            ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_title(m.label, fontsize=9)
    title = f"{results['experiment']}: {results['title']}"
    if results["quick"]:
        title += "  [QUICK: smoke run, not a result]"
    fig.suptitle(f"{title}\n{results['steps']} steps, {_plural(len(results['seeds']), 'seed')}: bars mean ± std, "
                 "dots the seeds",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_reports(results: dict, exp: Experiment, out_dir: str) -> str:
    """Write results.json, table.md and NAME.png into ``out_dir``; returns the Markdown table."""
    os.makedirs(out_dir, exist_ok=True)
    results["table"], results["chart"] = TABLE, f"{exp.name}.png"
    with open(os.path.join(out_dir, RESULTS), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    table = markdown(results, exp)
    with open(os.path.join(out_dir, TABLE), "w", encoding="utf-8") as f:
        f.write(table)
    bar_chart(results, exp, os.path.join(out_dir, results["chart"]))
    return table
