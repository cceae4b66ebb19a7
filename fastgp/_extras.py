"""Optional extras, checked before a command starts its work rather than when it first needs them."""

from __future__ import annotations

import importlib.util


def importable(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (a ``None`` entry in sys.modules,
    as tests use to hide a package, counts as not importable)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing(module: str, extra: str, what: str) -> str | None:
    """None when ``module`` is importable, else one line saying what needs it and how to install it."""
    if importable(module):
        return None
    return f"{what} need {module}, from fastgp's [{extra}] extra: pip install 'fastgp[{extra}]'"
