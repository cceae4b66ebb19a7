"""zero-gp (Thanh-Tung et al., Fig. 2): the verdict its judge derives from the paired comparisons,
the trend metrics read from a run's records, and the quick run's own picture."""

import json

import pytest

from fastgp import repro
from fastgp.repro import modes_at_half, modes_peak, stats, zero_gp_judge
from fastgp.repro.__main__ import main

pytestmark = pytest.mark.usefixtures("one_thread")

SEEDS = range(5)


def results_from(modes: dict, steps: int = 1000) -> dict:
    """The results dict of a zero-gp run whose runs covered ``modes[setting]`` (one value per
    seed) modes, with the comparisons computed as the runner computes them."""
    exp = repro.EXPERIMENTS["zero-gp"]
    settings = [{"name": s.name, "label": s.label,
                 "runs": [{"seed": k, "values": {"modes": modes[s.name][k]}} for k in SEEDS],
                 "summary": {"modes": repro.summarize(modes[s.name])}} for s in exp.settings]
    results = {"steps": steps, "settings": settings}
    results["comparisons"] = [stats.run_comparison(c, settings) for c in exp.comparisons]
    return results


ALL8, COLLAPSED = [8, 8, 8, 8, 8], [2, 3, 1, 2, 3]

CASES = [
    ({"none": COLLAPSED, "one-gp": COLLAPSED, "r1": [4, 5, 3, 5, 4], "zero-gp": ALL8}, "reproduced:"),
    # R1 as good as 0-GP (the regime of round 2): the differences are all 0, the interval [0, 0].
    ({"none": COLLAPSED, "one-gp": [5, 3, 6, 4, 5], "r1": ALL8, "zero-gp": ALL8},
     "reproduced in part: 0-GP covers more modes than no GP and 1-GP, not more than R1"),
    ({"none": COLLAPSED, "one-gp": [5, 3, 6, 4, 5], "r1": ALL8, "zero-gp": [6, 7, 6, 7, 7]},
     "reproduced in part: 0-GP covers more modes than no GP and 1-GP, not more than R1 (R1 covers more modes"),
    ({"none": COLLAPSED, "one-gp": [8, 3, 8, 1, 8], "r1": [8, 2, 8, 2, 8], "zero-gp": ALL8},
     "reproduced in part: 0-GP covers more modes than no GP, not more than 1-GP and R1 (against 1-GP and R1 the "
     "interval includes 0)"),
    ({"none": ALL8, "one-gp": ALL8, "r1": ALL8, "zero-gp": ALL8}, "not reproduced:"),
    ({"none": ALL8, "one-gp": ALL8, "r1": ALL8, "zero-gp": COLLAPSED}, "not reproduced:"),
    ({"none": [0, 0, 0, 0, 0], "one-gp": [0, 1, 0, 0, 0], "r1": [0, 0, 0, 0, 0], "zero-gp": [0, 0, 1, 0, 1]},
     "not testable here:"),
    # 0-GP ahead of every arm, but all still in the early phase (at most 2 of the 8 modes on average).
    ({"none": [0, 0, 0, 0, 0], "one-gp": [0, 1, 0, 0, 0], "r1": [1, 0, 0, 1, 0], "zero-gp": [2, 2, 2, 2, 2]},
     "not testable here: every arm still covers at most 2 of the 8 modes"),
    ({"none": [0, 0, 0, 0, 0], "one-gp": [0, 1, 0, 0, 0], "r1": [1, 0, 0, 1, 0], "zero-gp": [3, 2, 3, 2, 3]},
     "reproduced:"),
]


@pytest.mark.parametrize("modes, start", CASES, ids=[c[1].split(":")[0] + f"-{i}" for i, c in enumerate(CASES)])
def test_judge_derives_the_verdict_from_the_comparisons(modes, start):
    verdict = zero_gp_judge(results_from(modes))
    assert verdict.startswith(start), verdict
    assert stats.check_verdict(verdict) == verdict
    assert "after 1000 steps, 10% of the paper's 10,000" in verdict


def test_judge_reports_the_arms_and_the_intervals():
    verdict = zero_gp_judge(results_from(CASES[0][0]))
    assert "0-GP 8.0, no GP 2.2, 1-GP 2.2, R1 4.2" in verdict
    assert "R1 +3.8 [" in verdict  # 0-GP − R1 with its interval


def test_judge_needs_all_three_comparisons():
    results = results_from(CASES[0][0])
    results["comparisons"] = [c for c in results["comparisons"] if c["b"] != "r1"]
    with pytest.raises(ValueError, match="r1"):
        zero_gp_judge(results)


def test_trend_metrics_read_the_whole_run():
    records = [{"step": s, "modes": m} for s, m in ((100, 2), (200, 7), (300, 8), (400, 5), (500, 3))]
    assert modes_peak(records) == 8.0
    assert modes_at_half(records) == 7.0  # the last record at or before 500 / 2 = 250
    assert modes_at_half(records[:1]) == 2.0
    assert modes_at_half([{"step": 10}]) is None and modes_peak([]) is None


@pytest.mark.slow  # quick training runs
def test_quick_run_writes_the_trend_picture_and_a_quick_verdict(tmp_path, capsys):
    out = tmp_path / "zg"
    assert main(["zero-gp", "--quick", "--steps", "4", "--seeds", "2", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["figure"] == "zero-gp-trend.png"
    assert (out / "zero-gp-trend.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "**Verdict (QUICK run: not a result): " in table
    assert [c["label"] for c in results["comparisons"]] == ["0-GP > no GP", "0-GP > 1-GP", "0-GP > R1"]
    cfg = json.loads(json.dumps(results["base"]))
    assert cfg["optim.name"] == "sgd" and cfg["model.hidden"] == 512 and cfg["regularizers.penalty.weight"] == 10.0
