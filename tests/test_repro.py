"""python -m fastgp.repro: every experiment in quick mode, its reports, the aggregation over seeds,
and the errors (unknown name, bad arguments, an experiment needing a missing trainer feature).

Quick runs of 2 steps: the whole module takes seconds.
"""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from fastgp import repro
from fastgp.repro import Experiment, Metric, ReproError, Setting, aggregate, summarize
from fastgp.repro.__main__ import main
from fastgp.repro.runner import cell, markdown


pytestmark = pytest.mark.usefixtures("one_thread")


def read_results(out):
    with open(out / "results.json", encoding="utf-8") as f:
        return json.load(f)


def table_rows(text):
    """The body rows of the training-run table (after its |---| line): the last table of the
    report, since an experiment's own study (lipschitz's fixed-G table) comes before it."""
    lines = text.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("|---"))
    rows = []
    for line in lines[start + 1:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


# ------------------------------------------------------------------------------------------------
# Every experiment, quick
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow  # every experiment's quick runs
@pytest.mark.parametrize("name", list(repro.EXPERIMENTS))
def test_every_experiment_runs_quick_and_writes_its_reports(name, tmp_path, capsys):
    exp = repro.EXPERIMENTS[name]
    out = tmp_path / name
    assert main([name, "--quick", "--steps", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out

    table = (out / "table.md").read_text(encoding="utf-8")
    assert printed.strip() == table.strip()  # the table printed is the table saved
    assert "QUICK" in table and "not a result" in table
    rows = table_rows(table)
    assert [r[0] for r in rows] == [s.label for s in exp.settings]  # one row per setting
    assert all(len(r) == 1 + len(exp.metrics) for r in rows)

    results = read_results(out)
    assert results["quick"] is True and results["steps"] == 2 and results["seeds"] == [0]
    assert [s["name"] for s in results["settings"]] == [s.name for s in exp.settings]
    for s in results["settings"]:
        (only,) = s["runs"]
        assert only["final"]["step"] == 2
        assert (out / only["dir"] / "metrics.jsonl").exists()
        for m in exp.metrics:
            assert s["summary"][m.key]["mean"] == only["values"][m.key]

    png = out / results["chart"]
    assert png.name == f"{name}.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # training runs
def test_seeds_are_aggregated_into_mean_and_std(tmp_path, capsys):
    out = tmp_path / "lip"
    assert main(["lipschitz", "--quick", "--seeds", "2", "--steps", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    results = read_results(out)
    assert results["seeds"] == [0, 1]
    for s in results["settings"]:
        assert [r["seed"] for r in s["runs"]] == [0, 1]
        values = [r["values"]["grad_cos"] for r in s["runs"]]
        assert values[0] != values[1]  # different seeds, different runs
        summary = s["summary"]["grad_cos"]
        assert summary["n"] == 2
        assert summary["mean"] == pytest.approx(sum(values) / 2)
        assert summary["std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
    table = (out / "table.md").read_text(encoding="utf-8")
    assert all("±" in c for row in table_rows(table) for c in row[1:])


@pytest.mark.slow  # training runs
def test_existing_output_is_refused_unless_forced(tmp_path, capsys):
    # Issue 16: a second run silently overwrote the first; fastgp-train --out refuses a run directory.
    out = tmp_path / "lip"
    assert main(["lipschitz", "--quick", "--seeds", "2", "--steps", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    table = (out / "table.md").read_bytes()
    (out / "notes.txt").write_text("mine")
    assert main(["lipschitz", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: {out} already holds a run of lipschitz (results.json, table.md, lipschitz.png and 8 more): " \
           "overwrite it with --force" in err
    assert (out / "table.md").read_bytes() == table and (out / "wgan-gp" / "seed1").is_dir()  # untouched

    assert main(["lipschitz", "--quick", "--steps", "1", "--force", "--out", str(out)]) == 0
    capsys.readouterr()
    assert read_results(out)["seeds"] == [0]
    settings = [s.name for s in repro.EXPERIMENTS["lipschitz"].settings]
    assert sorted(p.name for p in out.iterdir()) == sorted(["lipschitz.png", "lipschitz-field.png", "lipschitz-images.png", "notes.txt",
                                                            "repro-manifest.json", "results.json", "table.md"]
                                                           + settings)
    assert all([p.name for p in (out / name).iterdir()] == ["seed0"] for name in settings)  # stale seed1 gone
    assert (out / "notes.txt").read_text() == "mine"  # nothing but the earlier run is deleted
    with pytest.raises(ReproError, match="force=True from Python"):
        repro.run(repro.EXPERIMENTS["lipschitz"], str(out), steps=1, quick=True)


def _one_line_error(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("python -m fastgp.repro: error: "), err
    return lines[0]


def _tree(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


QUICK_ZERO_GP = ["zero-gp", "--quick", "--steps", "1"]


def test_force_never_deletes_through_a_symlink_or_outside_out(tmp_path, capsys):
    # Issue 21: a setting directory that is a link to another place lost that place's files.
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    assert main(QUICK_ZERO_GP + ["--out", str(out)]) == 0
    capsys.readouterr()
    setting = repro.EXPERIMENTS["zero-gp"].settings[0].name
    shutil.copytree(out / setting, elsewhere)
    (elsewhere / "seed0" / "mine.txt").write_text("mine")
    shutil.rmtree(out / setting)
    (out / setting).symlink_to(elsewhere, target_is_directory=True)
    outside, inside = _tree(elsewhere), _tree(out)
    assert main(QUICK_ZERO_GP + ["--force", "--out", str(out)]) == 2
    assert _one_line_error(capsys) == (
        f"python -m fastgp.repro: error: {out / setting} is a symbolic link: fastgp.repro writes and deletes only "
        f"inside {out}, never through a link; remove it or choose another --out")
    assert _tree(elsewhere) == outside and _tree(out) == inside  # nothing deleted, here or there


@pytest.mark.parametrize("make", ["directory", "symlink"])
def test_force_deletes_only_what_a_run_wrote(make, tmp_path, capsys):
    # Issue 21: anything named table.md or results.json was deleted by name, directories included.
    out = tmp_path / "out"
    assert main(QUICK_ZERO_GP + ["--out", str(out)]) == 0
    capsys.readouterr()
    (out / "table.md").unlink()
    if make == "directory":
        (out / "table.md").mkdir()
        (out / "table.md" / "mine.txt").write_text("mine")
        blocked = out / "table.md"
    else:
        (tmp_path / "mine.md").write_text("mine")
        (out / "table.md").symlink_to(tmp_path / "mine.md")
    before = _tree(out)
    assert main(QUICK_ZERO_GP + ["--force", "--out", str(out)]) == 2
    error = _one_line_error(capsys)
    if make == "directory":
        assert error == (f"python -m fastgp.repro: error: {blocked} is in the way and was not written by a run of "
                         "fastgp.repro (no repro-manifest.json lists it as a file): move it away or choose another --out")
    else:
        assert f"{out / 'table.md'} is a symbolic link: fastgp.repro writes and deletes only inside" in error
    assert _tree(out) == before and (tmp_path / "mine.md").exists() == (make == "symlink")


def test_files_no_run_wrote_are_refused_even_with_force(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"mine": 1}')  # no manifest: not a run of fastgp.repro
    assert main(QUICK_ZERO_GP + ["--force", "--out", str(out)]) == 2
    assert f"{out / 'results.json'} is in the way and was not written by a run of fastgp.repro" in _one_line_error(capsys)
    assert (out / "results.json").read_text() == '{"mine": 1}'


def test_manifest_lists_what_the_run_wrote(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(QUICK_ZERO_GP + ["--out", str(out)]) == 0
    capsys.readouterr()
    manifest = json.loads((out / "repro-manifest.json").read_text())
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {"repro-manifest.json"}
    assert manifest["experiment"] == "zero-gp" and written <= set(manifest["files"])
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_dir()} == set(manifest["dirs"])


@pytest.mark.parametrize("where", ["file", "below a file", "proc"])
def test_out_that_cannot_be_a_directory_is_one_line(where, tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    out = {"file": tmp_path / "file", "below a file": tmp_path / "file" / "out",
           "proc": "/proc/fastgp-no-such/out"}[where]
    assert main(QUICK_ZERO_GP + ["--out", str(out)]) == 2
    error = _one_line_error(capsys)
    assert error.startswith(f"python -m fastgp.repro: error: ") and str(out) in error
    assert (tmp_path / "file").read_text() == "mine"


@pytest.mark.slow  # a fresh Python process trains
def test_module_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fastgp.repro", "--list"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in repro.EXPERIMENTS:
        assert name in proc.stdout


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


def test_unknown_name_lists_the_valid_ones(tmp_path, capsys):
    assert main(["no-such-experiment", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'no-such-experiment'" in err
    for name in repro.EXPERIMENTS:
        assert name in err
    assert not (tmp_path / "x").exists()
    with pytest.raises(ReproError, match="valid names: zero-gp"):
        repro.get("nope")


def test_list_names_every_experiment(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for exp in repro.EXPERIMENTS.values():
        assert exp.name in out and exp.title in out


@pytest.mark.parametrize("args, message", [
    ([], "NAME is required"),
    (["zero-gp", "--seeds", "0"], "--seeds expects an int >= 1, got 0"),
    (["zero-gp", "--steps", "two"], "--steps expects an int >= 1, got 'two'"),
])
def test_bad_arguments_exit_2_naming_the_argument(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("seeds, steps, message", [
    (0, 2, "seeds: expected an int >= 1, got 0"),
    (True, 2, "seeds: expected an int >= 1, got True"),
    (1, 1.5, "steps: expected an int >= 1, got 1.5"),
])
def test_run_checks_its_arguments(seeds, steps, message, tmp_path):
    with pytest.raises(ReproError, match=message):
        repro.run(repro.EXPERIMENTS["zero-gp"], str(tmp_path), seeds=seeds, steps=steps, quick=True)


def _toy(setting_options):
    return Experiment(
        name="toy", title="t", claim="c", base={"data.name": "8gaussians"},
        settings=(Setting("ok", "fine", {}), Setting("bad", "needs more", setting_options)),
        metrics=(Metric("hq", "HQ"),), steps=2, seeds=1,
    )


def test_option_precedence():
    exp = Experiment(
        name="toy", title="t", claim="c",
        base={"log.eval_samples": 512, "log.every": 7, "steps": 99, "batch_size": 32},
        settings=(Setting("a", "A", {"batch_size": 16}),), metrics=(Metric("hq", "HQ"),), steps=100, seeds=1,
        quick={"batch_size": 8}, records=4,
    )
    full = exp.configs(100, seed=3, quick=False)["a"]
    assert full["seed"] == 3 and full["steps"] == 100  # fixed by the run, whatever the base says
    assert full["batch_size"] == 16  # the setting over the base
    assert full["log"]["eval_samples"] == 512 and full["log"]["every"] == 7  # the base over the repro defaults
    assert full["log"]["diag_every"] == 25 and full["log"]["progress"] is False and full["log"]["plots"] is False
    assert full["checkpoint"]["every"] == 100
    quick = exp.configs(4, seed=0, quick=True)["a"]
    assert quick["batch_size"] == 8 and quick["log"]["eval_samples"] == 256  # quick options last
    assert exp.configs(40, seed=0, quick=False)["a"]["log"]["every"] == 7
    plain = Experiment(name="p", title="t", claim="c", base={}, settings=(Setting("a", "A"),),
                       metrics=(), steps=100, seeds=1, records=4)
    assert plain.configs(100, seed=0, quick=False)["a"]["log"]["every"] == 25  # steps // records


def test_missing_trainer_feature_fails_before_training(tmp_path):
    exp = _toy({"regularizers.no-such-switch.enabled": True, "regularizers.penalty.kind": "r1"})
    with pytest.raises(ReproError, match=r"toy: setting 'bad' needs regularizers\.no-such-switch, which this trainer"):
        repro.run(exp, str(tmp_path / "out"), quick=True)
    assert not (tmp_path / "out").exists()  # nothing trained, not even the valid setting


def test_bad_setting_value_names_setting_and_key(tmp_path):
    with pytest.raises(ReproError, match=r"toy: setting 'bad': regularizers\.penalty\.kind: must be one of"):
        repro.run(_toy({"regularizers.penalty.kind": "no-such-kind"}), str(tmp_path / "out"), quick=True)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------
# Aggregation on synthetic records
# ------------------------------------------------------------------------------------------------


def test_summarize_mean_and_sample_std():
    assert summarize([1.0, 2.0, 6.0]) == {"mean": 3.0, "std": pytest.approx(math.sqrt(7.0)), "n": 3}
    assert summarize([4.0, None, 6.0]) == {"mean": 5.0, "std": pytest.approx(math.sqrt(2.0)), "n": 2}
    assert summarize([0.5]) == {"mean": 0.5, "std": None, "n": 1}
    assert summarize([None, None]) == {"mean": None, "std": None, "n": 0}
    assert math.isnan(summarize([1.0, float("nan")])["mean"])  # a diverged run shows, it is not dropped


def test_aggregate_and_table_cells_on_synthetic_runs():
    metrics = (Metric("modes", "modes", ".1f"), Metric("cos", "cos", ".2f"), Metric("lz", "L·B", ".2f"))
    runs = [{"values": {"modes": 8, "cos": 0.9}}, {"values": {"modes": 6, "cos": None}},
            {"values": {"modes": 7, "cos": 0.7}}]
    summary = aggregate(runs, metrics)
    assert summary["modes"] == {"mean": 7.0, "std": pytest.approx(1.0), "n": 3}
    assert summary["cos"]["mean"] == pytest.approx(0.8) and summary["cos"]["n"] == 2
    assert summary["lz"]["n"] == 0
    assert cell(summary["modes"], ".1f", 3) == "7.0 ± 1.0"
    assert cell(summary["cos"], ".2f", 3) == "0.80 ± 0.14 (n=2)"  # a seed without the value is flagged
    assert cell(summary["lz"], ".2f", 3) == "—"

    exp = Experiment(name="toy", title="t", claim="c", base={}, settings=(Setting("a", "setting A"),),
                     metrics=metrics, steps=10, seeds=3)
    results = {"experiment": "toy", "title": "t", "claim": "c", "quick": False, "steps": 10, "seeds": [0, 1, 2],
               "base": {}, "settings": [{"name": "a", "label": "setting A", "options": {}, "summary": summary}]}
    text = markdown(results, exp)
    assert "QUICK" not in text
    assert table_rows(text) == [["setting A", "7.0 ± 1.0", "0.80 ± 0.14 (n=2)", "—"]]


def test_derived_metric():
    bound = Metric("lbz", "L·B_z", derive=lambda rec, cfg: rec["jac_g_z"] * cfg["noise"]["scale"])
    assert bound.value({"jac_g_z": 2.0}, {"noise": {"scale": 3.0}}) == 6.0
    assert Metric("x", "x").value({}, {}) is None


def test_metric_over_a_whole_run():
    records = [{"step": 1, "sc_replaced": 0.0}, {"step": 2, "sc_replaced": 0.25}, {"step": 3},
               {"step": 4, "sc_replaced": 0.5}]
    share = Metric("fired", "fired", over_run=lambda recs: repro.share_positive(recs, "sc_replaced"))
    mean = Metric("mean", "mean", over_run=lambda recs: repro.run_mean(recs, "sc_replaced"))
    assert share.value(records[-1], {}, records) == pytest.approx(2 / 3)  # records without the key are skipped
    assert mean.value(records[-1], {}, records) == pytest.approx(0.25)
    assert share.value({"step": 1}, {}, [{"step": 1}]) is None and repro.run_mean([], "x") is None
    pcr = repro.EXPERIMENTS["pcr-sc"]
    assert {"sc_replaced_run", "sc_fired"} <= {m.key for m in pcr.metrics}


def test_verdict_is_printed_for_full_runs_only():
    exp = Experiment(name="toy", title="t", claim="c", base={}, settings=(Setting("a", "A"),),
                     metrics=(Metric("hq", "HQ"),), steps=10, seeds=1, verdict="reproduced in part: because")
    results = {"experiment": "toy", "title": "t", "claim": "c", "quick": False, "steps": 10, "seeds": [0],
               "base": {}, "settings": [{"name": "a", "label": "A", "options": {},
                                         "summary": {"hq": {"mean": 0.5, "std": None, "n": 1}}}]}
    assert "Verdict (recorded full run): reproduced in part: because" in markdown(results, exp)
    assert "Verdict" not in markdown({**results, "quick": True}, exp)
    # every experiment says what its run showed: in words (rounds 1-2) or derived from its intervals (round 3)
    assert all(e.verdict or e.judge for e in repro.EXPERIMENTS.values())


def test_palette_png_keeps_the_picture_in_fewer_bytes(tmp_path):
    # The repro pictures full of noise images are saved with at most 256 colours.
    pytest.importorskip("matplotlib")
    import numpy as np
    import torch
    from PIL import Image

    from fastgp.train.plots import _pyplot, save_palette_png

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3, 3))
    ax.imshow(torch.rand(32, 32, 3, generator=torch.Generator().manual_seed(0)).numpy())
    fig.savefig(tmp_path / "full.png", dpi=80)
    save_palette_png(fig, str(tmp_path / "palette.png"), dpi=80)
    plt.close(fig)
    with Image.open(tmp_path / "full.png") as full, Image.open(tmp_path / "palette.png") as palette:
        assert palette.mode == "P" and palette.size == full.size
        assert len(palette.getcolors(256)) <= 256
        # Same picture up to the palette's rounding: the mean absolute difference of a channel
        # value is a few levels of 255.
        a = np.asarray(full.convert("RGB"), dtype=float)
        b = np.asarray(palette.convert("RGB"), dtype=float)
        assert np.abs(a - b).mean() < 8
    assert (tmp_path / "palette.png").stat().st_size < (tmp_path / "full.png").stat().st_size


# ------------------------------------------------------------------------------------------------
# --report: the reports of a finished run written again, nothing trained
# ------------------------------------------------------------------------------------------------


def test_report_rebuilds_the_same_results_without_training(tmp_path, capsys, monkeypatch):
    import dataclasses

    import fastgp.repro.runner as runner

    out = tmp_path / "z"
    assert main(QUICK_ZERO_GP + ["--seeds", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    first = read_results(out)
    # Nothing may train: rebuild reads the runs.
    monkeypatch.setattr(runner, "_train_one", lambda *a: pytest.fail("--report trained a run"))
    assert main(["zero-gp", "--report", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    again = read_results(out)
    assert again.pop("rebuilt") is True and "rebuilt" not in first
    assert again == first
    assert printed.strip() == (out / "table.md").read_text(encoding="utf-8").strip()
    # The experiment's text as it is now goes into the report; the numbers stay the runs'.
    exp = repro.EXPERIMENTS["zero-gp"]
    changed = dataclasses.replace(exp, setting_note="A NOTE WRITTEN AFTER THE RUN")
    rebuilt = runner.rebuild(changed, str(out))
    assert "A NOTE WRITTEN AFTER THE RUN" in (out / "table.md").read_text(encoding="utf-8")
    assert rebuilt["settings"] == first["settings"] and rebuilt["comparisons"] == first["comparisons"]


def test_report_refuses_runs_it_does_not_describe(tmp_path, capsys):
    import dataclasses

    import fastgp.repro.runner as runner

    out = tmp_path / "z"
    assert main(["zero-gp", "--report", "--out", str(out)]) == 2
    assert "holds no finished run to rebuild" in capsys.readouterr().err
    assert main(QUICK_ZERO_GP + ["--out", str(out)]) == 0
    capsys.readouterr()
    exp = repro.EXPERIMENTS["zero-gp"]
    # Options changed since the run: refused, naming the option, and nothing is rewritten.
    before = (out / "table.md").read_text(encoding="utf-8")
    other = dataclasses.replace(exp, base={**exp.base, "optim.lr_d": 0.5})
    with pytest.raises(ReproError, match=r"none/seed0: the run's options are not the experiment's now "
                                         r"\(optim.lr_d: ran 0.003, now 0.5\); rerun it"):
        runner.rebuild(other, str(out))
    with pytest.raises(ReproError, match="is a run of 'zero-gp', not of 'far'"):
        runner.rebuild(repro.EXPERIMENTS["far"], str(out))
    fewer = dataclasses.replace(exp, settings=exp.settings[:2])
    with pytest.raises(ReproError, match="its settings"):
        runner.rebuild(fewer, str(out))
    assert (out / "table.md").read_text(encoding="utf-8") == before
    with pytest.raises(SystemExit):
        main(["zero-gp", "--report", "--steps", "3", "--out", str(out)])
    assert "--steps cannot be given with it" in capsys.readouterr().err
