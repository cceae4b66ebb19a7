"""Every case of ``bench/cases/`` as pytest-benchmark tests: ``pytest bench --benchmark-only``.

One benchmark per (device, case, contender): the devices present (``cpu``; ``cuda`` when a GPU
is visible), every case of every module under ``bench/cases/`` at each of its shapes (new cases
are picked up by the same discovery as ``python -m bench``), and every contender the harness
knows (``harness.CONTENDERS``: fastgp, reference, compile). A contender the case does not offer,
or marks :class:`~bench.harness.Unsupported`, is skipped with the case's reason; a ``compile``
contender whose first call raises is skipped with that exception, as the harness reports it
(``unsupported: ...``); any other exception fails the test. The benchmarks of one case at one
shape on one device form one group (``benchmark.group``), so pytest-benchmark's table puts the
contenders side by side.

Timing is pytest-benchmark's own (``time.perf_counter``, calibrated rounds); on a GPU the timed
function ends with ``torch.cuda.synchronize()``, so a round includes the device work it queued.
``python -m bench`` remains the reference measurement (alternating rounds, dispatch counts,
copy roofline); these tests are for the workflow users know: ``--benchmark-save``,
``--benchmark-compare``, ``--benchmark-compare-fail``, histograms, JSON.

With ``--benchmark-disable`` every contender runs exactly once, unmeasured: a check that every
case still runs. CI runs ``--benchmark-disable -k "not compile"``: fastgp and reference at every
shape (compiling the references takes two thirds of a full pass).
"""

from __future__ import annotations

import re
from typing import Any, Callable

import pytest
import torch

pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed: pip install -e '.[bench]'")

from bench import harness  # noqa: E402
from bench.__main__ import discover_families, load_cases  # noqa: E402


def devices() -> list[str]:
    """The devices present: the CPU, and the GPU when torch sees one."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def shape_id(shape: str) -> str:
    """A case's shape as plain ASCII for a test id: ``64×3×32×32`` → ``64x3x32x32``."""
    text = shape.replace("×", "x").replace("→", "to")
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def benchmark_params() -> list[Any]:
    """pytest params, one per (device, case, contender), a case's contenders next to each other.

    Marks: ``large`` on the large shapes (those ``python -m bench --quick`` skips: ``-m "not large"``
    selects the same quick shapes), ``cuda`` on the GPU's benchmarks (as in tests/).
    """
    params = []
    for device in devices():
        for family in discover_families():
            for case in load_cases(family):
                for contender in harness.CONTENDERS:
                    test_id = f"{device}-{family}-{case.name}-{shape_id(case.shape)}-{contender}"
                    marks = [pytest.mark.large] * case.large + [pytest.mark.cuda] * (device == "cuda")
                    params.append(pytest.param(device, case, contender, id=test_id, marks=marks))
    return params


def _synchronized(fn: Callable[[], Any], device: str) -> Callable[[], Any]:
    """``fn`` followed by a device synchronize on a GPU, so a timed call includes its GPU work."""
    if torch.device(device).type != "cuda":
        return fn

    def call():
        result = fn()
        torch.cuda.synchronize()
        return result

    return call


@pytest.mark.parametrize(("device", "case", "contender"), benchmark_params())
def test_case(benchmark, case_setup, device: str, case: harness.Case, contender: str):
    setup = case_setup.get(case, device)
    unknown = sorted(set(setup.contenders) - set(harness.CONTENDERS))
    assert not unknown, (
        f"{case.key} defines contender(s) {unknown} that neither python -m bench nor these tests "
        f"time: add them to harness.CONTENDERS"
    )
    fn = setup.contenders.get(contender, harness.Unsupported("not defined for this case", "unavailable"))
    if isinstance(fn, harness.Unsupported):
        pytest.skip(f"{case.key} {contender}: {fn}")

    benchmark.group = f"{case.family}/{case.name} {case.shape} on {device}"
    benchmark.extra_info.update(
        family=case.family,
        case=case.name,
        shape=case.shape,
        contender=contender,
        device=device,
        # A call may run several training steps (lazy R1: 16); python -m bench reports per step.
        steps_per_call=setup.calls_per_run,
    )
    call = _synchronized(fn, device)

    def first_call():
        # As the harness: a compile whose first call raises is unsupported, not assumed to fail.
        try:
            return call()
        except Exception as error:
            if contender == "compile":
                pytest.skip(f"{case.key} compile: unsupported: {harness._short_reason(error)}")
            raise

    if benchmark.disabled:  # --benchmark-disable: run once, unmeasured
        benchmark(first_call)
        return
    first_call()  # the harness's warm-up: a compile compiles, a GPU loads its kernels
    for _ in range(harness.Settings.for_mode(quick=False, device=device).warmup_calls - 1):
        call()
    benchmark(call)
