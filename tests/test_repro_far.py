"""The far experiment: the generalization measures of the finite-sample setting (MMD to fresh
samples of the true Gaussian, to the training points), the loss-level measures of Fig. 5, and the
judge on constructed results."""

import math
import re

import pytest
import torch

from fastgp import repro
from fastgp.repro import far as far_claim
from fastgp.repro import stats
from fastgp.train.data import Toy2D, mean_kernel_within, rbf_mmd2
from helpers import quick_repro

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(seed=0):
    return Toy2D("finite-gaussian", 1.0, 0.05, 64, seed)


def _samples(seed=1, n=2048):
    """Three constructed generators: the true Gaussian (fresh draws), copies of the 64 training
    points (memorization), and samples on 3 training points (collapse)."""
    data, g = _data(), torch.Generator().manual_seed(seed)
    true = torch.randn(n, 2, generator=g)
    copies = data.ref[torch.randint(0, 64, (n,), generator=g)]
    three = data.ref[torch.randint(0, 3, (n,), generator=g)] + 0.01 * torch.randn(n, 2, generator=g)
    return data, true, copies, three


def test_mmd_to_fresh_samples_ranks_the_true_distribution_above_copies_and_above_collapse():
    data, true, copies, three = _samples()
    m_true, m_copies, m_three = (data.metrics(x)["mmd"] for x in (true, copies, three))
    assert abs(m_true) < 0.003  # 0 in expectation: the same distribution
    assert m_true < m_copies < m_three
    assert m_three > 5 * m_copies  # collapse is far worse than memorizing all 64 points


def test_mmd_to_the_training_points_and_the_share_of_copies_measure_memorization():
    data, true, copies, three = _samples()
    true_m, copies_m, three_m = (data.metrics(x) for x in (true, copies, three))
    assert copies_m["mmd_train"] < true_m["mmd_train"] < three_m["mmd_train"]
    assert copies_m["hq"] == 1.0 and three_m["hq"] == 1.0 and true_m["hq"] < 0.5
    # (a 4th training point lies within 0.15 of one of the three, so it may count as covered)
    assert copies_m["modes"] == 64 and three_m["modes"] <= 4


def test_fresh_samples_are_not_the_training_points_and_depend_on_the_seed():
    a, b = _data(0), _data(1)
    assert a.fresh.shape == (2048, 2)
    assert torch.cdist(a.fresh, a.ref).min() > 0
    assert not torch.equal(a.fresh, b.fresh)
    assert torch.equal(a.fresh, _data(0).fresh)


def test_mmd_of_a_diverged_generator_is_nan_and_other_datasets_have_none():
    data = _data()
    fake = torch.randn(64, 2)
    fake[3, 0] = float("nan")
    m = data.metrics(fake)
    assert math.isnan(m["mmd"]) and math.isnan(m["mmd_train"]) and m["modes"] == 0
    assert "mmd" not in Toy2D("8gaussians", 10.0, 0.2, 64, 0).metrics(torch.randn(64, 2))


def test_rbf_mmd2_matches_its_definition_and_the_cached_within_term():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(7, 2, generator=g, dtype=torch.float64) + 1
    h = 0.7

    def k(a, b):
        return math.exp(-float((a - b).pow(2).sum()) / (2 * h * h))

    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(7) for j in range(7) if i != j) / 42
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(7)) / 35
    assert rbf_mmd2(x, y, h) == pytest.approx(xx + yy - 2 * xy, rel=1e-8)
    assert rbf_mmd2(x, y, h, mean_kernel_within(y, h)) == pytest.approx(rbf_mmd2(x, y, h), rel=1e-12)


@pytest.mark.parametrize("x, y, bandwidth, error, says", [
    ([[0.0, 1.0], [1.0, 0.0]], torch.zeros(2, 2), 1.0, TypeError, "x, y: expected tensors"),
    (torch.zeros(1, 2), torch.zeros(3, 2), 1.0, ValueError, "n, m >= 2"),
    (torch.zeros(3, 2), torch.zeros(3, 3), 1.0, ValueError, "[n, d] and [m, d]"),
    (torch.zeros(3, 2), torch.zeros(3, 2), 0.0, ValueError, "bandwidth: expected a number > 0"),
    (torch.zeros(3, 2), torch.zeros(3, 2), True, ValueError, "bandwidth: expected a number > 0"),
])
def test_rbf_mmd2_refuses_bad_inputs(x, y, bandwidth, error, says):
    with pytest.raises(error, match=re.escape(says)):
        rbf_mmd2(x, y, bandwidth)


RECORDS = [{"step": s, "mmd": m, "d_loss": d, "g_loss": gl}
           for s, m, d, gl in [(100, 0.5, 1.0, 1.0), (200, 0.4, 1.2, 0.8), (300, 0.3, 1.3, 0.7),
                               (400, 0.2, 1.5, 0.5), (500, 0.1, 1.4, 0.6)]]


