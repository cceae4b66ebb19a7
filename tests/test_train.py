"""The reference trainer: config families, outputs, exact resume, checkpoints and bad configs.

Runs are a few steps each so the module stays well under a minute on 2 cores.
"""

import json
import os
import re
import subprocess
import sys

import pytest
import torch
import yaml

import fastgp
from fastgp.train import checkpoint, cli, config, train
from fastgp.train.regularizers import LOSS_NAMES
from helpers import train_killed_at

CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, "configs")
CONFIG_FILES = sorted(f for f in os.listdir(CONFIGS) if f.endswith(".yaml"))
QUICK = ["steps=6", "batch_size=32", "data.n_images=512", "log.every=3", "log.diag_every=3", "log.eval_samples=64",
         "checkpoint.every=3", "log.progress=false", "log.plots=false"]


pytestmark = pytest.mark.usefixtures("one_thread")


def quick(*extra):
    return [a for s in QUICK + list(extra) for a in ("--set", s)]


def run_cli(args, capsys=None):
    code = cli.main(args)
    err = capsys.readouterr().err if capsys is not None else ""
    return code, err


def read_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def test_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--config", "--set", "--out", "--resume"):
        assert flag in out
    for key, opt in config.SCHEMA.items():
        default = "{}" if opt.default == {} else yaml.safe_dump(opt.default, default_flow_style=True).strip().removesuffix("...").strip()
        assert f"  {key} [{default}]" in out, key


@pytest.mark.parametrize("argv0, name", [("/venv/bin/fastgp-train", "fastgp-train"),
                                         ("/src/fastgp/train/__main__.py", "python -m fastgp.train")])
def test_help_names_the_command_as_called(argv0, name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [argv0, "--help"])
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert capsys.readouterr().out.startswith(f"usage: {name} [-h]")


@pytest.mark.parametrize("given, suggested", [
    ("configs/digits-mlp.yaml", "configs/digits-mlp-gan.yaml"),  # a typo in the name
    ("rings", "configs/ring.yaml"),  # not a bundled config's name
    ("configs/8gaussians-zerogp.yml", "configs/8gaussians-zero-gp.yaml"),
])
def test_missing_config_file_suggests_the_nearest(given, suggested, monkeypatch, capsys):
    monkeypatch.chdir(os.path.join(CONFIGS, os.pardir))
    code, err = run_cli(["--config", given], capsys)
    assert code == 2 and err == f"fastgp-train: error: --config: {given} does not exist; did you mean {suggested}?\n"


def test_missing_config_file_outside_the_repository(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["--config", "ring.yml"], capsys)  # found among the bundled configs
    assert code == 2 and f"did you mean {os.path.abspath(os.path.join(CONFIGS, 'ring.yaml'))}?" in err
    (tmp_path / "mine.yaml").write_text("steps: 3\n")
    code, err = run_cli(["--config", "mien.yaml"], capsys)  # beside it first
    assert code == 2 and "--config: mien.yaml does not exist; did you mean mine.yaml?" in err
    code, err = run_cli(["--config", "zzzzzzzz.yaml"], capsys)
    assert code == 2 and err == "fastgp-train: error: --config: zzzzzzzz.yaml does not exist\n"


@pytest.mark.slow  # two fresh Python processes import torch and train
def test_module_and_console_script_run(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "fastgp-train")
    assert os.path.exists(script), "the fastgp-train console script is not installed"
    out = subprocess.run([script, "--help"], capture_output=True, text=True, check=True).stdout
    assert "regularizers.penalty.kind" in out
    run_dir = tmp_path / "m"
    proc = subprocess.run([sys.executable, "-m", "fastgp.train", "--out", str(run_dir)] + quick("steps=2"),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "checkpoint.pt").exists() and "final:" in proc.stderr


