"""The sn-players reproduction (Fig. 1 of the augmentation paper): spectral norm on neither player,
G, D or both; G's parameter gradient at the end; a verdict that follows from the intervals."""

import copy
import math

import pytest
import torch

from fastgp import repro
from fastgp.repro import augment, late_std, stats

EXP = repro.EXPERIMENTS["sn-players"]


def test_arms_are_the_papers():
    configs = EXP.configs(EXP.steps, seed=0, quick=False)
    assert tuple(configs) == ("none", "sn-g", "sn-d", "sn-both") and EXP.seeds >= 5 and EXP.tail >= 3
    for name, cfg in configs.items():
        sn = cfg["regularizers"]["spectral-norm"]
        assert (sn["g"], sn["d"]) == (name in ("sn-g", "sn-both"), name in ("sn-d", "sn-both"))
        assert cfg["loss"]["name"] == "saturating"  # the vanilla (minimax) GAN
        assert cfg["regularizers"]["penalty"]["kind"] == "none"
        assert cfg["model"]["g_norm"] == "none"  # nothing in G undoes its spectral norm
    assert "Figure 1" in EXP.quote


def test_late_std_is_the_second_halfs_sample_std():
    records = [{"step": s, "g_loss": v} for s, v in zip(range(100, 1100, 100), [9, 9, 9, 9, 9, 1, 2, 3, 4, 5])]
    assert late_std("g_loss")(records) == pytest.approx(math.sqrt(2.5))  # std of 1..5 (steps 600–1000)
    assert late_std("g_loss")(records[:1]) is None and late_std("d_loss")(records) is None


def test_measure_players_is_the_parameter_gradient_of_the_papers_vg():
    torch.manual_seed(0)
    G = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    D = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    class Run:
        cfg = {"noise": {"dist": "normal", "scale": 1.0, "dim": 3}}

    run = Run()
    run.G, run.D = copy.deepcopy(G), copy.deepcopy(D)
    got = augment.measure_players(run)
    # By hand: V_g = mean log(1 − σ(D(G(z)))) over the fixed noise set, its gradient over G's weights.
    z = augment.noise_set(Run.cfg["noise"], augment.N_PLAYERS)
    logits = D(G(z)).reshape(-1)
    vg = torch.log1p(-torch.sigmoid(logits)).mean()
    grads = torch.autograd.grad(vg, list(G.parameters()))
    assert got["grad_g_params"] == pytest.approx(float(torch.sqrt(sum((g ** 2).sum() for g in grads))), rel=1e-4)
    assert got["d_gz"] == pytest.approx(float(torch.sigmoid(logits.detach()).mean()), rel=1e-5)
    # The run's own models are left as they were (measured on copies).
    assert all(torch.equal(a, b) for a, b in zip(run.G.state_dict().values(), G.state_dict().values()))


def results_for(values: dict) -> dict:
    settings = [{"name": arm, "runs": [{"seed": k, "values": {key: v[k] for key, v in values[arm].items()}}
                                       for k in range(5)]} for arm in values]
    return {"settings": settings, "comparisons": [stats.run_comparison(c, settings) for c in EXP.comparisons]}


def case(small_jac=True, vanish=True, g_learns_nothing=True, swing=True, none_unconverged=True):
    lo, hi = [1.0, 1.1, 0.9, 1.05, 0.95], [3.0, 3.2, 2.9, 3.1, 3.05]
    mid = [2.0, 2.1, 1.9, 2.05, 1.95]
    keys = ("jac_g_z", "grad_g_params", "confidence", "g_loss_swing")
    arms = {arm: {k: mid for k in keys} for arm in ("none", "sn-g", "sn-d", "sn-both")}
    arms["sn-both"]["jac_g_z"] = lo if small_jac else hi
    arms["sn-g"]["grad_g_params"] = lo if vanish else hi
    arms["sn-g"]["confidence"] = lo if g_learns_nothing else hi
    arms["none"]["g_loss_swing"] = hi if swing else lo
    arms["none"]["confidence"] = lo if none_unconverged else hi
    return results_for(arms)


@pytest.mark.parametrize("results,start", [
    (case(), "reproduced:"),
    (case(vanish=False, swing=False), "reproduced in part: as claimed 3 of 5"),
    (case(False, False, False, False, False), "not reproduced:"),
])
def test_judge_verdict_follows_the_intervals(results, start):
    verdict = EXP.judge(results)
    assert stats.check_verdict(verdict).startswith(start), verdict
    assert "Fig. 1 middle" in verdict


@pytest.mark.slow  # a quick training run of the four arms
def test_quick_run_measures_every_column(tmp_path, capsys):
    from helpers import quick_repro

    results = quick_repro("sn-players", tmp_path, capsys)
    for s in results["settings"]:
        v = s["runs"][0]["values"]
        assert all(v[k] is not None for k in ("jac_g_z", "grad_g_params", "d_gz", "confidence")), v
    assert results["verdict"].startswith("not testable here")
