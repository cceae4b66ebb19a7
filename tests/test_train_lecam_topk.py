"""The trainer's regularizers.lecam and regularizers.top-k switches, and data.subset."""

import pytest
import torch

from fastgp.train import cli, config, digits
from fastgp.train import regularizers as regs
from test_lecam import ema_losses, lecam_reg, loss_hinge_dis
from test_train_regularizers import BASE, RECT, make_run, spy_d_inputs

pytestmark = pytest.mark.usefixtures("one_thread")

LECAM = ["regularizers.lecam.enabled=true", "regularizers.lecam.weight=0.3", "regularizers.lecam.start=1"]
TOPK = ["regularizers.top-k.enabled=true", "regularizers.top-k.gamma=0.5", "regularizers.top-k.min_fraction=0.25",
        "regularizers.top-k.steps_per_epoch=2"]


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in ("lecam", "top-k"):
        for option in regs.REGISTRY[name].OPTIONS:
            assert f"  regularizers.{name}.{option} [" in out, (name, option)
    assert "  data.subset [" in out


BAD = [
    (["regularizers.lecam.decay=1.0"], "regularizers.lecam.decay: must be in [0, 1), got 1.0"),
    (["regularizers.lecam.weight=-1"], "regularizers.lecam.weight: must be >= 0"),
    (["regularizers.lecam.start=-1"], "regularizers.lecam.start: must be >= 0"),
    (["regularizers.lecam.rectified=maybe"], "regularizers.lecam.rectified: expected a bool"),
    (["regularizers.top-k.enabled=true"],
     "regularizers.top-k.steps_per_epoch: data.name='8gaussians' has no finite training set"),
    (RECT + ["regularizers.top-k.enabled=true", "regularizers.top-k.gamma=0"],
     "regularizers.top-k.gamma: must be in (0, 1], got 0"),
    (RECT + ["regularizers.top-k.enabled=true", "regularizers.top-k.min_fraction=0"],
     "regularizers.top-k.min_fraction: must be in (0, 1], got 0"),
    (["regularizers.top-k.gamma=1.5"], "regularizers.top-k.gamma: must be in [0, 1], got 1.5"),
    (["regularizers.top-k.steps_per_epoch=-1"], "regularizers.top-k.steps_per_epoch: must be >= 0"),
    (["data.subset=10"], "data.subset: only read for data.name 'digits' or 'photos', not '8gaussians'"),
    (["data.subset=-1"], "data.subset: must be >= 0"),
]


@pytest.mark.parametrize("sets, message", BAD, ids=[f"bad-{i}" for i in range(len(BAD))])
def test_bad_config_fails_before_training(sets, message, tmp_path, capsys):
    out = tmp_path / "never"
    code = cli.main(["--out", str(out)] + [a for s in BASE + sets for a in ("--set", s)])
    assert code == 2
    assert f"fastgp-train: error: {message}" in capsys.readouterr().err
    assert not out.exists()


def test_lecam_d_loss_is_the_loss_plus_the_authors_penalty(tmp_path):
    run = make_run(tmp_path, *RECT, *LECAM, "loss.name=hinge", "regularizers.penalty.kind=none", "optim.n_dis=2",
                   "regularizers.lecam.start=2")
    ema = ema_losses(start_itr=2)  # the authors' class and its default decay (0.9), as written

    def expect(real, fake):
        # The authors' D step (train_fns.py): hinge loss, which updates the EMA, then the penalty
        # when itr > start_itr; itr is the G step counted from 0 (run_train.py).
        r, f = run.D(real), run.D(fake)
        itr = run.step
        loss_real, loss_fake = loss_hinge_dis(f, r, ema, itr)
        return loss_real + loss_fake + (lecam_reg(r, f, ema) * 0.3 if itr > 2 else 0.0)

    run.expect = expect
    seen = spy_d_inputs(run)
    for _ in range(5):
        run.train_step()
    assert len(seen) == 10
    for entry in seen:
        torch.testing.assert_close(entry["main"], entry["expected"])
    assert run.lecam.state_dict()["anchor_real"] == pytest.approx(ema.D_real)
    assert run.lecam.state_dict()["anchor_fake"] == pytest.approx(ema.D_fake)
    rec = run.record()
    assert rec["d_gap"] == pytest.approx(rec["d_real"] - rec["d_fake"]) and rec["lecam"] > 0


def test_lecam_weight_zero_trains_exactly_as_without_it(tmp_path):
    runs = []
    for i, extra in enumerate(([], ["regularizers.lecam.enabled=true", "regularizers.lecam.weight=0"])):
        (tmp_path / str(i)).mkdir()
        run = make_run(tmp_path / str(i), *RECT, *extra)
        for _ in range(4):
            run.train_step()
        runs.append(run)
    for a, b in zip(runs[0].G.state_dict().values(), runs[1].G.state_dict().values()):
        assert torch.equal(a, b)
    assert "d_gap" in runs[1].record() and "d_gap" not in runs[0].record()


def test_top_k_g_loss_takes_the_k_highest_scored_fakes_on_schedule(tmp_path):
    run = make_run(tmp_path, *RECT, *TOPK)
    calls = []
    select = run.top_k.select

    def spy(fake_logits, step):
        kept = select(fake_logits, step)
        calls.append((fake_logits.detach().reshape(-1).clone(), kept.detach().clone()))
        return kept

    run.top_k.select = spy
    for _ in range(8):
        run.train_step()
    # B = 8, epochs of 2 G steps: k = max(0.5^epoch, 0.25)·8.
    assert [kept.numel() for _, kept in calls] == [8, 8, 4, 4, 2, 2, 2, 2]
    for logits, kept in calls:
        torch.testing.assert_close(kept, torch.topk(logits, kept.numel()).values)


def test_top_k_epoch_defaults_to_one_pass_over_the_training_set(tmp_path):
    run = make_run(tmp_path, *RECT, "regularizers.top-k.enabled=true")
    assert run.top_k.steps_per_epoch == 256 // 8
    assert run.top_k.k(8, 0) == 8 and run.top_k.k(8, 32 * 100) == 4  # ν = 0.5 after enough epochs


def test_digits_subset_is_fixed_across_seeds(monkeypatch):
    monkeypatch.setattr(digits, "classifier", lambda resolution: None)  # not needed here
    a, b = digits.Digits(16, 50), digits.Digits(16, 50)
    full = digits.Digits(16)
    assert a.images.shape[0] == 50 and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    # The subset's images are training images with their labels.
    index = (full.images.flatten(1)[:, None] == a.images.flatten(1)[None]).all(-1).nonzero()
    assert index.shape[0] >= 50 and torch.equal(full.labels[index[:, 0]].unique(), a.labels[index[:, 1]].unique())
    with pytest.raises(config.ConfigError, match="data.subset: the digits have 1797 images, got 5000"):
        digits.Digits(16, 5000)
