"""Runs that cannot be mixed up (issue 21): each run's identity in its checkpoint, config.yaml and
metrics.jsonl; what --out and --resume refuse (another run's files, an edited config.yaml), what
--force overrides; metrics lines that are not records; --out paths that cannot be written."""

import json
import os
import shutil

import pytest
import torch

from fastgp.train import checkpoint, cli, rundir

QUICK = ["steps=6", "batch_size=32", "log.every=3", "log.diag_every=0", "log.eval_samples=64",
         "checkpoint.every=3", "log.progress=false", "log.plots=false", "model.hidden=16"]

pytestmark = pytest.mark.usefixtures("one_thread")


def sets(*extra):
    return [a for s in QUICK + list(extra) for a in ("--set", s)]


def run_cli(args, capsys):
    code = cli.main(args)
    return code, capsys.readouterr().err


def one_line_error(err):
    """The CLI's refusals: one line on stderr, no traceback."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fastgp-train: error: "), err
    return lines[0]


def records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def config_id(run_dir):
    with open(os.path.join(run_dir, "config.yaml"), encoding="utf-8") as f:
        first = f.readline()
    assert first.startswith("# fastgp-train run "), first
    return first.split()[3].rstrip(",")


def checkpoint_id(run_dir):
    return torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=True).get("run_id")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two finished 6-step runs (records at steps 3 and 6), copied per test."""
    base = tmp_path_factory.mktemp("runs")
    for name, seed in (("a", 0), ("b", 1)):
        assert cli.main(["--out", str(base / name)] + sets(f"seed={seed}")) == 0
    return base


@pytest.fixture
def runs(two_runs, tmp_path):
    shutil.copytree(two_runs, tmp_path / "runs")
    return tmp_path / "runs"


def snapshot(run_dir):
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file()}


# ------------------------------------------------------------------------------------------------
# Identity
# ------------------------------------------------------------------------------------------------


def test_every_file_of_a_run_carries_its_id(runs, capsys):
    a, b = runs / "a", runs / "b"
    ids = {checkpoint_id(a), config_id(a), *(r["run_id"] for r in records(a))}
    assert len(ids) == 1 and rundir.is_id(ids.pop())
    assert checkpoint_id(b) != checkpoint_id(a)  # each run its own
    code, err = run_cli(["--resume", str(a), "--set", "steps=9"], capsys)
    assert code == 0, err
    assert f"(run {checkpoint_id(a)})" in err
    assert {checkpoint_id(a), config_id(a), *(r["run_id"] for r in records(a))} == {checkpoint_id(a)}
    assert [r["step"] for r in records(a)] == [3, 6, 9]


@pytest.mark.parametrize("how", ["copy", "symlink"])
def test_checkpoint_of_another_run_is_refused_unless_forced(how, runs, capsys):
    a, b = runs / "a", runs / "b"
    a_id, b_id, a_checkpoint = checkpoint_id(a), checkpoint_id(b), (a / "checkpoint.pt").read_bytes()
    (b / "checkpoint.pt").unlink()
    if how == "copy":
        shutil.copy(a / "checkpoint.pt", b / "checkpoint.pt")
    else:
        (b / "checkpoint.pt").symlink_to(a / "checkpoint.pt")
    before = snapshot(b)
    code, err = run_cli(["--resume", str(b), "--set", "steps=9"], capsys)
    assert code == 2
    assert one_line_error(err) == (
        f"fastgp-train: error: --resume {b}: checkpoint.pt is of run {a_id}, but config.yaml is of run {b_id} and "
        f"metrics.jsonl has records of run {b_id}: was the checkpoint copied from another run's directory? Resume "
        "with --force to continue the checkpoint's run there (the other run's records are dropped and config.yaml "
        "is rewritten)")
    assert snapshot(b) == before  # nothing rewritten

    code, err = run_cli(["--resume", str(b), "--set", "steps=9", "--force"], capsys)
    assert code == 0, err
    assert config_id(b) == checkpoint_id(b) == a_id
    assert [(r["run_id"], r["step"]) for r in records(b)] == [(a_id, 9)]  # run b's records are not mixed in
    assert not (b / "checkpoint.pt").is_symlink() and (a / "checkpoint.pt").read_bytes() == a_checkpoint


