"""The pytest-benchmark tests cover every case and contender that ``python -m bench`` times.

The expected lists are derived from the files themselves (every ``bench/cases/*.py`` and its
``cases()``, every name in ``harness.CONTENDERS``), not from the discovery the parametrization
uses, so a new case module or a new case in an existing one cannot be left out unnoticed. (A
setup that defines a contender outside ``harness.CONTENDERS`` fails its test in
``test_cases.py``: neither runner would time it.)
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed: pip install -e '.[bench]'")

from bench import harness  # noqa: E402
from bench.test_cases import benchmark_params, devices  # noqa: E402

CASES_DIR = Path(__file__).resolve().parent / "cases"


def _cases_in_files() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(CASES_DIR.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.cases.{path.stem}")
        found += [(path.stem, case.name, case.shape) for case in module.cases()]
    return found


def test_every_case_and_contender_is_a_benchmark_on_every_device():
    cases = _cases_in_files()
    assert cases, f"no cases found under {CASES_DIR}"
    assert len(set(cases)) == len(cases), "two cases share a family, name and shape"
    expected = {
        (device, family, name, shape, contender)
        for device in devices()
        for family, name, shape in cases
        for contender in harness.CONTENDERS
    }
    params = benchmark_params()
    got = [(device, case.family, case.name, case.shape, contender) for device, case, contender in (p.values for p in params)]
    assert len(got) == len(set(got)), "a (device, case, contender) is benchmarked twice"
    assert set(got) == expected, (
        f"missing: {sorted(expected - set(got))}; unexpected: {sorted(set(got) - expected)}"
    )


def test_ids_are_unique_ascii_and_keep_a_cases_contenders_together():
    params = benchmark_params()
    ids = [p.id for p in params]
    assert len(set(ids)) == len(ids), "two benchmarks share a test id"
    assert all(test_id.isascii() and " " not in test_id for test_id in ids), ids
    # One Setup serves a case's contenders (bench/conftest.py): they must be consecutive.
    order = [(device, case.key) for device, case, _ in (p.values for p in params)]
    seen, previous = set(), None
    for key in order:
        if key != previous:
            assert key not in seen, f"the contenders of {key} are not consecutive"
            seen.add(key)
            previous = key