def test_default_run_writes_every_output(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, err = run_cli(["--out", str(run_dir), "--set", "steps=8", "--set", "log.every=4",
                         "--set", "log.diag_every=8", "--set", "log.eval_samples=128"], capsys)
    assert code == 0, err
    for name in ("config.yaml", "metrics.jsonl", "checkpoint.pt", "samples.png", "curves.png"):
        assert (run_dir / name).stat().st_size > 0, name
    for png in ("samples.png", "curves.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "step" in err  # the tqdm bar (stderr) shows steps
    saved = config.load_yaml(run_dir / "config.yaml")
    expected = config.resolve(sets=["steps=8", "log.every=4", "log.diag_every=8", "log.eval_samples=128"])
    assert saved == expected
    assert saved["regularizers"]["penalty"]["kind"] == "zero-gp" and saved["data"]["name"] == "8gaussians"
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [4, 8]
    last = records[-1]
    for key in ("d_loss", "g_loss", "penalty", "modes", "hq", "ema_modes", "ema_hq", "grad_d_x", "jac_g_z"):
        assert key in last, key
    assert 0 <= last["hq"] <= 1 and 0 <= last["modes"] <= 8
    assert "grad_d_x" not in records[0]  # diagnostics only every log.diag_every steps


def _bar_and_final_line(err):
    """({label: text} of the progress bar's last figures, {label: text} of the final line) in stderr."""
    last_bar = re.findall(r"\[[^\]]*step/s, ([^\]\r\n]*)\]", err)[-1]
    final = next(line for line in err.splitlines() if line.startswith("final: "))[len("final: "):]
    split = lambda text: dict(item.split("=", 1) for item in text.split(", "))  # noqa: E731
    return split(last_bar), split(final)


@pytest.mark.parametrize("ema", [True, False])
def test_progress_bar_and_final_line_name_the_same_figures(ema, tmp_path, capsys):
    # 300 steps: G's and the EMA's high-quality shares differ (0.016 and 0.008), so a figure shown
    # under the other generator's name is seen.
    sets = QUICK + ["steps=300", "batch_size=64", "log.every=150", "log.eval_samples=256", "checkpoint.every=300",
                    "log.diag_every=0", "log.progress=true"] + ([] if ema else ["ema.decay=0"])
    code, err = run_cli(["--out", str(tmp_path / "run"), *[a for s in sets for a in ("--set", s)]], capsys)
    assert code == 0, err
    bar, final = _bar_and_final_line(err)
    # G's figures and the EMA's, each under its own name (the record's, as the final line).
    assert list(bar) == ["d_loss", "g_loss", "hq"] + (["ema_hq"] if ema else []) + ["modes"] + (["ema_modes"] if ema else [])
    record = read_metrics(tmp_path / "run")[-1]
    if ema:
        assert record["hq"] != record["ema_hq"]
    for label, text in bar.items():
        assert float(final[label]) == pytest.approx(record[label], rel=1e-3), label
        if label.endswith("modes"):
            assert text == f"{record[label]}/8"
        else:  # the bar rounds: to the digits it shows
            assert text == f"{record[label]:.{len(text.split('.')[1])}f}", label


def test_final_record_always_holds_the_diagnostics(tmp_path):
    cfg = config.resolve(sets=QUICK + ["steps=7", "log.every=2", "log.diag_every=4"])
    train(cfg, str(tmp_path / "r"))
    records = read_metrics(tmp_path / "r")
    assert [r["step"] for r in records] == [2, 4, 6, 7]
    with_diag = [r["step"] for r in records if "grad_d_x" in r]
    assert with_diag == [4, 7]  # every log.diag_every steps, and the last step (7 is not a multiple)
    for key in ("jac_g_z", "grad_cos"):
        assert key in records[-1], key
    assert -1 <= records[-1]["grad_cos"] <= 1


class _TowardsNearest(torch.nn.Module):
    """D(x) = ± min_j ‖x − r_j‖² over a fixed real set: ∇D points exactly away from (−: at) the
    nearest real sample."""

    def __init__(self, real, sign):
        super().__init__()
        self.real, self.sign = real, sign

    def forward(self, x):
        return self.sign * torch.cdist(x, self.real).min(dim=1).values.square()[:, None]


@pytest.mark.parametrize("sign, expected", [(-1.0, 1.0), (1.0, -1.0)])
def test_gradient_direction_diagnostic(sign, expected, tmp_path):
    run = train(config.resolve(sets=QUICK + ["steps=1"]), str(tmp_path / "r"))
    run.D = _TowardsNearest(run.real_eval, sign)
    # Right after initialization G's samples sit near the origin, ~10 away from the circle of modes:
    # every fake is "far", so both means cover the same samples.
    rec = run.gradient_direction(32)
    assert rec["grad_cos"] == pytest.approx(expected, abs=1e-4)
    assert rec["grad_cos_far"] == pytest.approx(expected, abs=1e-4)
    # Fakes on top of real samples: none is far, so grad_cos_far is left out rather than made up.
    run.G = lambda z: run.real_eval[: z.shape[0]] + 1e-3
    rec = run.gradient_direction(32)
    assert "grad_cos_far" not in rec and rec["grad_cos"] == pytest.approx(expected, abs=1e-3)


# ----------------------------------------------------------------------------------------------
# Config families: every shipped config, every penalty kind, every loss
# ----------------------------------------------------------------------------------------------


def _config_case(name):
    # A config on image data trains convolutional models: seconds per config (the fast tier skips it).
    data = (config.load_yaml(os.path.join(CONFIGS, name)).get("data") or {}).get("name")
    return pytest.param(name, marks=pytest.mark.slow) if data in config.DATASETS_IMAGE else name


@pytest.mark.parametrize("name", [_config_case(name) for name in CONFIG_FILES])
def test_config_files_train(name, tmp_path):
    cfg = config.resolve(files=[os.path.join(CONFIGS, name)], sets=QUICK)
    run = train(cfg, str(tmp_path / "r"))
    records = read_metrics(tmp_path / "r")
    assert [r["step"] for r in records] == [3, 6]
    assert all(torch.isfinite(torch.tensor([r["d_loss"], r["g_loss"]])).all() for r in records)
    assert run.step == 6 and run.d_step == 6 * cfg["optim"]["n_dis"]


def test_default_config_file_is_the_default():
    assert config.resolve(files=[os.path.join(CONFIGS, "8gaussians-zero-gp.yaml")]) == config.resolve()


@pytest.mark.parametrize("kind", ("none",) + tuple(fastgp.KINDS))
def test_every_penalty_kind(kind, tmp_path):
    cfg = config.resolve(sets=QUICK + [f"regularizers.penalty.kind={kind}", "regularizers.penalty.interval=2",
                                       "optim.name=rmsprop"])
    train(cfg, str(tmp_path / "r"))
    records = read_metrics(tmp_path / "r")
    if kind == "none":
        assert all("penalty" not in r for r in records)
    else:  # lazy: due at D steps 0, 2, 4 -> logged in both intervals
        assert all(r["penalty"] >= 0 for r in records)


@pytest.mark.parametrize("depth", [1, 3])
def test_mlp_depth_and_sgd(depth, tmp_path):
    """model.depth hidden layers in G and D; optim.name=sgd: a plain SGD step (θ ← θ − lr·∇θ)."""
    cfg = config.resolve(sets=QUICK + [f"model.depth={depth}", "model.hidden=16", "optim.name=sgd",
                                       "optim.lr_d=0.01", "optim.lr_g=0.02"])
    from fastgp.train.loop import Run

    run = Run(cfg, str(tmp_path / "r"))
    for net, out in ((run.G, 2), (run.D, 1)):
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        assert len(linears) == depth + 1
        assert [m.out_features for m in linears] == [16] * depth + [out]
    assert isinstance(run.opt_d, torch.optim.SGD) and isinstance(run.opt_g, torch.optim.SGD)
    assert run.opt_d.defaults["momentum"] == 0 and run.opt_d.param_groups[0]["lr"] == 0.01
    assert run.opt_g.param_groups[0]["lr"] == 0.02
    before = [p.detach().clone() for p in run.D.parameters()]
    grads = []
    step = run.opt_d.step

    def spy(*args, **kwargs):  # the gradients the SGD step is about to apply
        grads.extend(p.grad.detach().clone() for p in run.D.parameters())
        return step(*args, **kwargs)

    run.opt_d.step = spy
    run.train_step()
    for b, g_, p in zip(before, grads, run.D.parameters()):
        torch.testing.assert_close(p.detach(), b - 0.01 * g_)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_every_loss(loss, tmp_path):
    cfg = config.resolve(sets=QUICK + [f"loss.name={loss}", "noise.dist=uniform", "ema.decay=0", "optim.n_dis=2"])
    run = train(cfg, str(tmp_path / "r"))
    assert run.G_ema is None and "ema_hq" not in run.last
    assert torch.isfinite(torch.tensor(run.last["d_loss"]))


# ----------------------------------------------------------------------------------------------
# Resume: exactly the parameters of an uninterrupted run
# ----------------------------------------------------------------------------------------------


def _final_state(run_dir):
    return checkpoint.load(str(run_dir))


def _assert_same_state(a, b):
    for net in ("G", "D", "G_ema"):
        for key, value in a["models"][net].items():
            assert torch.equal(value, b["models"][net][key]), (net, key)
    for opt in ("G", "D"):
        sa, sb = a["optimizers"][opt]["state"], b["optimizers"][opt]["state"]
        assert sa.keys() == sb.keys()
        for idx in sa:
            for key in sa[idx]:
                assert torch.equal(torch.as_tensor(sa[idx][key]), torch.as_tensor(sb[idx][key])), (opt, idx, key)
    for name, state in a["rng"]["generators"].items():
        assert torch.equal(state, b["rng"]["generators"][name]), name
    assert a["step"] == b["step"] and a["d_step"] == b["d_step"]


RECT_SMALL = ["data.name=rectangles", "data.n_images=256", "model.channels=8", "noise.dim=8"]
# Regularizers with state (spectral norm's u, v) and their own random streams (augmentation,
# pairs, candidates): a resumed run must continue all of them exactly.
SN_FAR_AUGMENT = RECT_SMALL + [
    "regularizers.spectral-norm.d=true", "regularizers.spectral-norm.g=true", "regularizers.penalty.kind=r1",
    "regularizers.fake-as-real.n_far=8", "regularizers.fake-as-real.n_candidates=32",
    "regularizers.augment.kind=translate", "regularizers.augment.copies=2", "regularizers.augment.max_shift=3",
]
SN_ONCE_DIFFAUGMENT_PCR_SC = RECT_SMALL + [
    "regularizers.spectral-norm.d=true", "regularizers.spectral-norm.g=true",
    "regularizers.spectral-norm.once_per_step=true", "regularizers.augment.kind=diffaugment",
    "regularizers.combine.mode=and", "regularizers.correction.enabled=true", "regularizers.correction.pool=8",
    "optim.n_dis=2",
]
# The paper's PCR and SC on rectangles: sibling pairs drawn from the combination's own stream,
# correction by count.
SIBLINGS_COUNT = RECT_SMALL + [
    "data.siblings=true", "regularizers.combine.mode=and-or", "regularizers.combine.source=siblings",
    "regularizers.correction.enabled=true", "regularizers.correction.measure=count", "regularizers.correction.pool=8",
]
# Consistency's own stream (T's draws, Δz) and ADA's p and signs of an unfinished interval
# (checkpoint at D step 8 with an update every 3).
ICR_ADA = RECT_SMALL + [
    "regularizers.consistency.mode=icr", "regularizers.augment.kind=diffaugment", "regularizers.ada.enabled=true",
    "regularizers.ada.interval=3", "regularizers.ada.kimg=0.01",
]


# LeCam's anchors are checkpointed state; top-k's k depends on the step.
LECAM_TOPK = RECT_SMALL + [
    "regularizers.lecam.enabled=true", "regularizers.lecam.start=3", "regularizers.top-k.enabled=true",
    "regularizers.top-k.gamma=0.5", "regularizers.top-k.steps_per_epoch=3", "optim.n_dis=2",
]


@pytest.mark.parametrize("variant", [
    pytest.param([], id="default"),
    pytest.param(["regularizers.penalty.kind=r1", "regularizers.penalty.interval=3", "optim.n_dis=2",
                  "noise.dist=uniform"], id="lazy-r1"),
    # Image data: three runs of convolutional models each (the fast tier skips them).
    *(pytest.param(v, id=i, marks=pytest.mark.slow) for v, i in (
        (RECT_SMALL, "rectangles"), (SN_FAR_AUGMENT, "sn-far-translate"),
        (SN_ONCE_DIFFAUGMENT_PCR_SC, "sn-once-diffaugment-pcr-sc"), (SIBLINGS_COUNT, "siblings-and-or-count-sc"),
        (ICR_ADA, "icr-ada"), (LECAM_TOPK, "lecam-top-k"))),
])
def test_resume_gives_exactly_the_uninterrupted_parameters(variant, tmp_path, capsys):
    common = QUICK + ["steps=14", "log.every=3", "log.diag_every=3", "checkpoint.every=4"] + variant
    sets = [a for s in common for a in ("--set", s)]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run_cli(["--out", str(whole), *sets])[0] == 0

    # Kill the second run at step 10: its last checkpoint is step 8, and it has already logged
    # step 9, which the resumed run must drop and log again.
    train_killed_at(10, ["--out", str(part), *sets])
    assert [r["step"] for r in read_metrics(part)] == [3, 6, 9]
    assert checkpoint.load(str(part))["step"] == 8

    # ... and was killed while appending a record and while writing a checkpoint.
    with open(part / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 12, "d_lo')
    (part / ".checkpoint-abc.tmp").write_bytes(b"partial")
    code, err = run_cli(["--resume", str(part)], capsys)
    assert code == 0, err
    assert "resuming" in err and "at step 8 of 14" in err
    assert not (part / ".checkpoint-abc.tmp").exists()
    _assert_same_state(_final_state(whole), _final_state(part))
    # Two runs: their ids (and times) differ, every other value is the same.
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("time_s", "run_id")} for r in rs]  # noqa: E731
    assert strip(read_metrics(part)) == strip(read_metrics(whole))


@pytest.mark.slow  # a training process, killed
def test_sigkilled_process_resumes_from_its_last_checkpoint(tmp_path, capsys):
    import time

    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "fastgp.train", "--out", str(run_dir)]
                            + quick("steps=1000000", "checkpoint.every=20", "log.every=7"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (run_dir / "checkpoint.pt").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.05)
        time.sleep(0.3)  # let it run on, past more checkpoints and log lines
    finally:
        proc.kill()
        proc.wait()
    step = checkpoint.load(str(run_dir))["step"]
    assert step % 20 == 0 and step >= 20
    code, err = run_cli(["--resume", str(run_dir), "--set", f"steps={step + 9}"], capsys)
    assert code == 0, err
    steps = [r["step"] for r in read_metrics(run_dir)]
    assert steps == sorted(set(steps)) and steps[-1] == step + 9  # no duplicates from the killed tail
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".checkpoint-")]


