"""The latent-path experiment's jumpiness measure (Thanh-Tung et al., Figure 9) on generators built
to be smooth or to jump, and its judge on constructed results."""

import pytest
import torch

from fastgp import repro
from fastgp.repro import latent_path, stats
from helpers import quick_repro

pytestmark = pytest.mark.usefixtures("one_thread")

CFG = {"noise": {"dist": "normal", "dim": 2, "scale": 1.0}}
T = latent_path.N_T


def test_step_ratio_of_constructed_lines():
    t = torch.linspace(0, 1, T)
    straight = torch.stack([t * 3, t * 4], dim=1)  # constant speed: every step 1/(T − 1) of the length
    step = torch.stack([(t > 0.5).double() * 10, torch.zeros(T)], dim=1)  # one step of 10, the rest 0
    still = torch.ones(T, 2)
    ratios = latent_path.step_ratios(torch.stack([straight, step.float(), still]))
    assert ratios[0] == pytest.approx(1 / (T - 1))
    assert ratios[1] == pytest.approx(1.0)
    assert ratios[2] == 0  # no movement, no jump
    # Image-shaped points are flattened: the same line as [T, 1, 2] points.
    assert latent_path.step_ratios(straight[None, :, None]) == pytest.approx(ratios[:1])


@pytest.mark.parametrize("bad", [torch.zeros(5), torch.zeros(3, 1, 2), [[0.0, 1.0]]])
def test_step_ratio_refuses_what_is_not_lines(bad):
    with pytest.raises(ValueError, match="samples: expected a tensor"):
        latent_path.step_ratios(bad)


def test_smooth_generator_scores_low_and_a_jumping_one_high():
    torch.manual_seed(0)
    linear = torch.nn.Linear(2, 2)
    smooth = latent_path.jumpiness(linear, CFG)
    assert smooth["jump"] == pytest.approx(1 / (T - 1), rel=1e-3) and smooth["jump_share"] == 0
    curved = latent_path.jumpiness(lambda z: torch.stack([torch.tanh(z[:, 0]), z[:, 1] ** 3], 1), CFG)
    assert curved["jump"] < 0.15 and curved["jump_share"] < 0.05

    def jumping(z):  # two modes 20 apart, chosen by the sign of z₀, each with a little spread
        return torch.stack([torch.sign(z[:, 0]) * 10, torch.zeros(len(z))], 1) + 0.01 * z

    jumpy = latent_path.jumpiness(jumping, CFG)
    # The lines whose ends have codes of opposite sign jump (about half of random pairs): the
    # same draws as the measure's.
    g = torch.Generator().manual_seed(latent_path.SEED + 2)
    a, b = latent_path._codes(CFG, latent_path.N_PAIRS, g), latent_path._codes(CFG, latent_path.N_PAIRS, g)
    crossing = float(((a[:, 0] > 0) != (b[:, 0] > 0)).double().mean())
    assert 0.3 < crossing < 0.7
    assert jumpy["jump_share"] == pytest.approx(crossing)
    assert jumpy["jump"] > crossing * 0.95 > 10 * smooth["jump"]


@pytest.mark.slow  # quick training runs
def test_measure_adds_jumpiness_of_g_and_its_ema(tmp_path, capsys):
    results = quick_repro("latent-path", tmp_path, capsys)
    for s in results["settings"]:
        values = s["runs"][0]["values"]
        for key in ("jump", "jump_share", "ema_jump", "ema_jump_share"):
            assert 0 <= values[key] <= 1
    assert results["verdict"].startswith("not testable here")  # one seed: no interval


def _comparison(a, b, key, outcome, n=5):
    mean = {stats.AS_CLAIMED: 0.1, stats.OPPOSITE: -0.1, stats.INCONCLUSIVE: 0.0}[outcome]
    return {"a": a, "b": b, "key": key, "b_key": key, "label": f"{a} vs {b} on {key}", "expect": ">",
            "mean": mean, "lo": mean - 0.05, "hi": mean + 0.05, "n": n, "outcome": outcome}


def _results(fig9, alg1, n=5):
    spec = [*repro.LATENT_FIG9, *repro.LATENT_ALG1]
    return {"comparisons": [_comparison(a, b, key, o, n) for (a, b, key), o in zip(spec, [*fig9, *alg1])]}


YES, NO, OPP = stats.AS_CLAIMED, stats.INCONCLUSIVE, stats.OPPOSITE


@pytest.mark.parametrize("fig9, alg1, word, says", [
    ((YES, YES), (YES, YES), "reproduced:", "Figure 9 reproduces:"),
    ((YES, YES), (NO, NO), "reproduced in part:", "Figure 9 reproduces:"),
    ((YES, NO), (NO, NO), "reproduced in part:", "Figure 9 reproduces only in part: R1's straight latent lines are"),
    ((NO, YES), (YES, YES), "reproduced in part:", "Figure 9 reproduces only in part: more of R1's"),
    ((NO, NO), (YES, NO), "reproduced in part:", "Figure 9 does not reproduce: R1 and 0-GP jump alike"),
    ((NO, NO), (NO, NO), "not reproduced:", "Figure 9 does not reproduce: R1 and 0-GP jump alike"),
    ((OPP, NO), (OPP, NO), "not reproduced:", "Figure 9 does not reproduce: R1 jumps less than 0-GP"),
])
def test_judge_returns_each_verdict_from_the_comparisons(fig9, alg1, word, says):
    verdict = repro.judge_latent_path(_results(fig9, alg1))
    assert verdict.startswith(word) and says in verdict
    assert stats.check_verdict(verdict) == verdict


def test_judge_without_intervals_is_not_testable():
    verdict = repro.judge_latent_path(_results((YES, YES), (YES, YES), n=1))
    assert verdict.startswith("not testable here")
