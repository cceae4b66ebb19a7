"""pytest-benchmark's view of the benchmark cases (``pytest bench``), beside ``python -m bench``.

The cases live in ``bench/cases/`` only; ``bench/test_cases.py`` parametrizes one benchmark per
(device, case, contender) from them. This file holds what those tests share: the case's
:class:`~bench.harness.Setup`, built once and used by the case's contenders one after another.
"""

from __future__ import annotations

import gc

import pytest
import torch

from bench import harness


def pytest_configure(config):
    config.addinivalue_line("markers", "large: a large shape, which python -m bench --quick skips")
    config.addinivalue_line("markers", "cuda: runs on a CUDA device")


class CurrentSetup:
    """The Setup of the case being benchmarked, built on first use by one of its contenders.

    The parametrization keeps a case's contenders next to each other, so one setup serves them
    all, as one ``setup(device)`` call serves all contenders in ``python -m bench``; it is dropped
    when the next case starts, so that only one case's tensors (a 315 MB bank, say) are alive.
    """

    def __init__(self) -> None:
        self.key: tuple[str, str] | None = None
        self.setup: harness.Setup | None = None

    def get(self, case: harness.Case, device: str) -> harness.Setup:
        key = (case.key, device)
        if key != self.key:
            self.clear()
            # As harness.run_case: each case compiles from scratch and draws from the same seed.
            torch._dynamo.reset()
            torch.manual_seed(0)
            self.setup = case.setup(torch.device(device))
            self.key = key
        return self.setup

    def clear(self) -> None:
        self.key = self.setup = None
        gc.collect()


@pytest.fixture(scope="session")
def case_setup():
    """One :class:`CurrentSetup` per session. Torch keeps its default thread count, so that
    ``OMP_NUM_THREADS=1 pytest bench ...`` pins it (on a shared machine, fewer threads than cores
    can be steadier: an intra-op parallel region waits for its slowest thread)."""
    current = CurrentSetup()
    yield current
    current.clear()