def test_resume_extends_a_finished_run(tmp_path, capsys):
    sets = [a for s in QUICK for a in ("--set", s)]
    assert run_cli(["--out", str(tmp_path / "whole"), *sets, "--set", "steps=9"])[0] == 0
    assert run_cli(["--out", str(tmp_path / "part"), *sets])[0] == 0  # 6 steps
    code, err = run_cli(["--resume", str(tmp_path / "part"), "--set", "steps=9"], capsys)
    assert code == 0, err
    _assert_same_state(_final_state(tmp_path / "whole"), _final_state(tmp_path / "part"))
    assert config.load_yaml(tmp_path / "part" / "config.yaml")["steps"] == 9


# ----------------------------------------------------------------------------------------------
# Checkpoint robustness
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main(["--out", str(run_dir)] + quick()) == 0
    return run_dir


def test_checkpoint_write_is_atomic(finished_run, tmp_path, monkeypatch):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    before = (run_dir / "checkpoint.pt").read_bytes()

    def dies_midway(obj, f, *a, **k):
        f.write(b"partial bytes")
        raise KeyboardInterrupt  # killed while writing

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(str(run_dir), {"step": 0})
    assert (run_dir / "checkpoint.pt").read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []


def _copy(finished_run, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(finished_run, run_dir)
    return run_dir


def test_corrupt_checkpoint_fails_clearly(finished_run, tmp_path, capsys):
    run_dir = _copy(finished_run, tmp_path)
    data = (run_dir / "checkpoint.pt").read_bytes()
    (run_dir / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    code, err = run_cli(["--resume", str(run_dir), "--set", "steps=8"], capsys)
    assert code == 2
    assert "checkpoint.pt is corrupt or not a fastgp checkpoint" in err
    assert len(read_metrics(run_dir)) == 2  # nothing was restarted or rewritten


def _rewrite(run_dir, edit, stamp=True):
    """Edit the checkpoint's payload; ``stamp``: with a valid checksum of the edited content (a
    checkpoint written that way, not a damaged one)."""
    path = run_dir / "checkpoint.pt"
    payload = torch.load(path, weights_only=True)
    edit(payload)
    if stamp:
        payload["checksum"] = checkpoint.checksum(payload)
    torch.save(payload, path)


def _wrong_adam_state(payload):
    state = payload["optimizers"]["D"]["state"][0]
    state["exp_avg"] = torch.zeros(state["exp_avg"].shape[0] + 1, *state["exp_avg"].shape[1:])


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.update(format="other/9"), "has format 'other/9'; this fastgp reads 'fastgp.train/1'"),
    (lambda p: p.pop("rng"), "is incomplete: missing rng"),
    (lambda p: p["models"]["D"].pop("0.weight"), "D does not match this configuration"),
    (lambda p: p["models"]["G"].update({"0.weight": torch.zeros(3, 3)}), "G does not match this configuration"),
    (lambda p: p["rng"]["generators"].pop("penalty"), "no state for the generator(s) ['penalty']"),
    (lambda p: p["config"]["optim"].update(n_dis=0), "optim.n_dis: must be >= 1"),
    (lambda p: p.update(step="6"), "checkpoint.pt: step must be an int >= 0, got '6' (str)\n"),
    (lambda p: p.update(d_step=-1), "checkpoint.pt: d_step must be an int >= 0, got -1 (int)\n"),
    (_wrong_adam_state, "checkpoint.pt: optimizer, regularizer or RNG state does not match: optimizer D: 'exp_avg' "
                        "of 0.weight has shape [65, 2], the parameter [64, 2]\n"),
])
def test_incompatible_checkpoint_fails_clearly(edit, message, finished_run, tmp_path, capsys):
    run_dir = _copy(finished_run, tmp_path)
    _rewrite(run_dir, edit)
    code, err = run_cli(["--resume", str(run_dir), "--set", "steps=8"], capsys)
    assert code == 2
    assert message in err


