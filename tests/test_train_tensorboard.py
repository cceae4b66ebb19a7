"""The trainer's TensorBoard event files (log.tensorboard, issue 23): every number of each metrics
record under its metrics.jsonl name and the sample picture, read back with TensorBoard's own
reader; nothing written when the option is off; a missing extra refused before training; a resumed
run appending without showing a step twice; event files of another run treated as its files."""

import json
import os
import pathlib
import shutil
import sys

import pytest

from fastgp.train import checkpoint, cli, config, rundir, train
from helpers import train_killed_at

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

QUICK = ["steps=6", "batch_size=32", "log.every=3", "log.diag_every=3", "log.eval_samples=64",
         "checkpoint.every=3", "log.progress=false", "log.plots=false", "model.hidden=16", "log.tensorboard=true"]

pytestmark = pytest.mark.usefixtures("one_thread")


def sets(*extra):
    return [a for s in QUICK + list(extra) for a in ("--set", s)]


def records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def events(run_dir):
    """TensorBoard's view of the run: an EventAccumulator over <run dir>/tensorboard, every event kept."""
    acc = event_accumulator.EventAccumulator(str(os.path.join(run_dir, "tensorboard")),
                                             size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def scalars(acc):
    """{tag: [(step, value)]} of every scalar."""
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def as_records(run_dir):
    """metrics.jsonl as {name: [(step, value)]} of its numbers: what the event files must hold."""
    expected: dict = {}
    for rec in records(run_dir):
        for key, value in rec.items():
            if key not in ("step", "run_id"):
                expected.setdefault(key, []).append((rec["step"], value))
    return expected


def assert_same_as_metrics(acc, run_dir):
    got, expected = scalars(acc), as_records(run_dir)
    assert set(got) == set(expected)
    for tag, points in expected.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
        # Event files store float32: compare at its precision.
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in points], rel=1e-6, abs=1e-6), tag


@pytest.mark.parametrize("data", [[], ["data.name=rectangles", "data.n_images=256", "model.channels=8",
                                       "noise.dim=16", "log.eval_samples=32"]], ids=["2d", "images"])
def test_every_record_number_and_the_samples_picture(data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["--out", str(run_dir)] + sets("steps=7", "log.plots=true", *data)) == 0
    assert "tensorboard/" in capsys.readouterr().err  # the closing line names it
    acc = events(run_dir)
    assert_same_as_metrics(acc, run_dir)
    tags = set(acc.Tags()["scalars"])
    # The diagnostics and both generators' metrics are among them, under their metrics.jsonl names.
    main = "hq" if not data else "correct"
    assert {"d_loss", "g_loss", "grad_d_x", "jac_g_z", main, "ema_" + main} <= tags
    assert [r["step"] for r in records(run_dir)] == [3, 6, 7]
    (image,) = acc.Images("samples")  # the figure of samples.png, at the step it was drawn
    assert image.step == 7 and image.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.width > 100 and image.height > 100


def test_option_off_writes_nothing(tmp_path):
    assert config.SCHEMA["log.tensorboard"].default is False
    run_dir = tmp_path / "run"
    assert cli.main(["--out", str(run_dir)] + sets("log.tensorboard=false")) == 0
    assert not (run_dir / "tensorboard").exists()
    assert sorted(os.listdir(run_dir)) == ["checkpoint.pt", "config.yaml", "metrics.jsonl"]


def test_missing_extra_is_refused_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if the extra were not installed
    run_dir = tmp_path / "run"
    assert cli.main(["--out", str(run_dir)] + sets()) == 2
    assert capsys.readouterr().err == (
        "fastgp-train: error: the TensorBoard event files (log.tensorboard) need tensorboard, from fastgp's "
        "[tensorboard] extra: pip install 'fastgp[tensorboard]' (or --set log.tensorboard=false)\n")
    assert not run_dir.exists()  # refused before anything was built or written
    # The Python entry point too, before it writes anything.
    with pytest.raises(ImportError, match=r"pip install 'fastgp\[tensorboard\]' \(or set log.tensorboard=false\)"):
        train(config.resolve(sets=QUICK), str(run_dir))
    assert not run_dir.exists()


def test_resume_appends_without_showing_a_step_twice(tmp_path, capsys):
    run_dir = tmp_path / "run"
    # Killed at step 10: it has logged step 9, after its last checkpoint (step 8).
    train_killed_at(10, ["--out", str(run_dir)] + sets("steps=14", "checkpoint.every=4"))
    assert checkpoint.load(str(run_dir))["step"] == 8
    assert [s for s, _ in scalars(events(run_dir))["d_loss"]] == [3, 6, 9]
    killed_time_9 = dict(scalars(events(run_dir))["time_s"])[9]

    code = cli.main(["--resume", str(run_dir)])
    assert code == 0, capsys.readouterr().err
    assert len(rundir.event_files(str(run_dir))) == 2  # the same folder, one file per process
    acc = events(run_dir)
    assert_same_as_metrics(acc, run_dir)  # each step once, the resumed run's values
    assert [s for s, _ in scalars(acc)["d_loss"]] == [3, 6, 9, 12, 14]
    shown_time_9 = dict(scalars(acc)["time_s"])[9]
    assert shown_time_9 != pytest.approx(killed_time_9)  # step 9 as the resumed run logged it


def test_event_files_are_the_runs_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # run directories given relative to it, as users give them
    a, b = pathlib.Path("a"), pathlib.Path("b")
    assert cli.main(["--out", str(a)] + sets()) == 0
    assert cli.main(["--out", str(b)] + sets("seed=1")) == 0
    a_id = checkpoint.load(str(a))["run_id"]
    (a_events,) = rundir.event_files(str(a))
    capsys.readouterr()

    # A new run refuses a folder that holds only another run's event files, and deletes them when forced.
    only = pathlib.Path("only")
    (only / "tensorboard").mkdir(parents=True)
    shutil.copy(a_events, only / "tensorboard")
    (only / "tensorboard" / "notes.txt").write_text("mine")
    assert cli.main(["--out", str(only)] + sets()) == 2
    assert capsys.readouterr().err == (f"fastgp-train: error: --out {only} already holds a run (tensorboard/ event "
                                       "files): choose another --out, or replace them with --force\n")
    assert cli.main(["--out", str(only), "--force"] + sets()) == 0
    assert set(rundir.event_files(str(only)).values()) == {checkpoint.load(str(only))["run_id"]}
    assert (only / "tensorboard" / "notes.txt").read_text() == "mine"  # not an event file: left alone

    # A resume refuses another run's event files beside its checkpoint, and drops them when forced.
    shutil.copy(a_events, b / "tensorboard")
    code = cli.main(["--resume", str(b), "--set", "steps=9"])
    err = capsys.readouterr().err
    assert code == 2 and f"tensorboard/ has event files of run {a_id}" in err
    assert cli.main(["--resume", str(b), "--set", "steps=9", "--force"]) == 0
    assert a_id not in rundir.event_files(str(b)).values()
    assert_same_as_metrics(events(b), b)
