"""fastgp.repro.optimal_d: D trained for frozen real and fake samples (the lipschitz experiment's
fixed-G study): the training routine on a case with a known answer, the unconstrained baselines
really without a constraint, the frozen samples (2-D and Fig. 4's images), the paired comparisons,
the judge's verdict words, the quick study and its report, and bad input."""

import json

import pytest
import torch

from fastgp.repro import optimal_d, stats
from fastgp.repro.__main__ import main
from fastgp.train.models import mlp

pytestmark = pytest.mark.usefixtures("one_thread")


CONSTRAINED = [s for s in optimal_d.SETTINGS if s.constrained]
UNCONSTRAINED = [s for s in optimal_d.SETTINGS if not s.constrained]


@pytest.mark.parametrize("setting", CONSTRAINED, ids=lambda s: s.name)
def test_trained_d_points_every_fake_at_the_only_real_point(setting):
    # One real point y = (3, 0) and fakes around (−3, 0): whatever the objective, the constrained D
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
    (lambda D, r, f, s: optimal_d.frozen_images(0, n=0), "n: expected an int >= 1, got 0"),
    (lambda D, r, f, s: optimal_d.study("unused", 0, True), "seeds: expected an int >= 1, got 0"),
    (lambda D, r, f, s: optimal_d.frozen_samples(0, n_fake=2.0), "n_fake: expected an int >= 1, got 2.0"),
])
def test_bad_input_names_the_argument(call, message):
    real, fake = optimal_d.frozen_samples(0, 8, 8)
    with pytest.raises(ValueError, match=message):
        call(mlp(2, 8, 1, "relu"), real, fake, optimal_d.SETTINGS[0])


def test_every_objective_has_a_constrained_and_an_unconstrained_twin():
    by_objective = {}
    for s in optimal_d.IMAGE_SETTINGS:
        by_objective.setdefault(s.objective, []).append(s)
    assert sorted(by_objective) == sorted(key for key, *_ in optimal_d.OBJECTIVES)
    for pair in by_objective.values():
        assert [(s.kind, s.weight) for s in pair] == [("max-gp", optimal_d.LAMBDA), (None, 0.0)]
        assert pair[0].loss == pair[1].loss and pair[0].params == pair[1].params
    assert [s for s in optimal_d.SETTINGS if s not in optimal_d.IMAGE_SETTINGS] == [
        optimal_d.Setting("wgan-gp", "Wasserstein + WGAN-GP (λ = 10)", "wasserstein", "wgan-gp", 10.0, "wasserstein")]


@pytest.mark.parametrize("setting", optimal_d.SETTINGS, ids=lambda s: s.name)
def test_unconstrained_training_never_calls_a_penalty(setting, monkeypatch):
    # The baseline must be the loss alone: a penalty of any weight (even a wrong kind or weight
    # reaching it) would make it a constrained D. Count the calls of the penalty the routine uses.
    calls = []
    real_penalty = optimal_d.gradient_penalty

    def counting(*args, **kwargs):
        calls.append(kwargs["kind"])
        return real_penalty(*args, **kwargs)

    monkeypatch.setattr(optimal_d, "gradient_penalty", counting)
    real, fake = optimal_d.frozen_samples(0, 16, 16)
    d_loss, _ = optimal_d.losses.get(setting.loss, **setting.params)
    torch.manual_seed(0)
    D = mlp(2, 8, 1, "relu")
    before = float(d_loss(D(real), D(fake)).detach())
    history = optimal_d.train_discriminator(D, real, fake, setting, 3)
    if setting.constrained:
        assert calls == [setting.kind] * 3 and history[0] > before  # the penalty is added to the loss
    else:
        assert calls == [] and history[0] == pytest.approx(before, rel=1e-6, abs=1e-7)  # the loss and nothing else


def test_unconstrained_wasserstein_d_is_far_from_lipschitz_and_the_constrained_one_is_not():
    # Section 3.2's contrast: without the constraint the Wasserstein critic's slope grows without
    # bound (its loss is linear in D); under λ·k² it settles at a small k. A penalty sneaking into
    # the baseline, or a constraint that does not act, makes the two slopes alike.
    real, fake = optimal_d.frozen_samples(0, 64, 64)
    slopes = {}
    for s in optimal_d.SETTINGS:
        if s.objective == "wasserstein" and s.kind in (None, "max-gp"):
            torch.manual_seed(0)
            D = mlp(2, 32, 1, "relu")
            optimal_d.train_discriminator(D, real, fake, s, 300, generator=torch.Generator().manual_seed(1))
            slopes[s.kind] = optimal_d.lipschitz_estimate(D, real, fake)
    assert slopes[None] > 20 * slopes["max-gp"], slopes
    assert slopes["max-gp"] < 1.0, slopes


def test_frozen_images_are_ten_real_crops_and_ten_noises_fixed_by_the_seed():
    real, fake = optimal_d.frozen_images(2)
    assert real.shape == fake.shape == (optimal_d.N_IMAGES, 3 * optimal_d.IMAGE_SIZE ** 2)
    assert real.dtype == fake.dtype == torch.float32
    assert real.min() >= -1 and real.max() <= 1 and fake.min() >= -1 and fake.max() <= 1
    again = optimal_d.frozen_images(2)
    assert torch.equal(real, again[0]) and torch.equal(fake, again[1])
    other = optimal_d.frozen_images(3)
    assert not torch.equal(real, other[0]) and not torch.equal(fake, other[1])
    # Photographs are smooth (neighbouring pixels alike), the noise is not.
    def neighbour_corr(x):
        img = x.view(-1, 3, optimal_d.IMAGE_SIZE, optimal_d.IMAGE_SIZE)
        a, b = img[..., :-1].flatten(), img[..., 1:].flatten()
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    assert neighbour_corr(real) > 0.7 and abs(neighbour_corr(fake)) < 0.1
    assert 0.25 < float(fake.var()) < 0.42  # U(−1, 1): variance 1/3