def _tensor_data_ranges(path):
    """(start, end) byte ranges of the tensor storages inside a torch.save zip file."""
    import struct
    import zipfile

    raw = path.read_bytes()
    ranges = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if "/data/" in info.filename and info.file_size:
                # Local header: 30 bytes, then the name and the extra field (lengths at 26 and 28).
                name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
                start = info.header_offset + 30 + name_len + extra_len
                ranges.append((start, start + info.file_size))
    return ranges


def test_damaged_tensor_data_fails_naming_the_file(finished_run, tmp_path):
    # Issue 16: 38 of 40 single-byte flips inside the tensor data loaded silently.
    path = finished_run / "checkpoint.pt"
    ranges = _tensor_data_ranges(path)
    assert len(ranges) > 20  # models, optimizers, random states
    raw = path.read_bytes()
    gen = torch.Generator().manual_seed(0)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for trial in range(40):
        start, end = ranges[trial % len(ranges)]
        at = start + int(torch.randint(end - start, (), generator=gen))
        damaged = bytearray(raw)
        damaged[at] ^= 1 << int(torch.randint(8, (), generator=gen))
        (run_dir / "checkpoint.pt").write_bytes(bytes(damaged))
        with pytest.raises(checkpoint.CheckpointError) as info:
            checkpoint.load(str(run_dir))
        assert str(info.value) == (f"{run_dir / 'checkpoint.pt'} is damaged: its content does not match the "
                                   "checksum written with it"), trial


