"""fastgp.repro.stats and the round-3 reports: paired bootstrap comparisons, tail-averaged metrics,
verdicts derived by a judge, and parallel runs (--jobs)."""

import json
import math

import pytest

from fastgp import repro
from fastgp.repro import Comparison, Experiment, Metric, ReproError, Setting, stats
from fastgp.repro.__main__ import main
from fastgp.repro.runner import markdown

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------
# Bootstrap intervals and paired comparisons
# ------------------------------------------------------------------------------------------------


def test_bootstrap_interval_brackets_the_mean_and_is_deterministic():
    values = [0.1, 0.4, 0.35, 0.2, 0.3]
    lo, hi = stats.bootstrap_ci(values)
    mean = sum(values) / len(values)
    assert min(values) <= lo < mean < hi <= max(values)
    assert stats.bootstrap_ci(values) == (lo, hi)  # its own generator: the same report every time
    lo90, hi90 = stats.bootstrap_ci(values, level=0.9)
    assert lo <= lo90 and hi90 <= hi  # a lower level, a narrower interval


def test_bootstrap_interval_shrinks_with_more_seeds():
    few = [0.0, 1.0] * 3
    many = [0.0, 1.0] * 50
    lo_f, hi_f = stats.bootstrap_ci(few)
    lo_m, hi_m = stats.bootstrap_ci(many)
    assert hi_m - lo_m < (hi_f - lo_f) / 2


def test_bootstrap_interval_edges():
    assert stats.bootstrap_ci([]) == (None, None)
    assert stats.bootstrap_ci([3.0]) == (None, None)
    assert stats.bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    lo, hi = stats.bootstrap_ci([1.0, math.nan, 2.0])
    assert math.isnan(lo) and math.isnan(hi)  # a diverged run is not hidden
    with pytest.raises(ValueError, match="level"):
        stats.bootstrap_ci([1.0, 2.0], level=1.5)
    with pytest.raises(ValueError, match="resamples"):
        stats.bootstrap_ci([1.0, 2.0], resamples=0)


@pytest.mark.parametrize("a, b, expect, outcome", [
    ({0: 8, 1: 8, 2: 7, 3: 8, 4: 8}, {0: 3, 1: 2, 2: 4, 3: 3, 4: 2}, ">", stats.AS_CLAIMED),
    ({0: 8, 1: 8, 2: 7, 3: 8, 4: 8}, {0: 3, 1: 2, 2: 4, 3: 3, 4: 2}, "<", stats.OPPOSITE),
    ({0: 8, 1: 2, 2: 7, 3: 3, 4: 5}, {0: 3, 1: 6, 2: 4, 3: 7, 4: 5}, ">", stats.INCONCLUSIVE),
    ({0: 8}, {0: 3}, ">", stats.INCONCLUSIVE),  # one pair: no interval
])
def test_comparison_outcome_follows_the_interval(a, b, expect, outcome):
    c = stats.compare_values(a, b, expect)
    assert c["outcome"] == outcome
    assert c["n"] == len(a)
    assert c["mean"] == pytest.approx(sum(a[s] - b[s] for s in a) / len(a))
    if c["n"] > 1:
        assert c["lo"] <= c["mean"] <= c["hi"]


def test_comparison_pairs_by_seed_and_skips_missing_values():
    c = stats.compare_values({0: 5.0, 1: 6.0, 2: None, 3: 9.0}, {0: 1.0, 1: 2.0, 2: 3.0, 4: 0.0}, ">")
    assert c["n"] == 2 and c["mean"] == pytest.approx(4.0)


def test_comparison_with_a_diverged_run_is_inconclusive():
    c = stats.compare_values({0: math.inf, 1: 6.0, 2: 7.0}, {0: 1.0, 1: 2.0, 2: 3.0}, ">")
    assert c["outcome"] == stats.INCONCLUSIVE


def test_comparison_arguments_are_checked():
    with pytest.raises(ValueError, match="expect"):
        Comparison("a", "b", "modes", ">=")
    with pytest.raises(ValueError, match="expect"):
        stats.compare_values({}, {}, "bigger")
    settings = [{"name": "a", "runs": [{"seed": 0, "values": {"m": 1.0}}]}]
    with pytest.raises(ValueError, match="no setting named 'b'"):
        stats.run_comparison(Comparison("a", "b", "m", ">"), settings)


def test_comparison_with_b_key_pairs_two_quantities_of_the_same_runs():
    """b_key: a's ``key`` against b's ``b_key`` (here one setting's two measurements, per seed)."""
    settings = [{"name": "a", "runs": [{"seed": s, "values": {"x": 2.0 + s, "y": 1.0 + 2 * s}} for s in range(3)]}]
    c = stats.run_comparison(Comparison("a", "a", "x", ">", "x above y", b_key="y"), settings)
    assert c["b_key"] == "y" and c["n"] == 3 and c["mean"] == pytest.approx(0.0)  # diffs 1, 0, -1
    assert c["outcome"] == stats.INCONCLUSIVE
    same = stats.run_comparison(Comparison("a", "a", "x", ">"), settings)
    assert same["b_key"] == "x" and same["mean"] == 0.0 and same["lo"] == 0.0 and same["hi"] == 0.0
    (row,) = stats.comparison_table([c], {"x": "X", "y": "Y"})[2:]
    assert row.startswith("| x above y | X − Y | ")
    (row,) = stats.comparison_table([same], {"x": "X"})[2:]
    assert row.startswith("| a > a | X | ")


def test_verdict_must_start_with_a_verdict_word():
    for text in ("reproduced: x", "reproduced in part: y", "not reproduced: z", "not testable here: w"):
        assert stats.check_verdict(text) == text
    for bad in ("mostly reproduced", "", None, 3):
        with pytest.raises(ValueError, match="judge"):
            stats.check_verdict(bad)


