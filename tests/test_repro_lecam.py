"""The lecam experiment's measurement (D's outputs on training vs held-out reals), the held-out
digits it reads, and its judge on constructed results."""

from types import SimpleNamespace

import pytest
import torch

from fastgp import repro
from fastgp.repro import ReproError, lecam_gap, stats
from fastgp.train import digits
from helpers import quick_repro

pytestmark = pytest.mark.usefixtures("one_thread")


def test_auc_of_constructed_scores():
    assert lecam_gap.auc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert lecam_gap.auc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == 0.0
    assert lecam_gap.auc(torch.ones(4), torch.ones(7)) == 0.5  # ties count half
    # 1 beats 0 and ties 1; 3 beats both: (1 + 0.5 + 2) / 4.
    assert lecam_gap.auc(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])) == pytest.approx(3.5 / 4)


@pytest.mark.parametrize("above, below", [(torch.zeros(0), torch.ones(2)), (torch.ones(2, 2), torch.ones(2)),
                                          ([1.0], torch.ones(2))])
def test_auc_refuses_what_is_not_scores(above, below):
    with pytest.raises(ValueError, match="expected a non-empty 1-D tensor"):
        lecam_gap.auc(above, below)


def test_d_outputs_of_a_d_that_learned_its_training_set_and_of_one_that_did_not():
    g = torch.Generator().manual_seed(0)
    train, held = torch.rand(20, 1, 4, 4, generator=g) + 0.5, torch.rand(50, 1, 4, 4, generator=g)

    def brightness(x):  # scores the (brighter) training images higher: a D that tells them apart
        return x.flatten(1).mean(1, keepdim=True)

    learned = lecam_gap.d_outputs(brightness, train, held)
    assert learned["d_train"] == pytest.approx(float(train.mean()))
    assert learned["d_held"] == pytest.approx(float(held.mean()))
    assert learned["d_overfit"] == pytest.approx(0.5, abs=0.1) and learned["d_auc"] == 1.0
    blind = lecam_gap.d_outputs(lambda x: torch.zeros(len(x), 1), train, held)
    assert blind["d_overfit"] == 0 and blind["d_auc"] == 0.5
    # Scaling D's outputs scales the gap but leaves the AUC.
    scaled = lecam_gap.d_outputs(lambda x: 0.1 * brightness(x), train, held)
    assert scaled["d_overfit"] == pytest.approx(0.1 * learned["d_overfit"]) and scaled["d_auc"] == 1.0


def test_held_out_digits_are_the_ones_the_subset_left_out(monkeypatch):
    monkeypatch.setattr(digits, "classifier", lambda resolution: None)  # not needed here
    full, limited = digits.Digits(8), digits.Digits(8, 50)
    assert full.held_out is None
    assert limited.held_out.shape == (1797 - 50, 1, 8, 8)
    together = torch.cat([limited.images, limited.held_out]).flatten(1)
    # Every digit is in exactly one of the two (the digits hold a few duplicates: compare multisets).
    assert torch.equal(together.sort(0).values, full.images.flatten(1).sort(0).values)
    assert torch.equal(torch.unique(together, dim=0), torch.unique(full.images.flatten(1), dim=0))


def test_measure_needs_a_limited_data_run():
    run = SimpleNamespace(data=SimpleNamespace(held_out=None, images=torch.zeros(2, 1, 2, 2)), D=None)
    with pytest.raises(ReproError, match="data.subset"):
        lecam_gap.measure(run)


@pytest.mark.slow  # quick training runs
def test_quick_run_measures_d_on_training_and_held_out_reals(tmp_path, capsys):
    results = quick_repro("lecam", tmp_path, capsys)
    for s in results["settings"]:
        v = s["runs"][0]["values"]
        assert v["d_overfit"] == pytest.approx(v["d_train"] - v["d_held"]) and 0 <= v["d_auc"] <= 1
    premise = results["comparisons"][0]
    assert (premise["a"], premise["b"], premise["key"], premise["b_key"]) == ("none", "none", "d_train", "d_held")
    assert results["verdict"].startswith("not testable here")


def _comparison(a, b, key, b_key, outcome, n=5):
    mean = {stats.AS_CLAIMED: 0.1, stats.OPPOSITE: -0.1, stats.INCONCLUSIVE: 0.0}[outcome]
    return {"a": a, "b": b, "key": key, "b_key": b_key, "label": f"{a} vs {b} on {key}", "expect": ">",
            "mean": mean, "lo": mean - 0.05, "hi": mean + 0.05, "n": n, "outcome": outcome}


def _results(premise, remedy, n=5):
    a, b, key, b_key = repro.LECAM_PREMISE
    comparisons = [_comparison(a, b, key, b_key, premise, n)]
    comparisons += [_comparison(a, b, key, key, o, n) for (a, b, key), o in zip(repro.LECAM_REMEDY, remedy)]
    comparisons.append(_comparison("none", "lecam", "d_gap", "d_gap", stats.OPPOSITE, n))  # context: not judged
    return {"comparisons": comparisons}


YES, NO, OPP = stats.AS_CLAIMED, stats.INCONCLUSIVE, stats.OPPOSITE


@pytest.mark.parametrize("premise, remedy, word, says", [
    (YES, (YES, YES), "reproduced:", "LeCam narrows that gap"),
    (YES, (YES, NO), "reproduced in part:", "narrows the gap only in part"),
    (YES, (OPP, NO), "reproduced in part:", "LeCam does not narrow the gap"),
    (NO, (YES, YES), "not reproduced:", "the premise does not show"),
    (OPP, (NO, NO), "not reproduced:", "the premise does not show"),
])
def test_judge_returns_each_verdict_from_the_comparisons(premise, remedy, word, says):
    verdict = repro.judge_lecam(_results(premise, remedy))
    assert verdict.startswith(word) and says in verdict
    assert stats.check_verdict(verdict) == verdict


def test_judge_without_intervals_is_not_testable():
    assert repro.judge_lecam(_results(YES, (YES, YES), n=1)).startswith("not testable here")
