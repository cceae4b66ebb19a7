"""fastgp.repro.optimal_d: D trained for frozen real and fake samples (the lipschitz experiment's
fixed-G study): the training routine on a case with a known answer, the quick study and its report,
and bad input."""

import json

import pytest
import torch

from fastgp.repro import optimal_d
from fastgp.repro.__main__ import main
from fastgp.train.models import mlp

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("setting", optimal_d.SETTINGS, ids=lambda s: s.name)
def test_trained_d_points_every_fake_at_the_only_real_point(setting):
    # One real point y = (3, 0) and fakes around (−3, 0): whatever the objective, the optimal D
    # increases towards y, so at every fake ∇D is parallel to y − x (cos = 1). A sign error in the
    # routine (D pushed the wrong way) would give cos ≈ −1.
    g = torch.Generator().manual_seed(0)
    real = torch.tensor([[3.0, 0.0]]).expand(64, 2).contiguous()
    fake = torch.tensor([-3.0, 0.0]) + 0.5 * torch.randn(64, 2, generator=g)
    torch.manual_seed(0)
    D = mlp(2, 32, 1, "relu")
    before = optimal_d.measure(D, real, fake)["cos"]
    history = optimal_d.train_discriminator(D, real, fake, setting, 300, generator=g)
    after = optimal_d.measure(D, real, fake)
    assert len(history) == 300 and history[-1] < history[0]
    assert after["aligned"] > 0.95 and after["cos_far"] > 0.95, (before, after)


def test_frozen_samples_are_fixed_by_the_seed():
    real, fake = optimal_d.frozen_samples(3)
    assert real.shape == (optimal_d.N_REAL, 2) and fake.shape == (optimal_d.N_FAKE, 2)
    again = optimal_d.frozen_samples(3)
    assert torch.equal(real, again[0]) and torch.equal(fake, again[1])
    other = optimal_d.frozen_samples(4)
    assert not torch.equal(real, other[0]) and not torch.equal(fake, other[1])
    radius = real.norm(dim=1)
    assert (radius - 10).abs().max() < 2.0  # on the ring of radius 10 (std 0.2)
    assert 0.8 * optimal_d.FAKE_STD < fake.std() < 1.2 * optimal_d.FAKE_STD


def test_records_are_evenly_spaced_and_end_at_the_last_step():
    real, fake = optimal_d.frozen_samples(0, 16, 16)
    steps = []
    optimal_d.train_discriminator(mlp(2, 8, 1, "relu"), real, fake, optimal_d.SETTINGS[0], 10,
                                  on_record=steps.append, records=4)
    assert steps == [2, 4, 6, 8, 10]


@pytest.mark.parametrize("call, message", [
    (lambda D, r, f, s: optimal_d.train_discriminator(D, r, f, s, 0), "steps: expected an int >= 1, got 0"),
    (lambda D, r, f, s: optimal_d.train_discriminator(D, r, f, s, True), "steps: expected an int >= 1, got True"),
    (lambda D, r, f, s: optimal_d.train_discriminator(D, r, f[:4], s, 2), "real and fake must have the same shape"),
    (lambda D, r, f, s: optimal_d.frozen_samples(0, n_real=0), "n_real: expected an int >= 1, got 0"),
    (lambda D, r, f, s: optimal_d.frozen_samples(0, n_fake=2.0), "n_fake: expected an int >= 1, got 2.0"),
])
def test_bad_input_names_the_argument(call, message):
    real, fake = optimal_d.frozen_samples(0, 8, 8)
    with pytest.raises(ValueError, match=message):
        call(mlp(2, 8, 1, "relu"), real, fake, optimal_d.SETTINGS[0])


def test_quick_study_and_its_place_in_the_lipschitz_report(tmp_path, capsys):
    out = tmp_path / "lip"
    assert main(["lipschitz", "--quick", "--seeds", "2", "--steps", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    with open(out / "results.json", encoding="utf-8") as f:
        study = json.load(f)["study"]
    assert study["steps"] == optimal_d.QUICK_D_STEPS and study["files"] == [optimal_d.FIELD_PNG]
    assert [s["name"] for s in study["settings"]] == [s.name for s in optimal_d.SETTINGS]
    for s in study["settings"]:
        assert [r["seed"] for r in s["runs"]] == [0, 1]
        values = [r["values"]["cos"] for r in s["runs"]]
        assert all(-1.0 <= v <= 1.0 for v in values) and values[0] != values[1]
        assert s["summary"]["cos"]["n"] == 2 and s["summary"]["cos"]["std"] is not None
        assert [step for step, _ in s["runs"][0]["trace"]][-1] == optimal_d.QUICK_D_STEPS
    assert (out / optimal_d.FIELD_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    table = (out / "table.md").read_text(encoding="utf-8")
    fixed, training = table.index("## Fixed G"), table.index("## Training runs")
    assert fixed < training  # the paper's statement first, the training runs second
    rows = [line for line in table[fixed:training].splitlines() if line.startswith("| ") and "±" in line]
    assert [r.split("|")[1].strip() for r in rows] == [s.label for s in optimal_d.SETTINGS]


def test_previous_runs_are_reused_and_seed_0_is_checked(tmp_path):
    first = optimal_d.study(str(tmp_path / "a"), 2, True, log=lambda line: None)
    kept = {"steps": first["steps"], "settings": first["settings"][:1]}  # as if only the first setting had run
    again = optimal_d.study(str(tmp_path / "b"), 2, True, log=lambda line: None, previous=kept)
    assert again["markdown"] == first["markdown"]  # seed 0 retrained to the same values, seed 1 taken over
    assert [s["summary"] for s in again["settings"]] == [s["summary"] for s in first["settings"]]

    kept["settings"][0]["runs"][0]["values"]["cos"] += 0.5
    with pytest.raises(ValueError, match=r"previous: lgan-max-gp seed 0 gave"):
        optimal_d.study(str(tmp_path / "c"), 2, True, log=lambda line: None, previous=kept)
    with pytest.raises(ValueError, match="previous: a study of 10 steps, not 3"):
        optimal_d.study(str(tmp_path / "d"), 1, True, steps=3, previous=kept)