# ------------------------------------------------------------------------------------------------
# Tail-averaged metrics
# ------------------------------------------------------------------------------------------------


def test_metric_is_averaged_over_the_last_records_that_have_it():
    records = [{"step": 1, "hq": 0.0}, {"step": 2, "hq": 0.2}, {"step": 3}, {"step": 4, "hq": 0.4},
               {"step": 5, "hq": 0.9}]
    hq = Metric("hq", "HQ")
    assert hq.value(records[-1], {}, records, tail=3) == pytest.approx(0.5)
    assert hq.value(records[-1], {}, records, tail=1) == pytest.approx(0.9)  # tail 1: the final record
    assert hq.value(records[-1], {}, records, tail=99) == pytest.approx(1.5 / 4)
    scaled = Metric("s", "s", derive=lambda r, cfg: None if "hq" not in r else 10 * r["hq"])
    assert scaled.value(records[-1], {}, records, tail=2) == pytest.approx(6.5)
    # a value only the final record has (an experiment's measure): the final record's
    assert Metric("extra", "x").value({"extra": 3.0}, {}, records, tail=3) == 3.0


# ------------------------------------------------------------------------------------------------
# A judged experiment end to end
# ------------------------------------------------------------------------------------------------


def _judge(results):
    (c,) = results["comparisons"]
    return {stats.AS_CLAIMED: "reproduced: hq rises", stats.OPPOSITE: "not reproduced: hq falls",
            stats.INCONCLUSIVE: "not reproduced: within the seeds' spread"}[c["outcome"]]


def _judged(judge=_judge):
    return Experiment(
        name="toy", title="toy", claim="c", base={"data.name": "8gaussians", "model.hidden": 8, "batch_size": 16,
              "log.eval_samples": 256},
        settings=(Setting("plain", "plain"), Setting("lr", "higher lr", {"optim.lr_d": 3e-3})),
        metrics=(Metric("hq", "HQ share", ".2f"),), steps=4, seeds=3,
        quote="G covers every mode.\n— toy.txt, Fig. 1", setting_note="The paper: 8 modes. Here: 4 steps.",
        tail=2, comparisons=(Comparison("lr", "plain", "hq", ">", "lr raises HQ"),), judge=judge)


def test_judged_experiment_reports_quote_setting_comparisons_and_verdict(tmp_path):
    exp = _judged()
    results = repro.run(exp, str(tmp_path / "toy"), seeds=3, steps=4, log=lambda line: None)
    (c,) = results["comparisons"]
    assert c["label"] == "lr raises HQ" and c["n"] == 3 and c["outcome"] in stats.OUTCOMES
    assert results["verdict"] == _judge(results)
    table = (tmp_path / "toy" / "table.md").read_text(encoding="utf-8")
    assert "> G covers every mode.\n> — toy.txt, Fig. 1" in table
    assert "## Setting" in table and "Here: 4 steps." in table
    assert "| lr raises HQ | HQ share |" in table and "last 2 logged points" in table
    assert f"**Verdict: {results['verdict']}**" in table
    saved = json.loads((tmp_path / "toy" / "results.json").read_text(encoding="utf-8"))
    assert saved["comparisons"][0]["outcome"] == c["outcome"]


def test_a_judge_returning_no_verdict_word_is_refused(tmp_path):
    with pytest.raises(ValueError, match="judge"):
        repro.run(_judged(lambda results: "looks fine"), str(tmp_path / "toy"), seeds=2, steps=2,
                  log=lambda line: None)


def test_quick_runs_mark_their_verdict():
    exp = _judged()
    results = {"experiment": "toy", "title": "t", "claim": "c", "quick": True, "steps": 4, "seeds": [0],
               "base": {}, "settings": [], "comparisons": [], "verdict": "not reproduced: within the spread"}
    assert "**Verdict (QUICK run: not a result): not reproduced" in markdown(results, exp)


# ------------------------------------------------------------------------------------------------
# --jobs
# ------------------------------------------------------------------------------------------------


def test_parallel_runs_equal_serial_runs(tmp_path, capsys):
    """Two processes train the same runs as one: the same final metrics (each run is seeded)."""
    args = ["zero-gp", "--quick", "--steps", "2", "--seeds", "2"]
    assert main([*args, "--out", str(tmp_path / "serial")]) == 0
    assert main([*args, "--jobs", "2", "--out", str(tmp_path / "parallel")]) == 0
    capsys.readouterr()

    def finals(name):
        results = json.loads((tmp_path / name / "results.json").read_text(encoding="utf-8"))
        return {(s["name"], r["seed"]): r["values"] for s in results["settings"] for r in s["runs"]}

    serial, parallel = finals("serial"), finals("parallel")
    assert serial.keys() == parallel.keys() and len(serial) == 2 * len(repro.EXPERIMENTS["zero-gp"].settings)
    for key in serial:
        assert parallel[key] == pytest.approx(serial[key], rel=1e-5, abs=1e-6), key


def test_parallel_runs_need_a_registered_experiment(tmp_path):
    with pytest.raises(ReproError, match="jobs"):
        repro.run(_judged(), str(tmp_path / "toy"), seeds=1, steps=2, jobs=2)
    assert not (tmp_path / "toy").exists()  # refused before anything was written


@pytest.mark.parametrize("jobs", ["0", "x"])
def test_bad_jobs_is_one_line(jobs, capsys):
    with pytest.raises(SystemExit) as e:
        main(["zero-gp", "--jobs", jobs])
    assert e.value.code == 2 and "--jobs" in capsys.readouterr().err