def test_checkpoint_without_a_checksum_resumes_with_a_warning(finished_run, tmp_path, capsys):
    run_dir = _copy(finished_run, tmp_path)
    _rewrite(run_dir, lambda p: p.pop("checksum"), stamp=False)  # as written before checksums
    with pytest.warns(UserWarning, match=r"checkpoint\.pt has no checksum \(written by an earlier fastgp\): it is "
                                         "loaded unverified"):
        code, err = run_cli(["--resume", str(run_dir), "--set", "steps=9"], capsys)
    assert code == 0, err
    assert read_metrics(run_dir)[-1]["step"] == 9
    assert "checksum" in torch.load(run_dir / "checkpoint.pt", weights_only=True)  # the new one has it


def test_full_disk_keeps_the_old_checkpoint_and_says_so(finished_run, tmp_path, capsys, monkeypatch):
    import errno

    run_dir = _copy(finished_run, tmp_path)
    before = (run_dir / "checkpoint.pt").read_bytes()
    real_write = os.write

    def fills_up(fd, data):
        target = os.readlink(f"/proc/self/fd/{fd}")
        # The checkpoint's writes (metrics.jsonl has its own test: the full disk here is met first
        # by the checkpoint, as when the log's small appends still fit).
        if target.startswith(str(run_dir)) and not target.endswith("metrics.jsonl"):
            real_write(fd, bytes(data[:100]))  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", fills_up)
    code, err = run_cli(["--resume", str(run_dir), "--set", "steps=9"], capsys)
    monkeypatch.undo()
    path = run_dir / "checkpoint.pt"
    assert code == 2 and err.endswith(
        f"fastgp-train: error: cannot write {path}: the disk is full (No space left on device); the previous "
        f"checkpoint is kept: free some space, then continue with --resume {run_dir}\n")
    assert path.read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []  # no temporary left
    code, err = run_cli(["--resume", str(run_dir), "--set", "steps=9"], capsys)  # space freed: it continues
    assert code == 0, err