def test_loss_gap_and_half_way_values_from_logged_records():
    assert far_claim.loss_gap("d_loss", far_claim.D_OPTIMUM, 2)(RECORDS) == pytest.approx(
        (abs(1.5 - 2 * math.log(2)) + abs(1.4 - 2 * math.log(2))) / 2)
    assert far_claim.loss_gap("g_loss", far_claim.G_OPTIMUM, 3)(RECORDS) == pytest.approx(
        (abs(0.7 - math.log(2)) + abs(0.5 - math.log(2)) + abs(0.6 - math.log(2))) / 3)
    assert far_claim.at_half("mmd", 2)(RECORDS) == pytest.approx((0.5 + 0.4) / 2)  # steps <= 250
    assert far_claim.at_half("mmd", 2)([{"step": 1}]) is None
    assert far_claim.loss_gap("d_loss", 1.0, 3)([{"step": 1}]) is None


YES, NO, OPP = stats.AS_CLAIMED, stats.INCONCLUSIVE, stats.OPPOSITE


def _results(fit, loss_d, loss_g, n=5, drift=0.2):
    """Constructed results: the far experiment's comparisons with the given outcomes for the
    judged ones (premises and context inconclusive), the baseline's D loss off 2 log 2 by ``drift``."""
    outcome = {"fit": fit, "loss-d": loss_d, "loss-g": loss_g}
    out = []
    for c in repro.FAR.comparisons:
        o = outcome.get(c.label.split(":")[0], NO)
        mean = {YES: -0.1, OPP: 0.1, NO: 0.0}[o]
        out.append({"a": c.a, "b": c.b, "key": c.key, "b_key": c.b_key or c.key, "label": c.label,
                    "expect": c.expect, "mean": mean, "lo": mean - 0.05, "hi": mean + 0.05, "n": n, "outcome": o})
    runs = [{"seed": k, "values": {"d_dev": drift, "grad_d_x": 0.002}} for k in range(n)]
    far_runs = [{"seed": k, "values": {"grad_d_x": 3e-6}} for k in range(n)]
    return {"comparisons": out, "settings": [{"name": "finite-r1", "runs": runs}, {"name": "finite-far", "runs": far_runs}]}


@pytest.mark.parametrize("fit, loss_d, loss_g, word, says", [
    (YES, YES, YES, "reproduced:", "fit: FAR nearer the true Gaussian"),
    (YES, NO, OPP, "reproduced in part:", "does not — loss-d"),
    (NO, YES, YES, "reproduced in part:", "holds — loss-d"),
    (OPP, NO, NO, "not reproduced:", "opposite"),
    (NO, NO, NO, "not reproduced:", "inconclusive"),
])
def test_judge_returns_each_verdict_from_the_comparisons(fit, loss_d, loss_g, word, says):
    verdict = repro.FAR.judge(_results(fit, loss_d, loss_g))
    assert verdict.startswith(word) and says in verdict
    assert "premise: 0GP-sample nearer the Gaussian than no GP" in verdict  # the premises are reported
    assert "‖∂D/∂x‖ at real: finite-far 3e-06, finite-r1 0.002" in verdict
    assert stats.check_verdict(verdict) == verdict


def test_judge_does_not_count_fig5_where_the_baseline_loss_does_not_drift():
    verdict = repro.FAR.judge(_results(NO, YES, YES, drift=0.001))
    assert verdict.startswith("not reproduced:") and "Fig. 5 is not testable here" in verdict
    verdict = repro.FAR.judge(_results(YES, YES, YES, drift=0.001))
    assert verdict.startswith("reproduced:") and "Fig. 5 is not testable here" in verdict
    assert repro.FAR.judge(_results(YES, YES, YES, drift=far_claim.LOSS_DRIFT)).startswith("reproduced:")


def test_judge_without_intervals_is_not_testable():
    assert repro.FAR.judge(_results(YES, YES, YES, n=1)).startswith("not testable here")


def test_far_compares_the_papers_arms_on_the_finite_sample():
    names = [s.name for s in repro.FAR.settings]
    assert names == ["finite-none", "finite-r1", "finite-0gp", "finite-far"]
    assert repro.FAR.quote.startswith("Figure 1") and "fake-as-real.txt" in repro.FAR.quote
    assert repro.FAR.seeds >= 5 and repro.FAR.tail >= 3 and repro.FAR.judge is far_claim.judge
    keys = {m.key for m in repro.FAR.metrics}
    assert {c.key for c in repro.FAR.comparisons} | {c.b_key for c in repro.FAR.comparisons if c.b_key} <= keys


@pytest.mark.slow  # quick training runs
def test_quick_run_scores_generalization_and_loss_levels(tmp_path, capsys):
    results = quick_repro("far", tmp_path, capsys)
    for s in results["settings"]:
        v = s["runs"][0]["values"]
        assert all(v[k] is not None for k in ("mmd", "mmd_mid", "mmd_train", "d_dev", "g_dev")), v
        assert v["d_dev"] >= 0 and v["g_dev"] >= 0
    assert [c["label"].split(":")[0] for c in results["comparisons"][:4]] == ["fit", "fit", "loss-d", "loss-g"]
    assert results["verdict"].startswith("not testable here")