def test_checkpoint_alone_in_a_new_directory_continues_its_run(runs, capsys):
    # A copy of just the checkpoint: nothing there belongs to another run (a branch of run a).
    a, c = runs / "a", runs / "c"
    c.mkdir()
    shutil.copy(a / "checkpoint.pt", c / "checkpoint.pt")
    code, err = run_cli(["--resume", str(c), "--set", "steps=9"], capsys)
    assert code == 0, err
    assert config_id(c) == checkpoint_id(a) and [r["step"] for r in records(c)] == [9]


def _as_an_earlier_fastgp_wrote_it(run_dir):
    """No run id anywhere: the checkpoint (with a valid checksum), config.yaml and the records."""
    path = run_dir / "checkpoint.pt"
    payload = torch.load(path, weights_only=True)
    payload.pop("run_id")
    payload["checksum"] = checkpoint.checksum(payload)
    torch.save(payload, path)
    text = (run_dir / "config.yaml").read_text().splitlines(keepends=True)
    (run_dir / "config.yaml").write_text("".join(line for line in text if not line.startswith("#")))
    old = [{k: v for k, v in r.items() if k != "run_id"} for r in records(run_dir)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))


def test_checkpoint_without_an_id_resumes_with_a_warning_and_gets_one(runs, capsys):
    a = runs / "a"
    _as_an_earlier_fastgp_wrote_it(a)
    with pytest.warns(UserWarning, match=r"checkpoint\.pt has no run id \(written by an earlier fastgp\): nothing "
                                         r"can check that the files beside it are of its run; it continues as run"):
        code, err = run_cli(["--resume", str(a), "--set", "steps=9"], capsys)
    assert code == 0, err
    new_id = checkpoint_id(a)
    assert rundir.is_id(new_id) and config_id(a) == new_id
    assert [(r["run_id"], r["step"]) for r in records(a)] == [(new_id, 3), (new_id, 6), (new_id, 9)]


def test_checkpoint_without_an_id_in_another_runs_directory_is_refused(runs, capsys):
    a, b = runs / "a", runs / "b"
    _as_an_earlier_fastgp_wrote_it(a)
    shutil.copy(a / "checkpoint.pt", b / "checkpoint.pt")
    code, err = run_cli(["--resume", str(b), "--set", "steps=9"], capsys)
    assert code == 2
    assert ("checkpoint.pt is of a run without an id (an earlier fastgp), but config.yaml is of run "
            in one_line_error(err))


# ------------------------------------------------------------------------------------------------
# config.yaml edited between save and resume
# ------------------------------------------------------------------------------------------------


def test_edited_config_is_refused_naming_the_keys(runs, capsys):
    a = runs / "a"
    path = a / "config.yaml"
    text = path.read_text()
    path.write_text(text.replace("steps: 6\n", "steps: 12\n").replace("lr_d: 0.003\n", "lr_d: 0.01\n"))
    before = snapshot(a)
    code, err = run_cli(["--resume", str(a)], capsys)
    assert code == 2
    assert one_line_error(err) == (
        f"fastgp-train: error: {path} was edited after the run wrote it (steps: 12 there, 6 in the run; optim.lr_d: "
        "0.01 there, 0.003 in the run): a resumed run takes its options from checkpoint.pt; give the change as --set, "
        "or resume with --force to overwrite config.yaml with the run's options")
    assert snapshot(a) == before
    # The edit given as --set where resuming allows it: only the other key is named.
    code, err = run_cli(["--resume", str(a), "--set", "steps=12"], capsys)
    assert code == 2 and "(optim.lr_d: 0.01 there, 0.003 in the run)" in one_line_error(err)
    code, err = run_cli(["--resume", str(a), "--set", "steps=9", "--force"], capsys)
    assert code == 0, err
    assert "steps: 9\n" in path.read_text() and "lr_d: 0.003\n" in path.read_text()  # the run's options


def test_config_edits_that_change_no_option_resume(runs, capsys):
    a = runs / "a"
    path = a / "config.yaml"
    path.write_text(path.read_text() + "# a note of mine\n")
    code, err = run_cli(["--resume", str(a), "--set", "steps=9"], capsys)
    assert code == 0, err


def test_config_edited_into_an_invalid_one_is_refused(runs, capsys):
    a = runs / "a"
    (a / "config.yaml").write_text((a / "config.yaml").read_text() + "optim: [\n")
    code, err = run_cli(["--resume", str(a), "--set", "steps=9"], capsys)
    assert code == 2 and "config.yaml was edited after the run wrote it (it is no longer a valid config (" \
        in one_line_error(err)