def test_full_disk_while_logging_metrics_is_one_line_and_keeps_the_records(finished_run, tmp_path, capsys, monkeypatch):
    import errno

    run_dir = _copy(finished_run, tmp_path)
    metrics = run_dir / "metrics.jsonl"
    real_write = os.write

    def fills_up(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}") == str(metrics):
            real_write(fd, bytes(data[:10]))  # a partial record, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    records_before = read_metrics(run_dir)
    monkeypatch.setattr(os, "write", fills_up)
    code, err = run_cli(["--resume", str(run_dir), "--set", "steps=9"], capsys)
    monkeypatch.undo()
    assert code == 2 and err.endswith(
        f"fastgp-train: error: cannot append to {metrics}: the disk is full (No space left on device); the records "
        f"written before are kept: free some space, then continue with --resume {run_dir}\n")
    assert "Traceback" not in err
    assert read_metrics(run_dir) == records_before  # whole records only: the torn one was cut off
    code, err = run_cli(["--resume", str(run_dir), "--set", "steps=9"], capsys)  # space freed: it continues
    assert code == 0, err
    assert read_metrics(run_dir)[-1]["step"] == 9


def test_resume_refuses_changed_options_and_missing_runs(finished_run, tmp_path, capsys):
    code, err = run_cli(["--resume", str(finished_run), "--set", "data.name=ring"], capsys)
    assert code == 2 and "cannot change these options when resuming: data.name: checkpoint has '8gaussians', now 'ring'" in err
    code, err = run_cli(["--resume", str(finished_run), "--set", "steps=3"], capsys)
    assert code == 2 and "steps: the checkpoint in" in err and "is at step 6; resume with steps >= 6" in err
    code, err = run_cli(["--resume", str(tmp_path)], capsys)
    assert code == 2 and "no checkpoint.pt there" in err
    code, err = run_cli(["--resume", str(finished_run), "--out", str(tmp_path)], capsys)
    assert code == 2 and "drop --config/--out" in err
    code, err = run_cli(["--out", str(finished_run)] + quick(), capsys)
    assert code == 2 and f"--out {finished_run} already holds a run" in err


# ----------------------------------------------------------------------------------------------
# Bad configurations fail before training, naming the key
# ----------------------------------------------------------------------------------------------

