"""The pcr-sc reproduction (Fig. 1 of the anomalous-generalization paper): its arms are the paper's
(SC by count, PCR by the AND/OR of sibling pairs), and its verdict follows from the intervals."""

import pytest

from fastgp import repro
from fastgp.repro import stats

EXP = repro.EXPERIMENTS["pcr-sc"]
ARMS = ("vanilla", "pcr", "sc", "pcr-sc")


def test_arms_are_the_papers():
    configs = EXP.configs(EXP.steps, seed=0, quick=False)
    assert tuple(configs) == ARMS and EXP.seeds >= 5 and EXP.tail >= 3
    for name, cfg in configs.items():
        data, regs = cfg["data"], cfg["regularizers"]
        assert data["n_images"] == 25600 and data["n_rect"] == 2 and data["siblings"] is True
        assert (cfg["optim"]["beta1"], cfg["optim"]["beta2"]) == (0.5, 0.9)  # the paper's Adam (Sec. 5.3)
        has_sc, has_pcr = name in ("sc", "pcr-sc"), name in ("pcr", "pcr-sc")
        assert regs["correction"]["enabled"] is has_sc
        if has_sc:
            assert regs["correction"]["measure"] == "count"
        assert regs["combine"]["mode"] == ("and-or" if has_pcr else "none")
        if has_pcr:
            assert regs["combine"]["source"] == "siblings"
    assert EXP.quote and "Appendix F" in EXP.quote and "Sec. 5.2" in EXP.quote
    assert {(c.a, c.b, c.key, c.expect) for c in EXP.comparisons} >= {
        ("sc", "vanilla", "correct", ">"), ("pcr", "vanilla", "correct", ">"), ("pcr-sc", "vanilla", "correct", ">")}


def results_for(correct: dict, replaced: dict | None = None) -> dict:
    """Constructed results: per arm the per-seed share of correct counts (5 seeds) and SC's mean
    replaced share; the comparisons made by the shared API, as the runner makes them."""
    replaced = replaced or {"sc": 0.3, "pcr-sc": 0.4}
    settings = [{"name": arm, "runs": [{"seed": k, "values": {"correct": v}} for k, v in enumerate(correct[arm])],
                 "summary": {"sc_replaced_run": {"mean": replaced.get(arm), "std": None, "n": 5}}}
                for arm in ARMS]
    return {"settings": settings, "comparisons": [stats.run_comparison(c, settings) for c in EXP.comparisons]}


LOW = [0.10, 0.12, 0.08, 0.11, 0.09]
HIGH = [0.60, 0.70, 0.65, 0.72, 0.68]
SAME = [0.11, 0.09, 0.12, 0.07, 0.10]  # within vanilla's spread, paired differences straddle 0


@pytest.mark.parametrize("correct,replaced,word", [
    ({"vanilla": LOW, "pcr": HIGH, "sc": HIGH, "pcr-sc": HIGH}, None, "reproduced:"),
    ({"vanilla": LOW, "pcr": SAME, "sc": HIGH, "pcr-sc": HIGH}, None, "reproduced in part:"),
    ({"vanilla": LOW, "pcr": SAME, "sc": SAME, "pcr-sc": SAME}, None, "not reproduced:"),
    ({"vanilla": HIGH, "pcr": LOW, "sc": LOW, "pcr-sc": LOW}, None, "not reproduced:"),
    ({"vanilla": LOW, "pcr": SAME, "sc": SAME, "pcr-sc": SAME}, {"sc": 0.0, "pcr-sc": 0.0}, "not testable here:"),
])
def test_judge_verdict_follows_the_intervals(correct, replaced, word):
    verdict = EXP.judge(results_for(correct, replaced))
    assert stats.check_verdict(verdict).startswith(word)
    if word == "reproduced in part:":
        assert "sc and pcr-sc raise" in verdict and "pcr not" in verdict
    assert "sc − vanilla" in verdict  # the numbers it rests on
