"""Small seeded runs of the fuzzers in scripts/. fuzz_jvp.py: random discriminators (allow-listed layers, the problem
operators in their other spellings, operators outside the allow-list) under method="jvp" are exact
against double backward or refused by name — never a silent mismatch or a raw torch error. fuzz_api.py: hostile arguments to the
regularizers of the last waves (random_apply, AdaptiveAugment state, LeCam, top-k, R1+R2, the
relativistic losses) get a result that agrees with a plain-torch oracle or a clear refusal."""

import importlib.util
import os

import pytest
import torch

import fastgp

HERE = os.path.dirname(os.path.abspath(__file__))


def _script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, "..", "scripts", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fuzz_module():
    return _script("fuzz_jvp")


def test_random_discriminators_are_exact_or_refused_by_name(fuzz_module):
    result = fuzz_module.fuzz(count=12, seed=0)
    assert result["mismatch"] == [] and result["error"] == [], result
    assert result["exact"] > 0 and result["exact"] + result["refused"] == 12


def test_the_fuzz_reports_a_silent_mismatch(fuzz_module, monkeypatch):
    """The harness can fail: a jvp result off by one part in a million is a MISMATCH."""
    original = fastgp.gradient_penalty

    def slightly_wrong(*args, method="double-backward", **kwargs):
        penalty = original(*args, method=method, **kwargs)
        return penalty * (1 + 1e-6) if method == "jvp" else penalty

    monkeypatch.setattr(fuzz_module.fastgp, "gradient_penalty", slightly_wrong)
    result = fuzz_module.fuzz(count=3, seed=0)
    assert result["exact"] == 0 and len(result["mismatch"]) + result["refused"] == 3 and result["mismatch"]


def test_hostile_arguments_get_a_checked_result_or_a_clear_refusal():
    result = _script("fuzz_api").fuzz(count=600, seed=0)
    assert result["findings"] == [], result["findings"]
    assert result["ok"] > 50 and result["refused"] > 50


def test_the_api_fuzz_reports_a_silent_wrong_result(monkeypatch):
    """The harness can fail: a top_k that returns torch.topk's NaN-first order is a finding."""
    module = _script("fuzz_api")
    monkeypatch.setattr(module.fastgp, "top_k", lambda scores, k: torch.topk(scores.reshape(-1), k))
    result = module.fuzz(count=1200, seed=1)
    assert any("case_top_k" in line for line in result["findings"])
