"""The sc-photos reproduction (Sec. 5.3 / Fig. 5 of the anomalous-generalization paper): sample
correction by nearest distance on 32 natural images with batch 2, and a verdict that follows
from the intervals (never "reproduced": FID is not measured)."""

import pytest

from fastgp import repro
from fastgp.repro import stats

EXP = repro.EXPERIMENTS["sc-photos"]


def test_setting_is_the_papers():
    configs = EXP.configs(EXP.steps, seed=0, quick=False)
    assert tuple(configs) == ("vanilla", "sc") and EXP.seeds >= 5 and EXP.tail >= 3
    for name, cfg in configs.items():
        assert cfg["data"]["name"] == "photos" and cfg["data"]["subset"] == 32  # "kept small (e.g. 32)"
        assert cfg["batch_size"] == 2  # "The batchsize is kept small [...] (e.g. 2)"
        assert (cfg["optim"]["lr_d"], cfg["optim"]["beta1"], cfg["optim"]["beta2"]) == (2e-4, 0.5, 0.9)  # Sec. 5.3
        sc = cfg["regularizers"]["correction"]
        assert sc["enabled"] is (name == "sc")
        if name == "sc":
            assert sc["measure"] == "nearest" and sc["threshold"] == 0.1  # "DIF less than 0.1"
    assert "Sec. 5.3" in EXP.quote and "DIF less than 0.1" in EXP.quote
    assert {(c.a, c.b, c.key, c.expect) for c in EXP.comparisons} >= {
        ("sc", "vanilla", "dif", "<"), ("sc", "vanilla", "dif_run", "<")}


def results_for(values: dict, replaced: float = 0.05) -> dict:
    """Constructed results: per arm and key the per-seed values (5 seeds); SC's replaced share."""
    settings = []
    for arm in ("vanilla", "sc"):
        runs = [{"seed": k, "values": {key: values[arm][key][k] for key in values[arm]}} for k in range(5)]
        summary = {"sc_replaced_run": {"mean": replaced if arm == "sc" else None, "std": None, "n": 5}}
        settings.append({"name": arm, "runs": runs, "summary": summary})
    return {"settings": settings, "comparisons": [stats.run_comparison(c, settings) for c in EXP.comparisons]}


HIGH = [0.20, 0.22, 0.19, 0.21, 0.23]
LOW = [0.08, 0.09, 0.07, 0.10, 0.08]
SAME = [0.21, 0.19, 0.22, 0.20, 0.21]
COVER, FEW = [0.5, 0.6, 0.55, 0.5, 0.6], [0.1, 0.1, 0.05, 0.1, 0.1]


def arms(sc_dif, sc_run, sc_cover=COVER):
    return {"vanilla": {"dif": HIGH, "dif_run": HIGH, "nn_coverage": COVER},
            "sc": {"dif": sc_dif, "dif_run": sc_run, "nn_coverage": sc_cover}}


@pytest.mark.parametrize("values,replaced,start,phrase", [
    (arms(LOW, LOW), 0.05, "reproduced in part:", "FID is not measured"),
    (arms(LOW, LOW, FEW), 0.05, "reproduced in part:", "lower coverage"),
    (arms(LOW, SAME), 0.05, "reproduced in part:", "only late in training"),
    (arms(SAME, SAME), 0.05, "not reproduced:", "does not lower DIF"),
    (arms(HIGH, [0.3] * 5), 0.05, "not reproduced:", "does not lower DIF"),
    (arms(LOW, LOW), 0.0, "not testable here:", "never replaced"),
])
def test_judge_verdict_follows_the_intervals(values, replaced, start, phrase):
    verdict = EXP.judge(results_for(values, replaced))
    assert stats.check_verdict(verdict).startswith(start) and phrase in verdict
    assert "SC lowers DIF (late)" in verdict  # the numbers it rests on


@pytest.mark.slow  # a quick training run of both arms
def test_quick_run_reports_dif_and_coverage(tmp_path, capsys):
    from helpers import quick_repro

    results = quick_repro("sc-photos", tmp_path, capsys)
    for s in results["settings"]:
        v = s["runs"][0]["values"]
        assert 0 < v["dif"] < 1 and 0 < v["dif_run"] < 1 and 0 < v["nn_coverage"] <= 1, v
    assert results["verdict"].startswith("not testable here")  # one seed: no interval