# ------------------------------------------------------------------------------------------------
# metrics.jsonl lines that are not records
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, why", [
    ("[]", "a JSON list, not a record"),
    ("{}", "its step is None, not an int >= 0"),
    ('{"step": "4"}', "its step is '4', not an int >= 0"),
    ('{"step": true}', "its step is True, not an int >= 0"),
    ("not json", "not JSON"),
    ("", "an empty line"),
])
def test_bad_metrics_line_is_named_and_every_record_kept(bad, why, runs, capsys):
    a = runs / "a"
    metrics = a / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text(lines[0] + bad + "\n" + "".join(lines[1:]))  # in the middle
    with pytest.warns(UserWarning, match=f"^{metrics}:2: {why}: dropped$".replace("[", r"\[").replace("(", r"\(")):
        code, err = run_cli(["--resume", str(a), "--set", "steps=9"], capsys)
    assert code == 0, err
    assert [r["step"] for r in records(a)] == [3, 6, 9]  # the record after the bad line is kept


def test_torn_last_line_is_dropped_silently(runs, capsys, recwarn):
    a = runs / "a"
    with open(a / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"run_id": "x", "st')
    code, err = run_cli(["--resume", str(a), "--set", "steps=9"], capsys)
    assert code == 0, err
    assert not [w for w in recwarn if "metrics.jsonl" in str(w.message)]
    assert [r["step"] for r in records(a)] == [3, 6, 9]


# ------------------------------------------------------------------------------------------------
# --out
# ------------------------------------------------------------------------------------------------


def test_out_that_cannot_be_a_directory_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    for out, message in [
        (tmp_path / "file", f"--out {tmp_path / 'file'} is a file, not a directory"),
        (tmp_path / "file" / "run", f"--out {tmp_path / 'file' / 'run'} cannot be created: {tmp_path / 'file'} is a "
                                    "file, not a directory"),
        ("/proc/fastgp-no-such/run", "--out /proc/fastgp-no-such/run cannot be created: "),
    ]:
        code, err = run_cli(["--out", str(out)] + sets(), capsys)
        assert code == 2 and one_line_error(err).startswith(f"fastgp-train: error: {message}"), err
    assert (tmp_path / "file").read_text() == "mine"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permissions do not stop root")
def test_out_without_write_permission_is_one_line(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, err = run_cli(["--out", str(locked / "run")] + sets(), capsys)
    assert code == 2 and "cannot be written: no write permission in" in one_line_error(err)


def test_out_holding_another_runs_files_is_refused_unless_forced(runs, capsys):
    # A run stopped before its first checkpoint left config.yaml and metrics.jsonl.
    b = runs / "b"
    (b / "checkpoint.pt").unlink()
    (b / "notes.txt").write_text("mine")
    before = snapshot(b)
    code, err = run_cli(["--out", str(b)] + sets(), capsys)
    assert code == 2
    assert one_line_error(err) == (f"fastgp-train: error: --out {b} already holds a run (config.yaml, metrics.jsonl): "
                                   "choose another --out, or replace them with --force")
    assert snapshot(b) == before
    code, err = run_cli(["--out", str(b), "--force"] + sets("steps=3"), capsys)
    assert code == 0, err
    new_id = checkpoint_id(b)
    assert config_id(b) == new_id and [(r["run_id"], r["step"]) for r in records(b)] == [(new_id, 3)]
    assert (b / "notes.txt").read_text() == "mine"  # only the run's own files are replaced


def test_out_holding_a_checkpoint_is_replaced_only_when_forced(runs, capsys):
    a = runs / "a"
    old = checkpoint_id(a)
    code, err = run_cli(["--out", str(a)] + sets(), capsys)
    assert code == 2 and f"--out {a} already holds a run (checkpoint.pt, config.yaml, metrics.jsonl): continue it " \
        f"with --resume {a}, choose another --out, or replace it with --force" in one_line_error(err)
    code, err = run_cli(["--out", str(a), "--force"] + sets("steps=3", "checkpoint.every=10"), capsys)
    assert code == 0, err
    assert checkpoint_id(a) != old and checkpoint.load(str(a))["step"] == 3
