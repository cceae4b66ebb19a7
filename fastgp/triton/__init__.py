"""Triton kernels of fastgp, one module per op family (``fastgp.triton.penalty``, ...).

Each family module exposes raw launchers with the same names, signatures and semantics as the
C++ ops (``torch.ops.fastgp.*``) and the pure-PyTorch references (``fastgp.reference.*``); the
backend layer (``fastgp.backend``) picks one of the three. Autograd lives in ``fastgp/<family>.py``.

Importing this package does NOT import Triton: the family modules are loaded on first attribute
access, so ``import fastgp.triton`` is safe where Triton is missing. Note that Triton reads
``TRITON_INTERPRET`` when a ``@triton.jit`` kernel is defined, so on a machine without a GPU the
variable must be set to ``1`` before the first access to a family module.
"""

from __future__ import annotations

import importlib
import importlib.util

__all__ = ["FAMILIES", "is_available"]

FAMILIES = ("penalty", "spectral", "augment", "select", "combine", "correction")


def is_available() -> bool:
    """Whether the ``triton`` package can be found (without importing it)."""
    return importlib.util.find_spec("triton") is not None


def __getattr__(name: str):
    if name in FAMILIES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(FAMILIES))
