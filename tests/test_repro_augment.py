"""The augment reproduction (Tables 1 and 2 of the augmentation paper): the paper's L_Vg (through D
and the loss, not ‖∂G/∂z‖), its settings, and a verdict that follows from the intervals."""

import math

import pytest
import torch
import torch.nn.functional as F

from fastgp import diagnostics, repro
from fastgp.repro import augment, stats

EXP = repro.EXPERIMENTS["augment"]
UNIFORM = {"dist": "uniform", "scale": 2.0, "dim": 3}


def linear_gan():
    g = torch.Generator().manual_seed(5)
    A = torch.randn(6, 3, generator=g, dtype=torch.float64)  # G(z) = A z
    w = torch.randn(6, generator=g, dtype=torch.float64)  # D(x) = wᵀx
    return (lambda z: z.double() @ A.T), (lambda x: x @ w), A, A.T @ w


def test_l_vg_is_the_papers_loss_gradient_through_d_not_the_jacobian_of_g():
    G, D, A, v = linear_gan()
    out = augment.measure_models(G, D, UNIFORM, "non-saturating", n=200)
    # The noise is float32 (as in training) and its gradient comes back in float32: 1e-6, not 1e-9.
    z = augment.noise_set(UNIFORM, 200).double()
    s = z @ v
    # V_g = log(1 − σ(s)) = −softplus(s): ∂V_g/∂z = −σ(s)·v; the trained loss softplus(−s): −σ(−s)·v.
    expect = (torch.sigmoid(s) * v.norm()).max()
    assert math.isclose(out["l_vg"], float(expect), rel_tol=1e-6)
    assert math.isclose(out["l_vg_train"], float((torch.sigmoid(-s) * v.norm()).max()), rel_tol=1e-6)
    assert math.isclose(out["l_vg_bz"], 2.0 * out["l_vg"], rel_tol=1e-6)  # B_z = s = 2
    assert math.isclose(out["v_g"], float(-F.softplus(s).mean()), rel_tol=1e-6)
    assert math.isclose(out["neg_d_gz"], float(-torch.sigmoid(s).mean()), rel_tol=1e-6)
    assert math.isclose(out["grad_d_gz"], float(w_norm(D)), rel_tol=1e-6)
    # ‖∂G/∂z‖_F = ‖A‖_F is a different number: D and the loss are part of the paper's metric.
    jac_g = diagnostics.jacobian_norm(G, z).max()
    assert not math.isclose(out["l_vg"], float(jac_g), rel_tol=1e-2)


def w_norm(D):
    x = torch.zeros(1, 6, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(D(x).sum(), x)
    return g.norm()


def test_noise_set_and_bound():
    z = augment.noise_set({"dist": "uniform", "scale": 0.01, "dim": 100})
    assert z.shape == (augment.N_NOISE, 100) and float(z.abs().max()) <= 0.01
    assert torch.equal(z, augment.noise_set({"dist": "uniform", "scale": 0.01, "dim": 100}))  # the same draws
    assert augment.bound({"dist": "uniform", "scale": 100.0, "dim": 100}) == 100.0
    assert augment.bound({"dist": "normal", "scale": 1.0, "dim": 100}) is None


@pytest.mark.parametrize("cfg,n,match", [
    ({"dist": "gamma", "scale": 1.0, "dim": 3}, 4, "dist"),
    ({"dist": "uniform", "scale": 0.0, "dim": 3}, 4, "scale"),
    ({"dist": "uniform", "scale": 1.0, "dim": 0}, 4, "dim"),
    (UNIFORM, 0, "n must"),
])
def test_bad_arguments_are_refused(cfg, n, match):
    with pytest.raises(ValueError, match=match):
        augment.noise_set(cfg, n)


def test_settings_are_the_papers_tables():
    configs = EXP.configs(EXP.steps, seed=0, quick=False)
    assert EXP.seeds >= 5 and EXP.tail >= 3 and EXP.measure is augment.measure and EXP.judge is not None
    for name, cfg in configs.items():
        assert cfg["regularizers"]["spectral-norm"]["d"] is True  # "Spectral normalization was used for D"
    assert [configs[f"uniform-{s}"]["noise"]["scale"] for s in ("0.01", "1", "100")] == [0.01, 1.0, 100.0]
    assert configs["translate-8"]["regularizers"]["augment"]["copies"] == 15  # "15 random translations"
    assert "Table 1" in EXP.quote and "Table 2" in EXP.quote and EXP.setting_note
    assert {(c.a, c.b, c.key, c.expect) for c in EXP.comparisons} == {
        ("uniform-0.01", "uniform-1", "l_vg_bz", ">"), ("uniform-1", "uniform-100", "l_vg_bz", ">"),
        ("none", "translate-2", "grad_d_x", ">"), ("translate-2", "translate-8", "grad_d_x", ">"),
        ("none", "translate-2", "jac_g_z", ">"), ("translate-2", "translate-8", "jac_g_z", ">")}


DOWN = {"l_vg_bz": [5.0, 4.0, 3.0], "grad_d_x": [3.0, 2.0, 1.0], "jac_g_z": [3.0, 2.0, 1.0]}
UP = {k: v[::-1] for k, v in DOWN.items()}
ORDER = {"l_vg_bz": ("uniform-0.01", "uniform-1", "uniform-100"),
         "grad_d_x": ("none", "translate-2", "translate-8"), "jac_g_z": ("none", "translate-2", "translate-8")}


def results_for(levels: dict, seeds: int = 5) -> dict:
    """Constructed results: each key's three settings at the given levels, with small per-seed jitter."""
    jitter = [0.01, -0.02, 0.015, -0.005, 0.0][:seeds]
    values = {}
    for key, names in ORDER.items():
        for name, level in zip(names, levels[key]):
            values.setdefault(name, {})[key] = level
    settings = [{"name": name, "runs": [{"seed": k, "values": {key: v + j for key, v in vals.items()}}
                                         for k, j in enumerate(jitter)]} for name, vals in values.items()]
    return {"settings": settings, "comparisons": [stats.run_comparison(c, settings) for c in EXP.comparisons]}


@pytest.mark.parametrize("levels,seeds,word", [
    (DOWN, 5, "reproduced:"),
    ({**DOWN, "l_vg_bz": UP["l_vg_bz"]}, 5, "reproduced in part:"),
    (UP, 5, "not reproduced:"),
    (DOWN, 1, "not testable here:"),
])
def test_judge_verdict_follows_the_intervals(levels, seeds, word):
    verdict = EXP.judge(results_for(levels, seeds))
    assert stats.check_verdict(verdict).startswith(word)
    if levels["l_vg_bz"] == UP["l_vg_bz"] and seeds > 1:
        assert "rises with B_z where the paper's falls" in verdict
    if word == "reproduced in part:":
        assert "against the claim: L_Vg·B_z: B_z 0.01 > 1" in verdict


@pytest.mark.slow
def test_quick_run_measures_l_vg_and_judges(tmp_path):
    results = repro.run(EXP, str(tmp_path), seeds=2, quick=True)
    by = {s["name"]: s for s in results["settings"]}
    assert by["uniform-1"]["runs"][0]["values"]["l_vg_bz"] > 0
    assert by["none"]["runs"][0]["values"]["l_vg_bz"] is None  # normal noise has no box
    assert stats.check_verdict(results["verdict"])
    assert "Verdict" in (tmp_path / "table.md").read_text()
