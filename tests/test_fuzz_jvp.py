"""A small seeded run of scripts/fuzz_jvp.py: random discriminators (allow-listed layers, the problem
operators in their other spellings, operators outside the allow-list) under method="jvp" are exact
against double backward or refused by name — never a silent mismatch or a raw torch error."""

import importlib.util
import os

import pytest

import fastgp

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def fuzz_module():
    path = os.path.join(HERE, "..", "scripts", "fuzz_jvp.py")
    spec = importlib.util.spec_from_file_location("fuzz_jvp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