BAD_SETS = [
    (["optim.lrd=1"], "optim.lrd: unknown option; did you mean 'optim.lr_d'?"),
    (["steps=1.5"], "steps: expected an int, got '1.5'"),
    (["steps=0"], "steps: must be >= 1, got 0"),
    (["optim.lr_d=-1"], "optim.lr_d: must be > 0, got -1.0"),
    (["optim.lr_g=fast"], "optim.lr_g: expected a number, got 'fast'"),
    (["optim.beta1=1"], "optim.beta1: must be in [0, 1), got 1.0"),
    (["ema.decay=1.5"], "ema.decay: must be in [0, 1), got 1.5"),
    (["data.name=mnist"], "data.name: must be one of '8gaussians', 'swissroll', 'ring', 'finite-gaussian', 'rectangles', "
                         "'digits', 'photos', 'folder', 'array'; got 'mnist'"),
    (["regularizers.penalty.kind=gp"], "regularizers.penalty.kind: must be one of 'none', 'wgan-gp'"),
    (["regularizers.penalty.interval=0"], "regularizers.penalty.interval: must be >= 1, got 0"),
    (["regularizers.spectral-norm.enabled=true"],
     "regularizers.spectral-norm.enabled: unknown option"),
    (["regularizers.dropout.p=0.5"], "regularizers.dropout: unknown regularizer; available: penalty, spectral-norm, "
                                     "augment, fake-as-real, combine, correction"),
    (["loss.name=lgan"], "loss.name: must be one of"),
    (["loss.name=hinge", "loss.params.margin=-1"], "loss.params: margin must be >= 0.0, got -1.0"),
    (["loss.params.margin=2"], "loss.params: unexpected parameter 'margin' for loss 'non-saturating'"),
    (["log.progress=maybe"], "log.progress: expected a bool (true/false), got 'maybe'"),
    (["device=cuda"] if not torch.cuda.is_available() else ["device=tpu"], "device: "),
    (["steps"], "--set 'steps': expected key=value"),
    (["noise.dist=cauchy"], "noise.dist: must be one of 'normal', 'uniform'; got 'cauchy'"),
    (["data.name=rectangles", "model.name=mlp"], "model.name: 'mlp' is the 2-D pair; data.name='rectangles' needs 'dcgan'"),
    (["model.name=dcgan"], "model.name: 'dcgan' needs 32×32 image data; data.name='8gaussians' is 2-D"),
    (["data.name=rectangles", "data.n_rect=6"], "data.n_rect: at most 5 separated 8×8 squares per 32×32 image, got 6"),
    (["model.depth=0"], "model.depth: must be >= 1, got 0"),
    (["optim.name=adamw"], "optim.name: must be one of 'adam', 'rmsprop', 'sgd'; got 'adamw'"),
    (["seed=-1"], "seed: must be in [0, 2**32 - 1] = [0, 4294967295], got -1\n"),
    (["seed=18446744073709551616"], "seed: must be in [0, 2**32 - 1] = [0, 4294967295], got 18446744073709551616\n"),
]


@pytest.mark.parametrize("sets, message", BAD_SETS, ids=[s[0] for s, _ in BAD_SETS])
def test_bad_set_fails_before_training(sets, message, tmp_path, capsys):
    out = tmp_path / "never"
    code, err = run_cli(["--out", str(out)] + [a for s in sets for a in ("--set", s)], capsys)
    assert code == 2
    assert f"fastgp-train: error: {message}" in err
    assert not out.exists()


BAD_FILES = [
    ("steps: true\n", "steps: expected an int, got True (bool)"),
    ("optim: {lr_d: -1.0e-3}\n", "optim.lr_d: must be > 0, got -0.001"),
    ("optim: {n_dis: 2.5}\n", "optim.n_dis: expected an int, got 2.5 (float)"),
    ("data: {name: ring, radius: 3}\n", "data.radius: unknown option"),
    ("regularizers: {far: {m0: 16}}\n", "regularizers.far: unknown regularizer; available: penalty, spectral-norm"),
    ("- steps\n", "must hold a mapping of options, got list"),
    ("steps: [\n", "is not valid YAML"),
    ("loss: {params: 3}\n", "loss.params: expected a mapping, got 3 (int)"),
    ("data: 3\n", "data: unknown option"),
]