def _part(values):
    """A study part with, per setting name, the given cos of seeds 0, 1, 2."""
    settings = []
    for name, cos in values.items():
        objective, _, kind = name.partition("-")
        kind = None if kind == "none" else kind
        runs = [{"seed": k, "values": {"cos": c, "cos_best": c}} for k, c in enumerate(cos)]
        mean = sum(cos) / len(cos)
        settings.append({"name": name, "label": name, "kind": kind, "objective": objective,
                         "runs": runs, "summary": {"cos": {"mean": mean}, "cos_best": {"mean": mean}}})
    return {"settings": settings}


def test_comparisons_pair_each_constrained_d_with_its_own_unconstrained_twin():
    part = _part({"w-max-gp": [0.9, 0.8, 0.85], "w-none": [0.3, 0.2, 0.25], "v-max-gp": [0.5, 0.5, 0.5],
                  "v-none": [0.6, 0.7, 0.65], "w-wgan-gp": [0.2, 0.3, 0.2]})
    rows = optimal_d.comparisons(part, "2-D")
    assert [(r["a"], r["b"], r["judged"]) for r in rows] == [
        ("w-max-gp", "w-none", True), ("v-max-gp", "v-none", True), ("w-wgan-gp", "w-none", False)]
    assert [r["outcome"] for r in rows] == ["as claimed", "opposite", "inconclusive"]
    assert rows[0]["mean"] == pytest.approx(0.6) and rows[0]["n"] == 3
    assert rows[0]["a_mean"] == pytest.approx(0.85) and rows[0]["b_mean"] == pytest.approx(0.25)
    images = optimal_d.comparisons(part, "images")
    assert [(r["key"], r["judged"]) for r in images] == [("cos_best", True), ("cos_best", True), ("cos_best", False),
                                                         ("cos", False), ("cos", False), ("cos", False)]


def _results(outcomes, n=5):
    rows = [{"a": f"o{i}-max-gp", "b": f"o{i}-none", "part": "2-D", "judged": True, "outcome": o, "n": n,
             "mean": 0.1, "lo": 0.05, "hi": 0.15, "a_mean": 0.9, "b_mean": 0.8, "label": f"o{i}"}
            for i, o in enumerate(outcomes)]
    shown = {**rows[0], "judged": False, "outcome": "opposite"}  # a shown-only row never decides
    return {"study": {"comparisons": rows + [shown]},
            "comparisons": [{"label": "training: x > y", "outcome": "opposite"}]}


@pytest.mark.parametrize("outcomes, n, word", [
    (["as claimed"] * 3, 5, "reproduced:"),
    (["as claimed", "inconclusive", "as claimed"], 5, "reproduced in part (2 of 3"),
    (["as claimed", "opposite"], 5, "reproduced in part (1 of 2"),
    (["inconclusive", "opposite", "inconclusive"], 5, "not reproduced:"),
    (["inconclusive"] * 2, 1, "not testable here:"),
])
def test_the_judge_derives_each_verdict_word_from_the_judged_comparisons(outcomes, n, word):
    verdict = optimal_d.judge(_results(outcomes, n))
    assert verdict.startswith(word), verdict
    assert stats.check_verdict(verdict) == verdict
    if n > 1:
        assert "o0-max-gp vs o0-none (2-D: 0.90 vs 0.80" in verdict and "training: x > y: opposite" in verdict


@pytest.mark.slow  # training runs
def test_quick_study_and_its_place_in_the_lipschitz_report(tmp_path, capsys):
    out = tmp_path / "lip"
    assert main(["lipschitz", "--quick", "--seeds", "2", "--steps", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    with open(out / "results.json", encoding="utf-8") as f:
        results = json.load(f)
    study = results["study"]
    assert study["files"] == [optimal_d.FIELD_PNG, optimal_d.IMAGES_PNG]
    for part, settings in (("2d", optimal_d.SETTINGS), ("images", optimal_d.IMAGE_SETTINGS)):
        assert study[part]["steps"] == optimal_d.QUICK_D_STEPS
        assert [s["name"] for s in study[part]["settings"]] == [s.name for s in settings]
        for s in study[part]["settings"]:
            assert [r["seed"] for r in s["runs"]] == [0, 1]
            values = [r["values"]["cos"] for r in s["runs"]]
            assert all(-1.0 <= v <= 1.0 for v in values) and values[0] != values[1]
            assert s["summary"]["cos"]["n"] == 2 and s["summary"]["cos"]["std"] is not None
            assert [step for step, _ in s["runs"][0]["trace"]][-1] == optimal_d.QUICK_D_STEPS
    assert sum(c["judged"] for c in study["comparisons"]) == 2 * len(optimal_d.OBJECTIVES)
    assert results["verdict"] == optimal_d.judge(results)
    for name in study["files"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    table = (out / "table.md").read_text(encoding="utf-8")
    assert f"**Verdict (QUICK run: not a result): {results['verdict']}**" in table
    flat, images, training = table.index("## Fixed G, 2-D"), table.index("## Fixed G, images"), \
        table.index("## Training runs")
    assert table.index("## Paired comparisons") < flat < images < training
    for start, end, settings in ((flat, images, optimal_d.SETTINGS), (images, training, optimal_d.IMAGE_SETTINGS)):
        rows = [line for line in table[start:end].splitlines() if line.startswith("| ") and "±" in line]
        assert [r.split("|")[1].strip() for r in rows] == [s.label for s in settings]
