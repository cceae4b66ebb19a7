import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

# Fixtures shared by every test module (see helpers.py): the device x backend cases.
from helpers import backend_case, backend_name, device, kernel_backend, on_device, parametrize_backends  # noqa: E402,F401


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: runs on a CUDA device (skipped, with the reason, where none is visible)")


def pytest_generate_tests(metafunc):
    parametrize_backends(metafunc)

# The Triton tests need TRITON_INTERPRET=1 set before triton kernels are imported, so they run
# in their own pytest process: `TRITON_INTERPRET=1 python -m pytest tests/triton_kernels`.
# On a machine with a GPU they run in the main process too.
_TRITON_HERE = os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available()
collect_ignore = [] if _TRITON_HERE else ["triton_kernels"]


def pytest_report_header(config):
    if not _TRITON_HERE:
        return "tests/triton_kernels not collected: run them with TRITON_INTERPRET=1 python -m pytest tests/triton_kernels"
    return None


@pytest.fixture(autouse=True, scope="session")
def fastgp_cache_dir(tmp_path_factory):
    """The trainer's digits classifier is cached under $FASTGP_CACHE_DIR: tests train it into a
    per-session directory (once per resolution) and never read or write the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("fastgp-cache")
        mp.setenv("FASTGP_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def one_thread():
    """Trainer tests run tiny ops on one thread, as the trainer's default: on a busy 2-core machine
    two OpenMP threads spin. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