@pytest.mark.parametrize("text, message", BAD_FILES, ids=[m.split(":")[0] for _, m in BAD_FILES])
def test_bad_config_file_fails_before_training(text, message, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "never"
    code, err = run_cli(["--config", str(path), "--out", str(out)], capsys)
    assert code == 2
    assert message in err
    assert not out.exists()


def test_empty_sections_mean_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("regularizers:\ndata: {}\noptim: {n_dis: 2}\n")
    assert config.resolve(files=[path]) == config.resolve(sets=["optim.n_dis=2"])


def test_yaml_exponent_floats_and_typed_sets(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim: {lr_d: 1e-3, lr_g: 2}\nloss: {name: hinge, params: {margin: 2}}\n")
    cfg = config.resolve(files=[path], sets=["optim.n_dis=3", "log.plots=off", "loss.params.margin=0.5"])
    assert cfg["optim"]["lr_d"] == 1e-3 and cfg["optim"]["lr_g"] == 2.0 and isinstance(cfg["optim"]["lr_g"], float)
    assert cfg["optim"]["n_dis"] == 3 and cfg["log"]["plots"] is False
    assert cfg["loss"]["params"] == {"margin": 0.5}
    with pytest.raises(config.ConfigError, match="missing.yaml"):
        config.resolve(files=[tmp_path / "missing.yaml"])


# ----------------------------------------------------------------------------------------------
# rectangles: the generator, the component count, the metrics, an image run
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_rect", [1, 2, 3, 5])
def test_rectangles_have_exactly_n_separated_squares(n_rect):
    from fastgp.train.images import count_components, rectangles

    x = rectangles(300, n_rect, seed=4)
    assert x.shape == (300, 1, 32, 32) and set(x.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal((x > 0).flatten(1).sum(1), torch.full((300,), 64 * n_rect))
    assert torch.equal(count_components(x), torch.full((300,), n_rect))
    assert torch.equal(x, rectangles(300, n_rect, seed=4))  # deterministic
    assert not torch.equal(x, rectangles(300, n_rect, seed=5))


def test_count_components_uses_4_connectivity():
    from fastgp.train.images import count_components

    img = -torch.ones(4, 1, 6, 6)
    img[1, 0, 0, 0] = img[1, 0, 1, 1] = 1  # diagonal neighbours: two components
    img[2, 0, 0, :4] = 1
    img[2, 0, :5, 3] = 1  # an L: one component
    img[3, 0, ::2, ::2] = 1  # 9 isolated pixels
    assert count_components(img).tolist() == [0, 2, 1, 9]


def test_rectangles_metrics_on_training_images():
    from fastgp.train.images import Rectangles

    data = Rectangles(512, 2, seed=0)
    m = data.metrics(data.images[:100])
    assert m == {"correct": 1.0, "fewer": 0.0, "more": 0.0, "nn_dist": 0.0}
    noise = torch.randn(100, 1, 32, 32)
    assert data.metrics(noise)["nn_dist"] > 10
    # fewer / more: one square, three squares, two touching squares (one component)
    odd = -torch.ones(4, 1, 32, 32)
    odd[:, :, 2:10, 2:10] = 1
    odd[1, :, 20:28, 20:28] = odd[1, :, 20:28, 2:10] = 1
    odd[2, :, 2:10, 10:18] = 1
    odd[3] = data.images[0]
    assert data.metrics(odd) == pytest.approx({"correct": 0.25, "fewer": 0.5, "more": 0.25,
                                               "nn_dist": data.metrics(odd)["nn_dist"]})


def test_sibling_rectangles_are_the_papers_pairs():
    """Appendix F of the anomalous-generalization paper: images 2k and 2k+1 come from one image of
    n_rect + 1 squares with a different square removed; their AND holds n_rect − 1 squares and their
    OR the n_rect + 1 squares."""
    from fastgp import combine
    from fastgp.correction import count_components
    from fastgp.train.images import Rectangles, sibling_rectangles

    for n_rect in (2, 3):
        x = sibling_rectangles(400, n_rect, seed=1)
        assert x.shape == (400, 1, 32, 32) and set(x.unique().tolist()) == {-1.0, 1.0}
        assert count_components(x).tolist() == [n_rect] * 400
        pairs = torch.arange(400).reshape(200, 2)
        both = combine.pixelwise(x, "and", pairs, threshold=0.0) * 2 - 1
        either = combine.pixelwise(x, "or", pairs, threshold=0.0) * 2 - 1
        assert count_components(both).tolist() == [n_rect - 1] * 200
        assert count_components(either).tolist() == [n_rect + 1] * 200
        assert ((both > 0).flatten(1).sum(1) == 64 * (n_rect - 1)).all()  # whole shared squares
        assert torch.equal(x, sibling_rectangles(400, n_rect, seed=1))  # deterministic
    with pytest.raises(ValueError, match="data.n_images: sibling pairs need an even number of images, got 7"):
        sibling_rectangles(7, 2, seed=0)
    data = Rectangles(64, 2, seed=0, siblings=True)
    images, pairs = data.sibling_pairs(5, torch.Generator().manual_seed(0))
    assert images.shape == (10, 1, 32, 32) and pairs.tolist() == [[2 * p, 2 * p + 1] for p in range(5)]
    rows = [next(i for i in range(64) if torch.equal(data.images[i], im)) for im in images]
    assert all(rows[2 * p] % 2 == 0 and rows[2 * p + 1] == rows[2 * p] + 1 for p in range(5))
    with pytest.raises(ValueError, match="data.siblings: this rectangles set was not made in sibling pairs"):
        Rectangles(64, 2, seed=0).sibling_pairs(1, torch.Generator())


def test_rectangles_run_writes_an_image_grid(tmp_path, capsys):
    run_dir = tmp_path / "rect"
    code, err = run_cli(["--config", os.path.join(CONFIGS, "rectangles.yaml"), "--out", str(run_dir),
                         *quick(*RECT_SMALL, "log.plots=true")], capsys)
    assert code == 0, err
    assert (run_dir / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    last = read_metrics(run_dir)[-1]
    for key in ("correct", "nn_dist", "ema_correct", "ema_nn_dist", "grad_d_x", "jac_g_z"):
        assert key in last, key
