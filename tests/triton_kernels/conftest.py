"""Session guard for the Triton kernel tests.

Triton kernels run on a GPU, or on the CPU under Triton's interpreter, which must be switched on
with ``TRITON_INTERPRET=1`` in the environment BEFORE the module defining the ``@triton.jit``
kernels is imported. These tests therefore run in their own pytest process:

    TRITON_INTERPRET=1 python -m pytest tests/triton_kernels   # no GPU: interpreter, CPU tensors
    python -m pytest tests/triton_kernels                      # with a CUDA GPU: compiled kernels
    python -m pytest tests --ignore=tests/triton_kernels       # everything else

Without a GPU and without the interpreter the session fails at once (a silent skip would hide
that the Triton backend was never tested). So does the interpreter of a Triton older than 3.8
(torch < 2.14): it cannot run fastgp's kernels (its ``range`` needs bounds known on the host, and
that torch's ``wrap_triton`` refuses interpreted kernels); with such a torch the Triton backend is
tested compiled, on a GPU.
"""

import os

import pytest
import torch

RUN_HINT = (
    "tests/triton_kernels needs a CUDA GPU or Triton's interpreter, and neither is on. Run it in its own "
    "process with the interpreter switched on before import:\n"
    "    TRITON_INTERPRET=1 python -m pytest tests/triton_kernels\n"
    "and the rest of the suite with: python -m pytest tests --ignore=tests/triton_kernels"
)


OLD_INTERPRETER_HINT = (
    "Triton {version}'s interpreter cannot run fastgp's Triton kernels (it needs Triton >= 3.8, "
    "which comes with torch >= 2.14: loop bounds loaded from memory and torch's wrap_triton of an "
    "interpreted kernel fail before that). Test the Triton backend compiled on a GPU "
    "(python -m pytest tests/triton_kernels), or under the interpreter with torch >= 2.14."
)
MIN_INTERPRETER = (3, 8)


def _triton_version() -> tuple[int, int] | None:
    try:
        import triton
    except ImportError:
        return None
    return tuple(int(part) for part in triton.__version__.split(".")[:2])


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


COMPILE_EARLY = (
    "triton_compile_early: the Triton ops as custom ops (registration, opcheck, torch.compile): never run "
    "by the interpreter, so they run first on a GPU (`-m triton_compile_early`; first in any run)"
)


def pytest_configure(config):
    # also called when this conftest is only found during collection (``pytest tests``)
    config.addinivalue_line("markers", COMPILE_EARLY)
    if not _interpreting() and not torch.cuda.is_available():
        pytest.exit(RUN_HINT, returncode=pytest.ExitCode.USAGE_ERROR)
    version = _triton_version()
    if _interpreting() and not torch.cuda.is_available() and version is not None and version < MIN_INTERPRETER:
        pytest.exit(OLD_INTERPRETER_HINT.format(version=".".join(map(str, version))),
                    returncode=pytest.ExitCode.USAGE_ERROR)


def pytest_report_header(config):
    mode = "interpreter (TRITON_INTERPRET=1, CPU tensors)" if _interpreting() else "compiled (CUDA tensors)"
    return f"fastgp triton kernels: {mode}"


def pytest_collection_modifyitems(config, items):
    """The ``triton_compile_early`` tests first (a stable sort: the others keep their order).

    Why: the interpreter passes kernels through ``wrap_triton`` unchanged and fake tensors cannot
    run them, so custom-op registration, opcheck and torch.compile of the Triton ops have only ever
    run compiled, on a GPU, where a run may be cut short (scripts/gpu-check): they must not be the
    tail that a timeout drops. docs/design.md lists what they guard ("Compiled Triton ops").
    """
    items.sort(key=lambda item: item.get_closest_marker("triton_compile_early") is None)
